//! Tarn's SQL dialect: HeatWave Lakehouse DDL (`CREATE EXTERNAL TABLE ... FILE_FORMAT = (...)
//! FILES = (...)`), HeatWave's older `ENGINE_ATTRIBUTE` form, DataFusion's `STORED AS ... LOCATION`
//! form, and the catalog and load statements around them.
//!
//! Tokens, identifiers, string literals and column types come from sqlparser's MySQL dialect and its
//! public `Parser` API; this module only walks the clauses sqlparser does not know. Everything that
//! is not a catalog statement (queries, EXPLAIN, SET, ...) is handed back as [`Statement::Query`]
//! for the engine.

use std::time::Duration;

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ColumnOption, ObjectName, Value};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{IsOptional, Parser};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{CatalogError, Result};
use crate::model::{
    ColumnDef, ColumnFormats, Compression, FileFormat, FileSpec, FormatKind, KeyDef, MatchColumns,
    TableDef, TableKey, TableOptions,
};
use crate::tokens::{eat_word, expect_word, is_word, optional_byte, single_byte, word};
use crate::types::{sql_to_arrow, sql_type_text};

/// A table name as written: the database part may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: String,
}

impl TableRef {
    /// The full key, using `default_db` when the statement named no database.
    pub fn resolve(&self, default_db: Option<&str>) -> Result<TableKey> {
        let db = self
            .database
            .as_deref()
            .or(default_db)
            .ok_or(CatalogError::NoDatabaseSelected)?;
        Ok(TableKey::new(db, &self.table))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateDatabase {
        name: String,
        if_not_exists: bool,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    /// `table.key.database` is empty when the statement named no database.
    CreateTable {
        table: Box<TableDef>,
        if_not_exists: bool,
    },
    DropTable {
        table: TableRef,
        if_exists: bool,
    },
    ShowDatabases,
    ShowTables {
        database: Option<String>,
    },
    Describe {
        table: TableRef,
    },
    /// `SHOW CREATE TABLE t`: the definition as HeatWave DDL ([`table_ddl`]).
    ShowCreateTable {
        table: TableRef,
    },
    /// `ALTER TABLE t SECONDARY_LOAD [VALIDATE ONLY]`: with `VALIDATE ONLY`, every file is read
    /// against the columns and the rows that would be rejected are reported; nothing is loaded.
    SecondaryLoad {
        table: TableRef,
        validate_only: bool,
    },
    SecondaryUnload {
        table: TableRef,
    },
    /// Selective load (HeatWave 9.1.2): `ALTER TABLE t FILES = (...)` or
    /// `ALTER TABLE t ENGINE_ATTRIBUTE='{"file": [...]}'` gives the table a new list of files.
    AlterFiles {
        table: TableRef,
        files: Vec<FileSpec>,
    },
    Use {
        database: String,
    },
    /// `CALL sys.HEATWAVE_LOAD(CAST('<input_list>' AS JSON), JSON_OBJECT('refresh_external_tables', TRUE))`:
    /// load (or, with `refresh_external_tables`, refresh) the listed databases and tables.
    HeatwaveLoad {
        /// Per database, the tables named (empty: every table of it).
        input: Vec<(String, Vec<String>)>,
        /// Tables the input list defines by their files (`"engine_attribute": {"file": [...],
        /// "dialect": {...}}`): database, table and the attribute's JSON; created when missing.
        define: Vec<(String, String, String)>,
        refresh: bool,
        /// `mode`: `normal` loads; `validation` reads the files and reports the rows that would
        /// be rejected, loading nothing; `dryrun` (refused for now) would only plan.
        mode: LoadMode,
        /// `output`: how much the call answers.
        output: LoadOutput,
    },
    /// `SET @name = expr [, @name = expr ...]`: the session's user variables, each with its
    /// expression as SQL (the session evaluates it). Names are lower case, without the `@`.
    SetVariables {
        assignments: Vec<(String, String)>,
    },
    /// `SELECT ... INTO OUTFILE URI '...' | WITH PARAMETERS '...'`: the query's rows written to
    /// object storage.
    Export(crate::export::ExportSpec),
    /// Anything else: a query for the engine, passed on as written.
    Query(String),
}

/// `CALL sys.HEATWAVE_LOAD`'s `mode` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    #[default]
    Normal,
    DryRun,
    Validation,
}

/// `CALL sys.HEATWAVE_LOAD`'s `output` option: a row per table with what was done (`normal`), the
/// table, what was done and any error (`compact`), or nothing (`silent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadOutput {
    #[default]
    Normal,
    Compact,
    Silent,
}

/// The options `CALL sys.HEATWAVE_LOAD` takes; any other is refused, named.
pub const HEATWAVE_LOAD_OPTIONS: [&str; 3] = ["mode", "output", "refresh_external_tables"];

/// Parses one statement (a trailing `;` is allowed).
pub fn parse_statement(sql: &str) -> Result<Statement> {
    let dialect = crate::TarnDialect::default();
    let mut p = Parser::new(&dialect).try_with_sql(sql)?;
    let stmt = if p.parse_keyword(Keyword::CREATE) {
        if p.parse_one_of_keywords(&[Keyword::DATABASE, Keyword::SCHEMA])
            .is_some()
        {
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = ident(&mut p)?;
            Statement::CreateDatabase {
                name,
                if_not_exists,
            }
        } else {
            let external = p.parse_keyword(Keyword::EXTERNAL);
            if !external
                && let Token::Word(w) = &p.peek_token().token
                && w.keyword != Keyword::TABLE
            {
                // CREATE VIEW, CREATE INDEX, CREATE FUNCTION, ...
                return Err(CatalogError::Unsupported {
                    what: format!("CREATE {}", w.value.to_uppercase()),
                });
            }
            if !p.parse_keyword(Keyword::TABLE) {
                return Err(p
                    .expected::<()>("DATABASE, SCHEMA or [EXTERNAL] TABLE", p.peek_token())
                    .unwrap_err()
                    .into());
            }
            parse_create_table(&mut p, sql, external)?
        }
    } else if p.parse_keyword(Keyword::DROP) {
        if p.parse_one_of_keywords(&[Keyword::DATABASE, Keyword::SCHEMA])
            .is_some()
        {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            Statement::DropDatabase {
                name: ident(&mut p)?,
                if_exists,
            }
        } else {
            p.expect_keyword(Keyword::TABLE)?;
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            Statement::DropTable {
                table: table_ref(&mut p)?,
                if_exists,
            }
        }
    } else if p.parse_keyword(Keyword::ALTER) {
        p.expect_keyword(Keyword::TABLE)?;
        let table = table_ref(&mut p)?;
        let tok = p.next_token();
        match word(&tok.token).as_deref() {
            Some("SECONDARY_LOAD") => {
                // HeatWave 9.6: ALTER TABLE t SECONDARY_LOAD VALIDATE ONLY.
                let validate_only = if is_word(&p.peek_token().token, "VALIDATE") {
                    p.next_token();
                    let only = p.next_token();
                    if word(&only.token).as_deref() != Some("ONLY") {
                        return Err(p.expected::<()>("ONLY", only).unwrap_err().into());
                    }
                    true
                } else {
                    false
                };
                Statement::SecondaryLoad {
                    table,
                    validate_only,
                }
            }
            Some("SECONDARY_UNLOAD") => Statement::SecondaryUnload { table },
            Some("FILES") => {
                skip(&mut p, &Token::Eq);
                Statement::AlterFiles {
                    table,
                    files: parse_files(&mut p)?,
                }
            }
            Some("ENGINE_ATTRIBUTE") => {
                skip(&mut p, &Token::Eq);
                let attr = p.parse_literal_string()?;
                let json: serde_json::Value = serde_json::from_str(&attr).map_err(|e| {
                    CatalogError::invalid(format!("ENGINE_ATTRIBUTE is not valid JSON: {e}"))
                })?;
                if let Some(other) = json
                    .as_object()
                    .and_then(|o| o.keys().find(|k| k.as_str() != "file"))
                {
                    return Err(CatalogError::invalid(format!(
                        "ALTER TABLE ... ENGINE_ATTRIBUTE changes the file list only (\"file\"), not \"{other}\""
                    )));
                }
                let (_, files, _) = parse_engine_attribute(&attr, TableOptions::default())?;
                Statement::AlterFiles { table, files }
            }
            _ => {
                return Err(p
                    .expected::<()>(
                        "SECONDARY_LOAD, SECONDARY_UNLOAD, FILES or ENGINE_ATTRIBUTE",
                        tok,
                    )
                    .unwrap_err()
                    .into());
            }
        }
    } else if p.parse_keyword(Keyword::SHOW) {
        // FULL (SHOW FULL TABLES, SHOW FULL COLUMNS) asks for more detail than Tarn gives.
        let _ = p.parse_keyword(Keyword::FULL);
        if p.parse_one_of_keywords(&[Keyword::DATABASES, Keyword::SCHEMAS])
            .is_some()
        {
            Statement::ShowDatabases
        } else if p
            .parse_one_of_keywords(&[Keyword::COLUMNS, Keyword::FIELDS])
            .is_some()
        {
            // SHOW [FULL] COLUMNS FROM t [FROM db]: MySQL's tools' DESCRIBE.
            if p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
                .is_none()
            {
                return Err(p
                    .expected::<()>("FROM after SHOW COLUMNS", p.peek_token())
                    .unwrap_err()
                    .into());
            }
            let mut table = table_ref(&mut p)?;
            if p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
                .is_some()
            {
                table.database = Some(ident(&mut p)?);
            }
            Statement::Describe { table }
        } else if p.parse_keywords(&[Keyword::CREATE, Keyword::TABLE]) {
            Statement::ShowCreateTable {
                table: table_ref(&mut p)?,
            }
        } else if p.parse_keyword(Keyword::TABLES) {
            let database = if p
                .parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
                .is_some()
            {
                Some(ident(&mut p)?)
            } else {
                None
            };
            Statement::ShowTables { database }
        } else {
            return Err(p
                .expected::<()>("DATABASES, TABLES or CREATE TABLE", p.peek_token())
                .unwrap_err()
                .into());
        }
    } else if p
        .parse_one_of_keywords(&[Keyword::DESCRIBE, Keyword::DESC])
        .is_some()
        || (is_word(&p.peek_token().token, "EXPLAIN") && is_table_name_then_end(&p))
    {
        if is_word(&p.peek_token().token, "EXPLAIN") {
            p.next_token();
        }
        let _ = p.parse_keyword(Keyword::TABLE);
        Statement::Describe {
            table: table_ref(&mut p)?,
        }
    } else if is_word(&p.peek_token().token, "CALL") {
        return parse_call(sql);
    } else if p.peek_keyword(Keyword::SET)
        && matches!(&p.peek_nth_token(1).token, Token::Word(w) if w.value.starts_with('@'))
    {
        return parse_set_variables(sql);
    } else if p.parse_keyword(Keyword::USE) {
        Statement::Use {
            database: ident(&mut p)?,
        }
    } else {
        if let Some((query, clause)) = crate::export::split_into_outfile(sql) {
            return Ok(Statement::Export(crate::export::parse_export(
                query, &clause,
            )?));
        }
        return Ok(Statement::Query(
            sql.trim().trim_end_matches(';').to_string(),
        ));
    };
    skip(&mut p, &Token::SemiColon);
    if p.peek_token().token != Token::EOF {
        return Err(p
            .expected::<()>("end of statement", p.peek_token())
            .unwrap_err()
            .into());
    }
    Ok(stmt)
}

