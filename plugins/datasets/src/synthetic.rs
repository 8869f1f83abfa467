//! The `synthetic` dataset: a seeded generator of interaction logs with two kinds of structure a
//! recommender can learn, so that pipelines can be tested end to end without downloads:
//!
//! - **tastes**: items belong to clusters (genres); each user prefers two clusters, so
//!   collaborative filtering beats global popularity;
//! - **habits**: each item has three likely successors in its cluster; with probability
//!   `markov_strength` the next item is one of the previous item's successors, so a sequential
//!   model beats both.
//!
//! Within a cluster, popularity follows a Zipf-like curve, so popularity is a sensible but
//! beatable baseline. A user never repeats an item. Rows come user by user, each user's in
//! chronological order; timestamps are whole seconds.

use pulse_api::config::{check_range, ConfigError};
use pulse_api::data::columns;
use pulse_api::polars::prelude::{Column, DataFrame};
use pulse_api::{Dataset, LoadContext, PluginConfig, PluginError, RawDataset};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// `type = "synthetic"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Number of users (default 300).
    pub users: usize,
    /// Number of items (default 200).
    pub items: usize,
    /// Number of item clusters, i.e. genres (default 8).
    pub clusters: usize,
    /// Mean interactions per user; each user gets between half and one and a half times this
    /// (default 40).
    pub interactions_per_user: usize,
    /// Probability that the next item is one of the previous item's successors (default 0.7).
    pub markov_strength: f64,
    /// Generator seed (default: the trial's seed).
    pub seed: Option<u64>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            users: 300,
            items: 200,
            clusters: 8,
            interactions_per_user: 40,
            markov_strength: 0.7,
            seed: None,
        }
    }
}

impl PluginConfig for SyntheticConfig {
    const TYPE: &'static str = "synthetic";
    const SUMMARY: &'static str =
        "seeded synthetic logs with cluster tastes and sequential habits (no download)";
    const EXAMPLE: &'static str = r#"# users = 300
# items = 200
# clusters = 8                  # genres; each user prefers two
# interactions_per_user = 40    # mean; each user gets 0.5x to 1.5x
# markov_strength = 0.7         # chance the next item follows the previous one's habit
# seed = 2020                   # default: the trial's seed
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        check_range(&mut e, "users", self.users, 1, 10_000_000);
        check_range(&mut e, "items", self.items, 2, 10_000_000);
        check_range(&mut e, "clusters", self.clusters, 1, self.items.max(1));
        check_range(
            &mut e,
            "interactions_per_user",
            self.interactions_per_user,
            2,
            self.items.max(2),
        );
        check_range(&mut e, "markov_strength", self.markov_strength, 0.0, 1.0);
        e
    }
}

/// The configured generator.
#[derive(Debug)]
pub struct Synthetic {
    cfg: SyntheticConfig,
}

/// Factory registered under [`SyntheticConfig::TYPE`].
pub fn build(cfg: SyntheticConfig) -> Result<Box<dyn Dataset>, Vec<ConfigError>> {
    Ok(Box::new(Synthetic { cfg }))
}

const GENRES: &[&str] = &[
    "Action",
    "Comedy",
    "Drama",
    "Horror",
    "Romance",
    "SciFi",
    "Thriller",
    "Documentary",
    "Animation",
    "Western",
    "Musical",
    "Mystery",
];

fn genre(cluster: usize) -> String {
    match GENRES.get(cluster) {
        Some(g) => (*g).to_string(),
        None => format!("Genre{cluster}"),
    }
}

/// Index drawn from cumulative weights `cum` (last entry = total).
fn pick(rng: &mut pulse_api::rng::Rng, cum: &[f64]) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cum.partition_point(|&c| c <= x)
        .min(cum.len().saturating_sub(1))
}

fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

/// The generated world: clusters, popularity and successor habits.
struct World {
    /// Items of each cluster, most popular first.
    members: Vec<Vec<usize>>,
    /// Cumulative Zipf weights per cluster, aligned with `members`.
    popularity: Vec<Vec<f64>>,
    /// Each item's likely successors, most likely first.
    successors: Vec<Vec<usize>>,
}

const SUCCESSOR_WEIGHTS: [f64; 3] = [0.6, 0.3, 0.1];

impl World {
    fn new(cfg: &SyntheticConfig, rng: &mut pulse_api::rng::Rng) -> World {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); cfg.clusters];
        for i in 0..cfg.items {
            members[i % cfg.clusters].push(i);
        }
        // Shuffle so that popularity rank is not the item number.
        for m in &mut members {
            for k in (1..m.len()).rev() {
                m.swap(k, rng.random_range(0..=k));
            }
        }
        let popularity = members
            .iter()
            .map(|m| cumulative((0..m.len()).map(|r| 1.0 / ((r + 1) as f64).powf(0.7))))
            .collect();
        let successors = (0..cfg.items)
            .map(|i| {
                let own = &members[i % cfg.clusters];
                let pool: Vec<usize> = if own.len() > 1 {
                    own.iter().copied().filter(|&j| j != i).collect()
                } else {
                    (0..cfg.items).filter(|&j| j != i).collect()
                };
                let mut chosen = Vec::new();
                while chosen.len() < SUCCESSOR_WEIGHTS.len().min(pool.len()) {
                    let j = pool[rng.random_range(0..pool.len())];
                    if !chosen.contains(&j) {
                        chosen.push(j);
                    }
                }
                chosen
            })
            .collect();
        World {
            members,
            popularity,
            successors,
        }
    }
}

