//! Reading one TOML file: parses it once with `toml_edit` (TOML 1.1, spans kept) into a
//! `serde_json::Value` plus a [`SpanIndex`] from key path to the line and column of the key,
//! its value and its table header, so later problems found by key path can point into the file.
//! Also parses the small TOML fragments of `--set`, sweep and ablation keys.

use crate::diag::{Diagnostic, Location};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::path::Path;
use toml_edit::{Document, Item, Key, Table};

/// A 1-based line and column.
pub(crate) type Pos = (usize, usize);

/// Positions known for one key path in one file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spans {
    pub key: Option<Pos>,
    pub value: Option<Pos>,
    /// The `[table]` / `[[array]]` header that opens this table, if it has one.
    pub header: Option<Pos>,
}

/// Key path → positions, for one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpanIndex {
    entries: HashMap<Vec<String>, Spans>,
}

impl SpanIndex {
    pub fn get(&self, path: &[String]) -> Option<&Spans> {
        self.entries.get(path)
    }
}

/// A parsed file: its tree and where everything in it is.
#[derive(Debug, Clone)]
pub(crate) struct ParsedFile {
    pub value: Value,
    pub spans: SpanIndex,
}

/// Byte offset → line and column (columns count characters, as editors do).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
}

/// Parses `text` (the contents of `path`); a syntax error becomes a diagnostic at its position.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<ParsedFile, Vec<Diagnostic>> {
    let lines = LineIndex::new(text);
    let doc = Document::parse(text).map_err(|e| {
        let at = e.span().map_or((1, 1), |s| lines.pos(s.start));
        let message = e.message().trim_end().to_string();
        vec![Diagnostic::new(
            Location::file(path, at.0, at.1),
            format!("invalid TOML: {message}"),
        )
        .with_help("fix the TOML syntax (https://toml.io); every other check waits for it")]
    })?;
    let mut walker = Walker {
        lines: &lines,
        path,
        index: SpanIndex::default(),
        errors: Vec::new(),
    };
    let mut key_path = Vec::new();
    walker.index.entries.insert(
        Vec::new(),
        Spans {
            key: Some((1, 1)),
            value: Some((1, 1)),
            header: Some((1, 1)),
        },
    );
    let value = Value::Object(walker.table(doc.as_table(), &mut key_path));
    if walker.errors.is_empty() {
        Ok(ParsedFile {
            value,
            spans: walker.index,
        })
    } else {
        Err(walker.errors)
    }
}

struct Walker<'a> {
    lines: &'a LineIndex<'a>,
    path: &'a Path,
    index: SpanIndex,
    errors: Vec<Diagnostic>,
}

impl Walker<'_> {
    fn pos(&self, span: Option<std::ops::Range<usize>>) -> Option<Pos> {
        span.map(|s| self.lines.pos(s.start))
    }

    fn record(&mut self, path: &[String], f: impl FnOnce(&mut Spans)) {
        f(self.index.entries.entry(path.to_vec()).or_default());
    }

    fn table(&mut self, table: &Table, path: &mut Vec<String>) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            path.push(name.to_string());
            let key_pos = self.key_pos(key);
            self.record(path, |s| s.key = s.key.or(key_pos));
            if let Some(v) = self.item(item, path) {
                out.insert(name.to_string(), v);
            }
            path.pop();
        }
        out
    }

    fn key_pos(&self, key: &Key) -> Option<Pos> {
        self.pos(key.span())
    }

    fn item(&mut self, item: &Item, path: &mut Vec<String>) -> Option<Value> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(self.value(v, path)),
            Item::Table(t) => {
                if !t.is_implicit() && !t.is_dotted() {
                    let header = self.pos(t.span());
                    self.record(path, |s| s.header = s.header.or(header));
                }
                Some(Value::Object(self.table(t, path)))
            }
            Item::ArrayOfTables(a) => {
                let mut out = Vec::new();
                for (i, t) in a.iter().enumerate() {
                    path.push(i.to_string());
                    let header = self.pos(t.span());
                    self.record(path, |s| {
                        s.header = s.header.or(header);
                        s.key = s.key.or(header);
                        s.value = s.value.or(header);
                    });
                    out.push(Value::Object(self.table(t, path)));
                    path.pop();
                }
                Some(Value::Array(out))
            }
        }
    }

    fn value(&mut self, v: &toml_edit::Value, path: &mut Vec<String>) -> Value {
        let at = self.pos(v.span());
        self.record(path, |s| s.value = s.value.or(at));
        match v {
            toml_edit::Value::InlineTable(t) => {
                let mut out = Map::new();
                for (name, _) in t.iter() {
                    let Some((key, item)) = t.get_key_value(name) else {
                        continue;
                    };
                    path.push(name.to_string());
                    let key_pos = self.key_pos(key);
                    self.record(path, |s| s.key = s.key.or(key_pos));
                    if let Some(v) = self.item(item, path) {
                        out.insert(name.to_string(), v);
                    }
                    path.pop();
                }
                Value::Object(out)
            }
            toml_edit::Value::Array(a) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(self.value(v, path));
                    path.pop();
                }
                Value::Array(out)
            }
            scalar => match scalar_to_json(scalar) {
                Ok(v) => v,
                Err(why) => {
                    let (line, col) = at.unwrap_or((1, 1));
                    self.errors.push(Diagnostic::new(
                        Location::file(self.path, line, col),
                        format!("{why} at {}", dotted(path)),
                    ));
                    Value::Null
                }
            },
        }
    }
}

