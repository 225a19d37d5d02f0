//! The query side: queries planned and run by DataFusion over the loaded versions, with Tarn's
//! catalog ([`catalog`]), loaded tables and their scan ([`provider`], [`scan`]), kept plans
//! ([`plans`]), the status views ([`system`]) and the faster forms of some expressions
//! ([`exprs`], [`decimal`], [`like`]).
//!
//! [`Engine::prepare`] looks at a query (its kept plan, or its parsed statement) and names the
//! tables it reads, so the caller can refresh stale ones first; [`Engine::run`] then plans what
//! is not kept and answers a stream of batches.

mod catalog;
pub mod cluster;
mod conjunction;
mod context;
mod decimal;
mod exprs;
mod json;
mod like;
mod memory;
mod plans;
mod provider;
pub mod report;
mod scan;
mod surface;
pub mod system;
mod yields;

pub use catalog::PERFORMANCE_SCHEMA;
pub use context::{CATALOG, DEFAULT_SCHEMA, engine_config, server_version, system_variables};
pub use plans::{DEFAULT_ENTRIES as PLAN_CACHE_ENTRIES, PlanCache};
pub use provider::LoadedTable;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::var_provider::{VarProvider, VarType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use tarn_catalog::{CatalogStore, TableKey};

use crate::error::Result;
use crate::store::MemoryStore;

/// A statement's answer as it is produced: its schema, then its batches.
pub struct QueryStream {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// Whether the rows come in an order the statement asked for (`ORDER BY`): a door that
    /// hands an answer out in parts in parallel must then keep it whole.
    pub ordered: bool,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .finish()
    }
}

impl QueryStream {
    /// An answer already in hand.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        Self {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), stream)),
            schema,
            ordered: false,
        }
    }

    /// Every batch, once the statement has finished.
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some(b) = self.stream.next().await {
            out.push(b?);
        }
        Ok(out)
    }
}

/// What a query runs with besides its text: the session's default database (unqualified table
/// names resolve in it), its user variables (`@name`), and the databases whose rows the status
/// views show it.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    pub database: Option<String>,
    pub variables: Arc<HashMap<String, ScalarValue>>,
    pub visible: system::VisibleDatabases,
    /// Memory the query's operators may hold (`limits.query_memory`); none: only the store's
    /// `memory_limit` bounds it.
    pub memory: Option<u64>,
    /// The session's `sys.heatwave_autopilot_report`, if it has one.
    pub report: Option<report::AutopilotReport>,
}

/// A query looked at, not yet planned: the plan kept for its text, or its parsed statement.
#[derive(Debug)]
pub struct Prepared {
    /// The kept-plan key: the default database and the text.
    key: String,
    kind: PreparedKind,
    tables: Vec<TableKey>,
    context: QueryContext,
}

#[derive(Debug)]
enum PreparedKind {
    Kept(LogicalPlan),
    Parsed(Box<datafusion::sql::parser::Statement>),
}

impl Prepared {
    /// The tables the query reads.
    pub fn tables(&self) -> &[TableKey] {
        &self.tables
    }

    /// Whether it will run from a kept plan.
    pub fn is_kept(&self) -> bool {
        matches!(self.kind, PreparedKind::Kept(_))
    }
}

/// The store, the catalog as DataFusion sees it, the kept plans, and the runtime queries run on.
pub struct Engine {
    store: Arc<MemoryStore>,
    plans: Arc<PlanCache>,
    ctx: SessionContext,
    runtime: tokio::runtime::Handle,
}

impl Engine {
    /// The engine over `store`, keeping up to `plan_cache` plans and running queries on
    /// `runtime`; `hostname` is what `SELECT @@hostname` answers.
    pub fn new(
        catalog: Arc<CatalogStore>,
        store: Arc<MemoryStore>,
        plan_cache: usize,
        hostname: String,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self::with_cluster(catalog, store, plan_cache, hostname, runtime, None)
            .expect("an engine without a cluster builds")
    }

