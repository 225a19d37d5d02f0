//! Tables spread over a cluster's workers, queried with datafusion-distributed.
//!
//! On the coordinator a table's version names its parts ([`RemotePart`]: one per worker, in the
//! order of the workers' URLs) and holds no rows. Its scan is a [`ClusterScanExec`]: the
//! distributed planner scales it up into one task per part and routes each task to the worker
//! holding that part, so the scan (with its batch pruning) runs where the rows are, and joins and
//! aggregations run across the workers above it. On a worker the same node, decoded, reads the
//! part's version from the worker's own memory store ([`WorkerShards`]).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{
    ColumnStatistics, DataFusionError, Result, Statistics, internal_err, plan_err,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion_distributed::{
    ChannelResolver, DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedExt,
    DistributedLeafExec, RouteTasksEvent, RouteTasksEventResponse, ScaleUpLeafNodeEvent,
    ScaleUpLeafNodeEventResponse, SessionStateBuilderExt, WorkerChannel, WorkerPlanRewriteEvent,
    WorkerPlanRewriteEventResponse, WorkerQueryContext, WorkerResolver, grpc,
};
use datafusion_proto::bytes::Serializeable;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::StreamExt;
use prost::Message;
use serde::{Deserialize, Serialize};
use tarn_catalog::TableKey;
use url::Url;

use super::provider::{prune_only, scan_version};
use crate::store::{MemoryStore, RemotePart, TableVersion};

pub use datafusion_distributed::CompressionType;

/// How a coordinator reaches its workers.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The workers' URLs.
    pub workers: Vec<Url>,
    /// The token workers and the coordinator show each other.
    pub token: String,
    /// The workers that answer, which the coordinator keeps up to date: queries run on these.
    pub live: LiveWorkers,
    /// How batches are compressed between workers: LZ4 (the default), ZSTD, or not at all (on
    /// one machine, or a network faster than compressing).
    pub compression: Option<datafusion_distributed::CompressionType>,
}

impl ClusterSettings {
    /// The settings for `workers`, all taken to be up until found otherwise.
    pub fn new(workers: Vec<Url>, token: String) -> Self {
        let live = LiveWorkers::default();
        live.set(workers.clone());
        Self {
            workers,
            token,
            live,
            compression: Some(datafusion_distributed::CompressionType::LZ4_FRAME),
        }
    }
}

/// The workers that answer now (shared between the coordinator's monitor and the planner).
#[derive(Debug, Clone, Default)]
pub struct LiveWorkers(Arc<std::sync::RwLock<Vec<Url>>>);

impl LiveWorkers {
    pub fn set(&self, workers: Vec<Url>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = workers;
    }

    pub fn get(&self) -> Vec<Url> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// On the coordinator: a table whose rows the workers hold.
#[derive(Debug)]
pub struct ClusterTable {
    key: TableKey,
    version: Arc<TableVersion>,
}

impl ClusterTable {
    pub fn new(key: TableKey, version: Arc<TableVersion>) -> Self {
        Self { key, version }
    }
}

#[async_trait]
impl TableProvider for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.version.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // As on one machine, with the pruning done on the workers.
        Ok(prune_only(filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.version.schema.project(p)?),
            None => self.version.schema.clone(),
        };
        let parts = self.version.remote.clone().unwrap_or_default();
        if parts.iter().all(|p| p.rows == 0) {
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let known = &self.version.remote_statistics;
        let statistics = match projection {
            _ if known.is_empty() => Vec::new(),
            Some(p) => p.iter().filter_map(|&c| known.get(c).cloned()).collect(),
            None => known.clone(),
        };
        let mut exec = ClusterScanExec::new(
            Scan {
                db: self.key.database.clone(),
                table: self.key.table.clone(),
                parts,
                projection: projection.cloned(),
                filters: filters.to_vec(),
                slice: Slice::WHOLE,
            },
            schema,
        );
        exec.columns = Arc::new(statistics);
        Ok(Arc::new(exec))
    }
}

