//! The SQL session: Tarn's own statements (DDL, loads, SHOW, DESCRIBE) run against the catalog and
//! the memory store; everything else is a query planned and run by DataFusion over loaded versions.

mod catalog;
mod decimal;
mod exprs;
mod like;
mod plans;
mod provider;
mod scan;

pub(crate) use scan::column_statistics;
pub mod system;

pub use plans::{DEFAULT_ENTRIES as PLAN_CACHE_ENTRIES, PlanCache};

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SessionConfig;
use datafusion::logical_expr::var_provider::{VarProvider, VarType};
use datafusion::prelude::SessionContext;
use tarn_catalog::types::{arrow_to_sql_name, schema_of};
use tarn_catalog::{CatalogError, CatalogStore, Statement, TableDef, TableRef, parse_statement};

use crate::error::{Result, ServiceError};
use crate::load;
use crate::state::AppState;
use crate::store::MemoryStore;

pub const CATALOG: &str = "tarn";

/// A statement's answer: a schema and its rows.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryOutput {
    fn empty() -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: vec![],
        }
    }

    fn single(fields: Vec<(&str, ArrayRef)>) -> Result<Self> {
        let schema = Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), fields.into_iter().map(|(_, a)| a).collect())
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(Self {
            schema,
            batches: vec![batch],
        })
    }
}

/// `@@hostname` and friends.
#[derive(Debug)]
struct SystemVariables {
    hostname: String,
}

impl VarProvider for SystemVariables {
    fn get_value(&self, var_names: Vec<String>) -> datafusion::error::Result<ScalarValue> {
        let name = var_names
            .first()
            .map(|s| s.trim_start_matches('@').to_lowercase())
            .unwrap_or_default();
        match name.as_str() {
            "hostname" => Ok(ScalarValue::Utf8(Some(self.hostname.clone()))),
            "version" => Ok(ScalarValue::Utf8(Some(format!(
                "8.4.0-tarn-{}",
                env!("CARGO_PKG_VERSION")
            )))),
            "version_comment" => Ok(ScalarValue::Utf8(Some(
                "Tarn lakehouse query service".into(),
            ))),
            other => datafusion::common::plan_err!("unknown system variable @@{other}"),
        }
    }

    fn get_type(&self, _var_names: &[String]) -> Option<DataType> {
        Some(DataType::Utf8)
    }
}

/// The DataFusion context every query runs in.
pub fn new_context(
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
    hostname: String,
) -> SessionContext {
    // The partitions follow the shards.
    let config = engine_config(memory.shards)
        .with_default_catalog_and_schema(CATALOG, "default")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false);
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(exprs::FastExpressions))
        .with_physical_optimizer_rule(Arc::new(scan::WaitForJoinFilters))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_catalog(CATALOG, Arc::new(catalog::TarnCatalog { catalog, memory }));
    ctx.register_variable(VarType::System, Arc::new(SystemVariables { hostname }));
    ctx
}

/// DataFusion settings Tarn chooses differently, each kept unless a `DATAFUSION_*` variable
/// names it.
///
/// Joins whose build side has up to a million rows (or 128 MiB) build one shared hash table
/// instead of hash-partitioning both sides: on few cores, repartitioning the probe side (often
/// lineitem-sized) costs more than building the small side once, and the join's run-time filter
/// then reaches the scan as a plain key set instead of one set per partition. Measured with
/// `./bench/tpch.sh`: TPC-H SF1 geometric mean 1.57 -> 1.32 of DuckDB's time, Q7 96 -> 59 ms.
///
/// Integer join keys get a direct-indexed table (DataFusion's perfect hash join) when their range
/// is under a million values, or when at least 9 in 1,000 values of the range are keys: the table
/// (4 bytes a value of the range) then costs at most about 450 bytes per build row, reserved from
/// the query's memory pool, and both the join's probe and the run-time filter it hands the scan
/// become an array lookup. Measured: geometric mean 1.06 -> 0.87, Q17 40 -> 18 ms, Q5 61 -> 33 ms
/// at 3 in 100; then 9 in 1,000, which takes in Q4's 57 K orders spread over 6 M order keys:
/// Q4 48 -> 20 ms, Q10 54 -> 43 ms, Q21 82 -> 67 ms (the same server state, one run each).
///
/// Partial aggregation is given up once it keeps more than 3 in 10 of its input rows as groups
/// (DataFusion gives up at 8 in 10): a grouping by a near-unique key (TPC-H Q18's orders) then
/// goes straight to the final, partitioned aggregation instead of being hashed twice. Measured:
/// Q18 206 -> 141 ms, no other TPC-H query changed beyond noise.
const TARN_DEFAULTS: [(&str, &str); 5] = [
    (
        "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
        "0.3",
    ),
    (
        "datafusion.execution.perfect_hash_join_small_build_threshold",
        "1048576",
    ),
    (
        "datafusion.execution.perfect_hash_join_min_key_density",
        "0.009",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "1000000",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "134217728",
    ),
];