    /// As [`Self::new`]; with `cluster`, this process coordinates it: tables whose versions
    /// name parts on workers are queried there ([`cluster`]).
    pub fn with_cluster(
        catalog: Arc<CatalogStore>,
        store: Arc<MemoryStore>,
        plan_cache: usize,
        hostname: String,
        runtime: tokio::runtime::Handle,
        cluster: Option<&cluster::ClusterSettings>,
    ) -> Result<Self> {
        let plans = Arc::new(PlanCache::new(plan_cache));
        // Plans pinning a version would keep it in memory: every publish, unload or drop
        // empties the cache.
        store.subscribe(plans.clone());
        let ctx = context::new_context(catalog, store.clone(), hostname, cluster)?;
        Ok(Self {
            store,
            plans,
            ctx,
            runtime,
        })
    }

    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    pub fn plans(&self) -> &PlanCache {
        &self.plans
    }

    /// The session state a query of `context` is planned in.
    fn state(&self, context: &QueryContext) -> Result<SessionState> {
        let mut state = self.ctx.state();
        // A pool of the query's own when some limit applies (without one, the shared,
        // unbounded pool, as DataFusion has it).
        if context.memory.is_some() || self.store.limit().is_some() {
            let pool =
                memory::QueryPool::new(self.store.clone(), context.memory.map(|m| m as usize));
            let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
                .with_memory_pool(Arc::new(pool))
                .build_arc()?;
            state = SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build();
        }
        if let Some(db) = &context.database {
            state.config_mut().options_mut().catalog.default_schema = db.clone();
        }
        if context.visible.0.is_some() {
            state
                .config_mut()
                .set_extension(Arc::new(context.visible.clone()));
        }
        if let Some(r) = &context.report {
            state.config_mut().set_extension(Arc::new(r.clone()));
        }
        if !context.variables.is_empty() {
            state.execution_props_mut().add_var_provider(
                VarType::UserDefined,
                Arc::new(UserVariables(context.variables.clone())),
            );
        }
        Ok(state)
    }

    /// Looks at `sql`: takes its kept plan if there is one whose versions are all current, else
    /// parses it. Either way the answer names the tables it reads.
    pub fn prepare(&self, sql: &str, context: &QueryContext) -> Result<Prepared> {
        let key = match &context.database {
            Some(db) => format!("{db}\u{0}{sql}"),
            None => sql.to_string(),
        };
        if let Some((plan, tables)) = self.plans.get(&key, &self.store) {
            return Ok(Prepared {
                key,
                kind: PreparedKind::Kept(plan),
                tables,
                context: context.clone(),
            });
        }
        let state = self.state(context)?;
        let stmt = parse(sql, &state)?;
        surface::check(&stmt)?;
        let tables = referenced_tables(&state, &stmt);
        Ok(Prepared {
            key,
            kind: PreparedKind::Parsed(Box::new(stmt)),
            tables,
            context: context.clone(),
        })
    }

    /// Plans (unless kept) and starts `prepared`. A plan is made against the versions current
    /// now, so whatever refreshed a table before this call is what the query reads.
    pub async fn run(&self, prepared: Prepared) -> Result<QueryStream> {
        let started = Instant::now();
        let state = self.state(&prepared.context)?;
        let optimized = match prepared.kind {
            PreparedKind::Kept(plan) => plan,
            PreparedKind::Parsed(stmt) => {
                let generation = self.plans.generation();
                let plan = state.statement_to_plan(*stmt).await?;
                let pins = self
                    .plans
                    .enabled()
                    .then(|| plans::reusable(&plan))
                    .flatten();
                let Some(pins) = pins else {
                    return self.run_once(state, plan).await;
                };
                let optimized = state.optimize(&plan)?;
                self.plans.keep(&prepared.key, generation, pins, &optimized);
                optimized
            }
        };
        // The physical plan, with its join tables and run-time filters, is always made anew.
        let schema = Arc::new(optimized.schema().as_arrow().clone());
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await?;
        let planned = started.elapsed();
        Ok(self.execute(schema, physical, state.task_ctx(), started, planned))
    }