/// What a cluster scan reads: a table's parts (one, once planned into a task), the columns and
/// the filters that prune.
#[derive(Debug, Clone)]
struct Scan {
    db: String,
    table: String,
    parts: Vec<RemotePart>,
    projection: Option<Vec<usize>>,
    filters: Vec<Expr>,
    /// Which share of the part's partitions this task reads: those `p` with `p % of == index`
    /// (a table on one worker is read as two tasks, so that its plan is distributed too).
    slice: Slice,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Slice {
    index: usize,
    of: usize,
}

impl Slice {
    const WHOLE: Slice = Slice { index: 0, of: 1 };
}

/// The scan of a table spread over workers (see the module's documentation).
#[derive(Debug)]
pub struct ClusterScanExec {
    scan: Scan,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// Per output column, the figures the planner estimates with (on the coordinator; empty
    /// when unknown, and on a worker, which has planned nothing).
    columns: Arc<Vec<ColumnStatistics>>,
}

impl ClusterScanExec {
    fn new(scan: Scan, schema: SchemaRef) -> Self {
        // Every task has as many partitions as the part with the most shards; the others answer
        // nothing in the partitions they lack.
        let partitions = scan
            .parts
            .iter()
            .map(|p| p.shards)
            .max()
            .unwrap_or(1)
            .max(1);
        Self::with_partitions(scan, schema, partitions)
    }

    fn with_partitions(scan: Scan, schema: SchemaRef, partitions: usize) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            scan,
            schema,
            properties,
            columns: Arc::default(),
        }
    }

    /// The task reading `slice` of `part`: variants of one scan keep its partition count.
    fn with_part(&self, part: RemotePart, slice: Slice) -> Self {
        let mut scan = self.scan.clone();
        scan.parts = vec![part];
        scan.slice = slice;
        Self {
            scan,
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            columns: self.columns.clone(),
        }
    }

    fn key(&self) -> TableKey {
        TableKey::new(&self.scan.db, &self.scan.table)
    }
}

impl DisplayAs for ClusterScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let parts: Vec<String> = self
            .scan
            .parts
            .iter()
            .map(|p| format!("{}@v{}", p.worker, p.version))
            .collect();
        write!(
            f,
            "ClusterScanExec: table={}, parts=[{}]",
            self.key(),
            parts.join(", ")
        )
    }
}

