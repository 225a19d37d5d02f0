//! What MySQL clients and drivers send when they connect, answered the way MySQL does: session
//! settings Tarn has no use for (`SET NAMES`, `SET autocommit`, transaction statements) accepted
//! without effect, `SHOW VARIABLES` / `SHOW WARNINGS` and friends, and the functions that name the
//! session (`DATABASE()`, `CONNECTION_ID()`, `USER()`). Everything else goes to the session API,
//! which refuses what Tarn does not run (e.g. `SET datafusion.*`).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use tarn_engine::QueryStream;

/// Session settings a driver may set that change nothing here.
const ACCEPTED_SETTINGS: &[&str] = &[
    "autocommit",
    "sql_mode",
    "time_zone",
    "names",
    "sql_select_limit",
    "sql_auto_is_null",
    "max_execution_time",
    "wait_timeout",
    "interactive_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "sql_safe_updates",
    "group_concat_max_len",
    "session_track_schema",
    "session_track_state_change",
    "session_track_system_variables",
    "session_track_transaction_info",
    "default_storage_engine",
    "optimizer_switch",
    "foreign_key_checks",
    "unique_checks",
];

/// An answer given here rather than by the session.
pub enum Answer {
    /// OK, nothing to show.
    Ok,
    /// A result set.
    Rows(QueryStream),
}

/// Who is asking, for the functions that name the session.
pub struct Names<'a> {
    pub database: Option<&'a str>,
    pub connection_id: u32,
    pub user: &'a str,
    pub variables: &'a [(&'static str, datafusion::common::ScalarValue)],
}

/// The answer to `sql` if it is one of the statements answered here.
pub fn answer(sql: &str, names: &Names<'_>) -> Option<Answer> {
    let text = sql.trim().trim_end_matches(';').trim();
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.as_slice() {
        ["set", ..] if accepted_set(&text[3..]) => Some(Answer::Ok),
        ["commit"] | ["rollback"] | ["begin"] | ["start", "transaction", ..] => Some(Answer::Ok),
        ["show", "warnings", ..] | ["show", "errors", ..] => {
            Some(Answer::Rows(table(&["Level", "Code", "Message"], vec![])))
        }
        ["show", "variables", rest @ ..]
        | ["show", "session", "variables", rest @ ..]
        | ["show", "global", "variables", rest @ ..] => {
            let pattern = match rest {
                ["like", ..] => Some(unquote(text.rsplit_once(' ').map_or("", |(_, p)| p))),
                _ => None,
            };
            let rows = names
                .variables
                .iter()
                .filter(|(n, _)| pattern.as_deref().is_none_or(|p| like(p, n)))
                .map(|(n, v)| vec![n.to_string(), v.to_string()])
                .collect();
            Some(Answer::Rows(table(&["Variable_name", "Value"], rows)))
        }
        ["show", "collation", ..] => Some(Answer::Rows(table(
            &[
                "Collation",
                "Charset",
                "Id",
                "Default",
                "Compiled",
                "Sortlen",
            ],
            vec![vec![
                "utf8mb4_0900_ai_ci".into(),
                "utf8mb4".into(),
                "255".into(),
                "Yes".into(),
                "Yes".into(),
                "0".into(),
            ]],
        ))),
        ["show", "character", "set", ..] | ["show", "charset", ..] => Some(Answer::Rows(table(
            &["Charset", "Description", "Default collation", "Maxlen"],
            vec![vec![
                "utf8mb4".into(),
                "UTF-8 Unicode".into(),
                "utf8mb4_0900_ai_ci".into(),
                "4".into(),
            ]],
        ))),
        ["show", "engines", ..] => Some(Answer::Rows(table(
            &["Engine", "Support", "Comment"],
            vec![vec![
                "RAPID".into(),
                "DEFAULT".into(),
                "Tarn's in-memory columnar store (HeatWave's secondary engine)".into(),
            ]],
        ))),
        _ => None,
    }
}

/// Whether `sql` is `SHOW [FULL] PROCESSLIST`.
pub fn is_processlist(sql: &str) -> bool {
    let lower = sql.trim().trim_end_matches(';').to_ascii_lowercase();
    matches!(
        lower.split_whitespace().collect::<Vec<_>>().as_slice(),
        ["show", "processlist"] | ["show", "full", "processlist"]
    )
}

/// The connection a `KILL QUERY n` (or `KILL n`, `KILL CONNECTION n`: Tarn stops the statement
/// and leaves the connection open) names.
pub fn kill(sql: &str) -> Option<u32> {
    let lower = sql.trim().trim_end_matches(';').to_ascii_lowercase();
    match lower.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["kill", "query" | "connection", n] | ["kill", n] => n.parse().ok(),
        _ => None,
    }
}

