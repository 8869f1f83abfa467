//! A reader for RecBole's atomic files (`.inter`, `.item`, `.user`): UTF-8 text, one record per
//! line (LF or CRLF), fields separated by tabs, and a header of typed names
//! (`user_id:token`, `rating:float`, `title:token_seq`, `vec:float_seq`).
//!
//! Fields are split on tabs only: quotes and commas are ordinary characters (movie titles
//! contain both), which is why this is not a CSV reader. Blank lines are skipped. Every error
//! names the file and line.

use pulse_api::PluginError;

/// The declared type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Token,
    Float,
    TokenSeq,
    FloatSeq,
}

impl FieldType {
    const KNOWN: &'static str = "token, float, token_seq, float_seq";

    fn parse(s: &str) -> Option<FieldType> {
        Some(match s {
            "token" => FieldType::Token,
            "float" => FieldType::Float,
            "token_seq" => FieldType::TokenSeq,
            "float_seq" => FieldType::FloatSeq,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FieldType::Token => "token",
            FieldType::Float => "float",
            FieldType::TokenSeq => "token_seq",
            FieldType::FloatSeq => "float_seq",
        }
    }
}

/// One header entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub name: String,
    pub ty: FieldType,
}

/// A parsed file, column by column, borrowing its text.
#[derive(Debug)]
pub(crate) struct AtomicTable<'a> {
    /// Shown in errors (a path, or `package==version:member`).
    pub file: String,
    pub fields: Vec<Field>,
    pub columns: Vec<Vec<&'a str>>,
    /// 1-based line number of the header.
    header_line: usize,
    /// 1-based line number of each row, for errors found after parsing.
    lines: Vec<u32>,
}

fn data_error(file: &str, line: usize, msg: impl std::fmt::Display) -> PluginError {
    PluginError::Data(format!("{file}:{line}: {msg}"))
}

/// Decodes `bytes` as UTF-8 (a leading byte-order mark is dropped).
pub(crate) fn as_text<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, PluginError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        data_error(file, line, "the file is not valid UTF-8")
    })
}

/// Parses a whole atomic file.
pub(crate) fn parse<'a>(text: &'a str, file: &str) -> Result<AtomicTable<'a>, PluginError> {
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let (header_line, header) = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty())
        .ok_or_else(|| data_error(file, 1, "the file is empty (expected a header line)"))?;
    let fields = parse_header(header, file, header_line)?;
    let width = fields.len();
    let mut columns: Vec<Vec<&str>> = vec![Vec::new(); width];
    let mut row_lines = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let found = line.bytes().filter(|&b| b == b'\t').count() + 1;
        if found != width {
            return Err(data_error(
                file,
                n,
                format!("expected {width} tab-separated fields as in the header, found {found}"),
            ));
        }
        for (col, value) in columns.iter_mut().zip(line.split('\t')) {
            col.push(value);
        }
        row_lines.push(u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(AtomicTable {
        file: file.to_string(),
        fields,
        columns,
        header_line,
        lines: row_lines,
    })
}

