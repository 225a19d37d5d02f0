//! The scan of a loaded table: one partition per shard, reading the batches that planning-time
//! pruning kept, and applying the filters that joins publish while the query runs.
//!
//! A hash join, once it has built its table, knows which keys its probe side can match: DataFusion
//! hands that knowledge down the probe side as a dynamic filter (the keys' min/max and the key set
//! itself). The scan takes those filters and, at every batch, skips the batch when its min/max rule
//! it out, then drops the rows the filter rejects, so that aggregations and joins above it see
//! only rows that can still matter. Rows are only filtered while that pays: when a filter keeps
//! nearly every row the scan stops evaluating it (the join still applies it exactly).
//!
//! The scan also gives DataFusion each column's min/max and null count, from the per-batch
//! statistics taken at load, so the planner estimates filter selectivity and picks build sides
//! from real figures.

use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::datatypes::UInt64Type;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ColumnStatistics, Result, ScalarValue, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::datasource::source::{DataSource, DataSourceExec};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, DynamicFilterPhysicalExpr, Literal,
};
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::utils::conjunction;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::{
    snapshot_generation, snapshot_physical_expr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::cooperative;
use datafusion::physical_plan::execution_plan::SchedulingType;
use datafusion::physical_plan::filter_pushdown::{FilterPushdownPropagation, PushedDown};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayFormatType, Partitioning, SendableRecordBatchStream};
use futures::StreamExt;

use super::provider::ShardStats;
use crate::store::{TableVersion, column_statistics, merge_column};

/// After this many filtered batches, a dynamic filter that kept more than [`KEEP_RATIO`] of the
/// rows stops being evaluated row by row.
const PROBE_BATCHES: usize = 8;
const KEEP_RATIO: f64 = 0.9;

/// How long a scan waits for the run-time filters of the joins above it to be known.
const FILTER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct LoadedScan {
    version: Arc<TableVersion>,
    /// Per shard, the indices of the batches planning-time pruning kept.
    keep: Arc<Vec<Vec<usize>>>,
    projection: Option<Vec<usize>>,
    /// The output schema: the table's, projected.
    schema: SchemaRef,
    /// Filters published at run time (dynamic filters), in terms of the output schema.
    dynamic: Option<Arc<dyn PhysicalExpr>>,
    /// The ids of the run-time filters, among `dynamic`, that hash joins produce: known once the
    /// join's build side is, which the scan waits for (see [`WaitForJoinFilters`]).
    wait_for: Arc<Vec<u64>>,
    fetch: Option<usize>,
    metrics: ExecutionPlanMetricsSet,
    /// Statistics per partition and (last) of the whole scan, each worked out once: the planner
    /// asks for them again at every rule that looks at a join or an aggregation.
    statistics: Arc<Vec<OnceLock<Arc<Statistics>>>>,
}

