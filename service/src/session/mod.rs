//! The session API: the one way any front door runs SQL.
//!
//! A [`Session`] carries who is asking, the default database and the session's variables, and
//! runs one statement at a time: Tarn's own statements ([`statements`]: DDL, loads, SHOW,
//! DESCRIBE, `CALL sys.HEATWAVE_LOAD`) against the catalog and the loader, and queries through the
//! engine, refreshing stale tables first (refresh on read) and reusing kept plans. Every answer is
//! a stream of Arrow batches that the door encodes as it arrives.
//!
//! Access rules and limits belong here too, so that no door has its own copy of them.

mod limits;
mod report;
mod statements;
pub mod text;

pub use limits::Limiter;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use tarn_catalog::{CatalogStore, Statement, TableKey, parse_statement};
use tarn_connectors::StoreRegistry;
use tarn_engine::query::PERFORMANCE_SCHEMA;
use tarn_engine::query::system::VisibleDatabases;
use tarn_engine::{Engine, QueryContext, QueryStream};

use crate::access::{Caller, Role};
use crate::audit::Audit;
use crate::error::{Result, ServiceError};
use crate::load::Loader;

/// A table as a catalog listing shows it (Flight SQL's GetTables, for one).
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub database: String,
    pub name: String,
    /// `TABLE`, or `SYSTEM TABLE` for the status views.
    pub kind: &'static str,
    /// Its columns: the loaded version's, else the declared ones, else none (a table whose
    /// columns are inferred when it loads has none before).
    pub schema: arrow::datatypes::SchemaRef,
}

/// The kinds of table [`Session::tables`] lists.
pub const TABLE_KINDS: [&str; 2] = ["SYSTEM TABLE", "TABLE"];

/// How long a session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// One statement (an HTTP request): nothing it sets outlives it, so `USE` is refused.
    Statement,
    /// A connection of a protocol with sessions: `USE` and variables last until it closes.
    Connection,
}

/// What every session works with.
pub struct Sessions {
    catalog: Arc<CatalogStore>,
    engine: Arc<Engine>,
    loader: Arc<Loader>,
    object_stores: Arc<StoreRegistry>,
    limiter: Limiter,
    audit: Arc<Audit>,
}

impl Sessions {
    pub fn new(
        catalog: Arc<CatalogStore>,
        engine: Arc<Engine>,
        loader: Arc<Loader>,
        object_stores: Arc<StoreRegistry>,
        limits: crate::config::Limits,
        audit: Arc<Audit>,
    ) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            engine,
            loader,
            object_stores,
            limiter: Limiter::new(limits),
            audit,
        })
    }

    /// A session for `caller`.
    pub fn open(self: &Arc<Self>, caller: Caller, lifetime: Lifetime) -> Session {
        Session {
            shared: self.clone(),
            caller,
            lifetime,
            database: None,
            variables: Arc::new(HashMap::new()),
            report: None,
        }
    }
}

/// One client's session (see the module).
pub struct Session {
    shared: Arc<Sessions>,
    pub caller: Caller,
    lifetime: Lifetime,
    database: Option<String>,
    variables: Arc<HashMap<String, ScalarValue>>,
    /// `sys.heatwave_autopilot_report`: what the last `CALL sys.HEATWAVE_LOAD` reported.
    report: Option<tarn_engine::query::report::AutopilotReport>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .field("database", &self.database)
            .finish()
    }
}

impl Session {
    /// The default database (`USE`), if any.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Runs one statement and answers its batches as they come. The caller's role and
    /// databases are checked first: nothing is done for a statement they do not allow.
    pub async fn execute(&mut self, sql: &str) -> Result<QueryStream> {
        let with_values;
        let sql = if self.is_call(sql) {
            with_values = self.fill_in_variables(sql);
            with_values.as_str()
        } else {
            sql
        };
        let stmt = parse_statement(sql)?;
        match stmt {
            Statement::Query(q) => self.query(&q).await,
            Statement::Use { database } => self.use_database(database),
            Statement::SetVariables { assignments } => self.set_variables(assignments).await,
            Statement::Export(spec) => {
                let target = tarn_connectors::location::redact(&spec.uri);
                let done = self.export(spec).await;
                self.shared
                    .audit
                    .record(&self.caller, "export", &target, &done);
                done
            }
            other => {
                let audited = statements::audited(&other, self.database.as_deref());
                let heatwave_load = match &other {
                    Statement::HeatwaveLoad { mode, output, .. } => Some((*mode, *output)),
                    _ => None,
                };
                let done =
                    statements::run(&self.shared, &self.caller, self.database.as_deref(), other)
                        .await;
                if let Some((action, target)) = audited {
                    self.shared
                        .audit
                        .record(&self.caller, action, &target, &done);
                }
                match (heatwave_load, done) {
                    // The call's report stays with the session until the next call.
                    (Some((mode, output)), Ok(answer)) => {
                        let (report, answer) = report::report(mode, output, answer).await?;
                        self.report = Some(report);
                        Ok(answer)
                    }
                    (_, done) => done,
                }
            }
        }
    }