/// `SET @a = expr, @b = expr`, parsed by sqlparser.
fn parse_set_variables(sql: &str) -> Result<Statement> {
    use datafusion::sql::sqlparser::ast::{Set, Statement as Sql};
    let dialect = crate::TarnDialect::default();
    let stmt = Parser::new(&dialect).try_with_sql(sql)?.parse_statement()?;
    let pairs: Vec<(ObjectName, String)> = match stmt {
        Sql::Set(Set::SingleAssignment {
            variable, values, ..
        }) if values.len() == 1 => vec![(variable, values[0].to_string())],
        Sql::Set(Set::MultipleAssignments { assignments }) => assignments
            .into_iter()
            .map(|a| (a.name, a.value.to_string()))
            .collect(),
        _ => return Err(CatalogError::invalid("expected SET @name = value")),
    };
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name = name.to_string();
            match name.strip_prefix('@') {
                Some(n) if !n.is_empty() && !n.starts_with('@') => Ok((n.to_lowercase(), value)),
                _ => Err(CatalogError::invalid(format!(
                    "SET {name}: only user variables (@name) can be set"
                ))),
            }
        })
        .collect::<Result<Vec<_>>>()
        .map(|assignments| Statement::SetVariables { assignments })
}

/// `EXPLAIN t` (MySQL's synonym for DESCRIBE) versus `EXPLAIN SELECT ...`.
fn is_table_name_then_end(p: &Parser) -> bool {
    let t1 = p.peek_nth_token(1).token;
    let is_name =
        matches!(&t1, Token::Word(w) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some());
    is_name
        && (1..6).any(|i| matches!(p.peek_nth_token(i).token, Token::EOF | Token::SemiColon))
        && (1..6)
            .take_while(|i| !matches!(p.peek_nth_token(*i).token, Token::EOF | Token::SemiColon))
            .all(|i| matches!(p.peek_nth_token(i).token, Token::Word(_) | Token::Period))
}

/// Positional arguments of a call that are plain expressions.
fn unnamed_args(
    l: &datafusion::sql::sqlparser::ast::FunctionArgumentList,
) -> Vec<&datafusion::sql::sqlparser::ast::Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr};
    l.args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// `CALL sys.HEATWAVE_LOAD(input_list, options)`, parsed by sqlparser; the input list is HeatWave's
