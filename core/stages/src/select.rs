//! Which training interactions get a rationale: by default each user's last training
//! interaction; or every k-th one; optionally for a seeded sample of at most `users` users.

use pulse_api::stages::{RationaleSection, Select};
use pulse_api::SplitData;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One selected example: dense user id and the position of the target in the user's training
/// sequence (its history is everything before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Example {
    pub user: u32,
    pub position: u32,
}

/// The selected examples, sorted by user then position.
pub fn select(data: &SplitData, s: &RationaleSection) -> Vec<Example> {
    // A first interaction has no history to explain it from.
    let mut users: Vec<u32> = (0..data.n_users() as u32)
        .filter(|&u| data.train[u as usize].len() >= 2)
        .collect();
    if let Some(cap) = s.users {
        if cap < users.len() {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.user_seed);
            users.shuffle(&mut rng);
            users.truncate(cap);
            users.sort_unstable();
        }
    }
    let mut out = Vec::new();
    for u in users {
        let n = data.train[u as usize].len() as u32;
        match s.select {
            Select::Last => out.push(Example {
                user: u,
                position: n - 1,
            }),
            Select::EveryK => {
                let k = s.k.max(1) as u32;
                out.extend(
                    (k..n)
                        .step_by(k as usize)
                        .map(|position| Example { user: u, position }),
                )
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(lens: &[usize]) -> SplitData {
        SplitData {
            user_ids: (0..lens.len()).map(|u| format!("u{u}")).collect(),
            train: lens.iter().map(|&n| (0..n as u32).collect()).collect(),
            ..SplitData::default()
        }
    }

    #[track_caller]
    fn check(lens: &[usize], s: RationaleSection, expected: &[(u32, u32)]) {
        let got: Vec<(u32, u32)> = select(&data(lens), &s)
            .into_iter()
            .map(|e| (e.user, e.position))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn selections() {
        let d = RationaleSection::default();
        check(&[3, 1, 5], d.clone(), &[(0, 2), (2, 4)]);
        check(
            &[7, 2],
            RationaleSection {
                select: Select::EveryK,
                k: 3,
                ..d.clone()
            },
            &[(0, 3), (0, 6)],
        );
        let capped = RationaleSection {
            users: Some(2),
            user_seed: 7,
            ..d.clone()
        };
        let a = select(&data(&[3; 10]), &capped);
        assert_eq!(a.len(), 2);
        assert_eq!(a, select(&data(&[3; 10]), &capped), "seeded");
        let other = select(
            &data(&[3; 10]),
            &RationaleSection {
                user_seed: 8,
                ..capped
            },
        );
        assert_ne!(a, other);
    }
}
