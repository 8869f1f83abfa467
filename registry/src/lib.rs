//! `pulse-registry` is the one crate that knows every built-in plugin. It collects the
//! registrations of the plugin crates (explicitly, one `register` call per crate — no linker
//! magic), rejects duplicate names, answers `pulse list` / `pulse example`, validates plugin
//! sections for the spec layer ([`pulse_api::Catalog`]) and builds components for the runtime.
//! Plugins built as separate libraries are added at run time by [`Registry::load_library`]
//! (see `loader.rs`), after checking that they were built against this very `pulse-api`.
//!
//! **Architecture invariant:** `core/*` crates other than the CLI never name a concrete plugin;
//! they reach plugins only through a [`Registry`].

mod elf;
mod ffi;
pub mod loader;

pub use loader::{scan_plugin_path, LoadError, LoadedLibrary, Mismatch, PLUGIN_PATH_VAR};

use pulse_api::config::{ConfigError, ConfigErrorKind};
use pulse_api::plugin::{Factory, Registration};
use pulse_api::{
    Catalog, Dataset, Family, Loss, LossBuilder, PluginInfo, Recommender, Reference, Registrar,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a set of plugins could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("{family} plugin '{name}' from {new_origin} clashes with the one from {old_origin}; rename one of them")]
    Duplicate {
        family: Family,
        name: String,
        old_origin: String,
        new_origin: String,
    },
}

/// Every known plugin, by family and type name.
#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<(Family, String), Registration>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

/// The built-in plugins.
pub fn builtin_registrar() -> Registrar {
    let mut r = Registrar::new("built-in");
    pulse_datasets::register(&mut r);
    pulse_losses::register(&mut r);
    pulse_recommenders::register(&mut r);
    pulse_backbones::register(&mut r);
    pulse_prompts::register(&mut r);
    r
}

/// A registry holding every built-in plugin.
pub fn default_registry() -> Registry {
    let mut reg = Registry::default();
    // invariant: built-in names are unique; `builtin_names_are_unique` below checks it.
    #[allow(clippy::expect_used)]
    reg.add(builtin_registrar())
        .expect("built-in plugin names are unique"); // invariant: tested below

    reg
}

impl Registry {
    /// Adds every plugin of a registrar; nothing is added when any name clashes.
    pub fn add(&mut self, registrar: Registrar) -> Result<(), RegistryError> {
        let entries = registrar.into_entries();
        let mut seen = std::collections::BTreeSet::new();
        for e in &entries {
            let key = (e.info.family, e.info.type_name.clone());
            let old = self.entries.get(&key).map(|o| o.info.origin.clone());
            let clash_within = !seen.insert(key.clone());
            if old.is_some() || clash_within {
                return Err(RegistryError::Duplicate {
                    family: e.info.family,
                    name: e.info.type_name.clone(),
                    old_origin: old.unwrap_or_else(|| e.info.origin.clone()),
                    new_origin: e.info.origin.clone(),
                });
            }
        }
        for e in entries {
            self.entries
                .insert((e.info.family, e.info.type_name.clone()), e);
        }
        Ok(())
    }

    /// Plugins of one family (or all), sorted by family then name.
    pub fn infos(&self, family: Option<Family>) -> Vec<&PluginInfo> {
        self.entries
            .values()
            .filter(|e| family.is_none_or(|f| e.info.family == f))
            .map(|e| &e.info)
            .collect()
    }

    pub fn info(&self, family: Family, type_name: &str) -> Option<&PluginInfo> {
        self.entries
            .get(&(family, type_name.to_string()))
            .map(|e| &e.info)
    }

    /// A commented, valid TOML section for one plugin, with every default.
    pub fn example(&self, family: Family, type_name: &str) -> Option<String> {
        let info = self.info(family, type_name)?;
        let header = match family.table() {
            Some(table) => format!("[{table}.{}]", info.type_name.replace('-', "_")),
            None => format!("[models.MODEL.{}]", family.name()),
        };
        let mut out = format!(
            "# {}\n{header}\ntype = \"{}\"\n",
            info.summary, info.type_name
        );
        out.push_str(info.example.trim_end());
        out.push('\n');
        Some(out)
    }

    fn entry(&self, family: Family, section: &Value) -> Result<&Registration, Vec<ConfigError>> {
        let ty = section_type(section)?;
        self.entries.get(&(family, ty.to_string())).ok_or_else(|| {
            vec![ConfigError::new(
                vec!["type".into()],
                ConfigErrorKind::UnknownType {
                    family: family.name().into(),
                    found: ty.to_string(),
                    known: self.types(family),
                },
            )]
        })
    }