    /// The databases the caller may see, and the status views' `performance_schema`, sorted.
    pub fn databases(&self) -> Result<Vec<String>> {
        self.caller.require(Role::Reader, "listing databases")?;
        let mut dbs = self.shared.catalog.databases();
        dbs.retain(|db| self.caller.sees(db));
        dbs.push(PERFORMANCE_SCHEMA.to_string());
        dbs.sort();
        Ok(dbs)
    }

    /// Every table of the databases the caller may see, with its columns (see [`TableEntry`]),
    /// sorted by database and name.
    pub async fn tables(&self) -> Result<Vec<TableEntry>> {
        use datafusion::catalog::SchemaProvider;
        let mut out = Vec::new();
        for database in self.databases()? {
            if database == PERFORMANCE_SCHEMA {
                let views = tarn_engine::query::system::SystemSchema {
                    catalog: self.shared.catalog.clone(),
                    memory: self.shared.engine.store().clone(),
                };
                for name in tarn_engine::query::system::TABLES {
                    if let Some(view) = views.table(name).await? {
                        out.push(TableEntry {
                            database: database.clone(),
                            name: name.to_string(),
                            kind: TABLE_KINDS[0],
                            schema: view.schema(),
                        });
                    }
                }
                continue;
            }
            for name in self.shared.catalog.tables(&database)? {
                let key = TableKey::new(&database, &name);
                let loaded = self
                    .shared
                    .engine
                    .store()
                    .get(&key)
                    .and_then(|e| e.current())
                    .map(|v| v.schema.clone());
                let schema = match loaded {
                    Some(s) => s,
                    None => match self.shared.catalog.get(&key)?.columns {
                        Some(columns) => tarn_catalog::types::schema_of(&columns)?,
                        None => Arc::new(arrow::datatypes::Schema::empty()),
                    },
                };
                out.push(TableEntry {
                    database: database.clone(),
                    name,
                    kind: TABLE_KINDS[1],
                    schema,
                });
            }
        }
        Ok(out)
    }

    fn is_call(&self, sql: &str) -> bool {
        sql.trim_start()
            .get(..5)
            .is_some_and(|w| w.eq_ignore_ascii_case("call "))
    }

    /// `CALL sys.HEATWAVE_LOAD(CAST(@input_list AS JSON), @options)`: a procedure's arguments are
    /// not expressions the engine evaluates, so the session's variables are put in as literals.
    fn fill_in_variables(&self, sql: &str) -> String {
        text::replace_outside_quotes(sql, |rest| {
            let name: String = rest
                .strip_prefix('@')
                .filter(|r| !r.starts_with('@'))?
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                .collect();
            if name.is_empty() {
                return None;
            }
            // A variable never set is NULL, as in MySQL.
            let literal = self
                .variables
                .get(&name.to_lowercase())
                .map_or_else(|| "NULL".to_string(), text::literal);
            Some((name.len() + 1, literal))
        })
    }

    /// A query: the tables it reads must be the caller's to read; stale ones are refreshed
    /// first, then it runs from its kept plan or is planned against the versions current after
    /// the refreshes.
    async fn query(&mut self, sql: &str) -> Result<QueryStream> {
        self.caller.require(Role::Reader, "a query")?;
        let turn = self.shared.limiter.turn().await?;
        let answer = turn.within(self.start(sql)).await?;
        Ok(turn.limit(answer))
    }