impl ExecutionPlan for ClusterScanExec {
    fn name(&self) -> &str {
        "ClusterScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("ClusterScanExec has no children")
        }
    }

    /// The rows the parts hold (fewer once the filters prune) and each column's bounds over
    /// them: the planner then estimates filters and joins over a cluster table as it does over
    /// one held here, builds joins on the small side (broadcast to the tasks that probe) and
    /// shuffles only what must be.
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let rows: u64 = self.scan.parts.iter().map(|p| p.rows).sum();
        let mut rows = rows as usize / self.scan.slice.of;
        let mut stats = Statistics::new_unknown(&self.schema);
        if partition.is_some() {
            rows /= self.properties.partitioning.partition_count().max(1);
        } else if self.columns.len() == stats.column_statistics.len() {
            stats.column_statistics = self.columns.as_ref().clone();
        }
        stats.num_rows = Precision::Inexact(rows);
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let key = self.key();
        let Some(shards) = context.session_config().get_extension::<WorkerShards>() else {
            return internal_err!("the scan of {key} ran outside a worker");
        };
        let [part] = self.scan.parts.as_slice() else {
            return internal_err!(
                "the scan of {key} reached a worker with {} parts",
                self.scan.parts.len()
            );
        };
        let schema = self.schema.clone();
        if part.rows == 0 {
            // A worker given no files of the table holds nothing of it.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        }
        let version = shards
            .memory
            .get(&key)
            .and_then(|e| e.version(part.version))
            .ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "version {} of {key} is no longer held by worker {}: the table changed while \
                     the query was planned; run the query again",
                    part.version, part.worker
                ))
            })?;
        let inner = scan_version(
            &version,
            self.scan.projection.clone(),
            &self.scan.filters,
            &ExecutionProps::new(),
        )?;
        let slice = self.scan.slice;
        if partition >= inner.properties().partitioning.partition_count()
            || partition % slice.of != slice.index
        {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        }
        // The part's batches, under the table's schema (a part may know a column to hold no NULL
        // where the table as a whole does not).
        let batches = inner.execute(partition, context)?.map(move |b| {
            let b = b?;
            Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                b.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}

/// A worker's memory store, as its query sessions see it.
#[derive(Debug)]
pub struct WorkerShards {
    pub memory: Arc<MemoryStore>,
}

/// A cluster scan as it travels to a worker.
#[derive(Serialize, Deserialize)]
struct Encoded {
    db: String,
    table: String,
    parts: Vec<RemotePart>,
    projection: Option<Vec<usize>>,
    /// The output schema, as DataFusion's protobuf encodes it.
    schema: Vec<u8>,
    partitions: usize,
    /// Each filter, as DataFusion's protobuf encodes a logical expression.
    filters: Vec<Vec<u8>>,
    slice: Slice,
}

/// Encodes and decodes [`ClusterScanExec`] for the trip to a worker.
#[derive(Debug)]
pub struct ClusterScanCodec;

impl PhysicalExtensionCodec for ClusterScanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return internal_err!("ClusterScanExec has no inputs");
        }
        let e: Encoded = serde_json::from_slice(buf)
            .map_err(|e| DataFusionError::Internal(format!("a cluster scan: {e}")))?;
        let proto = datafusion_proto::protobuf::Schema::decode(e.schema.as_slice())
            .map_err(|e| DataFusionError::Internal(format!("a cluster scan's schema: {e}")))?;
        let schema: Schema = (&proto).try_into()?;
        let filters = e
            .filters
            .iter()
            .map(|f| Expr::from_bytes_with_ctx(f, ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ClusterScanExec::with_partitions(
            Scan {
                db: e.db,
                table: e.table,
                parts: e.parts,
                projection: e.projection,
                filters,
                slice: e.slice,
            },
            Arc::new(schema),
            e.partitions,
        )))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(exec) = node.downcast_ref::<ClusterScanExec>() else {
            return internal_err!("not a cluster scan: {}", node.name());
        };
        let schema = datafusion_proto::protobuf::Schema::try_from(exec.schema.as_ref())?;
        let filters = exec
            .scan
            .filters
            .iter()
            .map(|f| f.to_bytes().map(|b| b.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        let e = Encoded {
            db: exec.scan.db.clone(),
            table: exec.scan.table.clone(),
            parts: exec.scan.parts.clone(),
            projection: exec.scan.projection.clone(),
            schema: schema.encode_to_vec(),
            partitions: exec.properties.partitioning.partition_count(),
            filters,
            slice: exec.scan.slice,
        };
        serde_json::to_writer(buf, &e)
            .map_err(|e| DataFusionError::Internal(format!("a cluster scan: {e}")))
    }
}

/// One task per part; two for a table on one worker (one task would not be distributed, and
/// would run here, where no part is).
fn desired_tasks(ev: DesiredTaskCountEvent) -> Option<Result<DesiredTaskCountEventResponse>> {
    let scan = ev.plan.downcast_ref::<ClusterScanExec>()?;
    Some(Ok(DesiredTaskCountEventResponse::desired(
        scan.scan.parts.len().max(2),
    )))
}

