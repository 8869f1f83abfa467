//! `pulse-datasets`: the built-in dataset plugins.
//!
//! - `recbole-atomic` ([`recbole`]): RecBole atomic files, from a local directory or a built-in
//!   MovieLens source fetched from a registry package;
//! - `synthetic` ([`synthetic`]): a seeded generator with learnable tastes and habits.
//!
//! Both hand over a [`pulse_api::RawDataset`] in file order; preprocessing and splitting are
//! `pulse-data`'s job.

mod atomic;
pub mod recbole;
pub mod synthetic;

pub use recbole::{RecboleAtomicConfig, SOURCES};
pub use synthetic::SyntheticConfig;

/// Adds every dataset plugin of this crate to `r`.
pub fn register(r: &mut pulse_api::Registrar) {
    r.dataset::<RecboleAtomicConfig>(recbole::build);
    r.dataset::<SyntheticConfig>(synthetic::build);
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::decode_toml;
    use pulse_api::PluginConfig;

    #[track_caller]
    fn check<C: PluginConfig + PartialEq + std::fmt::Debug>() {
        let decoded: C =
            decode_toml(C::EXAMPLE).unwrap_or_else(|e| panic!("{} EXAMPLE: {e:?}", C::TYPE));
        assert_eq!(
            decoded,
            C::default(),
            "{} EXAMPLE is not the default",
            C::TYPE
        );
        // Every field is listed in the example.
        let json = pulse_api::serde_json::to_value(C::default()).unwrap();
        for key in json.as_object().unwrap().keys() {
            assert!(
                C::EXAMPLE.contains(&format!("{key} =")),
                "{} EXAMPLE lacks {key}",
                C::TYPE
            );
        }
    }

    #[test]
    fn examples_decode_to_defaults() {
        check::<RecboleAtomicConfig>();
        check::<SyntheticConfig>();
    }

    #[test]
    fn registers_every_plugin() {
        let mut r = pulse_api::Registrar::new("built-in");
        register(&mut r);
        let entries = r.into_entries();
        let names: Vec<&str> = entries.iter().map(|e| e.info.type_name.as_str()).collect();
        assert_eq!(names, ["recbole-atomic", "synthetic"]);
        let synthetic = pulse_api::serde_json::json!({"type": "synthetic", "users": 0});
        let errors = (entries[1].check)(&synthetic).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "users: value 0 is out of range: allowed 1 to 10000000"
        );
    }
}