/// `sql` with the session functions (`DATABASE()`, `SCHEMA()`, `CONNECTION_ID()`, `USER()`,
/// `CURRENT_USER()`, `SESSION_USER()`) replaced by their values, outside quoted text.
pub fn substitute(sql: &str, names: &Names<'_>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let database = names.database.map_or("NULL".to_string(), quote);
    let user = quote(&format!("{}@%", names.user));
    let replacements: [(&str, String); 6] = [
        ("database()", database.clone()),
        ("schema()", database),
        ("connection_id()", names.connection_id.to_string()),
        ("current_user()", user.clone()),
        ("session_user()", user.clone()),
        ("user()", user),
    ];
    crate::session::text::replace_outside_quotes(sql, |rest| {
        let (f, value) = replacements.iter().find(|(f, _)| {
            rest.get(..f.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(f))
        })?;
        let written = &rest[..f.len()];
        let before = &sql[..sql.len() - rest.len()];
        // A whole select item keeps MySQL's column name: the call as written.
        let value = if is_select_item(before, &rest[f.len()..]) {
            format!("{value} AS `{written}`")
        } else {
            value.clone()
        };
        Some((f.len(), value))
    })
}

/// Whether what lies between `before` and `after` is a whole item of the outermost select list:
/// it follows `SELECT` or a comma at the top level, and a comma, `FROM` or the end follows it.
fn is_select_item(before: &str, after: &str) -> bool {
    let depth = before.matches('(').count() as i64 - before.matches(')').count() as i64;
    if depth != 0 {
        return false;
    }
    let b = before.trim_end();
    let starts =
        b.ends_with(',') || b.len() >= 6 && b[b.len() - 6..].eq_ignore_ascii_case("select");
    let a = after.trim_start();
    let next_word = a
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let ends = a.is_empty()
        || a.starts_with([',', ';'])
        || matches!(
            next_word.as_str(),
            "from" | "where" | "limit" | "order" | "group" | "union"
        );
    starts && ends
}

/// Whether every assignment of a `SET` (the text after the keyword) is a session setting that
/// changes nothing here. A user variable (`@x`) or an engine setting is not.
fn accepted_set(rest: &str) -> bool {
    let parts = split_top_level(rest);
    !parts.is_empty()
        && parts.iter().all(|part| {
            let part = part.trim();
            let lower = part.to_ascii_lowercase();
            let first = lower.split_whitespace().next().unwrap_or("");
            if matches!(first, "names" | "charset" | "character" | "transaction") {
                return true;
            }
            let Some((name, _)) = lower.split_once('=') else {
                // SET SESSION TRANSACTION ..., SET GLOBAL ...
                return matches!(first, "session" | "local")
                    && lower.split_whitespace().nth(1) == Some("transaction");
            };
            let name = name.trim();
            let name = name
                .strip_prefix("session ")
                .or_else(|| name.strip_prefix("local "))
                .unwrap_or(name)
                .trim();
            let name = name
                .strip_prefix("@@session.")
                .or_else(|| name.strip_prefix("@@local."))
                .or_else(|| name.strip_prefix("@@"))
                .unwrap_or(name);
            ACCEPTED_SETTINGS.contains(&name)
                || name.starts_with("character_set_")
                || name.starts_with("collation_")
                || name.starts_with("transaction_")
                || name.starts_with("tx_")
        })
}

/// Splits on commas outside quotes and parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        parts.push(&s[start..]);
    }
    parts
}

fn unquote(s: &str) -> String {
    s.trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_ascii_lowercase()
}

/// SQL's LIKE (`%`, `_`), case-insensitively.
fn like(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((b'_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some((c, rest)) => {
                s.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(rest, &s[1..])
            }
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// A result of text columns.
pub fn table(columns: &[&str], rows: Vec<Vec<String>>) -> QueryStream {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, arrow::datatypes::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("columns match the schema");
    QueryStream::from_batches(schema, vec![batch])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names<'static> {
        Names {
            database: Some("sales"),
            connection_id: 7,
            user: "bi",
            variables: &[],
        }
    }

    #[test]
    fn driver_settings_are_accepted_and_engine_settings_are_not() {
        for ok in [
            "SET NAMES utf8mb4",
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
            "set autocommit=0",
            "SET AUTOCOMMIT = 0",
            "SET @@session.autocommit = OFF",
            "SET SESSION sql_mode = 'ANSI', character_set_results = NULL",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET character_set_results = utf8mb4;",
            "COMMIT",
            "ROLLBACK",
        ] {
            assert!(matches!(answer(ok, &names()), Some(Answer::Ok)), "{ok}");
        }
        for not in [
            "SET datafusion.execution.batch_size = 1",
            "SET @input_list = '[]'",
            "SET autocommit = 1, @x = 2",
            "SELECT 1",
            "SET",
        ] {
            assert!(answer(not, &names()).is_none(), "{not}");
        }
    }

    #[test]
    fn session_functions_are_replaced_outside_quotes() {
        assert_eq!(
            substitute(
                "SELECT DATABASE(), connection_id(), 'database()', USER()",
                &names()
            ),
            "SELECT 'sales' AS `DATABASE()`, 7 AS `connection_id()`, 'database()', 'bi@%' AS `USER()`"
        );
        assert_eq!(
            substitute(
                "SELECT concat(database(), 'x') AS d, user() u FROM t",
                &names()
            ),
            "SELECT concat('sales', 'x') AS d, 'bi@%' u FROM t"
        );
        let none = Names {
            database: None,
            ..names()
        };
        assert_eq!(
            substitute("select schema()", &none),
            "select NULL AS `schema()`"
        );
        assert_eq!(
            substitute("SELECT mydatabase() FROM t", &names()),
            "SELECT mydatabase() FROM t"
        );
        assert!(like("version%", "version_comment") && !like("ver", "version"));
    }
}