    /// `SELECT ... INTO OUTFILE`: the query runs as any query does (the caller must read its
    /// tables; limits apply), and its rows are written where the location (one
    /// `allowed_locations` permits) says. Writing is a loader's.
    async fn export(&mut self, spec: tarn_catalog::export::ExportSpec) -> Result<QueryStream> {
        self.caller
            .require(Role::Loader, "exporting query results")?;
        let loc = self.shared.object_stores.check(&spec.uri)?;
        let store = self.shared.object_stores.store_for(&loc, None).await?;
        let answer = self.query(&spec.query).await?;
        let exported = crate::export::export(answer, store, &loc, &spec).await?;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("rows_written", arrow::datatypes::DataType::UInt64, false),
            arrow::datatypes::Field::new("files", arrow::datatypes::DataType::UInt64, false),
            arrow::datatypes::Field::new("bytes", arrow::datatypes::DataType::UInt64, false),
            arrow::datatypes::Field::new("location", arrow::datatypes::DataType::Utf8, false),
        ]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::UInt64Array::from(vec![exported.rows])),
                Arc::new(arrow::array::UInt64Array::from(vec![
                    exported.files.len() as u64
                ])),
                Arc::new(arrow::array::UInt64Array::from(vec![exported.bytes])),
                Arc::new(arrow::array::StringArray::from(vec![exported.location])),
            ],
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(QueryStream::from_batches(schema, vec![batch]))
    }

    /// Plans `sql` (after the refreshes on read) and starts it.
    async fn start(&self, sql: &str) -> Result<QueryStream> {
        let engine = &self.shared.engine;
        let context = QueryContext {
            database: self.database.clone(),
            variables: self.variables.clone(),
            visible: VisibleDatabases(self.caller.databases.clone()),
            memory: self.shared.limiter.limits().query_memory,
            report: self.report.clone(),
        };
        let mut prepared = engine.prepare(sql, &context)?;
        for table in prepared.tables() {
            // The status views show every caller only what it may see; the report is the
            // session's own.
            if table.database != PERFORMANCE_SCHEMA
                && table.database != tarn_engine::query::report::SYS_SCHEMA
            {
                self.caller.require_database(&table.database)?;
            }
        }
        // A refresh that publishes empties the kept plans: the query is looked at again.
        if self.refresh_stale(prepared.tables()).await && prepared.is_kept() {
            prepared = engine.prepare(sql, &context)?;
        }
        engine
            .run(prepared)
            .await
            .map_err(|e| self.no_database(e.into()))
    }

    /// An unqualified table name not found while no default database is set (and none is named
    /// `default`) is MySQL's "no database selected", which says what to do.
    fn no_database(&self, e: ServiceError) -> ServiceError {
        let unqualified = format!(
            "'{}.{}.",
            tarn_engine::query::CATALOG,
            tarn_engine::query::DEFAULT_SCHEMA
        );
        if self.database.is_none()
            && e.code() == crate::error::ErrorCode::QueryError
            && e.to_string().contains(&unqualified)
            && !self
                .shared
                .catalog
                .database_exists(tarn_engine::query::DEFAULT_SCHEMA)
        {
            return tarn_catalog::CatalogError::NoDatabaseSelected.into();
        }
        e
    }

    fn use_database(&mut self, database: String) -> Result<QueryStream> {
        if self.lifetime == Lifetime::Statement {
            return Err(ServiceError::BadRequest(
                "USE is not supported: each request stands alone, so name tables as database.table"
                    .into(),
            ));
        }
        let database = database.to_lowercase();
        if database != PERFORMANCE_SCHEMA {
            self.caller.require_database(&database)?;
        }
        if database != PERFORMANCE_SCHEMA && !self.shared.catalog.database_exists(&database) {
            return Err(tarn_catalog::CatalogError::DatabaseNotFound { database }.into());
        }
        self.database = Some(database);
        Ok(statements::empty())
    }

    /// `SET @name = expr, ...`: each expression is evaluated in turn (seeing the variables set
    /// before it) and kept for the rest of the session.
    async fn set_variables(&mut self, assignments: Vec<(String, String)>) -> Result<QueryStream> {
        self.caller.require(Role::Reader, "SET")?;
        if self.lifetime == Lifetime::Statement {
            return Err(ServiceError::BadRequest(
                "SET @variable is not supported here: each request stands alone, so write the value into the statement"
                    .into(),
            ));
        }
        for (name, expr) in assignments {
            let answer = self
                .query(&format!("SELECT {expr}"))
                .await?
                .collect()
                .await?;
            let value = answer
                .iter()
                .find(|b| b.num_rows() > 0)
                .map(|b| ScalarValue::try_from_array(b.column(0), 0))
                .transpose()?
                .ok_or_else(|| {
                    ServiceError::BadRequest(format!("SET @{name}: {expr} has no value"))
                })?;
            Arc::make_mut(&mut self.variables).insert(name, value);
        }
        Ok(statements::empty())
    }

    /// Refresh on read: every one of `tables` (those a query reads) whose `MAX_STALENESS` has
    /// passed since its last load or refresh attempt is refreshed first; true when one of them
    /// was. A refresh that fails leaves the query to the loaded version (and the table marked
    /// stale), so reads never fail because a store is down.
    async fn refresh_stale(&self, tables: &[TableKey]) -> bool {
        let mut refreshed = false;
        for key in tables {
            let Ok(def) = self.shared.catalog.get(key) else {
                continue;
            };
            let Some(max) = def.options.max_staleness else {
                continue;
            };
            let Some(entry) = self.shared.engine.store().get(key) else {
                continue;
            };
            if entry.current().is_none() {
                continue;
            }
            let checked = entry.status().load_end;
            let stale =
                checked.is_none_or(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default() > max);
            if stale {
                match self.shared.loader.refresh(key).await {
                    Ok(_) => refreshed = true,
                    Err(e) => {
                        tracing::warn!(table = %key, error = %e, "refresh on read failed; answering from the loaded version")
                    }
                }
            }
        }
        refreshed
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use tarn_connectors::StoreConfig;
    use tarn_engine::MemoryStore;

    use super::*;
    use crate::regions::{Regions, RegionsConfig};

    /// The components a session uses, wired in-process over a temporary directory.
    fn sessions(dir: &std::path::Path) -> Arc<Sessions> {
        let catalog = Arc::new(CatalogStore::open(&dir.join("data")).unwrap());
        let memory = Arc::new(MemoryStore::new(None, 2));
        let engine = Arc::new(Engine::new(
            catalog.clone(),
            memory.clone(),
            16,
            "test-host".into(),
            tokio::runtime::Handle::current(),
        ));
        let object_stores = Arc::new(
            StoreRegistry::new(StoreConfig {
                allowed_locations: vec![format!("file://{}/", dir.display())],
                ..Default::default()
            })
            .unwrap(),
        );
        let regions = Arc::new(Regions::new(RegionsConfig::default(), []));
        let loader = Arc::new(Loader::new(
            catalog.clone(),
            memory,
            object_stores.clone(),
            regions,
        ));
        Sessions::new(
            catalog,
            engine,
            loader,
            object_stores,
            crate::config::Limits::default(),
            Arc::new(Audit::open(None).unwrap()),
        )
    }

    async fn rows(session: &mut Session, sql: &str) -> Vec<String> {
        let batches = session.execute(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            out.extend(
                col.as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap_or("NULL").to_string()),
            );
        }
        out
    }

    #[tokio::test]
    async fn a_connection_keeps_its_database_and_variables_and_a_request_refuses_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.csv"), "1,one\n2,two\n3,three\n").unwrap();
        let sessions = sessions(dir.path());
        let mut s = sessions.open(Caller::service(), Lifetime::Connection);
        rows(&mut s, "CREATE DATABASE d").await;
        rows(&mut s, "USE d").await;
        assert_eq!(s.database(), Some("d"));
        // Unqualified names resolve in the default database, for Tarn's statements and queries.
        let uri = format!("file://{}/t.csv", dir.path().display());
        rows(
            &mut s,
            &format!(
                "CREATE EXTERNAL TABLE t (a INT, b TEXT) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = (URI '{uri}')"
            ),
        )
        .await;
        assert_eq!(rows(&mut s, "SHOW TABLES").await, vec!["t"]);
        rows(&mut s, "ALTER TABLE t SECONDARY_LOAD").await;
        rows(&mut s, "SET @x = 1 + 1, @y = @x + 1").await;
        assert_eq!(
            rows(&mut s, "SELECT b FROM t WHERE a = @y").await,
            vec!["three"]
        );
        assert_eq!(rows(&mut s, "SELECT @nothing").await, vec!["NULL"]);
        // HeatWave's way: the input list in a variable, options unset (NULL).
        rows(
            &mut s,
            r#"SET @input_list = '[{"db_name": "d", "tables": [{"table_name": "t"}]}]'"#,
        )
        .await;
        let done = rows(
            &mut s,
            "CALL sys.HEATWAVE_LOAD(CAST(@input_list AS JSON), @options)",
        )
        .await;
        assert_eq!(done, vec!["d.t"], "one row, for the table named");
        assert_eq!(rows(&mut s, "SELECT count(*) FROM d.t").await, vec!["3"]);
        let e = s.execute("USE nowhere").await.unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
        assert_eq!(s.database(), Some("d"), "a failed USE keeps the database");

        // One statement per session: nothing may be set for later.
        let mut r = sessions.open(Caller::service(), Lifetime::Statement);
        let e = r.execute("USE d").await.unwrap_err().to_string();
        assert!(e.starts_with("USE is not supported"), "{e}");
        let e = r.execute("SET @x = 1").await.unwrap_err().to_string();
        assert!(e.starts_with("SET @variable is not supported here"), "{e}");
        let e = r.execute("SELECT * FROM t").await.unwrap_err();
        assert_eq!(e.code().as_str(), "no_database_selected", "{e}");
        assert_eq!(
            rows(&mut r, "SELECT b FROM d.t WHERE a = 2").await,
            vec!["two"]
        );
    }
}