impl LoadedScan {
    pub fn new(
        version: Arc<TableVersion>,
        keep: Vec<Vec<usize>>,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(version.query_schema.project(p)?),
            None => version.query_schema.clone(),
        };
        let statistics = Arc::new((0..=keep.len()).map(|_| OnceLock::new()).collect());
        Ok(Self {
            version,
            statistics,
            keep: Arc::new(keep),
            projection,
            schema,
            dynamic: None,
            wait_for: Arc::new(Vec::new()),
            fetch: None,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The table's column index behind output column `i`.
    fn table_column(&self, i: usize) -> usize {
        self.projection.as_ref().map_or(i, |p| p[i])
    }

    fn statistics_for(&self, shards: &[usize]) -> Statistics {
        let mut rows = 0u64;
        for &s in shards {
            let counts = self.version.shards[s].rows.as_primitive::<UInt64Type>();
            rows += self.keep[s].iter().map(|&b| counts.value(b)).sum::<u64>();
        }
        let columns = (0..self.schema.fields().len())
            .map(|i| {
                let column = self.table_column(i);
                let data_type = self.version.schema.field(column).data_type();
                let mut merged: Option<ColumnStatistics> = None;
                for &s in shards.iter().filter(|&&s| !self.keep[s].is_empty()) {
                    let shard = &self.version.shards[s];
                    // Whole shards use the figures taken when the version was built.
                    let stats = if self.keep[s].len() == shard.batches.len() {
                        shard.columns[column].clone()
                    } else {
                        column_statistics(shard, column, data_type, Some(&self.keep[s]))
                    };
                    merged = Some(match merged {
                        None => stats,
                        Some(m) => merge_column(m, &stats),
                    });
                }
                merged.unwrap_or_else(ColumnStatistics::new_unknown)
            })
            .collect();
        Statistics {
            num_rows: Precision::Exact(rows as usize),
            total_byte_size: Precision::Absent,
            column_statistics: columns,
        }
    }
}

impl DataSource for LoadedScan {
    fn open(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let metric = |name: &'static str| -> Count {
            MetricBuilder::new(&self.metrics).counter(name, partition)
        };
        let mut reader = ShardReader {
            version: self.version.clone(),
            shard: partition,
            keep: self.keep.get(partition).cloned().unwrap_or_default(),
            next: 0,
            projection: self.projection.clone(),
            schema: self.schema.clone(),
            filter: self.dynamic.clone().map(RuntimeFilter::new),
            remaining: self.fetch,
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
            batches_pruned: metric("batches_pruned"),
            rows_filtered: metric("rows_filtered"),
        };
        // Operators above may start this scan before the hash joins that filter it have built
        // their side (a broadcast build starts its inputs at once): wait for those joins'
        // filters first. Only hash joins' filters are waited for (a TOP-N's filter tightens as
        // rows arrive, so it is never waited for), and the wait is bounded: a filter that never
        // completes costs time, never an answer.
        let mut pending: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        if let Some(dynamic) = &self.dynamic {
            dynamic.apply(|e| {
                if e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()
                    && e.expression_id()
                        .is_some_and(|id| self.wait_for.contains(&id))
                {
                    pending.push(e.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        let filters_known = async move {
            let all = futures::future::join_all(pending.iter().filter_map(|e| {
                e.downcast_ref::<DynamicFilterPhysicalExpr>()
                    .map(|f| f.wait_complete())
            }));
            let _ = tokio::time::timeout(FILTER_WAIT, all).await;
        };
        let stream = futures::stream::once(filters_known)
            .filter_map(|()| async { None })
            .chain(futures::stream::iter(std::iter::from_fn({
                let mut first = reader.keep.len() >= HANDOFF_BATCHES;
                move || {
                    if std::mem::take(&mut first) && hands_off_woken_tasks() {
                        tokio::task::block_in_place(|| reader.next_batch())
                    } else {
                        reader.next_batch()
                    }
                }
            })));
        Ok(Box::pin(cooperative(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream.boxed(),
        ))))
    }

    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let sizes: Vec<usize> = self.keep.iter().map(Vec::len).collect();
        match t {
            DisplayFormatType::TreeRender => write!(f, "format=loaded"),
            _ => {
                write!(f, "loaded: partitions={}, batches={sizes:?}", sizes.len())?;
                if let Some(fetch) = self.fetch {
                    write!(f, ", fetch={fetch}")?;
                }
                if let Some(dynamic) = &self.dynamic {
                    write!(f, ", runtime_filter={dynamic}")?;
                }
                Ok(())
            }
        }
    }

    fn output_partitioning(&self) -> Partitioning {
        Partitioning::UnknownPartitioning(self.keep.len())
    }

    fn eq_properties(&self) -> EquivalenceProperties {
        EquivalenceProperties::new(self.schema.clone())
    }

    fn scheduling_type(&self) -> SchedulingType {
        SchedulingType::Cooperative
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let slot = match partition {
            Some(p) if p < self.keep.len() => p,
            Some(_) => return Ok(Arc::new(Statistics::new_unknown(&self.schema))),
            None => self.keep.len(),
        };
        Ok(self.statistics[slot]
            .get_or_init(|| {
                let shards: Vec<usize> = match partition {
                    Some(p) => vec![p],
                    None => (0..self.keep.len()).collect(),
                };
                Arc::new(self.statistics_for(&shards))
            })
            .clone())
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn DataSource>> {
        let mut scan = self.clone();
        scan.fetch = limit;
        Some(Arc::new(scan))
    }

    fn fetch(&self) -> Option<usize> {
        self.fetch
    }

    fn metrics(&self) -> ExecutionPlanMetricsSet {
        self.metrics.clone()
    }

    fn try_swapping_with_projection(
        &self,
        _projection: &ProjectionExprs,
    ) -> Result<Option<Arc<dyn DataSource>>> {
        Ok(None)
    }

    /// Keeps the filters that change at run time (a join's keys); static filters stay with the
    /// operator above, which applies them anyway. Every filter is reported as not pushed down, so
    /// the plan above stays exact whatever the scan manages to drop.
    fn try_pushdown_filters(
        &self,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn DataSource>>> {
        let pushed = vec![PushedDown::No; filters.len()];
        let dynamic: Vec<_> = filters
            .into_iter()
            .filter(|f| snapshot_generation(f) != 0)
            .chain(self.dynamic.clone())
            .collect();
        let result = FilterPushdownPropagation::with_parent_pushdown_result(pushed);
        if dynamic.is_empty() {
            return Ok(result);
        }
        let mut scan = self.clone();
        scan.dynamic = Some(conjunction(dynamic));
        Ok(result.with_updated_node(Arc::new(scan) as Arc<dyn DataSource>))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.dynamic {
            Some(expr) => f(expr),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }
}

/// `node` as a loaded scan that carries run-time filters, if it is one.
fn filtered_scan(node: &dyn ExecutionPlan) -> Option<(&DataSourceExec, &LoadedScan)> {
    let exec = node.downcast_ref::<DataSourceExec>()?;
    let scan = exec.data_source().downcast_ref::<LoadedScan>()?;
    scan.dynamic.is_some().then_some((exec, scan))
}

/// Runs last among the physical optimizer rules: marks, on every loaded scan, the run-time
/// filters that hash joins produce, so the scan waits for them before reading.
#[derive(Debug, Default)]
pub struct WaitForJoinFilters;

impl PhysicalOptimizerRule for WaitForJoinFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut ids = Vec::new();
        plan.apply(|node| {
            if node.downcast_ref::<HashJoinExec>().is_some() {
                ids.extend(
                    node.dynamic_expressions_produced()
                        .iter()
                        .filter_map(|e| e.expression_id()),
                );
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if ids.is_empty() {
            return Ok(plan);
        }
        let ids = Arc::new(ids);
        plan.transform_up(|node| match filtered_scan(node.as_ref()) {
            Some((exec, scan)) => {
                let mut scan = scan.clone();
                scan.wait_for = ids.clone();
                let exec = exec.clone().with_data_source(Arc::new(scan));
                Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
            }
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_wait_for_join_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A dynamic filter as one shard's reader sees it: the snapshot taken at its last change, the
/// batches that snapshot rules out, and whether filtering rows still pays.
struct RuntimeFilter {
    expr: Arc<dyn PhysicalExpr>,
    generation: Option<u64>,
    /// `None` while the filter lets everything through.
    current: Option<Arc<dyn PhysicalExpr>>,
    /// Per batch of the shard: may it hold a matching row?
    batches: Option<Vec<bool>>,
    filter_rows: bool,
    rows_in: usize,
    rows_out: usize,
    batches_filtered: usize,
}

impl RuntimeFilter {
    fn new(expr: Arc<dyn PhysicalExpr>) -> Self {
        Self {
            expr,
            generation: None,
            current: None,
            batches: None,
            filter_rows: true,
            rows_in: 0,
            rows_out: 0,
            batches_filtered: 0,
        }
    }

    /// Takes a new snapshot when the filter has changed since the last one.
    fn refresh(&mut self, version: &TableVersion, shard: usize, schema: &SchemaRef) -> Result<()> {
        let generation = snapshot_generation(&self.expr);
        if self.generation == Some(generation) {
            return Ok(());
        }
        self.generation = Some(generation);
        let snapshot = snapshot_physical_expr(self.expr.clone())?;
        let always = snapshot
            .downcast_ref::<Literal>()
            .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)));
        if always {
            self.current = None;
            self.batches = None;
            return Ok(());
        }
        let shard = &version.shards[shard];
        self.batches = PruningPredicateBuilder::new()
            .with_file_schema(schema.clone())
            .build(snapshot.clone())
            .and_then(|p| {
                p.prune(&ShardStats {
                    shard,
                    schema: &version.schema,
                })
                .ok()
            });
        self.current = Some(any_partition(snapshot));
        self.filter_rows = true;
        self.rows_in = 0;
        self.rows_out = 0;
        self.batches_filtered = 0;
        Ok(())
    }

    fn may_match(&self, batch: usize) -> bool {
        self.batches
            .as_ref()
            .is_none_or(|keep| keep.get(batch).copied().unwrap_or(true))
    }

    fn filter(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(expr) = self.current.as_ref().filter(|_| self.filter_rows) else {
            return Ok(batch);
        };
        let mask = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let mask: &BooleanArray = mask.as_boolean();
        let out = filter_record_batch(&batch, mask)?;
        self.rows_in += batch.num_rows();
        self.rows_out += out.num_rows();
        self.batches_filtered += 1;
        if self.batches_filtered >= PROBE_BATCHES
            && self.rows_out as f64 > KEEP_RATIO * self.rows_in as f64
        {
            self.filter_rows = false;
        }
        Ok(out)
    }
}

/// A partitioned join's filter, `CASE <the row's partition> WHEN 0 THEN f0 WHEN 1 THEN f1 ...
/// ELSE e END`, as `f0 OR f1 OR ... OR e` for the scan's rows (batches are pruned with the filter
/// as it is). A row the CASE keeps, some branch keeps, so the disjunction keeps it too; it keeps
/// some rows more (those another partition's keys hold), which the join drops as it would have.
/// It spares every row's partition hash and the CASE's gathering of each branch's rows: on TPC-H
/// SF3's Q17, whose semi join goes partitioned, the lineitem scan under that filter took 472 ms
/// where the same scan under a one-partition join's filter took 75.
fn any_partition(expr: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    expr.clone()
        .transform_up(|e| {
            let Some(case) = e.downcast_ref::<CaseExpr>() else {
                return Ok(Transformed::no(e));
            };
            let routed = case.expr().is_some()
                && (case.when_then_expr().iter())
                    .all(|(w, _)| w.downcast_ref::<Literal>().is_some());
            if !routed {
                return Ok(Transformed::no(e));
            }
            let branches = (case.when_then_expr().iter().map(|(_, then)| then.clone()))
                .chain(case.else_expr().cloned());
            Ok(
                match branches.reduce(|a, b| Arc::new(BinaryExpr::new(a, Operator::Or, b))) {
                    Some(any) => Transformed::yes(any),
                    None => Transformed::no(e),
                },
            )
        })
        .map(|t| t.data)
        .unwrap_or(expr)
}

/// Scans of at least this many batches per partition read their first batch in
/// [`tokio::task::block_in_place`] (see [`hands_off_woken_tasks`]); for smaller ones the
/// hand-off costs more than it can save.
const HANDOFF_BATCHES: usize = 64;

/// Whether to read the first batch inside `block_in_place`. A task woken from a worker thread
/// (the other partition of this scan once a join's build side is ready, or a partition spawned
/// beside this one) waits in that worker's next-task slot, which idle workers cannot steal: it
/// then runs only when this partition's task yields, on the same core, and the query runs on one
/// core of two. `block_in_place` hands this worker's queue, that slot included, to another
/// thread, where idle workers can take it. Measured with TPC-H Q4 and Q10 (SF1, 12 runs each):
/// without it a third of the runs took twice as long, with process CPU time equal to wall time;
/// with it none of Q4's did, and one or two in 12 of Q10's. Only on the multi-threaded runtime
/// (elsewhere `block_in_place` panics).
fn hands_off_woken_tasks() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

struct ShardReader {
    version: Arc<TableVersion>,
    shard: usize,
    keep: Vec<usize>,
    next: usize,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    filter: Option<RuntimeFilter>,
    remaining: Option<usize>,
    output_rows: Count,
    batches_pruned: Count,
    rows_filtered: Count,
}

impl ShardReader {
    fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if self.remaining == Some(0) {
                return None;
            }
            let index = *self.keep.get(self.next)?;
            self.next += 1;
            match self.read(index) {
                Ok(Some(batch)) => return Some(Ok(batch)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Batch `index` of the shard, projected and filtered; `None` when nothing of it remains.
    fn read(&mut self, index: usize) -> Result<Option<RecordBatch>> {
        if let Some(filter) = self.filter.as_mut() {
            filter.refresh(&self.version, self.shard, &self.schema)?;
            if !filter.may_match(index) {
                self.batches_pruned.add(1);
                return Ok(None);
            }
        }
        let batch = &self.version.shards[self.shard].batches[index];
        let columns = match &self.projection {
            Some(p) => p.iter().map(|&c| batch.column(c).clone()).collect(),
            None => batch.columns().to_vec(),
        };
        // In the version's query schema (columns without NULLs are NOT NULL).
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let mut batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        if let Some(filter) = self.filter.as_mut() {
            let before = batch.num_rows();
            batch = filter.filter(batch)?;
            self.rows_filtered.add(before - batch.num_rows());
        }
        if let Some(remaining) = self.remaining.as_mut() {
            if batch.num_rows() > *remaining {
                batch = batch.slice(0, *remaining);
            }
            *remaining -= batch.num_rows();
        }
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        self.output_rows.add(batch.num_rows());
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod any_partition_tests {
    use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{CaseExpr, Column, binary, lit};
    use std::sync::Arc;

    use super::any_partition;

    /// A partitioned join's filter becomes the disjunction of its branches: every row the CASE
    /// keeps is kept, a row another partition's branch holds is kept too, and no CASE is left.
    #[test]
    fn a_partitioned_filter_keeps_every_row_of_any_partition() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let a = Arc::new(Column::new("a", 0)) as Arc<dyn PhysicalExpr>;
        let eq = |v: i64| binary(a.clone(), Operator::Eq, lit(v), &schema).unwrap();
        let route = binary(a.clone(), Operator::Modulo, lit(2i64), &schema).unwrap();
        // Partition 0 holds 2 and 3 (3 routes to partition 1, so the CASE never keeps it).
        let case = Arc::new(
            CaseExpr::try_new(
                Some(route),
                vec![
                    (
                        lit(0i64),
                        binary(eq(2), Operator::Or, eq(3), &schema).unwrap(),
                    ),
                    (lit(1i64), eq(5)),
                ],
                Some(lit(false)),
            )
            .unwrap(),
        ) as Arc<dyn PhysicalExpr>;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter(
                (0..8).map(Some).chain([None]),
            ))],
        )
        .unwrap();
        let kept = |e: &Arc<dyn PhysicalExpr>| -> Vec<usize> {
            let m = e.evaluate(&batch).unwrap().into_array(9).unwrap();
            let m = m.as_boolean();
            (0..9).filter(|&i| m.is_valid(i) && m.value(i)).collect()
        };
        let any = any_partition(case.clone());
        assert!(!any.to_string().contains("CASE"), "{any}");
        assert_eq!(kept(&case), vec![2, 5]);
        assert_eq!(kept(&any), vec![2, 3, 5]);
        // Anything else stays as it is.
        let plain = eq(4);
        assert_eq!(any_partition(plain.clone()).to_string(), plain.to_string());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_plan::{
        ExecutionPlan, ExecutionPlanVisitor, StatisticsArgs, StatisticsContext, accept, collect,
    };
    use datafusion::prelude::{SessionConfig, SessionContext};
    use tarn_connectors::Manifest;

    use super::*;
    use crate::query::provider::LoadedTable;
    use crate::store::Segment;

    fn table(columns: Vec<(&str, ArrayRef)>, batch_rows: usize) -> Arc<TableVersion> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let all = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())
            .unwrap();
        let batches = (0..all.num_rows())
            .step_by(batch_rows)
            .map(|o| all.slice(o, batch_rows.min(all.num_rows() - o)))
            .collect();
        let seg = Segment::new("f".into(), batches, vec![]);
        Arc::new(TableVersion::build(
            1,
            schema,
            vec![Arc::new(seg)],
            Manifest::default(),
            2,
        ))
    }

    async fn physical_plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    fn context() -> SessionContext {
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(WaitForJoinFilters))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let keys: Vec<i64> = (0..100_000).collect();
        let big = table(
            vec![
                ("k", Arc::new(Int64Array::from(keys.clone())) as ArrayRef),
                (
                    "v",
                    Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| k * 2))),
                ),
            ],
            1000,
        );
        let small = table(
            vec![
                (
                    "k",
                    Arc::new(Int64Array::from(vec![5, 7, 50_005, 99_999, 123_456, 8])) as ArrayRef,
                ),
                (
                    "tag",
                    Arc::new(StringArray::from(vec!["x", "x", "x", "x", "x", "y"])),
                ),
            ],
            1000,
        );
        ctx.register_table("big", Arc::new(LoadedTable::new(big)))
            .unwrap();
        ctx.register_table("small", Arc::new(LoadedTable::new(small)))
            .unwrap();
        ctx
    }

    /// Sums a counter over the loaded scans of `plan` that carry a run-time filter.
    struct Filtered {
        metric: &'static str,
        total: usize,
        scans: usize,
    }
    impl ExecutionPlanVisitor for Filtered {
        type Error = datafusion::error::DataFusionError;
        fn pre_visit(&mut self, plan: &dyn ExecutionPlan) -> Result<bool> {
            if filtered_scan(plan).is_some() {
                self.scans += 1;
                let metrics = plan.metrics().unwrap();
                self.total += if self.metric == "output_rows" {
                    metrics.output_rows().unwrap_or(0)
                } else {
                    metrics.sum_by_name(self.metric).map_or(0, |v| v.as_usize())
                };
            }
            Ok(true)
        }
    }

    /// Large scans read their first batch through `block_in_place` on the multi-threaded
    /// runtime; the answer is the same as anywhere else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_scans_on_the_multi_threaded_runtime_answer_exactly() {
        assert!(hands_off_woken_tasks());
        let keys: Vec<i64> = (0..300_000).collect();
        let t = table(
            vec![("k", Arc::new(Int64Array::from(keys)) as ArrayRef)],
            1000,
        );
        assert!(t.shards.iter().all(|s| s.batches.len() >= HANDOFF_BATCHES));
        let ctx = context();
        ctx.register_table("large", Arc::new(LoadedTable::new(t)))
            .unwrap();
        let sql = "SELECT count(*), sum(l.k) FROM large l JOIN small s ON l.k = s.k";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let int = |c: usize| {
            batches[0]
                .column(c)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
        };
        // small's keys below 300,000: 5, 7, 8, 50,005, 99,999 and 123,456.
        assert_eq!((int(0), int(1)), (6, 5 + 7 + 8 + 50_005 + 99_999 + 123_456));
    }

    #[tokio::test]
    async fn a_column_without_nulls_is_not_null_to_queries_and_not_in_keeps_sql_semantics() {
        let ctx = context();
        let ints = |v: Vec<Option<i64>>| Arc::new(Int64Array::from(v)) as ArrayRef;
        let with_null = table(vec![("x", ints(vec![Some(5), None]))], 1000);
        let without = table(vec![("x", ints(vec![Some(5), Some(7)]))], 1000);
        let schema = |v: &Arc<TableVersion>| {
            datafusion::catalog::TableProvider::schema(&LoadedTable::new(v.clone()))
        };
        assert!(schema(&with_null).field(0).is_nullable());
        assert!(!schema(&without).field(0).is_nullable());
        // Loads still conform to the declared (nullable) schema.
        assert!(without.schema.field(0).is_nullable());
        ctx.register_table("with_null", Arc::new(LoadedTable::new(with_null)))
            .unwrap();
        ctx.register_table("without", Arc::new(LoadedTable::new(without)))
            .unwrap();
        let count = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                batches[0]
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0)
            }
        };
        let shown = |plan: Arc<dyn ExecutionPlan>| {
            datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string()
        };
        // No NULL among the keys: a plain anti join, answered in full.
        let sql = "SELECT count(*) FROM small WHERE k NOT IN (SELECT x FROM without)";
        assert_eq!(count(sql).await, 4);
        let plan = shown(physical_plan(&ctx, sql).await);
        assert!(
            plan.contains("Anti") && !plan.contains("null_aware"),
            "{plan}"
        );
        // A NULL among them: NOT IN is never true (SQL's three-valued logic), as before.
        let sql = "SELECT count(*) FROM small WHERE k NOT IN (SELECT x FROM with_null)";
        assert_eq!(count(sql).await, 0);
        assert!(shown(physical_plan(&ctx, sql).await).contains("null_aware"));
    }

