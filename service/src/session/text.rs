//! Rewriting statement text outside quoted parts (strings and quoted names), for what a session
//! fills in before a statement is parsed: its variables in `CALL`, the parameters of a prepared
//! statement (every door's), and the MySQL door's session functions (`DATABASE()`,
//! `CONNECTION_ID()`).

use datafusion::common::ScalarValue;

/// `sql` with every match of `replace` outside quotes replaced. `replace` is asked at each word
/// start with the rest of the text; it answers how many bytes it matched and what goes in their
/// place.
pub fn replace_outside_quotes(
    sql: &str,
    replace: impl Fn(&str) -> Option<(usize, String)>,
) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else if matches!(c, '\'' | '"' | '`') {
            quote = Some(c);
        } else if !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '@')
            && let Some((n, with)) = replace(rest)
            && n > 0
        {
            out.push_str(&with);
            prev = rest[..n].chars().last();
            rest = &rest[n..];
            continue;
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `sql` with its `?` placeholders (outside quotes) replaced by `values` in order, and how many
/// it holds: with no values, only the count matters.
pub fn bind(sql: &str, values: &[String]) -> (String, usize) {
    let n = std::cell::Cell::new(0usize);
    let bound = replace_outside_quotes(sql, |rest| {
        rest.starts_with('?').then(|| {
            let i = n.get();
            n.set(i + 1);
            (1, values.get(i).cloned().unwrap_or_else(|| "?".into()))
        })
    });
    (bound, n.get())
}

/// A value as the SQL literal that stands for it: strings quoted, dates and times typed, binary as
/// hex, NULL as NULL.
pub fn literal(value: &ScalarValue) -> String {
    use ScalarValue as S;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    if value.is_null() {
        return "NULL".into();
    }
    match value {
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => quote(s),
        S::Binary(Some(b))
        | S::LargeBinary(Some(b))
        | S::BinaryView(Some(b))
        | S::FixedSizeBinary(_, Some(b)) => format!("X'{}'", hex::encode(b)),
        S::Date32(_) | S::Date64(_) => format!("DATE {}", quote(&shown(value))),
        S::TimestampSecond(..)
        | S::TimestampMillisecond(..)
        | S::TimestampMicrosecond(..)
        | S::TimestampNanosecond(..) => {
            format!("TIMESTAMP {}", quote(&shown(value).replace('T', " ")))
        }
        S::Time32Second(_)
        | S::Time32Millisecond(_)
        | S::Time64Microsecond(_)
        | S::Time64Nanosecond(_) => quote(&shown(value)),
        S::Float32(Some(f)) if !f.is_finite() => {
            format!("CAST({} AS FLOAT)", quote(&f.to_string()))
        }
        S::Float64(Some(f)) if !f.is_finite() => {
            format!("CAST({} AS DOUBLE)", quote(&f.to_string()))
        }
        S::Boolean(_)
        | S::Int8(_)
        | S::Int16(_)
        | S::Int32(_)
        | S::Int64(_)
        | S::UInt8(_)
        | S::UInt16(_)
        | S::UInt32(_)
        | S::UInt64(_)
        | S::Float16(_)
        | S::Float32(_)
        | S::Float64(_)
        | S::Decimal32(..)
        | S::Decimal64(..)
        | S::Decimal128(..)
        | S::Decimal256(..) => value.to_string(),
        other => quote(&other.to_string()),
    }
}

/// A value as Arrow displays it (dates and times in ISO form, which their Display is not).
fn shown(value: &ScalarValue) -> String {
    value
        .to_array()
        .ok()
        .and_then(|a| arrow::util::display::array_value_to_string(&a, 0).ok())
        .unwrap_or_else(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_are_counted_and_bound_in_order() {
        let sql = "SELECT ? , '?', `?`, x FROM t WHERE a = ? AND b = ?";
        assert_eq!(bind(sql, &[]).1, 3);
        let values = ["1".to_string(), "'x'".to_string(), "NULL".to_string()];
        assert_eq!(
            bind(sql, &values).0,
            "SELECT 1 , '?', `?`, x FROM t WHERE a = 'x' AND b = NULL"
        );
    }

    #[test]
    fn literals_read_back_as_the_values_they_stand_for() {
        let cases = [
            (ScalarValue::Utf8(Some("it's".into())), "'it''s'"),
            (ScalarValue::Utf8(None), "NULL"),
            (ScalarValue::Int64(Some(-7)), "-7"),
            (ScalarValue::Boolean(Some(true)), "true"),
            (ScalarValue::Float64(Some(1.5)), "1.5"),
            (ScalarValue::Decimal128(Some(12345), 10, 2), "123.45"),
            (ScalarValue::Date32(Some(19723)), "DATE '2024-01-01'"),
            (
                ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_001), None),
                "TIMESTAMP '2024-01-01 00:00:00.000001'",
            ),
            (ScalarValue::Binary(Some(vec![0xab, 1])), "X'ab01'"),
        ];
        for (value, want) in cases {
            assert_eq!(literal(&value), want, "{value:?}");
        }
    }

    #[test]
    fn only_text_outside_quotes_is_replaced_and_only_at_word_starts() {
        let f = |rest: &str| {
            rest.get(..3)
                .filter(|s| s.eq_ignore_ascii_case("abc"))
                .map(|_| (3, "X".to_string()))
        };
        assert_eq!(
            replace_outside_quotes("abc 'abc' `abc` xabc ABC é abc", f),
            "X 'abc' `abc` xabc X é X"
        );
    }
}