    pub fn build_dataset(&self, section: &Value) -> Result<Box<dyn Dataset>, Vec<ConfigError>> {
        match &self.entry(Family::Dataset, section)?.factory {
            Factory::Dataset(f) => f(section),
            _ => Err(wrong_family()),
        }
    }

    pub fn build_backbone(
        &self,
        section: &Value,
    ) -> Result<Box<dyn pulse_api::Backbone>, Vec<ConfigError>> {
        match &self.entry(Family::Backbone, section)?.factory {
            Factory::Backbone(f) => f(section),
            _ => Err(wrong_family()),
        }
    }

    pub fn build_prompt(
        &self,
        section: &Value,
    ) -> Result<Box<dyn pulse_api::Prompt>, Vec<ConfigError>> {
        match &self.entry(Family::Prompt, section)?.factory {
            Factory::Prompt(f) => f(section),
            _ => Err(wrong_family()),
        }
    }

    pub fn build_recommender(
        &self,
        section: &Value,
    ) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
        match &self.entry(Family::Recommender, section)?.factory {
            Factory::Recommender(f) => f(section, self),
            _ => Err(wrong_family()),
        }
    }
}

fn wrong_family() -> Vec<ConfigError> {
    vec![ConfigError::message(
        "type",
        "registered under the wrong family (a bug in the plugin's register function)",
    )]
}

/// The `type` key of a section, or the error a user needs to see.
fn section_type(section: &Value) -> Result<&str, Vec<ConfigError>> {
    let Some(map) = section.as_object() else {
        return Err(vec![ConfigError::new(
            Vec::new(),
            ConfigErrorKind::InvalidType {
                expected: "a table".into(),
                found: section.to_string(),
            },
        )]);
    };
    match map.get("type") {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(vec![ConfigError::new(
            vec!["type".into()],
            ConfigErrorKind::InvalidType {
                expected: "a string".into(),
                found: other.to_string(),
            },
        )]),
        None => Err(vec![ConfigError::new(
            Vec::new(),
            ConfigErrorKind::MissingField {
                field: "type".into(),
            },
        )]),
    }
}

impl LossBuilder for Registry {
    fn build_loss(&self, section: &Value) -> Result<Arc<dyn Loss>, Vec<ConfigError>> {
        match &self.entry(Family::Loss, section)?.factory {
            Factory::Loss(f) => f(section),
            _ => Err(wrong_family()),
        }
    }
}

impl Catalog for Registry {
    fn types(&self, family: Family) -> Vec<String> {
        self.infos(Some(family))
            .into_iter()
            .map(|i| i.type_name.clone())
            .collect()
    }

    fn check(&self, family: Family, section: &Value) -> Result<Vec<Reference>, Vec<ConfigError>> {
        let entry = self.entry(family, section)?;
        let refs = (entry.check)(section)?;
        // Building a recommender also builds its loss and checks that the pair is compatible.
        if let Factory::Recommender(f) = &entry.factory {
            f(section, self)?;
        }
        Ok(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_names_are_unique() {
        let mut reg = Registry::default();
        reg.add(builtin_registrar()).unwrap();
        assert!(reg.infos(None).len() >= 8, "{reg:?}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut reg = default_registry();
        let err = reg.add(builtin_registrar()).unwrap_err();
        assert!(err.to_string().contains("clashes"), "{err}");
    }

    /// Every example decodes to a valid section of its plugin.
    #[test]
    fn examples_are_valid_toml_sections() {
        let reg = default_registry();
        for info in reg.infos(None) {
            let text = reg.example(info.family, &info.type_name).unwrap();
            let doc: toml::Table =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", info.type_name));
            let mut v = serde_json::to_value(&doc).unwrap();
            // Walk down to the section under the header.
            while let Some(obj) = v.as_object() {
                if obj.contains_key("type") {
                    break;
                }
                v = obj.values().next().cloned().unwrap();
            }
            reg.check(info.family, &v)
                .unwrap_or_else(|e| panic!("{}: {e:?}\n{text}", info.type_name));
        }
    }

    #[track_caller]
    fn check(family: Family, section: Value, expect: &str) {
        let errs = default_registry().check(family, &section).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|t| t.contains(expect)),
            "{text:?} lacks {expect}"
        );
    }

    #[test]
    fn section_errors() {
        check(
            Family::Recommender,
            json!({"type": "sasrc"}),
            "did you mean 'sasrec'",
        );
        check(Family::Recommender, json!({}), "missing field 'type'");
        check(Family::Recommender, json!({"type": 3}), "expected a string");
        check(
            Family::Recommender,
            json!({"type": "sasrec", "loss": {"type": "nope"}}),
            "loss.type: unknown loss type 'nope'",
        );
    }
}
