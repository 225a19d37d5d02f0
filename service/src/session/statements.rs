//! Tarn's own statements: databases and tables in the catalog, loads and unloads, SHOW, DESCRIBE
//! and `CALL sys.HEATWAVE_LOAD`. Each answers a small result of its own.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use tarn_catalog::types::{columns_of, schema_of};
use tarn_catalog::{CatalogError, LoadMode, Statement, TableDef, TableKey};
use tarn_engine::QueryStream;
use tarn_engine::query::{PERFORMANCE_SCHEMA, system};

use super::Sessions;
use crate::access::{Caller, Role};
use crate::error::{Result, ServiceError};

/// An answer without columns (DDL, USE).
pub(super) fn empty() -> QueryStream {
    QueryStream::from_batches(Arc::new(Schema::empty()), vec![])
}

/// A one-batch answer of the named columns.
fn single(fields: Vec<(&str, ArrayRef)>) -> Result<QueryStream> {
    let schema = Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), fields.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(QueryStream::from_batches(schema, vec![batch]))
}

fn strings<I: IntoIterator<Item = S>, S: AsRef<str>>(v: I) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

/// What the audit log records of `stmt` (run with default database `database`): the action and
/// its target; none for statements that change nothing (SHOW, DESCRIBE).
pub(super) fn audited(stmt: &Statement, database: Option<&str>) -> Option<(&'static str, String)> {
    let table = |t: &tarn_catalog::TableRef| {
        t.resolve(database)
            .map(|k| k.to_string())
            .unwrap_or_else(|_| t.table.clone())
    };
    Some(match stmt {
        Statement::CreateDatabase { name, .. } => ("create_database", name.clone()),
        Statement::DropDatabase { name, .. } => ("drop_database", name.clone()),
        Statement::CreateTable { table: t, .. } => {
            let db = match t.key.database.as_str() {
                "" => database.unwrap_or_default(),
                db => db,
            };
            ("create_table", format!("{db}.{}", t.key.table))
        }
        Statement::DropTable { table: t, .. } => ("drop_table", table(t)),
        // A validation changes nothing: not audited.
        Statement::SecondaryLoad {
            validate_only: true,
            ..
        } => return None,
        Statement::SecondaryLoad { table: t, .. } => ("secondary_load", table(t)),
        Statement::SecondaryUnload { table: t } => ("secondary_unload", table(t)),
        Statement::AlterFiles { table: t, .. } => ("alter_table_files", table(t)),
        Statement::HeatwaveLoad {
            mode: LoadMode::Validation | LoadMode::DryRun,
            ..
        } => return None,
        Statement::HeatwaveLoad { input, refresh, .. } => (
            if *refresh {
                "heatwave_load_refresh"
            } else {
                "heatwave_load"
            },
            input
                .iter()
                .map(|(db, _)| db.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => return None,
    })
}

/// Runs one of Tarn's statements (not a query, not `USE`) for `caller`; `database` is the
/// session's default. DDL is the admin's; loads and unloads a loader's within its databases;
/// SHOW and DESCRIBE a reader's, showing only the databases it may see.
pub(super) async fn run(
    s: &Sessions,
    caller: &Caller,
    database: Option<&str>,
    stmt: Statement,
) -> Result<QueryStream> {
    match stmt {
        Statement::CreateDatabase {
            name,
            if_not_exists,
        } => {
            caller.require(Role::Admin, "CREATE DATABASE")?;
            check_not_reserved(&name)?;
            s.catalog.create_database(&name, if_not_exists)?;
            Ok(empty())
        }
        Statement::DropDatabase { name, if_exists } => {
            caller.require(Role::Admin, "DROP DATABASE")?;
            check_not_reserved(&name)?;
            for key in s.catalog.drop_database(&name, if_exists)? {
                s.loader.forget(&key).await;
            }
            Ok(empty())
        }
        Statement::CreateTable {
            mut table,
            if_not_exists,
        } => {
            caller.require(Role::Admin, "CREATE TABLE")?;
            if table.key.database.is_empty() {
                table.key.database = database
                    .ok_or(CatalogError::NoDatabaseSelected)?
                    .to_string();
            }
            validate(s, &table)?;
            table.key = TableKey::new(&table.key.database, &table.key.table);
            s.catalog.create_table(*table, if_not_exists)?;
            Ok(empty())
        }
        Statement::DropTable { table, if_exists } => {
            caller.require(Role::Admin, "DROP TABLE")?;
            let key = table.resolve(database)?;
            if s.catalog.drop_table(&key, if_exists)? {
                s.loader.forget(&key).await;
            }
            Ok(empty())
        }
        Statement::ShowDatabases => {
            caller.require(Role::Reader, "SHOW DATABASES")?;
            let mut dbs = s.catalog.databases();
            dbs.retain(|db| caller.sees(db));
            dbs.push(PERFORMANCE_SCHEMA.to_string());
            dbs.sort();
            single(vec![("Database", strings(dbs))])
        }
        Statement::ShowTables { database: db } => {
            let db = db
                .or(database.map(str::to_string))
                .ok_or(CatalogError::NoDatabaseSelected)?;
            let tables = if db == PERFORMANCE_SCHEMA {
                caller.require(Role::Reader, "SHOW TABLES")?;
                system::TABLES.iter().map(|s| s.to_string()).collect()
            } else {
                caller.require_in(Role::Reader, &db, "SHOW TABLES")?;
                s.catalog.tables(&db)?
            };
            let name = format!("Tables_in_{db}");
            single(vec![(name.as_str(), strings(tables))])
        }
        Statement::ShowCreateTable { table } => {
            let key = table.resolve(database)?;
            caller.require_in(Role::Reader, &key.database, "SHOW CREATE TABLE")?;
            let def = s.catalog.get(&key)?;
            single(vec![
                ("Table", strings([key.table.as_str()])),
                (
                    "Create Table",
                    strings([tarn_catalog::dialect::table_ddl(&def)]),
                ),
            ])
        }
        Statement::Describe { table } => {
            let key = table.resolve(database)?;
            caller.require_in(Role::Reader, &key.database, "DESCRIBE")?;
            describe(s, &key)
        }
        Statement::SecondaryLoad {
            table,
            validate_only: true,
        } => {
            let key = table.resolve(database)?;
            caller.require_in(Role::Loader, &key.database, "SECONDARY_LOAD VALIDATE ONLY")?;
            let found = s.loader.validate(&key).await?;
            validation_rows(vec![(key.to_string(), found)])
        }
        Statement::SecondaryLoad { table, .. } => {
            let key = table.resolve(database)?;
            caller.require_in(Role::Loader, &key.database, "SECONDARY_LOAD")?;
            let r = s.loader.load(&key).await?;
            single(vec![
                ("table", strings([r.table])),
                (
                    "version",
                    Arc::new(UInt64Array::from(vec![r.version])) as ArrayRef,
                ),
                ("files", Arc::new(UInt64Array::from(vec![r.files as u64]))),
                ("rows", Arc::new(UInt64Array::from(vec![r.rows]))),
                ("bytes", Arc::new(UInt64Array::from(vec![r.bytes]))),
                (
                    "rejected_rows",
                    Arc::new(UInt64Array::from(vec![r.rejected_rows as u64])),
                ),
                ("seconds", Arc::new(Float64Array::from(vec![r.seconds]))),
            ])
        }
        Statement::AlterFiles { table, files } => {
            let key = table.resolve(database)?;
            caller.require(Role::Admin, "ALTER TABLE")?;
            alter_files(s, &key, files).await
        }
        Statement::SecondaryUnload { table } => {
            let key = table.resolve(database)?;
            caller.require_in(Role::Loader, &key.database, "SECONDARY_UNLOAD")?;
            s.loader.unload(&key).await?;
            Ok(empty())
        }
        Statement::HeatwaveLoad {
            input,
            define,
            refresh,
            mode,
            // The session shapes the whole answer by `output` (and makes its report).
            output: _,
        } => {
            caller.require(Role::Loader, "CALL sys.HEATWAVE_LOAD")?;
            for (db, _) in &input {
                caller.require_database(db)?;
            }
            if mode == LoadMode::DryRun {
                return dry_run(s, &input, &define).await;
            }
            define_tables(s, caller, &define, mode).await?;
            let keys = listed_tables(s, &input, &[])?;
            match mode {
                LoadMode::Normal => heatwave_load(s, keys, refresh).await,
                LoadMode::Validation => {
                    let mut found = Vec::new();
                    for key in keys {
                        found.push((key.to_string(), s.loader.validate(&key).await?));
                    }
                    validation_rows(found)
                }
                LoadMode::DryRun => unreachable!("answered above"),
            }
        }
        Statement::Query(_)
        | Statement::Use { .. }
        | Statement::SetVariables { .. }
        | Statement::Export(_) => Err(ServiceError::Internal(
            "queries, USE and SET are the session's".into(),
        )),
    }
}

/// Tables an input list defines by their files (`engine_attribute`) and the catalog lacks are
/// created, with their database when missing, as `CREATE TABLE ... ENGINE_ATTRIBUTE='...'` would
/// (creating is DDL: the admin's; each creation is audited). Tables that exist keep their
/// definition. Only a normal load creates: a validation or dry run reads defined tables.
async fn define_tables(
    s: &Sessions,
    caller: &Caller,
    define: &[(String, String, String)],
    mode: LoadMode,
) -> Result<()> {
    for (db, table, attribute) in define {
        let key = TableKey::new(db, table);
        if s.catalog.get(&key).is_ok() {
            continue;
        }
        if mode != LoadMode::Normal {
            return Err(ServiceError::NotSupported(format!(
                "{key} is not defined yet: a validation reads defined tables; create it first (CREATE TABLE, or this call in normal mode)"
            )));
        }
        caller.require(Role::Admin, &format!("creating {key} from the input list"))?;
        if !s.catalog.database_exists(db) {
            let stmt = Statement::CreateDatabase {
                name: db.clone(),
                if_not_exists: true,
            };
            let done = Box::pin(run(s, caller, None, stmt)).await;
            s.audit.record(caller, "create_database", db, &done);
            done?;
        }
        let done = match attribute_definition(db, table, attribute) {
            Ok(table) => {
                let stmt = Statement::CreateTable {
                    table: Box::new(table),
                    if_not_exists: false,
                };
                Box::pin(run(s, caller, None, stmt)).await
            }
            Err(e) => Err(e),
        };
        s.audit
            .record(caller, "create_table", &key.to_string(), &done);
        done?;
    }
    Ok(())
}

/// The definition an input list's table object gives by its `engine_attribute`, read as the
/// `CREATE TABLE ... ENGINE_ATTRIBUTE='...'` form would read it.
fn attribute_definition(db: &str, table: &str, attribute: &str) -> Result<TableDef> {
    let ddl = format!(
        "CREATE TABLE `{}`.`{}` ENGINE=lakehouse SECONDARY_ENGINE=rapid ENGINE_ATTRIBUTE='{}'",
        db.replace('`', "``"),
        table.replace('`', "``"),
        attribute.replace('\'', "''")
    );
    match tarn_catalog::parse_statement(&ddl)? {
        Statement::CreateTable { table, .. } => Ok(*table),
        _ => Err(ServiceError::Internal("not a CREATE TABLE".into())),
    }
}

/// Selective load: gives a table a new list of files. A loaded table is refreshed at once, which
/// reads only the files the new list adds and drops those it no longer has; if that refresh
/// fails, the old list stays (and the loaded version keeps serving). Answers what the refresh did.
async fn alter_files(
    s: &Sessions,
    key: &TableKey,
    files: Vec<tarn_catalog::FileSpec>,
) -> Result<QueryStream> {
    let mut def = s.catalog.get(key)?;
    def.files = files.clone();
    validate(s, &def)?;
    let before = s.catalog.replace_files(key, files)?;
    let loaded = s
        .engine
        .store()
        .get(key)
        .and_then(|e| e.current())
        .is_some();
    if !loaded {
        return Ok(empty());
    }
    match s.loader.refresh(key).await {
        Ok(r) => single(vec![
            ("table", strings([r.table])),
            (
                "version",
                Arc::new(UInt64Array::from(vec![r.version])) as ArrayRef,
            ),
            ("files", Arc::new(UInt64Array::from(vec![r.files as u64]))),
            (
                "files_added",
                Arc::new(UInt64Array::from(vec![r.files_added as u64])),
            ),
            (
                "files_removed",
                Arc::new(UInt64Array::from(vec![r.files_removed as u64])),
            ),
            (
                "files_kept",
                Arc::new(UInt64Array::from(vec![r.files_reused as u64])),
            ),
            ("rows", Arc::new(UInt64Array::from(vec![r.rows]))),
        ]),
        Err(e) => {
            s.catalog.replace_files(key, before.files)?;
            Err(e)
        }
    }
}

/// `sys.HEATWAVE_LOAD`'s dry run: for every table the input list names (defined, or defined by
/// its `engine_attribute` and not created), the DDL that defines it with its columns (inferred
/// where not declared), its files and bytes, and the rows and memory a load would take; last, the
/// total beside the memory free now. Nothing is created or loaded.
async fn dry_run(
    s: &Sessions,
    input: &[(String, Vec<String>)],
    define: &[(String, String, String)],
) -> Result<QueryStream> {
    let mut defs = Vec::new();
    for (db, table, attribute) in define {
        if s.catalog.get(&TableKey::new(db, table)).is_ok() {
            continue;
        }
        let def = attribute_definition(db, table, attribute)?;
        validate(s, &def)?;
        defs.push(def);
    }
    let pending: Vec<TableKey> = defs.iter().map(|d| d.key.clone()).collect();
    for key in listed_tables(s, input, &pending)? {
        defs.push(s.catalog.get(&key)?);
    }
    let (mut names, mut ddls, mut files, mut bytes, mut rows, mut memory) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut total = 0u64;
    for mut def in defs {
        let e = s.loader.estimate(&def).await?;
        if def.columns.is_none() {
            def.columns = Some(columns_of(&e.columns));
        }
        names.push(Some(def.key.to_string()));
        ddls.push(Some(tarn_catalog::dialect::table_ddl(&def)));
        files.push(Some(e.files as u64));
        bytes.push(Some(e.source_bytes));
        rows.push(Some(e.rows));
        memory.push(Some(e.memory_bytes));
        total += e.memory_bytes;
    }
    let store = s.engine.store();
    let free = store.limit().map(|l| l.saturating_sub(store.used_bytes()));
    names.push(None);
    ddls.push(Some(match free {
        Some(f) => format!(
            "total: {total} bytes to load, {f} bytes free under memory_limit{}",
            if total > f { ": it would not fit" } else { "" }
        ),
        None => format!("total: {total} bytes to load (no memory_limit)"),
    }));
    files.push(None);
    bytes.push(None);
    rows.push(None);
    memory.push(Some(total));
    single(vec![
        ("table", Arc::new(StringArray::from(names)) as ArrayRef),
        ("estimated_bytes", Arc::new(UInt64Array::from(memory))),
        ("estimated_rows", Arc::new(UInt64Array::from(rows))),
        ("files", Arc::new(UInt64Array::from(files))),
        ("file_bytes", Arc::new(UInt64Array::from(bytes))),
        ("sql", Arc::new(StringArray::from(ddls))),
    ])
}

/// The tables a `CALL sys.HEATWAVE_LOAD` input list names (a database alone: all its tables),
/// but those in `except`; each must exist.
fn listed_tables(
    s: &Sessions,
    input: &[(String, Vec<String>)],
    except: &[TableKey],
) -> Result<Vec<TableKey>> {
    let mut keys = Vec::new();
    for (db, tables) in input {
        let names = if tables.is_empty() {
            s.catalog.tables(db)?
        } else {
            tables.clone()
        };
        for t in names {
            let key = TableKey::new(db, &t);
            if except.contains(&key) {
                continue;
            }
            s.catalog.get(&key)?;
            keys.push(key);
        }
    }
    Ok(keys)
}

/// A validation's answer: a row per rejected row (table, file, line, column, problem), or, for a
/// table with none, a row saying it is valid and what was read.
fn validation_rows(found: Vec<(String, crate::load::Validation)>) -> Result<QueryStream> {
    let (mut tables, mut files, mut lines, mut columns, mut problems) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (table, v) in found {
        if v.rejected.is_empty() {
            tables.push(table.clone());
            files.push(None);
            lines.push(None);
            columns.push(None);
            problems.push(format!(
                "valid: {} file(s), {} row(s), none rejected",
                v.files, v.rows
            ));
        }
        for r in v.rejected {
            tables.push(table.clone());
            files.push(Some(tarn_connectors::location::redact(&r.file)));
            lines.push(Some(r.line));
            columns.push(r.column);
            problems.push(r.reason);
        }
    }
    single(vec![
        ("table", strings(tables)),
        ("file", Arc::new(StringArray::from(files)) as ArrayRef),
        ("line", Arc::new(UInt64Array::from(lines))),
        ("column", Arc::new(StringArray::from(columns))),
        ("problem", strings(problems)),
    ])
}

/// `CALL sys.HEATWAVE_LOAD`: loads the listed tables that are not loaded, or with
/// `refresh_external_tables` refreshes the listed tables that are. One row per table with what
/// was done (`compact`: the table, what was done and any error); a table that fails does not
/// stop the others.
async fn heatwave_load(s: &Sessions, keys: Vec<TableKey>, refresh: bool) -> Result<QueryStream> {
    let (mut names, mut actions, mut versions, mut rows, mut read, mut errors) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for key in keys {
        let loaded = s
            .engine
            .store()
            .get(&key)
            .and_then(|e| e.current())
            .is_some();
        let result = match (refresh, loaded) {
            (true, true) => Some(s.loader.refresh(&key).await),
            (false, false) => Some(s.loader.load(&key).await),
            _ => None,
        };
        names.push(key.to_string());
        match result {
            None => {
                actions.push(if refresh {
                    "skipped: not loaded"
                } else {
                    "skipped: already loaded"
                });
                versions.push(None);
                rows.push(None);
                read.push(None);
                errors.push(None);
            }
            Some(Ok(r)) => {
                actions.push(r.kind);
                versions.push(Some(r.version));
                rows.push(Some(r.rows));
                read.push(Some(r.bytes_read));
                errors.push(None);
            }
            Some(Err(e)) => {
                actions.push(if refresh { "refresh" } else { "load" });
                versions.push(None);
                rows.push(None);
                read.push(None);
                errors.push(Some(e.to_string()));
            }
        }
    }
    single(vec![
        ("table", strings(names)),
        ("action", strings(actions)),
        ("version", Arc::new(UInt64Array::from(versions)) as ArrayRef),
        ("rows", Arc::new(UInt64Array::from(rows))),
        ("bytes_read", Arc::new(UInt64Array::from(read))),
        ("error", Arc::new(StringArray::from(errors))),
    ])
}

fn check_not_reserved(name: &str) -> Result<()> {
    let name = name.to_lowercase();
    if name == PERFORMANCE_SCHEMA || name == tarn_engine::query::report::SYS_SCHEMA {
        return Err(CatalogError::invalid(format!("{name} is reserved")).into());
    }
    Ok(())
}

/// Refuses a definition whose locations the config does not allow or whose patterns do not
/// compile, before it is stored.
fn validate(s: &Sessions, def: &TableDef) -> Result<()> {
    check_not_reserved(&def.key.database)?;
    for spec in &def.files {
        // A region becomes part of a host name: only configured ones.
        if let Some(region) = &spec.region
            && !s.object_stores.knows_region(region)
        {
            return Err(CatalogError::invalid(format!(
                "region '{region}' of {} is not configured: add [regions.{region}] to the config",
                tarn_connectors::location::redact(&spec.uri)
            ))
            .into());
        }
        s.object_stores.check(&spec.uri)?;
        if let Some(p) = &spec.pattern {
            regex::Regex::new(p).map_err(|e| tarn_connectors::ConnectorError::InvalidPattern {
                pattern: p.clone(),
                message: e.to_string(),
            })?;
        }
    }
    if let Some(cols) = &def.columns {
        schema_of(cols)?;
    }
    Ok(())
}

fn describe(s: &Sessions, key: &TableKey) -> Result<QueryStream> {
    let key = key.clone();
    let def = s.catalog.get(&key)?;
    let cols = match (
        def.columns,
        s.engine.store().get(&key).and_then(|e| e.current()),
    ) {
        (Some(cols), _) => cols,
        (None, Some(v)) => columns_of(&v.schema),
        (None, None) => {
            return Err(ServiceError::BadRequest(format!(
                "the columns of '{key}' are inferred from its files when it loads: run ALTER TABLE {key} SECONDARY_LOAD first"
            )));
        }
    };
    let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
    let types: Vec<String> = cols.iter().map(|c| c.sql_type.clone()).collect();
    let nulls: Vec<&str> = cols
        .iter()
        .map(|c| if c.nullable { "YES" } else { "NO" })
        .collect();
    let n = names.len();
    single(vec![
        ("Field", strings(names)),
        ("Type", strings(types)),
        ("Null", strings(nulls)),
        ("Key", strings(vec![""; n])),
        (
            "Default",
            Arc::new(StringArray::from(vec![None::<&str>; n])),
        ),
        ("Extra", strings(vec![""; n])),
    ])
}
