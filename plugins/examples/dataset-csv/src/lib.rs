//! `csv`: interactions from a delimited text file with a header line, shipped as a dynamic
//! plugin (an example of a data set that lives outside pulse). The user and item columns are
//! required; a timestamp and a rating column are used when the header has them. Fields are
//! split on the delimiter and trimmed; quoted fields (with the delimiter inside) are not
//! supported — such a line is reported with its number.
//!
//! `pulse plugin new NAME --family dataset` scaffolds a crate from this file.

// Tests may panic on failure; library code may not (see the workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use pulse_api::data::columns;
use pulse_api::polars::prelude::{Column, DataFrame};
use pulse_api::serde::{Deserialize, Serialize};
use pulse_api::{
    ConfigError, Dataset, LoadContext, PluginConfig, PluginError, RawDataset, Registrar,
};
use std::path::PathBuf;

/// Config of the data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct CsvConfig {
    /// The file; relative to the spec file.
    pub path: PathBuf,
    /// Field separator: one character (`","`, `"\t"`, `";"`).
    pub delimiter: String,
    /// Header names of the columns.
    pub user_column: String,
    pub item_column: String,
    /// Used when present (seconds, any number).
    pub timestamp_column: String,
    /// Used when present.
    pub rating_column: String,
}

impl Default for CsvConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("interactions.csv"),
            delimiter: ",".into(),
            user_column: "user".into(),
            item_column: "item".into(),
            timestamp_column: "timestamp".into(),
            rating_column: "rating".into(),
        }
    }
}

impl PluginConfig for CsvConfig {
    const TYPE: &'static str = "csv";
    const SUMMARY: &'static str = "interactions from a delimited text file with a header line";
    const EXAMPLE: &'static str = "\
# The file, relative to the spec file. Its first line names the columns.
path = \"interactions.csv\"
# Field separator: one character.
delimiter = \",\"
# Header names of the user and item columns (required).
user_column = \"user\"
# The item column.
item_column = \"item\"
# Timestamp column (seconds), used when the header has it.
timestamp_column = \"timestamp\"
# Rating column, used when the header has it.
rating_column = \"rating\"
";

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.delimiter.chars().count() != 1 {
            errors.push(ConfigError::invalid_value(
                "delimiter",
                "exactly one character",
                format!("{:?}", self.delimiter),
            ));
        }
        if self.path.as_os_str().is_empty() {
            errors.push(ConfigError::message("path", "the file path is empty"));
        }
        errors
    }
}

/// The configured data set.
#[derive(Debug, Clone)]
pub struct Csv {
    cfg: CsvConfig,
}

impl Csv {
    pub fn new(cfg: CsvConfig) -> Self {
        Self { cfg }
    }
}

/// The parsed columns.
#[derive(Debug, Default, PartialEq)]
struct Rows {
    user: Vec<String>,
    item: Vec<String>,
    timestamp: Option<Vec<f64>>,
    rating: Option<Vec<f64>>,
}

fn parse(cfg: &CsvConfig, text: &str, file: &str) -> Result<Rows, PluginError> {
    let delim = cfg.delimiter.chars().next().unwrap_or(',');
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(PluginError::Data(format!("{file}: the file is empty")));
    };
    let names: Vec<&str> = header.split(delim).map(str::trim).collect();
    let find = |name: &str| names.iter().position(|n| *n == name);
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            PluginError::Data(format!(
                "{file}:1: no column '{name}' in the header (columns: {})",
                names.join(", ")
            ))
        })
    };
    let (u, i) = (need(&cfg.user_column)?, need(&cfg.item_column)?);
    let (t, r) = (find(&cfg.timestamp_column), find(&cfg.rating_column));
    let mut rows = Rows {
        timestamp: t.map(|_| Vec::new()),
        rating: r.map(|_| Vec::new()),
        ..Rows::default()
    };
    let number = |field: &str, line: usize, what: &str| {
        field.parse::<f64>().map_err(|_| {
            PluginError::Data(format!(
                "{file}:{}: {what} '{field}' is not a number",
                line + 1
            ))
        })
    };
    for (line, text) in lines {
        let fields: Vec<&str> = text.split(delim).map(str::trim).collect();
        if fields.len() != names.len() {
            return Err(PluginError::Data(format!(
                "{file}:{}: {} fields, the header has {}",
                line + 1,
                fields.len(),
                names.len()
            )));
        }
        rows.user.push(fields[u].to_string());
        rows.item.push(fields[i].to_string());
        if let (Some(t), Some(v)) = (t, rows.timestamp.as_mut()) {
            v.push(number(fields[t], line, "timestamp")?);
        }
        if let (Some(r), Some(v)) = (r, rows.rating.as_mut()) {
            v.push(number(fields[r], line, "rating")?);
        }
    }
    Ok(rows)
}