/// The scan split into one variant per part (a table on one worker: the halves of its part).
fn scale_up(ev: ScaleUpLeafNodeEvent) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let scan = ev.plan.downcast_ref::<ClusterScanExec>()?;
    let parts = &scan.scan.parts;
    let variants: Vec<Arc<dyn ExecutionPlan>> = if ev.task_count == parts.len() {
        parts
            .iter()
            .map(|p| Arc::new(scan.with_part(p.clone(), Slice::WHOLE)) as _)
            .collect()
    } else if let [part] = parts.as_slice() {
        (0..ev.task_count)
            .map(|index| {
                let slice = Slice {
                    index,
                    of: ev.task_count,
                };
                Arc::new(scan.with_part(part.clone(), slice)) as _
            })
            .collect()
    } else {
        return Some(plan_err!(
            "the scan of {} needs one task per worker ({}), and was given {}",
            scan.key(),
            parts.len(),
            ev.task_count
        ));
    };
    Some(
        DistributedLeafExec::try_new(Arc::clone(ev.plan), variants)
            .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// Each task to the worker holding its part.
fn route(ev: RouteTasksEvent) -> Option<Result<RouteTasksEventResponse>> {
    let mut urls: Option<Result<Vec<Url>>> = None;
    let walked = ev.plan.apply(|node| {
        let Some(leaf) = node.downcast_ref::<DistributedLeafExec>() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        if leaf.original().downcast_ref::<ClusterScanExec>().is_none() {
            return Ok(TreeNodeRecursion::Continue);
        }
        urls = Some(
            leaf.variants()
                .iter()
                .map(|v| {
                    let part = v
                        .downcast_ref::<ClusterScanExec>()
                        .and_then(|s| s.scan.parts.first())
                        .ok_or_else(|| DataFusionError::Internal("a cluster scan task".into()))?;
                    Url::parse(&part.worker)
                        .map_err(|e| DataFusionError::Plan(format!("worker {}: {e}", part.worker)))
                })
                .collect(),
        );
        Ok(TreeNodeRecursion::Stop)
    });
    if let Err(e) = walked {
        return Some(Err(e));
    }
    Some(urls?.map(RouteTasksEventResponse::new))
}

/// Puts a cluster scan that would share a stage with a node the distributed planner runs in one
/// task (a null-aware anti join, a join that emits its build side's rows) behind a
/// `CoalescePartitionsExec`: the planner then cuts a stage there, the scan runs one task per part
/// on the workers, and its rows are gathered to the one task. Without it that stage would have
/// one task, and a table's parts are on several workers.
#[derive(Debug)]
struct GatherForSingleTasks;

impl GatherForSingleTasks {
    fn single_task(node: &Arc<dyn ExecutionPlan>) -> bool {
        use datafusion::common::JoinType as J;
        use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
        let emits_probe_side_only = |t: &J| {
            matches!(
                t,
                J::Inner | J::Right | J::RightSemi | J::RightAnti | J::RightMark
            )
        };
        if let Some(j) = node.downcast_ref::<HashJoinExec>() {
            return j.mode == PartitionMode::CollectLeft
                && (j.null_aware || !emits_probe_side_only(j.join_type()));
        }
        if let Some(j) = node.downcast_ref::<NestedLoopJoinExec>() {
            return !emits_probe_side_only(j.join_type());
        }
        false
    }

    /// A cluster scan, or filters and projections over one: what the workers run before its
    /// rows are gathered, so that they filter and narrow the rows in parallel and only what
    /// passes crosses to the one task (before, a filter above the gathering ran in that task on
    /// every row the scan read: TPC-H Q4 gathered three columns of all of lineitem).
    fn over_a_scan(node: &Arc<dyn ExecutionPlan>) -> bool {
        use datafusion::physical_plan::filter::FilterExec;
        use datafusion::physical_plan::projection::ProjectionExec;
        if node.is::<ClusterScanExec>() {
            return true;
        }
        (node.is::<FilterExec>() || node.is::<ProjectionExec>())
            && matches!(node.children().as_slice(), [c] if Self::over_a_scan(c))
    }

    /// Below a one-task node, down to where the planner cuts stages anyway: each cluster scan
    /// gathered (with the filters and projections right above it).
    fn gather_scans(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::Transformed;
        use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
        use datafusion::physical_plan::repartition::RepartitionExec;
        use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
        plan.transform_down(|node| {
            let cut = node.is::<CoalescePartitionsExec>()
                || node.is::<SortPreservingMergeExec>()
                || node
                    .downcast_ref::<RepartitionExec>()
                    .is_some_and(|r| matches!(r.partitioning(), Partitioning::Hash(..)));
            if cut {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            if Self::over_a_scan(&node) {
                let gathered: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(node));
                return Ok(Transformed::new(gathered, true, TreeNodeRecursion::Jump));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }
}

impl datafusion::physical_optimizer::PhysicalOptimizerRule for GatherForSingleTasks {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::Transformed;
        plan.transform_down(|node| {
            if !Self::single_task(&node) {
                return Ok(Transformed::no(node));
            }
            let children = node
                .children()
                .into_iter()
                .map(|c| Self::gather_scans(Arc::clone(c)))
                .collect::<Result<Vec<_>>>()?;
            use datafusion::physical_plan::execution_plan::{
                ChildrenPropertiesMode, ReplaceChildrenOptions,
            };
            let node = node.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?;
            Ok(Transformed::new(node, true, TreeNodeRecursion::Jump))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "gather_cluster_scans_for_single_tasks"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The workers that answer.
struct Workers(LiveWorkers);

impl WorkerResolver for Workers {
    fn get_urls(&self) -> Result<Vec<Url>> {
        let live = self.0.get();
        if live.is_empty() {
            return Err(DataFusionError::Execution(
                "no worker of the cluster answers: GET /v1/cluster shows why".into(),
            ));
        }
        Ok(live)
    }
}

/// Connections to workers, each call carrying the cluster token. A connection whose call failed
/// in transport (its worker stopped) is dropped, so the next call connects anew: a worker that
/// comes back is reached at once, not after the old connection's failure is handed out again.
#[derive(Clone)]
struct TokenChannels {
    channels: Arc<std::sync::Mutex<std::collections::HashMap<Url, grpc::BoxCloneSyncChannel>>>,
    authorization: http::HeaderValue,
}

impl TokenChannels {
    fn new(token: &str) -> Result<Self> {
        let authorization = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| DataFusionError::Configuration(format!("cluster_token: {e}")))?;
        Ok(Self {
            channels: Arc::default(),
            authorization,
        })
    }

    async fn channel(&self, url: &Url) -> Result<grpc::BoxCloneSyncChannel> {
        use tower::ServiceExt;
        let cached = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned();
        if let Some(channel) = cached {
            return Ok(channel);
        }
        let connected = grpc::DefaultChannelResolver::default()
            .get_channel(url)
            .await?;
        let authorization = self.authorization.clone();
        let (channels, key) = (self.channels.clone(), url.clone());
        let channel = grpc::BoxCloneSyncChannel::new(
            connected
                .map_request(move |mut req: http::Request<tonic::body::Body>| {
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, authorization.clone());
                    req
                })
                .map_err(move |e| {
                    channels
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    e
                }),
        );
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for TokenChannels {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        Ok(grpc::create_worker_client(self.channel(url).await?))
    }
}

/// Largest build side (bytes, as the planner estimates it) a coordinator's join collects whole
/// rather than hash-partitions: a collected build is broadcast to every task that probes it, so
/// it crosses between processes once a task, where one process shares it (128 MiB there). 4 MiB
/// takes in the dimension tables and the filtered small ones; measured on TPC-H SF1 with three
/// workers on one machine (median of 3): geometric mean of the cluster's time over one
/// process's 5.67 at 128 MiB, 5.02 at 16 MiB, 4.84 at 4 MiB (Q7 565 -> 364 ms, Q21 875 -> 657).
const CLUSTER_COLLECT_BYTES: usize = 4 << 20;

/// The coordinator's session: queries over cluster tables are planned by datafusion-distributed.
pub(super) fn coordinator(
    mut builder: datafusion::execution::SessionStateBuilder,
    cluster: &ClusterSettings,
) -> Result<datafusion::execution::SessionStateBuilder> {
    super::context::default_unless_env(
        builder.config().get_or_insert_default(),
        "datafusion.optimizer.hash_join_single_partition_threshold",
        &CLUSTER_COLLECT_BYTES.to_string(),
    );
    builder
        .with_physical_optimizer_rule(Arc::new(GatherForSingleTasks))
        .with_distributed_worker_resolver(Workers(cluster.live.clone()))
        .with_distributed_channel_resolver(TokenChannels::new(&cluster.token)?)
        .with_distributed_planner()
        .with_distributed_user_codec(ClusterScanCodec)
        .with_distributed_desired_task_count_handler(desired_tasks)
        .with_distributed_scale_up_leaf_node_handler(scale_up)
        .with_distributed_route_tasks_handler(route)
        .with_distributed_compression(cluster.compression)?
        // Metrics of every task sent back with its batches: only EXPLAIN ANALYZE would show them.
        .with_distributed_metrics_collection(false)?
        // At least two tasks a stage, even on one worker (see `desired_tasks`).
        .with_distributed_max_tasks_per_stage(cluster.workers.len().max(2))
}

/// A task's plan as the worker runs it: with Tarn's faster expressions (see
/// [`super::exprs`]), put in place here because plans travel in DataFusion's protobuf form,
/// which has no place for them (the coordinator plans with DataFusion's own).
fn faster_on_worker(ev: WorkerPlanRewriteEvent<'_>) -> Result<WorkerPlanRewriteEventResponse> {
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    let plan = super::exprs::FastExpressions.optimize(ev.plan, ev.session_config.options())?;
    Ok(WorkerPlanRewriteEventResponse::new(plan))
}

/// The part of a worker that runs the tasks coordinators send it, over `memory`; `token` is
/// the cluster's (shown to the other workers, whose results its tasks read).
pub fn worker(memory: Arc<MemoryStore>, token: &str) -> Result<datafusion_distributed::Worker> {
    let shards = Arc::new(WorkerShards { memory });
    let channels = TokenChannels::new(token)?;
    Ok(datafusion_distributed::Worker::from_session_builder(
        move |ctx: WorkerQueryContext| {
            let (shards, channels) = (shards.clone(), channels.clone());
            async move {
                let mut builder = ctx
                    .builder
                    .with_distributed_channel_resolver(channels)
                    .with_distributed_worker_plan_rewrite_handler(faster_on_worker);
                let config = builder.config().get_or_insert_default();
                config.set_distributed_user_codec(ClusterScanCodec);
                config.set_extension(shards);
                // Tarn's JSON functions beside DataFusion's own (which the builder has).
                let mut state = builder.build();
                for f in super::json::functions() {
                    use datafusion::execution::FunctionRegistry;
                    state.register_udf(Arc::new(f))?;
                }
                Ok(state)
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_worker_runs_the_plan_it_is_sent_with_faster_expressions_and_the_same_answer() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(5),
                    None,
                    Some(7),
                    Some(9),
                ])) as ArrayRef,
                Arc::new(
                    Decimal128Array::from(vec![Some(150), Some(-275), Some(1), None, Some(99)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(StringArray::from(vec![
                    Some("xay"),
                    Some("x-y-"),
                    Some("xy"),
                    Some("xzzy"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let df = ctx
            .sql("SELECT a, d * d + d AS e FROM t WHERE a > 1 AND a < 10 AND s LIKE 'x%y%'")
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        // The plan travels as the coordinator planned it, and the worker makes it faster.
        let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(
            plan.clone(),
            &ClusterScanCodec,
        )
        .unwrap();
        let arrived = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
            &bytes,
            &ctx.task_ctx(),
            &ClusterScanCodec,
        )
        .unwrap();
        let config = ctx.state().config().clone();
        let fast = faster_on_worker(WorkerPlanRewriteEvent {
            plan: arrived,
            session_config: &config,
        })
        .unwrap()
        .plan;
        // The same faster forms, where DataFusion's own would show otherwise.
        let names = |plan: &Arc<dyn ExecutionPlan>| {
            let mut names = Vec::new();
            plan.apply(|node| {
                node.apply_expressions(&mut |e| {
                    e.apply(|e| {
                        let any = e.as_ref() as &dyn std::any::Any;
                        if any.is::<super::super::conjunction::AllOf>() {
                            names.push("AllOf");
                        } else if any.is::<super::super::like::SubstringsLike>() {
                            names.push("SubstringsLike");
                        } else if any.is::<super::super::decimal::DecimalArithmetic>() {
                            names.push("DecimalArithmetic");
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })
                })
            })
            .unwrap();
            names.sort();
            names
        };
        assert_eq!(names(&plan), Vec::<&str>::new());
        assert_eq!(
            names(&fast),
            [
                "AllOf",
                "DecimalArithmetic",
                "DecimalArithmetic",
                "SubstringsLike"
            ]
        );
        let answer = |plan: Arc<dyn ExecutionPlan>| {
            let ctx = ctx.task_ctx();
            async move {
                let batches = datafusion::physical_plan::collect(plan, ctx).await.unwrap();
                arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        let (before, after) = (answer(plan).await, answer(fast).await);
        assert_eq!(before, after);
        assert!(before.contains("4.8125"), "{before}");
    }

    #[test]
    fn a_one_task_join_gathers_its_inputs_after_the_workers_filter_them() {
        use datafusion::common::{JoinType, NullEquality};
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{binary, col, lit};
        use datafusion::physical_optimizer::PhysicalOptimizerRule;
        use datafusion::physical_plan::filter::FilterExec;
        use datafusion::physical_plan::joins::{HashJoinExecBuilder, PartitionMode};
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let part = |worker: &str| RemotePart {
            worker: worker.into(),
            version: 1,
            rows: 10,
            bytes: 160,
            files: 1,
            shards: 2,
        };
        let filtered = |table: &str| -> Arc<dyn ExecutionPlan> {
            let scan = ClusterScanExec::new(
                Scan {
                    db: "d".into(),
                    table: table.into(),
                    parts: vec![part("http://w1"), part("http://w2")],
                    projection: None,
                    filters: Vec::new(),
                    slice: Slice::WHOLE,
                },
                schema.clone(),
            );
            let v = col("v", &schema).unwrap();
            let predicate = binary(v, Operator::Gt, lit(1i64), &schema).unwrap();
            Arc::new(FilterExec::try_new(predicate, Arc::new(scan)).unwrap())
        };
        let on = vec![(col("k", &schema).unwrap(), col("k", &schema).unwrap())];
        // A semi join that emits its build side's rows: the distributed planner runs it in one
        // task, so both inputs are gathered to it.
        let join = HashJoinExecBuilder::new(filtered("a"), filtered("b"), on, JoinType::LeftSemi)
            .with_partition_mode(PartitionMode::CollectLeft)
            .with_null_equality(NullEquality::NullEqualsNothing)
            .build_exec()
            .unwrap();
        let plan = GatherForSingleTasks
            .optimize(join, &datafusion::config::ConfigOptions::default())
            .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let lines: Vec<&str> = shown.lines().map(str::trim_start).collect();
        assert_eq!(lines.len(), 7, "{shown}");
        for input in [1, 4] {
            assert!(
                lines[input].starts_with("CoalescePartitionsExec"),
                "{shown}"
            );
            assert!(lines[input + 1].starts_with("FilterExec"), "{shown}");
            assert!(lines[input + 2].starts_with("ClusterScanExec"), "{shown}");
        }
    }

    #[test]
    fn a_coordinator_collects_only_small_build_sides() {
        let settings = ClusterSettings::new(
            vec![Url::parse("http://127.0.0.1:1").unwrap()],
            "a-cluster-token-of-some-length".into(),
        );
        let state = coordinator(
            datafusion::execution::SessionStateBuilder::new()
                .with_config(super::super::context::engine_config(2)),
            &settings,
        )
        .unwrap()
        .build();
        let optimizer = &state.config_options().optimizer;
        let expected =
            match std::env::var("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD") {
                Ok(v) => v.parse().unwrap(),
                Err(_) => CLUSTER_COLLECT_BYTES,
            };
        assert_eq!(optimizer.hash_join_single_partition_threshold, expected);
    }
}
