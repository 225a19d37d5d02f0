//! JSON documents as MySQL has them: its path language (`$.a[0]."b c"`, `[*]`, `.*`, `**`,
//! `[last]`, `[1 to 3]`) and the text it writes (object keys by length then bytes, `", "` and
//! `": "` between items). JSON columns store that text; the engine's JSON functions read it.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Leg {
    Key(String),
    AnyKey,
    Index(Index),
    Range(Index, Index),
    AnyIndex,
    /// `**`: this value and every value under it.
    Descend,
}

/// An array position: from the start, or from `last`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Index {
    From(usize),
    Last(usize),
}

impl Index {
    fn at(self, len: usize) -> Option<usize> {
        match self {
            Index::From(i) => (i < len).then_some(i),
            Index::Last(back) => len.checked_sub(1 + back),
        }
    }
}

/// A parsed MySQL JSON path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    legs: Vec<Leg>,
}

impl JsonPath {
    /// Parses `text` (`$` then legs); the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |at: usize, what: &str| {
            format!("invalid JSON path '{text}' at character {}: {what}", at + 1)
        };
        let s = text.trim();
        let b = s.as_bytes();
        if b.first() != Some(&b'$') {
            return Err(bad(0, "a path starts with $"));
        }
        let mut i = 1;
        let mut legs = Vec::new();
        let skip_ws = |i: &mut usize| {
            while *i < b.len() && b[*i].is_ascii_whitespace() {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            if i >= b.len() {
                break;
            }
            match b[i] {
                b'.' => {
                    i += 1;
                    skip_ws(&mut i);
                    if i < b.len() && b[i] == b'*' {
                        legs.push(Leg::AnyKey);
                        i += 1;
                    } else if i < b.len() && b[i] == b'"' {
                        let (key, end) = quoted(s, i).ok_or_else(|| bad(i, "unclosed quote"))?;
                        legs.push(Leg::Key(key));
                        i = end;
                    } else {
                        let start = i;
                        while i < b.len() && !matches!(b[i], b'.' | b'[' | b' ' | b'*') {
                            i += 1;
                        }
                        if start == i {
                            return Err(bad(start, "a key is expected after ."));
                        }
                        legs.push(Leg::Key(s[start..i].to_string()));
                    }
                }
                b'[' => {
                    let close = s[i..]
                        .find(']')
                        .map(|c| c + i)
                        .ok_or_else(|| bad(i, "unclosed ["))?;
                    let inner = s[i + 1..close].trim();
                    let leg = if inner == "*" {
                        Leg::AnyIndex
                    } else if let Some((from, to)) = inner.split_once(" to ") {
                        Leg::Range(
                            index(from).ok_or_else(|| bad(i, "bad array range"))?,
                            index(to).ok_or_else(|| bad(i, "bad array range"))?,
                        )
                    } else {
                        Leg::Index(index(inner).ok_or_else(|| bad(i, "bad array index"))?)
                    };
                    legs.push(leg);
                    i = close + 1;
                }
                b'*' if b.get(i + 1) == Some(&b'*') => {
                    if i + 2 >= b.len() {
                        return Err(bad(i, "a path may not end with **"));
                    }
                    legs.push(Leg::Descend);
                    i += 2;
                }
                _ => return Err(bad(i, "expected . or [")),
            }
        }
        Ok(Self { legs })
    }

    /// Whether the path may match more than one value (wildcards, ranges, `**`).
    pub fn is_wild(&self) -> bool {
        self.legs.iter().any(|l| {
            matches!(
                l,
                Leg::AnyKey | Leg::AnyIndex | Leg::Range(..) | Leg::Descend
            )
        })
    }

    /// The values the path reaches in `doc`, in document order.
    pub fn find<'a>(&self, doc: &'a Value) -> Vec<&'a Value> {
        let mut here = vec![doc];
        for leg in &self.legs {
            let mut next = Vec::new();
            for v in here {
                step(leg, v, &mut next);
            }
            here = next;
        }
        here
    }
}

fn step<'a>(leg: &Leg, v: &'a Value, out: &mut Vec<&'a Value>) {
    match (leg, v) {
        (Leg::Key(k), Value::Object(m)) => out.extend(m.get(k)),
        (Leg::AnyKey, Value::Object(m)) => out.extend(sorted(m).into_iter().map(|(_, v)| v)),
        (Leg::Index(i), Value::Array(a)) => out.extend(i.at(a.len()).map(|i| &a[i])),
        // A value that is not an array reads as an array of itself.
        (Leg::Index(i), other) => out.extend(i.at(1).map(|_| other)),
        (Leg::Range(from, to), Value::Array(a)) => {
            if let (Some(f), Some(t)) =
                (from.at(a.len()), to.at(a.len()).or(a.len().checked_sub(1)))
                && f <= t
            {
                out.extend(&a[f..=t]);
            }
        }
        (Leg::AnyIndex, Value::Array(a)) => out.extend(a),
        (Leg::Descend, v) => descend(v, out),
        _ => {}
    }
}