impl Dataset for Csv {
    fn describe(&self) -> String {
        format!("csv: {}", self.cfg.path.display())
    }

    fn load(&self, ctx: &LoadContext) -> Result<RawDataset, PluginError> {
        let path = ctx.base_dir.join(&self.cfg.path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PluginError::io(format!("reading {}", path.display()), e))?;
        let rows = parse(&self.cfg, &text, &path.display().to_string())?;
        let height = rows.user.len();
        let mut cols = vec![
            Column::new(columns::USER.into(), rows.user),
            Column::new(columns::ITEM.into(), rows.item),
        ];
        if let Some(t) = rows.timestamp {
            cols.push(Column::new(columns::TIMESTAMP.into(), t));
        }
        if let Some(r) = rows.rating {
            cols.push(Column::new(columns::RATING.into(), r));
        }
        let name = path.file_stem().map_or_else(
            || CsvConfig::TYPE.into(),
            |s| s.to_string_lossy().into_owned(),
        );
        Ok(RawDataset {
            name,
            interactions: DataFrame::new(height, cols)?,
            items: None,
            users: None,
        })
    }
}

/// Adds the data set to `r`; the same function serves a build of pulse that compiles it in.
pub fn register(r: &mut Registrar) {
    r.dataset::<CsvConfig>(|c| Ok(Box::new(Csv::new(c))));
}

pulse_api::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::plugin::decode_section;
    use pulse_api::serde_json::json;

    #[track_caller]
    fn check(cfg: &CsvConfig, text: &str, expected: Result<Rows, &str>) {
        match (parse(cfg, text, "f.csv"), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.to_string().contains(want), "{got}"),
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_required_and_optional_columns() {
        let cfg = CsvConfig::default();
        check(
            &cfg,
            "item, user ,timestamp\ni1,u1,10\n\ni2,u1,11.5\n",
            Ok(Rows {
                user: strings(&["u1", "u1"]),
                item: strings(&["i1", "i2"]),
                timestamp: Some(vec![10.0, 11.5]),
                rating: None,
            }),
        );
        let tsv = CsvConfig {
            delimiter: "\t".into(),
            user_column: "uid".into(),
            ..CsvConfig::default()
        };
        check(
            &tsv,
            "uid\titem\trating\r\n7\t9\t4\r\n",
            Ok(Rows {
                user: strings(&["7"]),
                item: strings(&["9"]),
                timestamp: None,
                rating: Some(vec![4.0]),
            }),
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        let cfg = CsvConfig::default();
        check(&cfg, "", Err("f.csv: the file is empty"));
        check(
            &cfg,
            "user,song\n",
            Err("f.csv:1: no column 'item' in the header (columns: user, song)"),
        );
        check(
            &cfg,
            "user,item\nu1,i1\nu2\n",
            Err("f.csv:3: 1 fields, the header has 2"),
        );
        check(
            &cfg,
            "user,item,timestamp\nu1,i1,yesterday\n",
            Err("f.csv:2: timestamp 'yesterday' is not a number"),
        );
    }

    #[test]
    fn loads_a_file_relative_to_the_spec() {
        let dir = std::env::temp_dir().join(format!("dataset-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("log.csv"),
            "user,item,timestamp\nu1,a,1\nu2,b,2\nu1,b,3\n",
        )
        .unwrap();
        let ds = Csv::new(CsvConfig {
            path: "log.csv".into(),
            ..CsvConfig::default()
        });
        let ctx = LoadContext {
            cache_dir: dir.clone(),
            base_dir: dir.clone(),
            seed: 0,
        };
        let raw = ds.load(&ctx).unwrap();
        assert_eq!(raw.name, "log");
        assert_eq!(raw.interactions.shape(), (3, 3));
        let names: Vec<&str> = raw
            .interactions
            .get_column_names()
            .into_iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(
            names,
            vec![columns::USER, columns::ITEM, columns::TIMESTAMP]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_is_checked_and_the_example_decodes_to_the_defaults() {
        let errs =
            decode_section::<CsvConfig>(&json!({"type": CsvConfig::TYPE, "delimiter": "::"}))
                .unwrap_err();
        assert_eq!(errs[0].dotted(), "delimiter");
        let section = json!({"type": CsvConfig::TYPE, "path": "interactions.csv", "delimiter": ",",
            "user_column": "user", "item_column": "item", "timestamp_column": "timestamp",
            "rating_column": "rating"});
        assert_eq!(
            decode_section::<CsvConfig>(&section).unwrap(),
            CsvConfig::default()
        );
        for line in CsvConfig::EXAMPLE.lines().filter(|l| !l.starts_with('#')) {
            let key = line.split(" = ").next().unwrap();
            assert!(section.get(key).is_some(), "EXAMPLE key {key} not checked");
        }
    }
}