/// A TOML scalar as JSON; datetimes become their TOML text.
pub(crate) fn scalar_to_json(v: &toml_edit::Value) -> Result<Value, String> {
    Ok(match v {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Number((*i.value()).into()),
        toml_edit::Value::Float(f) => Number::from_f64(*f.value())
            .map(Value::Number)
            .ok_or_else(|| format!("non-finite number {} is not supported", f.value()))?,
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(
            a.iter()
                .map(scalar_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        toml_edit::Value::InlineTable(t) => {
            let mut out = Map::new();
            for (k, v) in t.iter() {
                out.insert(k.to_string(), scalar_to_json(v)?);
            }
            Value::Object(out)
        }
    })
}

/// Parses a dotted key as TOML does (`models."bpr-mf".epochs`, `"a.b"` stays one segment).
pub(crate) fn parse_key_path(text: &str) -> Result<Vec<String>, String> {
    let keys = Key::parse(text.trim()).map_err(|e| e.message().trim_end().to_string())?;
    if keys.is_empty() {
        return Err("empty key".into());
    }
    Ok(keys.iter().map(|k| k.get().to_string()).collect())
}

/// A key path as the user would write it, quoting segments that are not bare keys.
pub(crate) fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            let bare = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if bare {
                s.clone()
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        if p.is_empty() {
            Vec::new()
        } else {
            parse_key_path(p).unwrap()
        }
    }

    /// Checks the (key, value, header) positions recorded for `key`.
    #[track_caller]
    fn check(text: &str, key: &str, expected: (Option<Pos>, Option<Pos>, Option<Pos>)) {
        let parsed = parse_file(Path::new("t.toml"), text).unwrap();
        let s = parsed
            .spans
            .get(&path(key))
            .copied()
            .unwrap_or_else(|| panic!("no spans for {key}"));
        assert_eq!((s.key, s.value, s.header), expected, "{key}");
    }

    const DOC: &str = "\
[experiment]
name = \"x\"

[models.sasrec]
type = \"sasrec\"
  hidden_size = 64
loss = { type = \"bce\", negatives = 4 }
a.b = 1
list = [1,
  2]

[[ablation]]
name = \"one\"
set = { \"models.sasrec.dropout\" = 0.0 }
";

    #[test]
    fn spans_of_keys_values_and_headers() {
        check(DOC, "experiment", (Some((1, 2)), None, Some((1, 1))));
        check(DOC, "experiment.name", (Some((2, 1)), Some((2, 8)), None));
        check(DOC, "models.sasrec", (Some((4, 9)), None, Some((4, 1))));
        check(
            DOC,
            "models.sasrec.hidden_size",
            (Some((6, 3)), Some((6, 17)), None),
        );
        check(
            DOC,
            "models.sasrec.loss.negatives",
            (Some((7, 24)), Some((7, 36)), None),
        );
        check(DOC, "models.sasrec.a.b", (Some((8, 3)), Some((8, 7)), None));
        check(DOC, "models.sasrec.list.1", (None, Some((10, 3)), None));
        check(
            DOC,
            "ablation.0",
            (Some((12, 1)), Some((12, 1)), Some((12, 1))),
        );
        check(
            DOC,
            "ablation.0.set.\"models.sasrec.dropout\"",
            (Some((14, 9)), Some((14, 35)), None),
        );
    }

    #[test]
    fn values_convert_to_json() {
        let p = parse_file(Path::new("t.toml"), DOC).unwrap();
        assert_eq!(p.value["models"]["sasrec"]["loss"]["negatives"], 4);
        assert_eq!(p.value["models"]["sasrec"]["a"]["b"], 1);
        assert_eq!(p.value["ablation"][0]["set"]["models.sasrec.dropout"], 0.0);
        let d = parse_file(Path::new("t.toml"), "when = 1979-05-27T07:32:00Z").unwrap();
        assert_eq!(d.value["when"], "1979-05-27T07:32:00Z");
    }

    #[track_caller]
    fn check_syntax(text: &str, expected: &str) {
        let errs = parse_file(Path::new("t.toml"), text).unwrap_err();
        let shown = errs[0].to_string();
        assert!(shown.contains(expected), "{shown}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        check_syntax("a = 1\n[b\n", "t.toml:2:");
        check_syntax(
            "a = 1\na = 2\n",
            "t.toml:2:1: error: invalid TOML: duplicate key",
        );
        check_syntax("x = \n", "t.toml:1:");
        check_syntax("x = nan\n", "t.toml:1:5: error: non-finite number");
    }

    #[test]
    fn key_paths() {
        assert_eq!(
            path("models.\"bpr-mf\".epochs"),
            ["models", "bpr-mf", "epochs"]
        );
        assert_eq!(path("\"a.b\""), ["a.b"]);
        assert!(parse_key_path("a..b").is_err());
        assert_eq!(
            dotted(&path("sweep.\"models.x.y\"")),
            "sweep.\"models.x.y\""
        );
    }
}
