//! `sys.heatwave_autopilot_report`: what the session's last `CALL sys.HEATWAVE_LOAD` reported,
//! as HeatWave keeps it: a row per message with its `id`, `type` (`info`, `warn`, `error`, or
//! `sql` for a generated statement), `stage`, `timestamp` and `log` (JSON: `$.sql` holds a
//! generated statement). Each session has its own; the session hands it to the query
//! ([`super::QueryContext::report`]) and the table reads it from there.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The schema `sys` that holds the report.
pub const SYS_SCHEMA: &str = "sys";
/// The report's name in it.
pub const REPORT_TABLE: &str = "heatwave_autopilot_report";

/// The report's columns.
pub fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt64, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("stage", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            tarn_catalog::types::json_field("log", false),
        ]))
    });
    SCHEMA.clone()
}

/// The rows of a session's report, as a session config extension.
#[derive(Debug, Clone)]
pub struct AutopilotReport(pub Arc<RecordBatch>);

#[derive(Debug)]
pub(super) struct ReportTable;

#[async_trait]
impl TableProvider for ReportTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows: Vec<RecordBatch> = state
            .config()
            .get_extension::<AutopilotReport>()
            .map(|r| vec![r.0.as_ref().clone()])
            .unwrap_or_default();
        MemTable::try_new(schema(), vec![rows])?
            .scan(state, projection, filters, limit)
            .await
    }
}