fn descend<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => sorted(m).into_iter().for_each(|(_, c)| descend(c, out)),
        Value::Array(a) => a.iter().for_each(|c| descend(c, out)),
        _ => {}
    }
}

fn index(s: &str) -> Option<Index> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("last") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Some(Index::Last(0));
        }
        return rest
            .strip_prefix('-')
            .and_then(|n| n.trim().parse().ok())
            .map(Index::Last);
    }
    s.parse().ok().map(Index::From)
}

/// A double-quoted key starting at byte `at`: its text and the byte after the closing quote.
fn quoted(s: &str, at: usize) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                let key: String = serde_json::from_str(&s[at..=i]).ok()?;
                return Some((key, i + 1));
            }
            _ => i += 1,
        }
    }
    None
}

/// An object's entries in the order MySQL keeps them: shorter keys first, then by bytes.
fn sorted(m: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
    entries
}

/// `v` as MySQL writes a JSON value.
pub fn to_text(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in sorted(m).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// JSON_EXTRACT: the value one path reaches; with several paths or a wildcard, an array of all
/// the values reached; `None` (SQL NULL) when nothing is.
pub fn extract(doc: &Value, paths: &[&JsonPath]) -> Option<String> {
    let many = paths.len() > 1 || paths.iter().any(|p| p.is_wild());
    let found: Vec<&Value> = paths.iter().flat_map(|p| p.find(doc)).collect();
    match (many, found.as_slice()) {
        (_, []) => None,
        (false, [one]) => Some(to_text(one)),
        _ => Some(to_text(&Value::Array(found.into_iter().cloned().collect()))),
    }
}

/// JSON_UNQUOTE: a JSON string's text; anything else as it is.
pub fn unquote(text: &str) -> String {
    let t = text.trim();
    if t.len() >= 2
        && t.starts_with('"')
        && t.ends_with('"')
        && let Ok(s) = serde_json::from_str::<String>(t)
    {
        return s;
    }
    text.to_string()
}

/// JSON_TYPE's name for a value.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "BOOLEAN",
        Value::Number(n) if n.is_f64() => "DOUBLE",
        Value::Number(_) => "INTEGER",
        Value::String(_) => "STRING",
        Value::Array(_) => "ARRAY",
        Value::Object(_) => "OBJECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(doc: &str, paths: &[&str]) -> Option<String> {
        let doc: Value = serde_json::from_str(doc).unwrap();
        let paths: Vec<JsonPath> = paths.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        extract(&doc, &paths.iter().collect::<Vec<_>>())
    }

    #[test]
    fn paths_reach_what_mysql_reaches() {
        let doc = r#"{"a": {"b": [10, 20, 30], "c d": "x"}, "e": null, "f": [{"g": 1}, {"g": 2}]}"#;
        assert_eq!(ex(doc, &["$.a.b[1]"]).as_deref(), Some("20"));
        assert_eq!(ex(doc, &["$.a.b[last]"]).as_deref(), Some("30"));
        assert_eq!(ex(doc, &["$.a.b[last - 1]"]).as_deref(), Some("20"));
        assert_eq!(ex(doc, &["$.a.b[0 to 1]"]).as_deref(), Some("[10, 20]"));
        assert_eq!(ex(doc, &[r#"$.a."c d""#]).as_deref(), Some(r#""x""#));
        assert_eq!(ex(doc, &["$.e"]).as_deref(), Some("null"));
        assert_eq!(ex(doc, &["$.missing"]), None);
        assert_eq!(ex(doc, &["$.f[*].g"]).as_deref(), Some("[1, 2]"));
        assert_eq!(ex(doc, &["$**.g"]).as_deref(), Some("[1, 2]"));
        assert_eq!(ex(doc, &["$.a.b[0]", "$.e"]).as_deref(), Some("[10, null]"));
        // A scalar reads as an array of itself; past its end is nothing.
        assert_eq!(ex(r#"{"k": 5}"#, &["$.k[0]"]).as_deref(), Some("5"));
        assert_eq!(ex(r#"{"k": 5}"#, &["$.k[1]"]), None);
        // Whole documents are written as MySQL writes them: keys by length, then bytes.
        assert_eq!(
            ex(r#"{"bb":[1,2],"a":{"z":true,"y":"q"}}"#, &["$"]).as_deref(),
            Some(r#"{"a": {"y": "q", "z": true}, "bb": [1, 2]}"#)
        );
    }

    #[test]
    fn bad_paths_say_where() {
        for (bad, what) in [
            ("a.b", "starts with $"),
            ("$.a[", "unclosed ["),
            ("$.a[x]", "bad array index"),
            ("$.", "a key is expected"),
            ("$**", "may not end with **"),
            ("$a", "expected . or ["),
        ] {
            let e = JsonPath::parse(bad).unwrap_err();
            assert!(e.contains(what) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn unquote_reads_strings_only() {
        assert_eq!(unquote(r#""a\"b""#), "a\"b");
        assert_eq!(unquote("12"), "12");
        assert_eq!(unquote(r#"{"a": 1}"#), r#"{"a": 1}"#);
        assert_eq!(unquote("\"unclosed"), "\"unclosed");
    }
}