    /// A plan that is not kept: queries that must be planned every time (the status views,
    /// `now()`, variables). Only queries get here ([`surface`]).
    async fn run_once(&self, state: SessionState, plan: LogicalPlan) -> Result<QueryStream> {
        let started = Instant::now();
        let task = state.task_ctx();
        let df = DataFrame::new(state, plan);
        let schema = Arc::new(df.schema().as_arrow().clone());
        let physical = df.create_physical_plan().await?;
        Ok(self.execute(schema, physical, task, started, started.elapsed()))
    }

    /// Runs `physical` on the query runtime, apart from the service's own (its API, loads,
    /// refreshes, health), so that a heavy query cannot keep those from running; its batches
    /// come back through a short channel. When the answer is dropped (its client went away, a
    /// limit stopped it), the query is dropped on its runtime and its tasks stop at their next
    /// yield.
    fn execute(
        &self,
        schema: SchemaRef,
        physical: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
        started: Instant,
        planned: std::time::Duration,
    ) -> QueryStream {
        let ordered = {
            use datafusion::physical_plan::ExecutionPlanProperties;
            physical.output_ordering().is_some()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<datafusion::error::Result<RecordBatch>>(2);
        self.runtime.spawn(async move {
            let mut stream = match execute_stream(physical, task) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            loop {
                tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    next = stream.next() => match next {
                        Some(item) => {
                            let failed = item.is_err();
                            if tx.send(item).await.is_err() || failed {
                                return;
                            }
                        }
                        None => break,
                    },
                }
            }
            tracing::debug!(
                planning_us = planned.as_micros() as u64,
                total_us = started.elapsed().as_micros() as u64,
                "query answered"
            );
        });
        let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        QueryStream {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), batches)),
            schema,
            ordered,
        }
    }
}

/// A session's `@name` variables.
#[derive(Debug)]
struct UserVariables(Arc<HashMap<String, ScalarValue>>);

impl VarProvider for UserVariables {
    fn get_value(&self, var_names: Vec<String>) -> datafusion::error::Result<ScalarValue> {
        let name = var_names
            .first()
            .map(|s| s.trim_start_matches('@').to_lowercase())
            .unwrap_or_default();
        // MySQL: a variable never set is NULL.
        Ok(self.0.get(&name).cloned().unwrap_or(ScalarValue::Null))
    }

    fn get_type(&self, var_names: &[String]) -> Option<DataType> {
        let name = var_names.first()?.trim_start_matches('@').to_lowercase();
        Some(self.0.get(&name).map_or(DataType::Null, |v| v.data_type()))
    }
}

/// The tables `stmt` names; a name without a database is in the default one.
fn referenced_tables(
    state: &SessionState,
    stmt: &datafusion::sql::parser::Statement,
) -> Vec<TableKey> {
    let Ok(refs) = state.resolve_table_references(stmt) else {
        return Vec::new();
    };
    let names = &state.config().options().catalog;
    refs.into_iter()
        .map(|r| {
            let r = r.resolve(&names.default_catalog, &names.default_schema);
            TableKey::new(&r.schema, &r.table)
        })
        .collect()
}

/// Parses one query in Tarn's dialect (MySQL's, with its JSON operators' binding).
fn parse(
    sql: &str,
    state: &datafusion::execution::SessionState,
) -> Result<datafusion::sql::parser::Statement> {
    let dialect = tarn_catalog::TarnDialect::default();
    let mut statements = datafusion::sql::parser::DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(state.config().options().sql_parser.recursion_limit.get())
        .build()
        .and_then(|mut p| p.parse_statements())?;
    match (statements.pop_front(), statements.is_empty()) {
        (Some(stmt), true) => Ok(stmt),
        (None, _) => Err(crate::EngineError::Unsupported("an empty statement".into())),
        (Some(_), false) => Err(crate::EngineError::Unsupported(
            "several statements in one request: send them one at a time".into(),
        )),
    }
}