/// The engine's settings, for the server and for `tarn bench parquet` alike: DataFusion's own
/// `DATAFUSION_*` variables (for example DATAFUSION_EXECUTION_BATCH_SIZE), the MySQL dialect,
/// [`TARN_DEFAULTS`], and `partitions` scan partitions.
pub fn engine_config(partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_target_partitions(partitions);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::MySQL;
    tarn_defaults(&mut config);
    config
}

/// Applies [`TARN_DEFAULTS`] to `config`, except those a `DATAFUSION_*` variable sets.
fn tarn_defaults(config: &mut SessionConfig) {
    for (key, value) in TARN_DEFAULTS {
        let env = key.to_uppercase().replace('.', "_");
        if std::env::var_os(&env).is_none() {
            // The keys are DataFusion's own (checked by a test).
            let _ = config.options_mut().set(key, value);
        }
    }
}

fn strings<I: IntoIterator<Item = S>, S: AsRef<str>>(v: I) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

/// Runs one statement.
pub async fn execute(state: &AppState, sql: &str) -> Result<QueryOutput> {
    let stmt = parse_statement(sql)?;
    match stmt {
        Statement::Query(q) => {
            let started = std::time::Instant::now();
            let plans = &state.memory.plans;
            // A kept plan names its tables: any stale one is refreshed first, and a refresh that
            // publishes empties the cache, so the plan is made again below.
            let mut kept = plans.get(&q, &state.memory);
            if let Some((_, tables)) = &kept
                && refresh_stale_tables(state, tables).await
            {
                kept = plans.get(&q, &state.memory);
            }
            let session = state.ctx.state();
            let optimized = match kept {
                Some((plan, _)) => plan,
                None => {
                    // Parsed once: the statement names the tables to refresh first, then is
                    // planned.
                    let stmt = session.sql_to_statement(&q, &datafusion::config::Dialect::MySQL)?;
                    refresh_stale_tables(state, &referenced_tables(&session, &stmt)).await;
                    // Planned after the refreshes, so the plan pins the versions they published.
                    let session = state.ctx.state();
                    let generation = plans.generation();
                    let plan = session.statement_to_plan(stmt).await?;
                    let pins = plans.enabled().then(|| plans::reusable(&plan)).flatten();
                    let Some(pins) = pins else {
                        let df = state.ctx.execute_logical_plan(plan).await?;
                        let schema = Arc::new(df.schema().as_arrow().clone());
                        let batches = df.collect().await?;
                        return Ok(QueryOutput { schema, batches });
                    };
                    let optimized = session.optimize(&plan)?;
                    plans.keep(&q, generation, pins, &optimized);
                    optimized
                }
            };
            // The physical plan, with its join tables and run-time filters, is always made anew.
            let schema = Arc::new(optimized.schema().as_arrow().clone());
            let physical = session
                .query_planner()
                .create_physical_plan(&optimized, &session)
                .await?;
            let planned = started.elapsed();
            let batches = datafusion::physical_plan::collect(physical, session.task_ctx()).await?;
            tracing::debug!(
                planning_us = planned.as_micros() as u64,
                total_us = started.elapsed().as_micros() as u64,
                "query answered"
            );
            Ok(QueryOutput { schema, batches })
        }
        Statement::CreateDatabase {
            name,
            if_not_exists,
        } => {
            check_not_reserved(&name)?;
            state.catalog.create_database(&name, if_not_exists)?;
            Ok(QueryOutput::empty())
        }
        Statement::DropDatabase { name, if_exists } => {
            check_not_reserved(&name)?;
            for key in state.catalog.drop_database(&name, if_exists)? {
                state.memory.remove(&key);
                state.snapshots.forget(&key).await;
            }
            Ok(QueryOutput::empty())
        }
        Statement::CreateTable {
            mut table,
            if_not_exists,
        } => {
            if table.key.database.is_empty() {
                return Err(CatalogError::NoDatabaseSelected.into());
            }
            validate(state, &table)?;
            table.key = tarn_catalog::TableKey::new(&table.key.database, &table.key.table);
            state.catalog.create_table(table, if_not_exists)?;
            Ok(QueryOutput::empty())
        }
        Statement::DropTable { table, if_exists } => {
            let key = table.resolve(None)?;
            if state.catalog.drop_table(&key, if_exists)? {
                state.memory.remove(&key);
                state.snapshots.forget(&key).await;
            }
            Ok(QueryOutput::empty())
        }
        Statement::ShowDatabases => {
            let mut dbs = state.catalog.databases();
            dbs.push(catalog::PERFORMANCE_SCHEMA.to_string());
            dbs.sort();
            QueryOutput::single(vec![("Database", strings(dbs))])
        }
        Statement::ShowTables { database } => {
            let db = database.ok_or(CatalogError::NoDatabaseSelected)?;
            let tables = if db == catalog::PERFORMANCE_SCHEMA {
                system::TABLES.iter().map(|s| s.to_string()).collect()
            } else {
                state.catalog.tables(&db)?
            };
            let name = format!("Tables_in_{db}");
            QueryOutput::single(vec![(name.as_str(), strings(tables))])
        }
        Statement::Describe { table } => describe(state, &table),
        Statement::SecondaryLoad { table } => {
            let key = table.resolve(None)?;
            let r = load::load_table(state, &key).await?;
            QueryOutput::single(vec![
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
        Statement::SecondaryUnload { table } => {
            load::unload_table(state, &table.resolve(None)?).await?;
            Ok(QueryOutput::empty())
        }
        Statement::HeatwaveLoad { input, refresh } => heatwave_load(state, &input, refresh).await,
        Statement::Use { .. } => Err(ServiceError::BadRequest(
            "USE is not supported: each request stands alone, so name tables as database.table"
                .into(),
        )),
    }
}

/// `CALL sys.HEATWAVE_LOAD`: loads the listed tables that are not loaded, or with
/// `refresh_external_tables` refreshes the listed tables that are. One row per table with what
/// was done; a table that fails does not stop the others.
async fn heatwave_load(
    state: &AppState,
    input: &[(String, Vec<String>)],
    refresh: bool,
) -> Result<QueryOutput> {
    let mut keys = Vec::new();
    for (db, tables) in input {
        let names = if tables.is_empty() {
            state.catalog.tables(db)?
        } else {
            tables.clone()
        };
        for t in names {
            let key = tarn_catalog::TableKey::new(db, &t);
            state.catalog.get(&key)?;
            keys.push(key);
        }
    }
    let (mut names, mut actions, mut versions, mut rows, mut read, mut errors) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for key in keys {
        let loaded = state.memory.get(&key).and_then(|e| e.current()).is_some();
        let result = match (refresh, loaded) {
            (true, true) => Some(load::refresh_table(state, &key).await),
            (false, false) => Some(load::load_table(state, &key).await),
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
    QueryOutput::single(vec![
        ("table", strings(names)),
        ("action", strings(actions)),
        ("version", Arc::new(UInt64Array::from(versions)) as ArrayRef),
        ("rows", Arc::new(UInt64Array::from(rows))),
        ("bytes_read", Arc::new(UInt64Array::from(read))),
        ("error", Arc::new(StringArray::from(errors))),
    ])
}

/// The tables `stmt` names; a name without a database is in the default one.
fn referenced_tables(
    session: &datafusion::execution::SessionState,
    stmt: &datafusion::sql::parser::Statement,
) -> Vec<tarn_catalog::TableKey> {
    let Ok(refs) = session.resolve_table_references(stmt) else {
        return Vec::new();
    };
    let names = &session.config().options().catalog;
    refs.into_iter()
        .map(|r| {
            let r = r.resolve(&names.default_catalog, &names.default_schema);
            tarn_catalog::TableKey::new(&r.schema, &r.table)
        })
        .collect()
}

/// Refresh on read: every one of `tables` (those a query reads) whose `MAX_STALENESS` has passed
/// since its last load or refresh attempt is refreshed first; true when one of them was. A refresh
/// that fails leaves the query to the loaded version (and the table marked stale), so reads never
/// fail because a store is down.
async fn refresh_stale_tables(state: &AppState, tables: &[tarn_catalog::TableKey]) -> bool {
    let mut refreshed = false;
    for key in tables {
        let Ok(def) = state.catalog.get(key) else {
            continue;
        };
        let Some(max) = def.options.max_staleness else {
            continue;
        };
        let Some(entry) = state.memory.get(key) else {
            continue;
        };
        if entry.current().is_none() {
            continue;
        }
        let checked = entry.status().load_end;
        let stale =
            checked.is_none_or(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default() > max);
        if stale {
            match load::refresh_table(state, key).await {
                Ok(_) => refreshed = true,
                Err(e) => {
                    tracing::warn!(table = %key, error = %e, "refresh on read failed; answering from the loaded version")
                }
            }
        }
    }
    refreshed
}

fn check_not_reserved(name: &str) -> Result<()> {
    if name == catalog::PERFORMANCE_SCHEMA {
        return Err(CatalogError::invalid("performance_schema is reserved").into());
    }
    Ok(())
}

/// Refuses a definition whose locations the config does not allow or whose patterns do not
/// compile, before it is stored.
fn validate(state: &AppState, def: &TableDef) -> Result<()> {
    check_not_reserved(&def.key.database)?;
    for spec in &def.files {
        state.stores.check(&spec.uri)?;
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

fn describe(state: &AppState, table: &TableRef) -> Result<QueryOutput> {
    let key = table.resolve(None)?;
    let def = state.catalog.get(&key)?;
    let (names, types, nulls): (Vec<String>, Vec<String>, Vec<&str>) = match (
        &def.columns,
        state.memory.get(&key).and_then(|e| e.current()),
    ) {
        (Some(cols), _) => (
            cols.iter().map(|c| c.name.clone()).collect(),
            cols.iter().map(|c| c.sql_type.clone()).collect(),
            cols.iter()
                .map(|c| if c.nullable { "YES" } else { "NO" })
                .collect(),
        ),
        (None, Some(v)) => (
            v.schema.fields().iter().map(|f| f.name().clone()).collect(),
            v.schema
                .fields()
                .iter()
                .map(|f| arrow_to_sql_name(f.data_type()))
                .collect(),
            v.schema
                .fields()
                .iter()
                .map(|f| if f.is_nullable() { "YES" } else { "NO" })
                .collect(),
        ),
        (None, None) => {
            return Err(ServiceError::BadRequest(format!(
                "the columns of '{key}' are inferred from its files when it loads: run ALTER TABLE {key} SECONDARY_LOAD first"
            )));
        }
    };
    let n = names.len();
    QueryOutput::single(vec![
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tarn_default_is_a_datafusion_setting_and_takes_effect() {
        let mut config = SessionConfig::new();
        for (key, value) in TARN_DEFAULTS {
            let mut options = datafusion::config::ConfigOptions::default();
            assert!(options.set(key, value).is_ok(), "{key} = {value}");
        }
        tarn_defaults(&mut config);
        let options = config.options();
        assert_eq!(
            options.optimizer.hash_join_single_partition_threshold_rows,
            1_000_000
        );
        assert_eq!(options.execution.perfect_hash_join_min_key_density, 0.009);
    }
}