/// JSON (`[{"db_name": "d", "tables": [{"table_name": "t"}]}]`), given inline (user variables do
/// not outlive a request).
fn parse_call(sql: &str) -> Result<Statement> {
    use datafusion::sql::sqlparser::ast::{
        CastKind, Expr, FunctionArguments, Statement as Sql, Value as V,
    };
    let dialect = crate::TarnDialect::default();
    let stmt = Parser::new(&dialect).try_with_sql(sql)?.parse_statement()?;
    let Sql::Call(f) = stmt else {
        return Err(CatalogError::invalid(
            "expected CALL sys.HEATWAVE_LOAD(...)",
        ));
    };
    if !f.name.to_string().eq_ignore_ascii_case("sys.heatwave_load") {
        return Err(CatalogError::invalid(format!(
            "unknown procedure {}: Tarn knows sys.HEATWAVE_LOAD",
            f.name
        )));
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(CatalogError::invalid(
            "sys.HEATWAVE_LOAD takes (input_list, options)",
        ));
    };
    let args = unnamed_args(list);
    let string = |e: &Expr| -> Option<String> {
        let e = match e {
            Expr::Cast {
                expr,
                kind: CastKind::Cast,
                ..
            } => expr.as_ref(),
            other => other,
        };
        match e {
            Expr::Value(v) => match &v.value {
                V::SingleQuotedString(s) | V::DoubleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    let Some(input) = args.first().and_then(|e| string(e)) else {
        return Err(CatalogError::invalid(
            "sys.HEATWAVE_LOAD needs its input list inline, e.g. CAST('[{\"db_name\": \"d\"}]' AS JSON): \
             user variables do not outlive a request",
        ));
    };
    let json: serde_json::Value = serde_json::from_str(&input)
        .map_err(|e| CatalogError::invalid(format!("the input list is not valid JSON: {e}")))?;
    let entries = json
        .as_array()
        .ok_or_else(|| CatalogError::invalid("the input list must be a JSON array"))?;
    let mut out = Vec::new();
    let mut define = Vec::new();
    for e in entries {
        // A database alone ("d") or a db_object ({"db_name": "d", "tables": [...]}).
        let db = e
            .as_str()
            .or_else(|| e.get("db_name").and_then(|v| v.as_str()))
            .ok_or_else(|| CatalogError::invalid("each input list entry needs \"db_name\""))?
            .to_lowercase();
        let mut tables = Vec::new();
        for t in e
            .get("tables")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            // A table name ("t") or a table object ({"table_name": "t", "engine_attribute": {...}}).
            let name = t
                .as_str()
                .or_else(|| t.get("table_name").and_then(|n| n.as_str()))
                .ok_or_else(|| {
                    CatalogError::invalid(format!(
                        "each table of \"{db}\" in the input list needs \"table_name\""
                    ))
                })?
                .to_lowercase();
            if let Some(attr) = t.get("engine_attribute") {
                if !attr.is_object() {
                    return Err(CatalogError::invalid(format!(
                        "engine_attribute of {db}.{name} must be a JSON object"
                    )));
                }
                define.push((db.clone(), name.clone(), attr.to_string()));
            }
            tables.push(name);
        }
        out.push((db, tables));
    }
    // Options: JSON_OBJECT('mode', 'validation', 'refresh_external_tables', TRUE, ...), a JSON
    // string, or NULL (an unset @options).
    let mut pairs: Vec<(String, serde_json::Value)> = Vec::new();
    if let Some(opt) = args.get(1) {
        use serde_json::Value as J;
        match opt {
            Expr::Function(func) if func.name.to_string().eq_ignore_ascii_case("json_object") => {
                let FunctionArguments::List(l) = &func.args else {
                    return Err(CatalogError::invalid("JSON_OBJECT needs arguments"));
                };
                for kv in unnamed_args(l).chunks(2) {
                    let k = string(kv[0]).ok_or_else(|| {
                        CatalogError::invalid("JSON_OBJECT's keys must be strings")
                    })?;
                    let v = match kv.get(1) {
                        Some(Expr::Value(v)) => match &v.value {
                            V::Boolean(b) => J::Bool(*b),
                            V::Number(n, _) => n.parse().map(J::Number).unwrap_or(J::Null),
                            V::SingleQuotedString(s) | V::DoubleQuotedString(s) => {
                                J::String(s.clone())
                            }
                            _ => J::Null,
                        },
                        Some(other) => J::String(other.to_string()),
                        None => J::Null,
                    };
                    pairs.push((k, v));
                }
            }
            Expr::Value(v) if matches!(v.value, V::Null) => {}
            other => match string(other).map(|s| serde_json::from_str::<J>(&s)) {
                Some(Ok(J::Object(m))) => pairs.extend(m),
                Some(Ok(J::Null)) => {}
                _ => {
                    return Err(CatalogError::invalid(
                        "sys.HEATWAVE_LOAD's options must be JSON_OBJECT(...) or a JSON object",
                    ));
                }
            },
        }
    }
    let (mut refresh, mut mode, mut output) = (false, LoadMode::Normal, LoadOutput::Normal);
    for (k, v) in pairs {
        let text = v.as_str().map(str::to_ascii_lowercase);
        match k.to_ascii_lowercase().as_str() {
            "refresh_external_tables" => {
                refresh = v.as_bool().unwrap_or(false) || v.as_i64() == Some(1);
            }
            "mode" => {
                mode = match text.as_deref() {
                    Some("normal") => LoadMode::Normal,
                    Some("dryrun") => LoadMode::DryRun,
                    Some("validation") => LoadMode::Validation,
                    _ => {
                        return Err(CatalogError::invalid(format!(
                            "sys.HEATWAVE_LOAD option mode = {v}: Tarn knows 'normal', 'dryrun' and 'validation'"
                        )));
                    }
                }
            }
            "output" => {
                output = match text.as_deref() {
                    Some("normal") => LoadOutput::Normal,
                    Some("compact") => LoadOutput::Compact,
                    Some("silent") => LoadOutput::Silent,
                    _ => {
                        return Err(CatalogError::invalid(format!(
                            "sys.HEATWAVE_LOAD option output = {v}: Tarn knows 'normal', 'compact' and 'silent'"
                        )));
                    }
                }
            }
            other => {
                return Err(CatalogError::invalid(format!(
                    "sys.HEATWAVE_LOAD option '{other}' is not one Tarn takes (it takes {})",
                    HEATWAVE_LOAD_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(Statement::HeatwaveLoad {
        input: out,
        define,
        refresh,
        mode,
        output,
    })
}

fn ident(p: &mut Parser) -> Result<String> {
    Ok(p.parse_identifier()?.value.to_lowercase())
}

fn table_ref(p: &mut Parser) -> Result<TableRef> {
    let name = p.parse_object_name(false)?;
    object_to_ref(&name)
}

fn object_to_ref(name: &ObjectName) -> Result<TableRef> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(|i| i.value.to_lowercase())
                .ok_or_else(|| CatalogError::invalid(format!("invalid table name {name}")))
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [t] => Ok(TableRef {
            database: None,
            table: t.clone(),
        }),
        [d, t] => Ok(TableRef {
            database: Some(d.clone()),
            table: t.clone(),
        }),
        _ => Err(CatalogError::invalid(format!(
            "table name {name} has too many parts: write database.table"
        ))),
    }
}

/// Consumes `tok` if it is next (optional punctuation such as `=` and `,`).
fn skip(p: &mut Parser, tok: &Token) {
    let _ = p.consume_token(tok);
}

fn parse_create_table(p: &mut Parser, sql: &str, external: bool) -> Result<Statement> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?;
    let tref = object_to_ref(&name)?;
    if p.peek_keyword(Keyword::AS) || p.peek_keyword(Keyword::SELECT) {
        return Err(CatalogError::Unsupported {
            what: "CREATE TABLE ... AS SELECT".into(),
        });
    }
    let (mut columns, comment_key, keys, column_formats) = if p.peek_token().token == Token::LParen
    {
        let (cols, constraints) = p.parse_columns()?;
        let keys = key_defs(&cols, &constraints)?;
        (
            Some(column_defs(&cols)?),
            placement_from_comments(&cols)?,
            keys,
            column_formats(&cols)?,
        )
    } else {
        (None, Vec::new(), Vec::new(), Default::default())
    };

    if external
        && matches!(p.peek_token().token, Token::Word(ref w) if w.keyword == Keyword::STORED || w.keyword == Keyword::LOCATION || w.keyword == Keyword::OPTIONS)
    {
        // DFParser re-reads the whole statement; this parser is done with it.
        while p.peek_token().token != Token::EOF {
            p.next_token();
        }
        return parse_datafusion_form(sql, tref, if_not_exists);
    }

    let mut format: Option<FileFormat> = None;
    let mut files: Vec<FileSpec> = Vec::new();
    let mut options = TableOptions::default();
    let mut engine_attribute: Option<String> = None;
    let mut lakehouse_engine = false;
    loop {
        skip(p, &Token::Comma);
        let tok = p.peek_token();
        if matches!(tok.token, Token::EOF | Token::SemiColon) {
            break;
        }
        let Some(opt) = word(&tok.token) else {
            return Err(p.expected::<()>("a table option", tok).unwrap_err().into());
        };
        p.next_token();
        skip(p, &Token::Eq);
        match opt.as_str() {
            "FILE_FORMAT" => format = Some(parse_file_format(p)?),
            "FILES" => files = parse_files(p)?,
            "ALLOW_MISSING_FILES" => options.allow_missing_files = parse_flag(p, &opt)?,
            "STRICT_LOAD" => options.strict_load = parse_flag(p, &opt)?,
            "REFRESH_INTERVAL" => options.refresh_interval = Some(parse_duration(p, &opt)?),
            "MAX_STALENESS" => options.max_staleness = Some(parse_duration(p, &opt)?),
            "DATA_PLACEMENT_KEY" => options.placement_key = parse_name_list(p, &opt)?,
            "VERIFY_KEY_CONSTRAINTS" => options.verify_keys = parse_flag(p, &opt)?,
            "ENGINE" => {
                let e = p.parse_identifier()?.value;
                lakehouse_engine = e.eq_ignore_ascii_case("lakehouse");
                if !lakehouse_engine {
                    return Err(CatalogError::invalid(format!(
                        "ENGINE={e} is not supported: Tarn holds external tables only (ENGINE=lakehouse)"
                    )));
                }
            }
            "SECONDARY_ENGINE" => {
                p.parse_identifier()?;
            }
            "ENGINE_ATTRIBUTE" => engine_attribute = Some(p.parse_literal_string()?),
            "COMMENT" => {
                p.parse_literal_string()?;
            }
            "DEFAULT" | "CHARSET" | "CHARACTER" | "COLLATE" => {
                // `[DEFAULT] CHARSET = x`, `CHARACTER SET = x`, `COLLATE = x`: accepted, data is UTF-8.
                if opt == "DEFAULT" || opt == "CHARACTER" {
                    p.next_token();
                    skip(p, &Token::Eq);
                }
                p.next_token();
            }
            _ => {
                return Err(CatalogError::invalid(format!(
                    "unknown table option {opt}: expected FILE_FORMAT, FILES, ALLOW_MISSING_FILES, \
                     STRICT_LOAD, REFRESH_INTERVAL, MAX_STALENESS, DATA_PLACEMENT_KEY, \
                     VERIFY_KEY_CONSTRAINTS or ENGINE_ATTRIBUTE"
                )));
            }
        }
    }

    if let Some(attr) = engine_attribute {
        let (f, fs, opts) = parse_engine_attribute(&attr, options)?;
        format = Some(f);
        files = fs;
        options = opts;
    } else if !external && !lakehouse_engine {
        return Err(CatalogError::invalid(
            "Tarn holds external tables only: write CREATE EXTERNAL TABLE ... FILE_FORMAT = (...) FILES = (...)",
        ));
    }
    let mut format =
        format.ok_or_else(|| CatalogError::invalid("FILE_FORMAT = (FORMAT ...) is missing"))?;
    format.column_formats = column_formats;
    if files.is_empty() {
        return Err(CatalogError::invalid("FILES = (URI '...') is missing"));
    }
    if format.kind == FormatKind::Delta && files.len() != 1 {
        return Err(CatalogError::invalid(
            "a Delta table takes exactly one URI: the table's root",
        ));
    }
    if !comment_key.is_empty() {
        if !options.placement_key.is_empty() {
            return Err(CatalogError::invalid(
                "the data placement key is given twice: use either DATA_PLACEMENT_KEY = (...) or \
                 column comments 'RAPID_COLUMN=DATA_PLACEMENT_KEY=N'",
            ));
        }
        options.placement_key = comment_key;
    }
    // Keys name declared columns; a primary key's columns are NOT NULL.
    for key in &keys {
        let cols = columns.as_mut().ok_or_else(|| {
            CatalogError::invalid(format!("{} needs a column list", key.describe()))
        })?;
        for k in &key.columns {
            let Some(c) = cols.iter_mut().find(|c| &c.name == k) else {
                return Err(CatalogError::invalid(format!(
                    "{} names '{k}', which is not a declared column",
                    key.describe()
                )));
            };
            if key.primary {
                c.nullable = false;
            }
        }
    }
    if keys.iter().filter(|k| k.primary).count() > 1 {
        return Err(CatalogError::invalid("a table has at most one PRIMARY KEY"));
    }
    options.keys = keys;
    if options.verify_keys && options.keys.is_empty() {
        return Err(CatalogError::invalid(
            "VERIFY_KEY_CONSTRAINTS = 1 needs a PRIMARY KEY or UNIQUE key to verify",
        ));
    }
    let undeclared = columns.as_ref().and_then(|cols| {
        options
            .placement_key
            .iter()
            .find(|k| !cols.iter().any(|c| &c.name == *k))
    });
    if let Some(k) = undeclared {
        return Err(CatalogError::invalid(format!(
            "DATA_PLACEMENT_KEY names '{k}', which is not a declared column"
        )));
    }
    let table = TableDef {
        key: TableKey {
            database: tref.database.unwrap_or_default(),
            table: tref.table,
        },
        columns,
        format,
        files,
        options,
    };
    Ok(Statement::CreateTable {
        table: Box::new(table),
        if_not_exists,
    })
}

/// A declared column list as the catalog keeps it: names lower-cased, every type mapped to Arrow,
/// no duplicates.
/// The keys declared in a column list: `PRIMARY KEY (a, b)`, `UNIQUE [KEY] [name] (c)` and the
/// column forms `c INT PRIMARY KEY`, `c INT UNIQUE`.
fn key_defs(
    cols: &[datafusion::sql::sqlparser::ast::ColumnDef],
    constraints: &[datafusion::sql::sqlparser::ast::TableConstraint],
) -> Result<Vec<KeyDef>> {
    use datafusion::sql::sqlparser::ast::{Expr, IndexColumn, TableConstraint};
    let names = |columns: &[IndexColumn]| -> Result<Vec<String>> {
        columns
            .iter()
            .map(|c| match &c.column.expr {
                Expr::Identifier(i) => Ok(i.value.to_lowercase()),
                other => Err(CatalogError::invalid(format!(
                    "a key takes column names, not {other}"
                ))),
            })
            .collect()
    };
    let mut keys = Vec::new();
    for c in cols {
        for o in &c.options {
            let primary = match &o.option {
                ColumnOption::PrimaryKey(_) => true,
                ColumnOption::Unique(_) => false,
                _ => continue,
            };
            keys.push(KeyDef {
                primary,
                name: None,
                columns: vec![c.name.value.to_lowercase()],
            });
        }
    }
    for t in constraints {
        let (primary, name, columns) = match t {
            TableConstraint::PrimaryKey(k) => (true, k.name.as_ref(), &k.columns),
            TableConstraint::Unique(k) => {
                (false, k.index_name.as_ref().or(k.name.as_ref()), &k.columns)
            }
            other => {
                return Err(CatalogError::invalid(format!(
                    "{other} is not supported: external tables take PRIMARY KEY and UNIQUE keys"
                )));
            }
        };
        keys.push(KeyDef {
            primary,
            name: name.map(|n| n.value.to_lowercase()),
            columns: names(columns)?,
        });
    }
    Ok(keys)
}

/// The formats columns set with their `ENGINE_ATTRIBUTE` (`date_format`, `time_format`,
/// `timestamp_format`); any other key is refused, named.
fn column_formats(
    cols: &[datafusion::sql::sqlparser::ast::ColumnDef],
) -> Result<std::collections::BTreeMap<String, ColumnFormats>> {
    use datafusion::sql::sqlparser::ast::{Expr, SqlOption, Value};
    let mut out = std::collections::BTreeMap::new();
    for c in cols {
        for o in &c.options {
            let ColumnOption::Options(opts) = &o.option else {
                continue;
            };
            for opt in opts {
                let SqlOption::KeyValue {
                    key,
                    value: Expr::Value(v),
                } = opt
                else {
                    continue;
                };
                let Value::SingleQuotedString(text) = &v.value else {
                    continue;
                };
                if key.value != "ENGINE_ATTRIBUTE" {
                    continue;
                }
                let name = c.name.value.to_lowercase();
                let bad = |what: String| {
                    CatalogError::invalid(format!("ENGINE_ATTRIBUTE of column '{name}': {what}"))
                };
                let json: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(text)
                        .map_err(|e| bad(format!("not a JSON object: {e}")))?;
                let mut f = ColumnFormats::default();
                for (k, v) in json {
                    let s = v
                        .as_str()
                        .ok_or_else(|| bad(format!("'{k}' takes a string")))?;
                    match k.as_str() {
                        "date_format" => f.date_format = chrono_format(s),
                        "time_format" => f.time_format = chrono_format(s),
                        "timestamp_format" | "datetime_format" => {
                            f.timestamp_format = chrono_format(s)
                        }
                        other => {
                            return Err(bad(format!(
                                "unknown key '{other}': expected date_format, time_format or \
                                 timestamp_format"
                            )));
                        }
                    }
                }
                out.insert(name, f);
            }
        }
    }
    Ok(out)
}

fn column_defs(cols: &[datafusion::sql::sqlparser::ast::ColumnDef]) -> Result<Vec<ColumnDef>> {
    if cols.is_empty() {
        return Err(CatalogError::invalid("the column list is empty"));
    }
    let mut seen = std::collections::HashSet::new();
    cols.iter()
        .map(|c| {
            let name = c.name.value.to_lowercase();
            if sql_to_arrow(&c.data_type).is_none() {
                return Err(CatalogError::UnsupportedType {
                    column: name,
                    sql_type: c.data_type.to_string(),
                });
            }
            if !seen.insert(name.clone()) {
                return Err(CatalogError::invalid(format!(
                    "duplicate column name '{name}'"
                )));
            }
            let nullable = !c
                .options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::NotNull));
            Ok(ColumnDef {
                name,
                sql_type: sql_type_text(&c.data_type),
                nullable,
            })
        })
        .collect()
}

fn parse_flag(p: &mut Parser, opt: &str) -> Result<bool> {
    let tok = p.next_token();
    match &tok.token {
        Token::Number(n, _) if n == "0" => Ok(false),
        Token::Number(n, _) if n == "1" => Ok(true),
        Token::Word(w)
            if w.value.eq_ignore_ascii_case("true") || w.value.eq_ignore_ascii_case("on") =>
        {
            Ok(true)
        }
        Token::Word(w)
            if w.value.eq_ignore_ascii_case("false") || w.value.eq_ignore_ascii_case("off") =>
        {
            Ok(false)
        }
        _ => Err(p
            .expected::<()>(&format!("0 or 1 for {opt}"), tok)
            .unwrap_err()
            .into()),
    }
}

/// `(a, b, ...)`: column names, lower-cased, at least one, none twice.
fn parse_name_list(p: &mut Parser, opt: &str) -> Result<Vec<String>> {
    let names = if p.peek_token().token == Token::LParen {
        p.parse_parenthesized_column_list(IsOptional::Mandatory, false)?
    } else {
        vec![p.parse_identifier()?]
    };
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let name = n.value.to_lowercase();
        if out.contains(&name) {
            return Err(CatalogError::invalid(format!("{opt} names '{name}' twice")));
        }
        out.push(name);
    }
    Ok(out)
}

/// HeatWave's way of declaring a data placement key: a column comment
/// `RAPID_COLUMN=DATA_PLACEMENT_KEY=N`, N giving the key's position (1 first).
fn placement_from_comments(
    cols: &[datafusion::sql::sqlparser::ast::ColumnDef],
) -> Result<Vec<String>> {
    let mut keys: Vec<(u32, String)> = Vec::new();
    for c in cols {
        for o in &c.options {
            let ColumnOption::Comment(text) = &o.option else {
                continue;
            };
            let Some(rest) = text
                .to_ascii_uppercase()
                .split_once("RAPID_COLUMN=DATA_PLACEMENT_KEY=")
                .map(|(_, r)| r.to_string())
            else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let name = c.name.value.to_lowercase();
            let n: u32 = digits.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                CatalogError::invalid(format!(
                    "column '{name}': DATA_PLACEMENT_KEY needs a position 1, 2, ... ('{text}')"
                ))
            })?;
            if let Some((_, other)) = keys.iter().find(|(m, _)| *m == n) {
                return Err(CatalogError::invalid(format!(
                    "columns '{other}' and '{name}' both claim DATA_PLACEMENT_KEY={n}"
                )));
            }
            keys.push((n, name));
        }
    }
    keys.sort();
    Ok(keys.into_iter().map(|(_, name)| name).collect())
}