/// One user's preference: cumulative weights over clusters and the two favourites.
fn taste(clusters: usize, rng: &mut pulse_api::rng::Rng) -> (Vec<f64>, [usize; 2]) {
    let first = rng.random_range(0..clusters);
    let second = if clusters > 1 {
        (first + rng.random_range(1..clusters)) % clusters
    } else {
        first
    };
    let rest = if clusters > 2 {
        0.15 / (clusters - 2) as f64
    } else {
        0.0
    };
    let weights = (0..clusters).map(|c| {
        if c == first {
            0.55
        } else if c == second {
            0.3
        } else {
            rest
        }
    });
    (cumulative(weights), [first, second])
}

/// Generated rows, column by column.
#[derive(Default)]
struct Rows {
    user: Vec<String>,
    item: Vec<String>,
    timestamp: Vec<f64>,
    rating: Vec<f64>,
}

impl Synthetic {
    fn generate(&self, seed: u64) -> Rows {
        let cfg = &self.cfg;
        let mut rng = pulse_api::rng::derive(seed, "synthetic-dataset");
        let world = World::new(cfg, &mut rng);
        let mut rows = Rows::default();
        let mut seen = vec![false; cfg.items];
        let mut mine: Vec<usize> = Vec::new();
        let mean = cfg.interactions_per_user;
        let (lo, hi) = ((mean / 2).max(1), (mean + mean / 2).min(cfg.items));
        for u in 0..cfg.users {
            let (cum, favourite) = taste(cfg.clusters, &mut rng);
            let n = rng.random_range(lo..=hi.max(lo));
            let mut t: u64 = 1_600_000_000 + rng.random_range(0..30 * 86_400);
            let mut prev: Option<usize> = None;
            // Forget the previous user's items; clearing only those keeps this linear.
            for i in mine.drain(..) {
                seen[i] = false;
            }
            for _ in 0..n {
                let habit = prev
                    .filter(|_| rng.random::<f64>() < cfg.markov_strength)
                    .and_then(|p| {
                        let next: Vec<(usize, f64)> = world.successors[p]
                            .iter()
                            .zip(SUCCESSOR_WEIGHTS)
                            .filter(|(j, _)| !seen[**j])
                            .map(|(j, w)| (*j, w))
                            .collect();
                        let cum = cumulative(next.iter().map(|(_, w)| *w));
                        (!next.is_empty()).then(|| next[pick(&mut rng, &cum)].0)
                    });
                let item = match habit {
                    Some(i) => i,
                    None => draw_by_taste(&world, &cum, &seen, &mut rng),
                };
                seen[item] = true;
                mine.push(item);
                prev = Some(item);
                let cluster = item % cfg.clusters;
                let rating = if cluster == favourite[0] {
                    rng.random_range(4..=5)
                } else if cluster == favourite[1] {
                    rng.random_range(3..=5)
                } else {
                    rng.random_range(1..=3)
                };
                rows.user.push(format!("u{}", u + 1));
                rows.item.push(format!("i{}", item + 1));
                rows.timestamp.push(t as f64);
                rows.rating.push(f64::from(rating));
                // Mostly minutes apart within a session, sometimes days between sessions.
                t += if rng.random::<f64>() < 0.1 {
                    rng.random_range(3_600..3 * 86_400)
                } else {
                    rng.random_range(30..3_600)
                };
            }
        }
        rows
    }
}

/// An unseen item drawn by the user's cluster taste and popularity within the cluster.
fn draw_by_taste(
    world: &World,
    taste: &[f64],
    seen: &[bool],
    rng: &mut pulse_api::rng::Rng,
) -> usize {
    for _ in 0..32 {
        let c = pick(rng, taste);
        let i = world.members[c][pick(rng, &world.popularity[c])];
        if !seen[i] {
            return i;
        }
    }
    // Nearly everything likely is taken: any unseen item will do. The caller never asks for
    // more items than exist, so one is unseen.
    let start = rng.random_range(0..seen.len());
    (0..seen.len())
        .map(|k| (start + k) % seen.len())
        .find(|&i| !seen[i])
        .unwrap_or(start)
}

impl Dataset for Synthetic {
    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "synthetic: {} users x {} items in {} clusters, ~{} interactions per user, markov {}",
            c.users, c.items, c.clusters, c.interactions_per_user, c.markov_strength
        )
    }

    fn load(&self, ctx: &LoadContext) -> Result<RawDataset, PluginError> {
        let cfg = &self.cfg;
        let rows = self.generate(cfg.seed.unwrap_or(ctx.seed));
        let height = rows.user.len();
        let interactions = DataFrame::new(
            height,
            vec![
                Column::new(columns::USER.into(), rows.user),
                Column::new(columns::ITEM.into(), rows.item),
                Column::new(columns::TIMESTAMP.into(), rows.timestamp),
                Column::new(columns::RATING.into(), rows.rating),
            ],
        )?;
        let items = DataFrame::new(
            cfg.items,
            vec![
                Column::new(
                    columns::ITEM.into(),
                    (1..=cfg.items).map(|i| format!("i{i}")).collect::<Vec<_>>(),
                ),
                Column::new(
                    "title".into(),
                    (0..cfg.items)
                        .map(|i| format!("Item {} (cluster {})", i + 1, i % cfg.clusters))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "genre".into(),
                    (0..cfg.items)
                        .map(|i| genre(i % cfg.clusters))
                        .collect::<Vec<_>>(),
                ),
            ],
        )?;
        Ok(RawDataset {
            name: "synthetic".into(),
            interactions,
            items: Some(items),
            users: None,
        })
    }
}

#[cfg(test)]
#[path = "synthetic_tests.rs"]
mod tests;
