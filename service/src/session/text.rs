//! Rewriting statement text outside quoted parts (strings and quoted names), for what a session
//! fills in before a statement is parsed: its variables in `CALL`, and the MySQL door's session
//! functions (`DATABASE()`, `CONNECTION_ID()`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