fn parse_duration(p: &mut Parser, opt: &str) -> Result<Duration> {
    let s = p.parse_literal_string()?;
    humantime::parse_duration(&s).map_err(|e| {
        CatalogError::invalid(format!(
            "{opt} = '{s}' is not a duration ({e}); write e.g. '30s' or '500ms'"
        ))
    })
}

/// `def` as the HeatWave DDL that defines it again (`SHOW CREATE TABLE`), tokens of
/// pre-authenticated request URLs redacted.
pub fn table_ddl(def: &TableDef) -> String {
    use std::fmt::Write;
    let name = |s: &str| format!("`{}`", s.replace('`', "``"));
    let mut out = format!(
        "CREATE EXTERNAL TABLE {}.{}",
        name(&def.key.database),
        name(&def.key.table)
    );
    if let Some(cols) = &def.columns {
        let cols: Vec<String> = cols
            .iter()
            .map(|c| {
                let attribute = def
                    .format
                    .column_formats
                    .get(&c.name)
                    .and_then(|f| serde_json::to_string(f).ok())
                    .map(|j| format!(" ENGINE_ATTRIBUTE {}", sql_string(j.as_bytes())))
                    .unwrap_or_default();
                format!(
                    "{} {}{}{attribute}",
                    name(&c.name),
                    c.sql_type,
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .chain(def.options.keys.iter().map(|k| {
                let cols: Vec<String> = k.columns.iter().map(|c| name(c)).collect();
                let kind = if k.primary {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE KEY"
                };
                let key_name = k
                    .name
                    .as_ref()
                    .map(|n| format!(" {}", name(n)))
                    .unwrap_or_default();
                format!("{kind}{key_name} ({})", cols.join(", "))
            }))
            .collect();
        let _ = write!(out, " ({})", cols.join(", "));
    }
    let f = &def.format;
    let _ = write!(out, " FILE_FORMAT = (FORMAT {}", f.kind);
    if f.compression != Compression::Auto {
        let _ = write!(
            out,
            " COMPRESSION {}",
            format!("{:?}", f.compression).to_lowercase()
        );
    }
    if f.kind == FormatKind::Csv {
        let byte = |b: Option<u8>| sql_string(&b.map(|b| vec![b]).unwrap_or_default());
        let _ = write!(
            out,
            " HEADER {} FIELDS TERMINATED BY {} ENCLOSED BY {} ESCAPED BY {}",
            if f.header { "ON" } else { "OFF" },
            if f.field_delimiter_auto {
                "'auto'".to_string()
            } else {
                byte(Some(f.field_delimiter))
            },
            byte(f.enclosed_by),
            byte(f.escaped_by),
        );
        if let Some(t) = f.line_terminator {
            let _ = write!(out, " LINES TERMINATED BY {}", byte(Some(t)));
        }
        if f.skip_lines > 0 {
            let _ = write!(out, " IGNORE {} LINES", f.skip_lines);
        }
    }
    if let Some(d) = &f.date_format {
        let _ = write!(out, " DATE FORMAT {}", sql_string(d.as_bytes()));
    }
    if let Some(d) = &f.datetime_format {
        let _ = write!(out, " DATETIME FORMAT {}", sql_string(d.as_bytes()));
    }
    if let Some(d) = &f.time_format {
        let _ = write!(out, " TIME FORMAT {}", sql_string(d.as_bytes()));
    }
    if let Some(v) = &f.null_value {
        let _ = write!(out, " NULL VALUE {}", sql_string(v.as_bytes()));
    }
    if let Some(v) = &f.empty_value {
        let _ = write!(out, " EMPTY VALUE {}", sql_string(v.as_bytes()));
    }
    if f.trim_spaces {
        out.push_str(" TRIM SPACES ON");
    }
    if f.match_columns_by != MatchColumns::default() {
        let _ = write!(
            out,
            " MATCH COLUMNS BY {}",
            f.match_columns_by.as_str().to_uppercase()
        );
    }
    if !f.allow_missing_columns {
        out.push_str(" ALLOW MISSING COLUMNS OFF");
    }
    out.push_str(") FILES = (");
    let files: Vec<String> = def
        .files
        .iter()
        .map(|spec| {
            let mut e = format!(
                "URI {}",
                sql_string(crate::model::redact_uri(&spec.uri).as_bytes())
            );
            if let Some(p) = &spec.pattern {
                let _ = write!(e, " PATTERN {}", sql_string(p.as_bytes()));
            }
            e
        })
        .collect();
    out.push_str(&files.join(", "));
    out.push(')');
    let o = &def.options;
    if o.allow_missing_files {
        out.push_str(" ALLOW_MISSING_FILES = 1");
    }
    if !o.strict_load {
        out.push_str(" STRICT_LOAD = 0");
    }
    if let Some(d) = o.refresh_interval {
        let _ = write!(
            out,
            " REFRESH_INTERVAL = '{}'",
            humantime::format_duration(d)
        );
    }
    if let Some(d) = o.max_staleness {
        let _ = write!(out, " MAX_STALENESS = '{}'", humantime::format_duration(d));
    }
    if !o.placement_key.is_empty() {
        let keys: Vec<String> = o.placement_key.iter().map(|k| name(k)).collect();
        let _ = write!(out, " DATA_PLACEMENT_KEY = ({})", keys.join(", "));
    }
    if o.verify_keys {
        out.push_str(" VERIFY_KEY_CONSTRAINTS = 1");
    }
    out
}

/// A MySQL string literal for `bytes`, with the escapes MySQL reads back.
fn sql_string(bytes: &[u8]) -> String {
    let mut out = String::from("'");
    for ch in String::from_utf8_lossy(bytes).chars() {
        match ch {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `LINES TERMINATED BY`: `\n` (and `\r\n`) is the default; any other single byte is allowed.
fn line_terminator(s: &str) -> Result<Option<u8>> {
    match s {
        // The default reads \n, \r\n and \r alike: 'auto' asks for no more.
        "\n" | "\r\n" => Ok(None),
        auto if auto.eq_ignore_ascii_case("auto") => Ok(None),
        other => single_byte("LINES TERMINATED BY", other).map(Some),
    }
}

fn parse_file_format(p: &mut Parser) -> Result<FileFormat> {
    p.expect_token(&Token::LParen)?;
    expect_word(p, "FORMAT")?;
    skip(p, &Token::Eq);
    let tok = p.next_token();
    let kind = word(&tok.token)
        .and_then(|w| FormatKind::parse(&w))
        .ok_or_else(|| {
            CatalogError::invalid(format!(
                "unknown FORMAT {tok}: expected csv, parquet, avro, json or delta"
            ))
        })?;
    let mut f = FileFormat::heatwave(kind);
    loop {
        skip(p, &Token::Comma);
        if p.consume_token(&Token::RParen) {
            break;
        }
        let tok = p.next_token();
        let Some(w) = word(&tok.token) else {
            return Err(p
                .expected::<()>("a FILE_FORMAT option or )", tok)
                .unwrap_err()
                .into());
        };
        let csv_only = |name: &str| -> Result<()> {
            if kind == FormatKind::Csv {
                Ok(())
            } else {
                Err(CatalogError::invalid(format!(
                    "FILE_FORMAT option {name} applies to FORMAT csv only, not {kind}"
                )))
            }
        };
        match w.as_str() {
            "COMPRESSION" => {
                skip(p, &Token::Eq);
                let tok = p.next_token();
                let name = match &tok.token {
                    Token::Word(w) => w.value.clone(),
                    Token::SingleQuotedString(s) => s.clone(),
                    _ => String::new(),
                };
                f.compression = Compression::parse(&name).ok_or_else(|| {
                    CatalogError::invalid(format!(
                        "unknown COMPRESSION {tok}: expected auto, zip, gzip, bzip2, zstd or none"
                    ))
                })?;
            }
            "HEADER" => {
                csv_only("HEADER")?;
                skip(p, &Token::Eq);
                f.header = parse_flag(p, "HEADER")?;
            }
            "FIELDS" | "COLUMNS" => {
                csv_only(&w)?;
                loop {
                    if p.parse_keywords(&[Keyword::TERMINATED, Keyword::BY]) {
                        let s = p.parse_literal_string()?;
                        f.field_delimiter_auto = s.eq_ignore_ascii_case("auto");
                        if !f.field_delimiter_auto {
                            f.field_delimiter = single_byte("FIELDS TERMINATED BY", &s)?;
                        }
                    } else if eat_word(p, "OPTIONALLY") {
                        expect_word(p, "ENCLOSED")?;
                        p.expect_keyword(Keyword::BY)?;
                        f.enclosed_by = optional_byte("ENCLOSED BY", &p.parse_literal_string()?)?;
                    } else if eat_word(p, "ENCLOSED") {
                        p.expect_keyword(Keyword::BY)?;
                        f.enclosed_by = optional_byte("ENCLOSED BY", &p.parse_literal_string()?)?;
                    } else if p.parse_keywords(&[Keyword::ESCAPED, Keyword::BY]) {
                        f.escaped_by = optional_byte("ESCAPED BY", &p.parse_literal_string()?)?;
                    } else {
                        break;
                    }
                }
            }
            "LINES" => {
                csv_only("LINES")?;
                if eat_word(p, "STARTING") {
                    return Err(CatalogError::invalid("LINES STARTING BY is not supported"));
                }
                p.expect_keywords(&[Keyword::TERMINATED, Keyword::BY])?;
                f.line_terminator = line_terminator(&p.parse_literal_string()?)?;
            }
            "IGNORE" => {
                csv_only("IGNORE")?;
                f.skip_lines = p.parse_literal_uint()?;
                if p.parse_one_of_keywords(&[Keyword::LINES, Keyword::ROWS])
                    .is_none()
                {
                    return Err(p
                        .expected::<()>("LINES", p.peek_token())
                        .unwrap_err()
                        .into());
                }
            }
            "DATE" | "DATETIME" | "TIMESTAMP" | "TIME" => {
                expect_word(p, "FORMAT")?;
                skip(p, &Token::Eq);
                let fmt = chrono_format(&p.parse_literal_string()?);
                match w.as_str() {
                    "DATE" => f.date_format = fmt,
                    "TIME" => f.time_format = fmt,
                    _ => f.datetime_format = fmt,
                }
            }
            // Tarn's SQL forms of the JSON dialect's `null_value`, `empty_value`, `trim_spaces`,
            // `match_columns_by` and `allow_missing_columns`.
            "NULL" | "EMPTY" => {
                csv_only(&format!("{w} VALUE"))?;
                expect_word(p, "VALUE")?;
                skip(p, &Token::Eq);
                let v = Some(p.parse_literal_string()?);
                match w.as_str() {
                    "NULL" => f.null_value = v,
                    _ => f.empty_value = v,
                }
            }
            "TRIM" => {
                csv_only("TRIM SPACES")?;
                expect_word(p, "SPACES")?;
                skip(p, &Token::Eq);
                f.trim_spaces = parse_flag(p, "TRIM SPACES")?;
            }
            "MATCH" => {
                expect_word(p, "COLUMNS")?;
                p.expect_keyword(Keyword::BY)?;
                let tok = p.next_token();
                let how = word(&tok.token).unwrap_or_default();
                f.match_columns_by = MatchColumns::parse(&how).ok_or_else(|| {
                    CatalogError::invalid(format!(
                        "MATCH COLUMNS BY {tok}: expected NAME_CASE_INSENSITIVE, \
                         NAME_CASE_SENSITIVE or POSITION"
                    ))
                })?;
            }
            "ALLOW" => {
                expect_word(p, "MISSING")?;
                expect_word(p, "COLUMNS")?;
                skip(p, &Token::Eq);
                f.allow_missing_columns = parse_flag(p, "ALLOW MISSING COLUMNS")?;
            }
            other => {
                return Err(CatalogError::invalid(format!(
                    "unknown FILE_FORMAT option {other}: expected COMPRESSION, HEADER, FIELDS, LINES, \
                     IGNORE, DATE FORMAT, TIME FORMAT, TIMESTAMP FORMAT, NULL VALUE, EMPTY VALUE, \
                     TRIM SPACES, MATCH COLUMNS BY or ALLOW MISSING COLUMNS"
                )));
            }
        }
    }
    Ok(f)
}

/// A format as written (MySQL or chrono); `auto` and `default` mean the ISO forms.
fn chrono_format(f: &str) -> Option<String> {
    match f.to_ascii_lowercase().as_str() {
        "auto" | "default" | "" => None,
        _ => Some(mysql_to_chrono_format(f)),
    }
}

/// MySQL `%Y-%m-%d %H:%i:%s` style formats to chrono's; chrono formats pass through unchanged.
fn mysql_to_chrono_format(f: &str) -> String {
    f.replace("%i", "%M")
        .replace("%s", "%S")
        .replace("%f", "%6f")
}

fn parse_files(p: &mut Parser) -> Result<Vec<FileSpec>> {
    p.expect_token(&Token::LParen)?;
    let mut files = Vec::new();
    loop {
        if p.consume_token(&Token::RParen) {
            break;
        }
        let tok = p.next_token();
        match word(&tok.token).as_deref() {
            Some("URI") => {
                skip(p, &Token::Eq);
                files.push(FileSpec::new(p.parse_literal_string()?));
            }
            Some("PATTERN") => {
                skip(p, &Token::Eq);
                let pat = p.parse_literal_string()?;
                let last = files
                    .last_mut()
                    .ok_or_else(|| CatalogError::invalid("PATTERN must follow a URI"))?;
                last.pattern = Some(pat);
            }
            _ => return Err(p.expected::<()>("URI '...'", tok).unwrap_err().into()),
        }
        skip(p, &Token::Comma);
    }
    Ok(files)
}

fn parse_datafusion_form(sql: &str, tref: TableRef, if_not_exists: bool) -> Result<Statement> {
    let dialect = crate::TarnDialect::default();
    let mut stmts =
        DFParser::parse_sql_with_dialect(sql, &dialect).map_err(|e| CatalogError::Syntax {
            message: e
                .strip_backtrace()
                .trim_start_matches("SQL error: ")
                .to_string(),
        })?;
    let Some(DfStatement::CreateExternalTable(cet)) = stmts.pop_front() else {
        return Err(CatalogError::invalid(
            "expected CREATE EXTERNAL TABLE ... STORED AS ... LOCATION '...'",
        ));
    };
    let kind = FormatKind::parse(&cet.file_type).ok_or_else(|| {
        CatalogError::invalid(format!(
            "unknown STORED AS {}: expected CSV, PARQUET, AVRO, JSON or DELTA",
            cet.file_type
        ))
    })?;
    let mut format = FileFormat::datafusion(kind);
    let mut options = TableOptions::default();
    for (key, value) in &cet.options {
        let v = match value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        };
        let truthy = || matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on");
        match key.to_ascii_lowercase().trim_start_matches("format.") {
            "has_header" => format.header = truthy(),
            "delimiter" => format.field_delimiter = single_byte("delimiter", &v)?,
            "quote" => format.enclosed_by = optional_byte("quote", &v)?,
            "escape" => format.escaped_by = optional_byte("escape", &v)?,
            "terminator" => format.line_terminator = line_terminator(&v)?,
            "compression" => {
                format.compression = Compression::parse(&v)
                    .ok_or_else(|| CatalogError::invalid(format!("unknown compression '{v}'")))?
            }
            "strict_load" => options.strict_load = truthy(),
            "allow_missing_files" => options.allow_missing_files = truthy(),
            other => {
                return Err(CatalogError::invalid(format!(
                    "unknown option '{other}': expected format.has_header, format.delimiter, format.quote, \
                     format.escape, format.terminator or format.compression"
                )));
            }
        }
    }
    let columns = if cet.columns.is_empty() {
        None
    } else {
        Some(column_defs(&cet.columns)?)
    };
    Ok(Statement::CreateTable {
        table: Box::new(TableDef {
            key: TableKey {
                database: tref.database.unwrap_or_default(),
                table: tref.table,
            },
            columns,
            format,
            files: cet.locations.iter().map(FileSpec::new).collect(),
            options,
        }),
        if_not_exists: if_not_exists || cet.if_not_exists,
    })
}

/// HeatWave's older form: `ENGINE_ATTRIBUTE='{"file": [...], "dialect": {...}}'`.
fn parse_engine_attribute(
    attr: &str,
    mut options: TableOptions,
) -> Result<(FileFormat, Vec<FileSpec>, TableOptions)> {
    use serde_json::Value as J;
    let v: J = serde_json::from_str(attr)
        .map_err(|e| CatalogError::invalid(format!("ENGINE_ATTRIBUTE is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CatalogError::invalid("ENGINE_ATTRIBUTE must be a JSON object"))?;
    let dialect = obj.get("dialect").and_then(J::as_object);
    let fmt_name = dialect
        .and_then(|d| d.get("format"))
        .and_then(J::as_str)
        .unwrap_or("csv");
    let kind = FormatKind::parse(fmt_name).ok_or_else(|| {
        CatalogError::invalid(format!(
            "unknown dialect format '{fmt_name}': expected csv, parquet, avro, json or delta"
        ))
    })?;
    let mut format = FileFormat::heatwave(kind);
    for (key, val) in dialect.into_iter().flatten() {
        let s = val
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| val.to_string());
        let b = val.as_bool().unwrap_or(matches!(s.as_str(), "1" | "true"));
        match key.as_str() {
            "format" | "encoding" => {}
            "field_delimiter" if s.eq_ignore_ascii_case("auto") => {
                format.field_delimiter_auto = true
            }
            "field_delimiter" => format.field_delimiter = single_byte("field_delimiter", &s)?,
            "record_delimiter" => format.line_terminator = line_terminator(&s)?,
            "escape_character" => format.escaped_by = optional_byte("escape_character", &s)?,
            "quotation_marks" => format.enclosed_by = optional_byte("quotation_marks", &s)?,
            "has_header" => format.header = b,
            "skip_rows" => {
                format.skip_lines = val
                    .as_u64()
                    .ok_or_else(|| CatalogError::invalid("skip_rows must be a number"))?
            }
            "compression" => {
                format.compression = Compression::parse(&s)
                    .ok_or_else(|| CatalogError::invalid(format!("unknown compression '{s}'")))?
            }
            "date_format" => format.date_format = chrono_format(&s),
            "timestamp_format" | "datetime_format" => format.datetime_format = chrono_format(&s),
            "time_format" => format.time_format = chrono_format(&s),
            "null_value" => format.null_value = Some(s),
            "empty_value" => format.empty_value = Some(s),
            "trim_spaces" => format.trim_spaces = b,
            "match_columns_by" => {
                format.match_columns_by = MatchColumns::parse(&s).ok_or_else(|| {
                    CatalogError::invalid(format!(
                        "match_columns_by '{s}': expected name_case_insensitive, \
                         name_case_sensitive or position"
                    ))
                })?
            }
            "allow_missing_columns" => format.allow_missing_columns = b,
            "is_strict_mode" => options.strict_load = b,
            "allow_missing_files" => options.allow_missing_files = b,
            "check_constraints" => options.verify_keys = b,
            other => {
                return Err(CatalogError::invalid(format!(
                    "unknown dialect option '{other}'"
                )));
            }
        }
    }
    if let Some(b) = obj.get("is_strict_mode").and_then(J::as_bool) {
        options.strict_load = b;
    }
    if let Some(b) = obj.get("allow_missing_files").and_then(J::as_bool) {
        options.allow_missing_files = b;
    }
    let entries = obj
        .get("file")
        .and_then(J::as_array)
        .ok_or_else(|| CatalogError::invalid("ENGINE_ATTRIBUTE needs a \"file\" array"))?;
    let mut files = Vec::new();
    for e in entries {
        let get = |k: &str| e.get(k).and_then(J::as_str);
        let mut spec = if let Some(uri) = get("uri").or(get("par")) {
            FileSpec::new(uri)
        } else if let (Some(bucket), Some(ns)) = (get("bucket"), get("namespace")) {
            let path = get("name").or(get("prefix")).unwrap_or("");
            FileSpec::new(format!("oci://{bucket}@{ns}/{path}"))
        } else {
            return Err(CatalogError::invalid(
                "each \"file\" entry needs \"uri\", \"par\", or \"bucket\" and \"namespace\"",
            ));
        };
        spec.pattern = get("pattern").map(str::to_string);
        spec.region = get("region").map(str::to_string);
        if let Some(b) = e.get("allow_missing_files").and_then(J::as_bool) {
            options.allow_missing_files |= b;
        }
        files.push(spec);
    }
    Ok((format, files, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> TableDef {
        match parse_statement(sql).unwrap() {
            Statement::CreateTable { table, .. } => *table,
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn show_columns_is_describe() {
        for (sql, db) in [
            ("SHOW COLUMNS FROM t", None),
            ("SHOW FULL COLUMNS FROM d.t", Some("d")),
            ("show fields in t from d", Some("d")),
        ] {
            match parse_statement(sql).unwrap() {
                Statement::Describe { table } => {
                    assert_eq!(
                        (table.database.as_deref(), table.table.as_str()),
                        (db, "t"),
                        "{sql}"
                    );
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        assert!(parse_statement("SHOW COLUMNS t").is_err());
    }

    #[test]
    fn show_create_table_gives_ddl_that_defines_the_same_table() {
        for ddl in [
            "CREATE EXTERNAL TABLE d.t (a INT NOT NULL, b DECIMAL(10,2), c VARCHAR(32)) \
             FILE_FORMAT = (FORMAT csv COMPRESSION gzip HEADER ON FIELDS TERMINATED BY '\\t' \
             OPTIONALLY ENCLOSED BY '\\'' ESCAPED BY '' LINES TERMINATED BY ';' IGNORE 2 LINES \
             DATE FORMAT '%d/%m/%Y') FILES = (URI 's3://b/p/' PATTERN '.*[.]csv', URI 'file:///x/y.csv') \
             ALLOW_MISSING_FILES = 1 STRICT_LOAD = 0 REFRESH_INTERVAL = '1m 30s' MAX_STALENESS = '5s' \
             DATA_PLACEMENT_KEY = (c, a)",
            "CREATE EXTERNAL TABLE `my db`.`t``2` FILE_FORMAT = (FORMAT parquet) FILES = (URI 'oci://b@ns/x/')",
            "CREATE EXTERNAL TABLE d.j (a BIGINT) FILE_FORMAT = (FORMAT json) FILES = (URI 's3://b/j/')",
            "CREATE EXTERNAL TABLE d.a FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY 'auto' LINES TERMINATED BY 'auto') FILES = (URI 's3://b/a/')",
        ] {
            let Statement::CreateTable { table, .. } = parse_statement(ddl).unwrap() else {
                panic!("{ddl}")
            };
            let again = table_ddl(&table);
            let Statement::CreateTable { table: back, .. } =
                parse_statement(&again).unwrap_or_else(|e| panic!("{again}: {e}"))
            else {
                panic!("{again}")
            };
            assert_eq!(back, table, "{again}");
        }
        // A pre-authenticated request's token is not shown.
        let Statement::CreateTable { table, .. } = parse_statement(
            "CREATE EXTERNAL TABLE d.p FILE_FORMAT = (FORMAT csv) FILES = \
             (URI 'https://objectstorage.us-ashburn-1.oraclecloud.com/p/SECRETTOKEN/n/ns/b/b/o/f.csv')",
        )
        .unwrap() else {
            panic!()
        };
        assert!(!table_ddl(&table).contains("SECRETTOKEN"));
    }

    #[test]
    fn user_variables_are_set_and_other_sets_are_left_to_the_engine() {
        assert_eq!(
            parse_statement("SET @input_list = '[{\"db_name\": \"d\"}]';").unwrap(),
            Statement::SetVariables {
                assignments: vec![("input_list".into(), "'[{\"db_name\": \"d\"}]'".into())]
            }
        );
        assert_eq!(
            parse_statement("SET @A = 1 + 2, @b = @a * 2").unwrap(),
            Statement::SetVariables {
                assignments: vec![("a".into(), "1 + 2".into()), ("b".into(), "@a * 2".into())]
            }
        );
        // Engine settings are not variables: they reach the engine as written.
        assert_eq!(
            parse_statement("SET datafusion.execution.batch_size = 1").unwrap(),
            Statement::Query("SET datafusion.execution.batch_size = 1".into())
        );
        let e = parse_statement("SET @x = 1, y = 2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SET y: only user variables (@name) can be set"),
            "{e}"
        );
    }

    #[test]
    fn heatwave_form() {
        let t = create(
            "CREATE EXTERNAL TABLE market_data.Delta_Orders (order_id INT NOT NULL, product LONGTEXT, amount DECIMAL(10,2))
               FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\'
                              LINES TERMINATED BY '\\n' IGNORE 2 LINES COMPRESSION gzip)
               FILES = (URI 'oci://demo@mysqlpm/orders/' PATTERN '.*\\\\.csv\\\\.gz', URI 's3://lake/more.csv')
               ALLOW_MISSING_FILES = 1 STRICT_LOAD = 0 REFRESH_INTERVAL = '30s';",
        );
        assert_eq!(t.key, TableKey::new("market_data", "delta_orders"));
        let cols = t.columns.unwrap();
        assert_eq!(
            cols[0],
            ColumnDef {
                name: "order_id".into(),
                sql_type: "INT".into(),
                nullable: false
            }
        );
        assert_eq!(cols[2].sql_type, "DECIMAL(10,2)");
        assert_eq!(t.format.kind, FormatKind::Csv);
        assert!(t.format.header);
        assert_eq!(t.format.field_delimiter, b',');
        assert_eq!(t.format.escaped_by, Some(b'\\'));
        assert_eq!(t.format.skip_lines, 2);
        assert_eq!(t.format.compression, Compression::Gzip);
        assert_eq!(t.files.len(), 2);
        assert_eq!(t.files[0].pattern.as_deref(), Some(".*\\.csv\\.gz"));
        assert!(t.options.allow_missing_files);
        assert!(!t.options.strict_load);
        assert_eq!(t.options.refresh_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn data_placement_key_as_a_table_option_or_heatwave_column_comments() {
        let t = create(
            "CREATE EXTERNAL TABLE d.lineitem FILE_FORMAT = (FORMAT parquet) \
             FILES = (URI 'file:///x/') DATA_PLACEMENT_KEY = (L_ShipDate, l_orderkey)",
        );
        assert_eq!(t.options.placement_key, ["l_shipdate", "l_orderkey"]);
        let t = create(
            "CREATE EXTERNAL TABLE d.orders (o_orderkey BIGINT COMMENT 'RAPID_COLUMN=DATA_PLACEMENT_KEY=2', \
               o_orderdate DATE COMMENT 'RAPID_COLUMN=DATA_PLACEMENT_KEY=1', o_comment TEXT COMMENT 'free text') \
             FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/')",
        );
        assert_eq!(t.options.placement_key, ["o_orderdate", "o_orderkey"]);
        let t = create(
            "CREATE EXTERNAL TABLE d.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/')",
        );
        assert!(t.options.placement_key.is_empty());

        let err = |sql: &str| parse_statement(sql).unwrap_err().to_string();
        let e = err(
            "CREATE EXTERNAL TABLE d.t (a INT) FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/') \
             DATA_PLACEMENT_KEY = (b)",
        );
        assert!(e.contains("'b', which is not a declared column"), "{e}");
        let e = err(
            "CREATE EXTERNAL TABLE d.t (a INT COMMENT 'RAPID_COLUMN=DATA_PLACEMENT_KEY=1', \
               b INT COMMENT 'RAPID_COLUMN=DATA_PLACEMENT_KEY=1') \
             FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/')",
        );
        assert!(
            e.contains("'a' and 'b' both claim DATA_PLACEMENT_KEY=1"),
            "{e}"
        );
        let e = err(
            "CREATE EXTERNAL TABLE d.t (a INT COMMENT 'RAPID_COLUMN=DATA_PLACEMENT_KEY=x') \
             FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/')",
        );
        assert!(
            e.contains("column 'a': DATA_PLACEMENT_KEY needs a position"),
            "{e}"
        );
        let e = err(
            "CREATE EXTERNAL TABLE d.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/') \
             DATA_PLACEMENT_KEY = (a, A)",
        );
        assert!(e.contains("DATA_PLACEMENT_KEY names 'a' twice"), "{e}");
    }

    #[test]
    fn design_example_without_columns_types() {
        let t = create(
            "CREATE EXTERNAL TABLE market_data.delta_orders (order_id INT, product LONGTEXT, amount DOUBLE)
               FILE_FORMAT = (FORMAT delta) FILES = (URI 'oci://demo@mysqlpm/delta/')",
        );
        assert_eq!(t.format.kind, FormatKind::Delta);
        let t = create(
            "CREATE EXTERNAL TABLE d.p FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///x/')",
        );
        assert!(t.columns.is_none());
    }

    #[test]
    fn engine_attribute_form() {
        let t = create(
            r#"CREATE TABLE d.t (a INT, b VARCHAR(10)) ENGINE=lakehouse SECONDARY_ENGINE=rapid
               ENGINE_ATTRIBUTE='{"file": [{"bucket": "b", "namespace": "ns", "region": "us-ashburn-1", "prefix": "data/"}],
                                  "dialect": {"format": "csv", "field_delimiter": ",", "has_header": true, "skip_rows": 1}}'"#,
        );
        assert_eq!(t.files[0].uri, "oci://b@ns/data/");
        assert_eq!(t.files[0].region.as_deref(), Some("us-ashburn-1"));
        assert_eq!(t.format.field_delimiter, b',');
        assert!(t.format.header);
        assert_eq!(t.format.skip_lines, 1);
    }

    #[test]
    fn datafusion_form() {
        let t = create(
            "CREATE EXTERNAL TABLE IF NOT EXISTS d.lineitem (l_orderkey BIGINT) STORED AS CSV \
             OPTIONS ('format.has_header' 'false', 'format.delimiter' '|') LOCATION 's3://lake/lineitem/'",
        );
        assert_eq!(t.format.kind, FormatKind::Csv);
        assert!(!t.format.header);
        assert_eq!(t.format.field_delimiter, b'|');
        assert_eq!(t.files[0].uri, "s3://lake/lineitem/");
    }

    #[test]
    fn other_statements() {
        assert_eq!(
            parse_statement("create database if not exists Sales").unwrap(),
            Statement::CreateDatabase {
                name: "sales".into(),
                if_not_exists: true
            }
        );
        assert_eq!(
            parse_statement("ALTER TABLE s.t SECONDARY_LOAD;").unwrap(),
            Statement::SecondaryLoad {
                table: TableRef {
                    database: Some("s".into()),
                    table: "t".into()
                },
                validate_only: false,
            }
        );
        assert!(matches!(
            parse_statement("ALTER TABLE s.t SECONDARY_LOAD VALIDATE ONLY").unwrap(),
            Statement::SecondaryLoad {
                validate_only: true,
                ..
            }
        ));
        match parse_statement(
            "ALTER TABLE s.t FILES = (URI 's3://b/a.csv', URI 's3://b/c/' PATTERN '.*')",
        )
        .unwrap()
        {
            Statement::AlterFiles { files, .. } => {
                assert_eq!(files.len(), 2);
                assert_eq!(files[1].pattern.as_deref(), Some(".*"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_statement(
                r#"ALTER TABLE s.t ENGINE_ATTRIBUTE='{"file": [{"uri": "s3://b/x/"}]}'"#
            )
            .unwrap(),
            Statement::AlterFiles { .. }
        ));
        let e = parse_statement(
            r#"ALTER TABLE s.t ENGINE_ATTRIBUTE='{"file": [{"uri": "s3://b/x/"}], "dialect": {"format": "csv"}}'"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"dialect\""), "{e}");
        let e = parse_statement("ALTER TABLE s.t SECONDARY_LOAD VALIDATE")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ONLY"), "{e}");
        assert_eq!(
            parse_statement("SHOW TABLES FROM s").unwrap(),
            Statement::ShowTables {
                database: Some("s".into())
            }
        );
        assert!(matches!(
            parse_statement("DESCRIBE s.t").unwrap(),
            Statement::Describe { .. }
        ));
        assert!(matches!(
            parse_statement("EXPLAIN s.t").unwrap(),
            Statement::Describe { .. }
        ));
        assert!(matches!(
            parse_statement("EXPLAIN SELECT 1").unwrap(),
            Statement::Query(_)
        ));
        assert_eq!(
            parse_statement("select 1;").unwrap(),
            Statement::Query("select 1".into())
        );
    }

    #[test]
    fn heatwave_load_call() {
        let s = parse_statement(
            r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "Sales", "tables": [{"table_name": "Orders"}]}, {"db_name": "hr"}]' AS JSON), JSON_OBJECT('refresh_external_tables', TRUE))"#,
        )
        .unwrap();
        assert_eq!(
            s,
            Statement::HeatwaveLoad {
                input: vec![
                    ("sales".into(), vec!["orders".into()]),
                    ("hr".into(), vec![])
                ],
                define: vec![],
                refresh: true,
                mode: LoadMode::Normal,
                output: LoadOutput::Normal,
            }
        );
        let call = |options: &str| {
            parse_statement(&format!(
                r#"CALL sys.HEATWAVE_LOAD(CAST('[{{"db_name": "d"}}]' AS JSON), {options})"#
            ))
        };
        for (options, mode, output) in [
            ("NULL", LoadMode::Normal, LoadOutput::Normal),
            (
                "JSON_OBJECT('mode', 'validation', 'output', 'silent')",
                LoadMode::Validation,
                LoadOutput::Silent,
            ),
            (
                r#"'{"mode": "dryrun", "output": "compact"}'"#,
                LoadMode::DryRun,
                LoadOutput::Compact,
            ),
        ] {
            match call(options).unwrap() {
                Statement::HeatwaveLoad {
                    mode: m, output: o, ..
                } => assert_eq!((m, o), (mode, output), "{options}"),
                other => panic!("{other:?}"),
            }
        }
        let e = call("JSON_OBJECT('mode', 'validation', 'sampling', TRUE)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'sampling'"), "{e}");
        // HeatWave's table objects with their files, and plain names.
        let s = parse_statement(
            r#"CALL sys.HEATWAVE_LOAD('[{"db_name": "d", "tables": ["a", {"table_name": "B", "engine_attribute": {"dialect": {"format": "csv"}, "file": [{"uri": "s3://x/b/"}]}}]}, "e"]', NULL)"#,
        )
        .unwrap();
        match s {
            Statement::HeatwaveLoad { input, define, .. } => {
                assert_eq!(
                    input,
                    vec![
                        ("d".to_string(), vec!["a".to_string(), "b".to_string()]),
                        ("e".to_string(), vec![])
                    ]
                );
                assert_eq!(define.len(), 1);
                assert_eq!((define[0].0.as_str(), define[0].1.as_str()), ("d", "b"));
                assert!(define[0].2.contains("s3://x/b/"), "{define:?}");
            }
            other => panic!("{other:?}"),
        }
        let e = call("JSON_OBJECT('mode', 'fast')").unwrap_err().to_string();
        assert!(e.contains("mode = \"fast\""), "{e}");
        let e = parse_statement("CALL sys.HEATWAVE_LOAD(CAST(@input_list AS JSON), NULL)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("input list inline"), "{e}");
        let e = parse_statement("CALL sys.other()").unwrap_err().to_string();
        assert!(e.contains("unknown procedure sys.other"), "{e}");
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse_statement("CREATE EXTERNAL TABLE d.t (a INT) FILE_FORMAT = (FORMAT csv FOO bar) FILES = (URI 'x')")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown FILE_FORMAT option FOO"), "{e}");
        let e = parse_statement("CREATE EXTERNAL TABLE d.t (a INT FILE_FORMAT = (FORMAT csv)")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("syntax error: Expected"), "{e}");
        assert!(e.contains("Line: 1, Column"), "{e}");
        let e = parse_statement(
            "CREATE EXTERNAL TABLE d.t (a INT) FILE_FORMAT = (FORMAT xml) FILES = (URI 'x')",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown FORMAT xml"), "{e}");
        let e = parse_statement("ALTER TABLE d.t SECONDARY_LAOD")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Expected: SECONDARY_LOAD, SECONDARY_UNLOAD, FILES or ENGINE_ATTRIBUTE, found: SECONDARY_LAOD"),
            "{e}"
        );
        let e = parse_statement(
            "CREATE EXTERNAL TABLE d.t (a GEOMETRY) FILE_FORMAT = (FORMAT csv) FILES = (URI 'x')",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unsupported column type GEOMETRY for column a"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Pieces of Tarn's dialect, put together at random: most make no sense, some do.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("CREATE EXTERNAL TABLE ".to_string()),
            Just("CREATE TABLE ".to_string()),
            Just("d.t ".to_string()),
            Just("(a INT, b DECIMAL(10,2), c VARCHAR(5)) ".to_string()),
            Just("FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') ".to_string()),
            Just("FILES = (URI 'file:///x/' PATTERN '.*') ".to_string()),
            Just("ENGINE_ATTRIBUTE='{\"file\": [{\"uri\": \"s3://b/p/\"}]}' ".to_string()),
            Just("STORED AS PARQUET LOCATION 's3://b/' ".to_string()),
            Just("ALTER TABLE d.t SECONDARY_LOAD".to_string()),
            Just(
                "CALL sys.HEATWAVE_LOAD(CAST('[{\"db_name\": \"d\"}]' AS JSON), NULL)".to_string()
            ),
            Just("SET @x = ".to_string()),
            Just("DATA_PLACEMENT_KEY = (a) ".to_string()),
            Just("REFRESH_INTERVAL = '1s' ".to_string()),
            "[ -~]{0,12}".prop_map(|s| s),
            any::<char>().prop_map(|c| c.to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
        ))]

        /// Whatever the text, the parser answers (a statement or an error); it never panics.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,200}") {
            let _ = parse_statement(&text);
        }

        #[test]
        fn any_mix_of_the_dialect_parses_or_is_refused(parts in prop::collection::vec(fragment(), 0..8)) {
            let text: String = parts.concat();
            if let Err(e) = parse_statement(&text) {
                // Every refusal says something.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