fn parse_header(line: &str, file: &str, at: usize) -> Result<Vec<Field>, PluginError> {
    let mut fields: Vec<Field> = Vec::new();
    for raw in line.split('\t') {
        let bad = |why: &str| {
            data_error(
                file,
                at,
                format!(
                    "bad header field '{raw}': {why} (expected NAME:TYPE with TYPE one of {})",
                    FieldType::KNOWN
                ),
            )
        };
        let (name, ty) = raw.rsplit_once(':').ok_or_else(|| bad("no ':TYPE'"))?;
        let ty = FieldType::parse(ty.trim()).ok_or_else(|| bad("unknown type"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        if fields.iter().any(|f| f.name == name) {
            return Err(bad("the name appears twice"));
        }
        fields.push(Field {
            name: name.to_string(),
            ty,
        });
    }
    Ok(fields)
}

impl<'a> AtomicTable<'a> {
    pub(crate) fn rows(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The column index of a field the caller cannot do without.
    pub(crate) fn require(&self, name: &str, key: &str) -> Result<usize, PluginError> {
        self.index(name).ok_or_else(|| {
            let have: Vec<String> = self
                .fields
                .iter()
                .map(|f| format!("{}:{}", f.name, f.ty.name()))
                .collect();
            data_error(
                &self.file,
                self.header_line,
                format!(
                    "no column '{name}' (set `{key}` to one of: {})",
                    have.join(", ")
                ),
            )
        })
    }

    /// An id column's raw values; ids must be single tokens and may not be empty.
    pub(crate) fn ids(&self, col: usize) -> Result<Vec<String>, PluginError> {
        let field = &self.fields[col];
        if !matches!(field.ty, FieldType::Token | FieldType::Float) {
            return Err(data_error(
                &self.file,
                self.header_line,
                format!(
                    "id column '{}' has type {}; ids must be token (or float)",
                    field.name,
                    field.ty.name()
                ),
            ));
        }
        self.columns[col]
            .iter()
            .zip(&self.lines)
            .map(|(v, &line)| {
                if v.is_empty() {
                    Err(data_error(
                        &self.file,
                        line as usize,
                        format!("empty value in id column '{}'", field.name),
                    ))
                } else {
                    Ok((*v).to_string())
                }
            })
            .collect()
    }

    /// A `float` column as numbers; empty or unparsable values are errors.
    pub(crate) fn floats(&self, col: usize) -> Result<Vec<f64>, PluginError> {
        let field = &self.fields[col];
        if field.ty != FieldType::Float {
            return Err(data_error(
                &self.file,
                self.header_line,
                format!(
                    "column '{}' has type {}; expected float",
                    field.name,
                    field.ty.name()
                ),
            ));
        }
        self.columns[col]
            .iter()
            .zip(&self.lines)
            .map(|(v, &line)| {
                v.trim().parse::<f64>().map_err(|_| {
                    data_error(
                        &self.file,
                        line as usize,
                        format!("'{v}' in column '{}' is not a number", field.name),
                    )
                })
            })
            .collect()
    }

    /// Any column as text; sequences are re-joined with single spaces.
    pub(crate) fn texts(&self, col: usize) -> Vec<String> {
        let seq = matches!(
            self.fields[col].ty,
            FieldType::TokenSeq | FieldType::FloatSeq
        );
        self.columns[col]
            .iter()
            .map(|v| {
                if seq {
                    v.split_whitespace().collect::<Vec<_>>().join(" ")
                } else {
                    (*v).to_string()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and renders it as `name:type` header + rows joined by `|`, or the error.
    #[track_caller]
    fn check(text: &str, expected: &str) {
        let got = match parse(text, "f.inter") {
            Ok(t) => {
                let mut out: Vec<String> = vec![t
                    .fields
                    .iter()
                    .map(|f| format!("{}:{}", f.name, f.ty.name()))
                    .collect::<Vec<_>>()
                    .join(" ")];
                for r in 0..t.rows() {
                    let row: Vec<&str> = t.columns.iter().map(|c| c[r]).collect();
                    out.push(format!("{}@{}", row.join("|"), t.lines[r]));
                }
                out.join("\n")
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn parses_atomic_files() {
        check(
            "user_id:token\titem_id:token\trating:float\n1\t2\t3\n\n4\t5\t6\n",
            "user_id:token item_id:token rating:float\n1|2|3@2\n4|5|6@4",
        );
        // CRLF endings; quotes and commas are plain characters.
        check(
            "item_id:token\ttitle:token_seq\r\n\"Wag, the Dog\"\tA \"b\", c\r\n",
            "item_id:token title:token_seq\n\"Wag, the Dog\"|A \"b\", c@2",
        );
        check(
            "",
            "error: bad data: f.inter:1: the file is empty (expected a header line)",
        );
        check(
            "user_id\titem_id:token\n",
            "error: bad data: f.inter:1: bad header field 'user_id': no ':TYPE' (expected NAME:TYPE with TYPE one of token, float, token_seq, float_seq)",
        );
        check(
            "user_id:tokn\n",
            "error: bad data: f.inter:1: bad header field 'user_id:tokn': unknown type (expected NAME:TYPE with TYPE one of token, float, token_seq, float_seq)",
        );
        check(
            "a:token\ta:float\n",
            "error: bad data: f.inter:1: bad header field 'a:float': the name appears twice (expected NAME:TYPE with TYPE one of token, float, token_seq, float_seq)",
        );
        check(
            "a:token\tb:token\n1\t2\n1\t2\t3\n",
            "error: bad data: f.inter:3: expected 2 tab-separated fields as in the header, found 3",
        );
        check(
            "a:token\tb:token\n1\n",
            "error: bad data: f.inter:2: expected 2 tab-separated fields as in the header, found 1",
        );
    }

    #[test]
    fn typed_columns() {
        let text = "u:token\tr:float\ts:token_seq\n1\t3.5\tA  B\n2\tx\tC\n";
        let t = parse(text, "f.inter").unwrap();
        assert_eq!(t.ids(0).unwrap(), ["1", "2"]);
        assert_eq!(t.texts(2), ["A B", "C"]);
        assert_eq!(
            t.floats(1).unwrap_err().to_string(),
            "bad data: f.inter:3: 'x' in column 'r' is not a number"
        );
        assert_eq!(
            t.floats(0).unwrap_err().to_string(),
            "bad data: f.inter:1: column 'u' has type token; expected float"
        );
        assert_eq!(
            t.ids(2).unwrap_err().to_string(),
            "bad data: f.inter:1: id column 's' has type token_seq; ids must be token (or float)"
        );
        assert_eq!(
            t.require("user_id", "user_field").unwrap_err().to_string(),
            "bad data: f.inter:1: no column 'user_id' (set `user_field` to one of: u:token, r:float, s:token_seq)"
        );
        let empty_id = parse("u:token\ti:token\n\t1\n", "f.inter").unwrap();
        assert_eq!(
            empty_id.ids(0).unwrap_err().to_string(),
            "bad data: f.inter:2: empty value in id column 'u'"
        );
        assert!(as_text(b"a:token\n\xff\n", "f")
            .unwrap_err()
            .to_string()
            .contains("f:2: the file is not valid UTF-8"));
        assert_eq!(as_text(b"\xEF\xBB\xBFa", "f").unwrap(), "a");
    }
}
