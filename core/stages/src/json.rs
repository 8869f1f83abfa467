//! Lenient parsing of a model's `{"rationale": "…"}` answer. Small models wrap JSON in code
//! fences, use single quotes, add text after it, or run out of tokens mid-string; each of those
//! still carries a usable rationale. [`parse_rationale`] takes what is there and says how much
//! it had to bend: `ok` (the answer is exactly the JSON asked for), `lenient` (a rationale was
//! recovered from JSON-like text), `failed` (none was: empty, no `rationale`, or prose without
//! JSON — the raw text is kept either way).

use serde_json::Value;

/// How a rationale was recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseStatus {
    Ok,
    Lenient,
    Failed,
}

impl ParseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseStatus::Ok => "ok",
            ParseStatus::Lenient => "lenient",
            ParseStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ParseStatus::Ok, ParseStatus::Lenient, ParseStatus::Failed]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The rationale in `raw` (empty when `Failed`) and how it was found.
pub fn parse_rationale(raw: &str) -> (String, ParseStatus) {
    let trimmed = raw.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        if let Some(text) = rationale_of(&v) {
            let exact = v.get("rationale").is_some_and(Value::is_string);
            let status = if exact {
                ParseStatus::Ok
            } else {
                ParseStatus::Lenient
            };
            return finish(text, status);
        }
    }
    let body = strip_fences(trimmed);
    // A JSON value followed by anything (a second object, an explanation).
    if let Some(start) = body.find('{') {
        let mut values = serde_json::Deserializer::from_str(&body[start..]).into_iter::<Value>();
        if let Some(Ok(v)) = values.next() {
            if let Some(text) = rationale_of(&v) {
                return finish(text, ParseStatus::Lenient);
            }
        }
    }
    if let Some(text) = quoted_value_after_key(body) {
        return finish(text, ParseStatus::Lenient);
    }
    // Prose without any JSON is not counted as a rationale: small models often echo the
    // prompt's item list instead of answering. The raw text stays in the row.
    (String::new(), ParseStatus::Failed)
}

fn finish(text: String, status: ParseStatus) -> (String, ParseStatus) {
    let t = text.trim().to_string();
    if t.is_empty() {
        (t, ParseStatus::Failed)
    } else {
        (t, status)
    }
}

/// `rationale`, or the only string value of an object with another key name.
fn rationale_of(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    if let Some(s) = obj.get("rationale").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    let strings: Vec<&str> = obj.values().filter_map(Value::as_str).collect();
    match strings.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

/// The text inside the first ```` ``` ```` fence (language tag dropped), or all of `s`.
fn strip_fences(s: &str) -> &str {
    let Some(open) = s.find("```") else {
        return s;
    };
    let after = &s[open + 3..];
    let after = match after.find('\n') {
        Some(nl)
            if after[..nl]
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric()) =>
        {
            &after[nl + 1..]
        }
        _ => after,
    };
    match after.find("```") {
        Some(close) => after[..close].trim(),
        None => after.trim(),
    }
}

/// The value of a `rationale` key written with single or double quotes, or unquoted key,
/// up to its closing quote or, when truncated, to the end.
fn quoted_value_after_key(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let at = lower.find("rationale")?;
    let rest = &s[at + "rationale".len()..];
    let rest = rest.trim_start_matches(['"', '\'']).trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let mut chars = rest.chars();
    let quote = match chars.next()? {
        q @ ('"' | '\'') => q,
        _ => return None,
    };
    let mut out = String::new();
    let mut escaped = false;
    let inner: Vec<char> = chars.collect();
    for (i, &c) in inner.iter().enumerate() {
        if escaped {
            out.push(match c {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            // An apostrophe inside a single-quoted value ("user's") is not its end unless
            // the object or the text ends after it.
            let tail: String = inner[i + 1..].iter().collect();
            let tail = tail.trim_start();
            if quote == '"' || tail.is_empty() || tail.starts_with('}') || tail.starts_with(',') {
                return Some(out);
            }
            out.push(c);
        } else {
            out.push(c);
        }
    }
    // Truncated: no closing quote.
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, text: &str, status: ParseStatus) {
        assert_eq!(parse_rationale(raw), (text.to_string(), status), "{raw:?}");
    }

    #[test]
    fn answers_are_parsed_leniently() {
        use ParseStatus::*;
        check(r#"{"rationale": "Loves sci-fi."}"#, "Loves sci-fi.", Ok);
        check(
            "  {\"rationale\":\"A \\\"classic\\\".\"}\n",
            "A \"classic\".",
            Ok,
        );
        check(
            "```json\n{\"rationale\": \"Fenced.\"}\n```",
            "Fenced.",
            Lenient,
        );
        check(
            r#"{"rationale": "First."} I hope this helps!"#,
            "First.",
            Lenient,
        );
        check(
            r#"Sure! Here it is: {"rationale": "After text."}"#,
            "After text.",
            Lenient,
        );
        check(
            "{'rationale': 'Single quotes, the user's taste.'}",
            "Single quotes, the user's taste.",
            Lenient,
        );
        check(
            r#"{"rationale": "The user enjoys 90s action films and"#,
            "The user enjoys 90s action films and",
            Lenient,
        );
        check(r#"{"reason": "Other key."}"#, "Other key.", Lenient);
        check("The user likes comedies, so this fits.", "", Failed);
        check("1. Toy Story (1995) — Comedy\n2. Heat (1995)", "", Failed);
        check("rationale: 'Likes heists.'", "Likes heists.", Lenient);
        check(r#"{"rationale": ""}"#, "", Failed);
        check("{}", "", Failed);
        check("", "", Failed);
        check(r#"{"a": 1, "b": 2}"#, "", Failed);
        check("{\"rationale\": 3}", "", Failed);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [ParseStatus::Ok, ParseStatus::Lenient, ParseStatus::Failed] {
            assert_eq!(ParseStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ParseStatus::parse("x"), None);
    }
}