    #[tokio::test]
    async fn a_join_filters_the_probe_scan_by_the_keys_it_built_and_answers_exactly() {
        let ctx = context();
        let sql =
            "SELECT count(*), sum(b.v) FROM small s JOIN big b ON s.k = b.k WHERE s.tag = 'x'";
        let plan = physical_plan(&ctx, sql).await;
        let out = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let count = out[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        let sum = out[0]
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        // Keys 5, 7, 50005 and 99999 exist (123456 does not; 8 is tagged 'y').
        assert_eq!(count, 4);
        assert_eq!(sum, 2 * (5 + 7 + 50_005 + 99_999));

        let mut pruned = Filtered {
            metric: "batches_pruned",
            total: 0,
            scans: 0,
        };
        accept(plan.as_ref(), &mut pruned).unwrap();
        assert_eq!(
            pruned.scans, 1,
            "the run-time filter reaches the big table's scan"
        );
        // The keys are clustered: 100 batches of 1000, and only three hold a wanted key.
        assert!(
            pruned.total >= 90,
            "batches pruned by the filter's key range: {}",
            pruned.total
        );
        let mut rows = Filtered {
            metric: "output_rows",
            total: 0,
            scans: 0,
        };
        accept(plan.as_ref(), &mut rows).unwrap();
        assert_eq!(rows.total, 4, "only matching rows leave the scan");
    }

    #[tokio::test]
    async fn statistics_give_row_counts_and_column_bounds_and_a_limit_stops_the_scan() {
        let ctx = context();
        let plan = physical_plan(&ctx, "SELECT k FROM big").await;
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .unwrap();
        assert_eq!(stats.num_rows, Precision::Exact(100_000));
        let k = &stats.column_statistics[0];
        assert_eq!(k.min_value, Precision::Inexact(ScalarValue::Int64(Some(0))));
        assert_eq!(
            k.max_value,
            Precision::Inexact(ScalarValue::Int64(Some(99_999)))
        );
        assert_eq!(k.null_count, Precision::Exact(0));

        let out = ctx
            .sql("SELECT k FROM big LIMIT 5")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
        let filtered = ctx
            .sql("SELECT count(*) FROM big WHERE k >= 99990")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n = filtered[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(n, 10);
    }

    /// The loaded scans of `plan` that carry run-time filters.
    fn filtered_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<LoadedScan> {
        let mut out = Vec::new();
        plan.apply(|node| {
            out.extend(filtered_scan(node.as_ref()).map(|(_, scan)| scan.clone()));
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        out
    }

    #[tokio::test]
    async fn scans_wait_for_join_filters_only_never_for_a_top_n_filter() {
        let ctx = context();
        let sql = "SELECT b.v FROM small s JOIN big b ON s.k = b.k WHERE s.tag = 'x' \
                   ORDER BY b.v DESC LIMIT 2";
        let plan = physical_plan(&ctx, sql).await;
        let scans = filtered_scans(&plan);
        assert_eq!(scans.len(), 1);
        let mut ids = Vec::new();
        scans[0]
            .dynamic
            .as_ref()
            .unwrap()
            .apply(|e| {
                if e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some() {
                    ids.extend(e.expression_id());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        assert_eq!(ids.len(), 2, "the join's filter and the top-N's");
        assert_eq!(scans[0].wait_for.len(), 1, "only the join's is waited for");
        assert!(ids.contains(&scans[0].wait_for[0]));
        let out = collect(plan, ctx.task_ctx()).await.unwrap();
        let v: Vec<i64> = out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(v, [2 * 99_999, 2 * 50_005]);

        // Without a join, a top-N's filter alone is never waited for.
        let plan = physical_plan(&ctx, "SELECT v FROM big ORDER BY v DESC LIMIT 1").await;
        assert!(filtered_scans(&plan).iter().all(|s| s.wait_for.is_empty()));
    }
}
