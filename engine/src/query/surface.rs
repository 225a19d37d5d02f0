//! The SQL the engine runs: queries (SELECT, WITH, VALUES, set operations) and EXPLAIN of them,
//! over declared tables, the status views and the table functions that read no file. Everything
//! else DataFusion would run is refused before it is planned: statements that write (COPY,
//! INSERT, UPDATE, DELETE, CREATE TABLE AS, CREATE VIEW), that change the engine for everyone
//! (SET, RESET), PREPARE/EXECUTE as text, and relations that read a file by its path. Engine
//! settings come only from the operator (the config and `DATAFUSION_*` variables).

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};

use crate::error::{EngineError, Result};

/// Table functions that compute their rows (read no file).
const TABLE_FUNCTIONS: [&str; 2] = ["generate_series", "range"];

fn unsupported(what: &str) -> EngineError {
    EngineError::Unsupported(format!(
        "{what} is not supported: Tarn runs queries, SHOW, DESCRIBE and its own statements \
         (CREATE EXTERNAL TABLE, ALTER TABLE ... SECONDARY_LOAD, ...); engine settings come from \
         the operator (the config, DATAFUSION_* variables)"
    ))
}

/// The statement's first words, as it names itself (`INSERT`, `CREATE VIEW`).
fn kind(text: &str) -> String {
    text.split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// Refuses `stmt` unless it is a query (or EXPLAIN of one) that reads no file by its path.
pub fn check(stmt: &DfStatement) -> Result<()> {
    match stmt {
        DfStatement::Statement(s) => check_sql(s),
        DfStatement::Explain(e) => check(&e.statement),
        DfStatement::CopyTo(_) => Err(unsupported("COPY")),
        DfStatement::CreateExternalTable(_) => Err(EngineError::Unsupported(
            "CREATE EXTERNAL TABLE ... STORED AS ... LOCATION reached the engine: name the table \
             as database.table so that Tarn's catalog takes it"
                .into(),
        )),
        DfStatement::Reset(_) => Err(unsupported("RESET")),
    }
}

fn check_sql(stmt: &Statement) -> Result<()> {
    match stmt {
        Statement::Query(_) => check_relations(stmt),
        Statement::Explain { statement, .. } => check_sql(statement),
        other => Err(unsupported(&kind(&other.to_string()))),
    }
}

/// Refuses table functions that are not [`TABLE_FUNCTIONS`] and tables named by a path.
fn check_relations(stmt: &Statement) -> Result<()> {
    struct Relations(Option<EngineError>);
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let refused = match factor {
                TableFactor::Table { name, args, .. } => {
                    let text = name.to_string();
                    let last = text.rsplit('.').next().unwrap_or_default().to_lowercase();
                    if args.is_some() && !TABLE_FUNCTIONS.contains(&last.as_str()) {
                        Some(format!("the table function {text}"))
                    } else if text.contains('/') || text.contains(':') {
                        Some(format!("reading {text} by its path"))
                    } else {
                        None
                    }
                }
                TableFactor::Function { name, .. } => Some(format!("the table function {name}")),
                TableFactor::TableFunction { expr, .. } => {
                    Some(format!("the table function {expr}"))
                }
                _ => None,
            };
            match refused {
                Some(what) => {
                    self.0 = Some(unsupported(&what));
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(()),
            }
        }
    }
    let mut v = Relations(None);
    let _ = stmt.visit(&mut v);
    v.0.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParserBuilder;
    use tarn_catalog::TarnDialect;

    use super::*;

    fn checked(sql: &str) -> std::result::Result<(), String> {
        let dialect = TarnDialect::default();
        let stmt = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap()
            .parse_statement()
            .unwrap();
        check(&stmt).map_err(|e| e.to_string())
    }

    #[test]
    fn queries_run_and_everything_that_writes_or_reconfigures_is_refused() {
        for ok in [
            "SELECT 1",
            "SELECT * FROM s.t WHERE a > 1",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x UNION ALL SELECT 2",
            "VALUES (1), (2)",
            "EXPLAIN SELECT * FROM s.t",
            "EXPLAIN ANALYZE SELECT count(*) FROM s.t",
            "SELECT * FROM generate_series(1, 10)",
            "SELECT * FROM s.t JOIN (SELECT * FROM range(5)) r ON true",
        ] {
            assert_eq!(checked(ok), Ok(()), "{ok}");
        }
        for (bad, names) in [
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("INSERT INTO s.t VALUES (1)", "INSERT INTO"),
            ("UPDATE s.t SET a = 1", "UPDATE"),
            ("DELETE FROM s.t", "DELETE FROM"),
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("EXECUTE p", "EXECUTE"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            (
                "SELECT * FROM '/etc/passwd'",
                "reading '/etc/passwd' by its path",
            ),
            (
                "SELECT * FROM read_parquet('/x.parquet')",
                "the table function read_parquet",
            ),
            (
                "SELECT * FROM s.t WHERE a IN (SELECT a FROM 'file:///x.csv')",
                "reading 'file:///x.csv' by its path",
            ),
        ] {
            let e = checked(bad).unwrap_err();
            assert!(
                e.starts_with(names) && e.contains("is not supported"),
                "{bad}: {e}"
            );
        }
    }
}
