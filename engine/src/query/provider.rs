//! A loaded table as DataFusion sees it: one published version, its shards as scan partitions,
//! and batch-level pruning from per-batch min/max before anything is scanned.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_optimizer::pruning::{PruningPredicateBuilder, PruningStatistics};
use datafusion::physical_plan::ExecutionPlan;

use tarn_catalog::TableKey;

use super::scan::LoadedScan;
use crate::store::{Shard, TableVersion};

#[derive(Debug)]
pub struct LoadedTable {
    version: Arc<TableVersion>,
    /// The table the version belongs to, when it came from the catalog.
    key: Option<TableKey>,
}

impl LoadedTable {
    /// Pins `version`: everything planned against this provider reads it and nothing else.
    #[cfg(test)]
    pub fn new(version: Arc<TableVersion>) -> Self {
        Self { version, key: None }
    }

    /// Pins `version`, the current version of table `key`.
    pub fn of_table(key: TableKey, version: Arc<TableVersion>) -> Self {
        Self {
            version,
            key: Some(key),
        }
    }

    /// The table and the version a plan over this provider reads.
    pub fn pin(&self) -> Option<(TableKey, Arc<TableVersion>)> {
        Some((self.key.clone()?, self.version.clone()))
    }
}

pub(super) struct ShardStats<'a> {
    pub shard: &'a Shard,
    pub schema: &'a SchemaRef,
}

impl PruningStatistics for ShardStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.schema.index_of(column.name()).ok()?;
        Some(self.shard.mins[i].clone())
    }
    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.schema.index_of(column.name()).ok()?;
        Some(self.shard.maxs[i].clone())
    }
    fn num_containers(&self) -> usize {
        self.shard.batches.len()
    }
    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.schema.index_of(column.name()).ok()?;
        Some(self.shard.nulls[i].clone())
    }
    fn row_counts(&self) -> Option<ArrayRef> {
        Some(self.shard.rows.clone())
    }
    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[async_trait]
impl TableProvider for LoadedTable {
    fn schema(&self) -> SchemaRef {
        self.version.query_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(prune_only(filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        scan_version(
            &self.version,
            projection.cloned(),
            filters,
            state.execution_props(),
        )
    }
}

/// Filters prune whole batches; the engine still applies them to the rows that remain.
pub(super) fn prune_only(filters: &[&Expr]) -> Vec<TableProviderFilterPushDown> {
    vec![TableProviderFilterPushDown::Inexact; filters.len()]
}

/// The scan of `version`: `filters` prune whole batches by their statistics before anything is
/// read (the engine still applies them to the rows that remain).
pub(super) fn scan_version(
    version: &Arc<TableVersion>,
    projection: Option<Vec<usize>>,
    filters: &[Expr],
    props: &ExecutionProps,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = &version.schema;
    let predicate = match conjunction(filters.iter().cloned()) {
        Some(expr) => {
            let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
            let physical = create_physical_expr(
                &expr,
                &df_schema,
                props,
                &PhysicalPlanningContext::default(),
            )?;
            PruningPredicateBuilder::new()
                .with_file_schema(schema.clone())
                .build(physical)
        }
        None => None,
    };
    let keep: Vec<Vec<usize>> = version
        .shards
        .iter()
        .map(|shard| {
            let keep = predicate
                .as_ref()
                .and_then(|p| p.prune(&ShardStats { shard, schema }).ok());
            match keep {
                Some(keep) => (0..shard.batches.len()).filter(|&b| keep[b]).collect(),
                None => (0..shard.batches.len()).collect(),
            }
        })
        .collect();
    let scan = LoadedScan::new(version.clone(), keep, projection)?;
    let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(scan);
    Ok(exec)
}
