//! `performance_schema`: HeatWave's status views (`rpd_tables`, `rpd_table_id`) and Tarn's
//! `tarn_rejected_rows`, built from the current status whenever a query names them. Column names
//! are lower case so that any unquoted spelling (`LOAD_STATUS`, `load_status`) finds them.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tarn_catalog::CatalogStore;

use crate::store::{LoadState, MemoryStore, TableStatus};

pub const TABLES: [&str; 4] = [
    "rpd_tables",
    "rpd_table_id",
    "tarn_rejected_rows",
    "tarn_refresh_history",
];

#[derive(Debug, Clone)]
pub struct SystemSchema {
    pub catalog: Arc<CatalogStore>,
    pub memory: Arc<MemoryStore>,
}

/// The databases a query may see, as a session setting (a `SessionConfig` extension): the status
/// views leave the others out. None: all of them.
#[derive(Debug, Clone, Default)]
pub struct VisibleDatabases(pub Option<Arc<BTreeSet<String>>>);

impl VisibleDatabases {
    pub fn sees(&self, db: &str) -> bool {
        self.0.as_ref().is_none_or(|dbs| dbs.contains(db))
    }
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn mem(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row of `rpd_tables` (and of `GET /v1/tables`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableRow {
    pub id: u64,
    pub schema_name: String,
    pub table_name: String,
    pub status: TableStatus,
    pub version: Option<u64>,
    pub nrows: u64,
    pub size_bytes: u64,
    pub rejected_rows: u64,
}

/// Status of every table in the catalog, loaded or not, in name order.
pub fn table_rows(catalog: &CatalogStore, memory: &MemoryStore) -> Vec<TableRow> {
    catalog
        .all_tables()
        .into_iter()
        .map(|(id, def)| {
            let entry = memory.get(&def.key);
            let current = entry.as_ref().and_then(|e| e.current());
            let mut status: TableStatus = entry.map(|e| e.status()).unwrap_or_default();
            // A table that serves a version is loaded, whatever its refresh is doing: every
            // reader of these rows (rpd_tables, the API, the status page) shows 100.
            if matches!(status.load_status, LoadState::Avail | LoadState::Stale) {
                status.load_progress = 100.0;
            }
            TableRow {
                id,
                schema_name: def.key.database.clone(),
                table_name: def.key.table.clone(),
                status,
                version: current.as_ref().map(|v| v.version),
                nrows: current.as_ref().map_or(0, |v| v.rows),
                size_bytes: current.as_ref().map_or(0, |v| v.bytes),
                rejected_rows: current.as_ref().map_or(0, |v| v.rejected.len() as u64),
            }
        })
        .collect()
}

impl SystemSchema {
    fn rpd_tables(&self, visible: &VisibleDatabases) -> Result<Arc<dyn TableProvider>> {
        let rows: Vec<TableRow> = table_rows(&self.catalog, &self.memory)
            .into_iter()
            .filter(|r| visible.sees(&r.schema_name))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt64, false),
            Field::new("nrows", DataType::UInt64, false),
            Field::new("load_status", DataType::Utf8, false),
            Field::new("load_progress", DataType::Float64, false),
            Field::new("size_bytes", DataType::UInt64, false),
            Field::new("load_start_timestamp", ts(), true),
            Field::new("load_end_timestamp", ts(), true),
            Field::new("recovery_source", DataType::Utf8, true),
            Field::new("recovery_start_timestamp", ts(), true),
            Field::new("recovery_end_timestamp", ts(), true),
            Field::new("version", DataType::UInt64, true),
            Field::new("load_error", DataType::Utf8, true),
            Field::new("rejected_rows", DataType::UInt64, false),
        ]));
        let micros = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_micros());
        mem(
            schema,
            vec![
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.id))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.nrows))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.status.load_status.as_str()),
                )),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|r| r.status.load_progress),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.size_bytes),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(
                    rows.iter().map(|r| micros(r.status.load_start)),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(
                    rows.iter().map(|r| micros(r.status.load_end)),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter()
                        .map(|r| r.status.recovery_source.map(|s| s.as_str())),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(
                    rows.iter().map(|r| micros(r.status.recovery_start)),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(
                    rows.iter().map(|r| micros(r.status.recovery_end)),
                )),
                Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.version))),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| r.status.last_error.clone()),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.rejected_rows),
                )),
            ],
        )
    }

    fn rpd_table_id(&self, visible: &VisibleDatabases) -> Result<Arc<dyn TableProvider>> {
        let mut tables = self.catalog.all_tables();
        tables.retain(|(_, def)| visible.sees(&def.key.database));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("schema_name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
        ]));
        mem(
            schema,
            vec![
                Arc::new(UInt64Array::from_iter_values(tables.iter().map(|t| t.0))),
                Arc::new(StringArray::from_iter_values(
                    tables.iter().map(|t| t.1.key.to_string()),
                )),
                Arc::new(StringArray::from_iter_values(
                    tables.iter().map(|t| t.1.key.database.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    tables.iter().map(|t| t.1.key.table.clone()),
                )),
            ],
        )
    }

    /// Every table's remembered loads and refreshes, oldest first.
    fn refresh_history(&self, visible: &VisibleDatabases) -> Result<Arc<dyn TableProvider>> {
        let mut rows = Vec::new();
        for (_, def) in self.catalog.all_tables() {
            if !visible.sees(&def.key.database) {
                continue;
            }
            if let Some(e) = self.memory.get(&def.key) {
                rows.extend(e.history().into_iter().map(|h| (def.key.clone(), h)));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("schema_name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("finished_at", ts(), false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("version_before", DataType::UInt64, true),
            Field::new("version", DataType::UInt64, true),
            Field::new("files_added", DataType::UInt64, true),
            Field::new("files_changed", DataType::UInt64, true),
            Field::new("files_removed", DataType::UInt64, true),
            Field::new("rows_added", DataType::UInt64, true),
            Field::new("rows_removed", DataType::UInt64, true),
            Field::new("bytes_read", DataType::UInt64, true),
            Field::new("seconds", DataType::Float64, true),
            Field::new("error", DataType::Utf8, true),
        ]));
        let rep = |f: &dyn Fn(&crate::store::LoadReport) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter(
                rows.iter().map(|(_, h)| h.report.as_ref().map(f)),
            ))
        };
        mem(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(k, _)| k.database.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(k, _)| k.table.clone()),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|(_, h)| h.finished_at.timestamp_micros()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, h)| h.kind),
                )),
                Arc::new(UInt64Array::from_iter(
                    rows.iter()
                        .map(|(_, h)| h.report.as_ref().and_then(|r| r.version_before)),
                )),
                rep(&|r| r.version),
                rep(&|r| r.files_added as u64),
                rep(&|r| r.files_changed as u64),
                rep(&|r| r.files_removed as u64),
                rep(&|r| r.rows_added),
                rep(&|r| r.rows_removed),
                rep(&|r| r.bytes_read),
                Arc::new(Float64Array::from_iter(
                    rows.iter()
                        .map(|(_, h)| h.report.as_ref().map(|r| r.seconds)),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|(_, h)| h.error.clone()),
                )),
            ],
        )
    }

    fn rejected_rows(&self, visible: &VisibleDatabases) -> Result<Arc<dyn TableProvider>> {
        let mut rows = Vec::new();
        for (_, def) in self.catalog.all_tables() {
            if !visible.sees(&def.key.database) {
                continue;
            }
            if let Some(v) = self.memory.get(&def.key).and_then(|e| e.current()) {
                for r in &v.rejected {
                    rows.push((def.key.clone(), v.version, r.clone()));
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("schema_name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("version", DataType::UInt64, false),
            Field::new("file", DataType::Utf8, false),
            Field::new("line", DataType::UInt64, false),
            Field::new("column_name", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, false),
        ]));
        mem(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.database.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.table.clone()),
                )),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.file.clone()),
                )),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2.line))),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| r.2.column.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.reason.clone()),
                )),
            ],
        )
    }
}

impl SystemSchema {
    /// The view `name` with the rows `visible` lets a query see.
    fn build(
        &self,
        name: &str,
        visible: &VisibleDatabases,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            "rpd_tables" => self.rpd_tables(visible).map(Some),
            "rpd_table_id" => self.rpd_table_id(visible).map(Some),
            "tarn_rejected_rows" => self.rejected_rows(visible).map(Some),
            "tarn_refresh_history" => self.refresh_history(visible).map(Some),
            _ => Ok(None),
        }
    }
}

/// A status view: its rows are built when it is scanned, from the status then, for the
/// databases the query's session may see.
#[derive(Debug)]
struct StatusView {
    name: String,
    schema: SchemaRef,
    system: SystemSchema,
}

#[async_trait]
impl TableProvider for StatusView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let visible = state
            .config()
            .get_extension::<VisibleDatabases>()
            .map(|v| v.as_ref().clone())
            .unwrap_or_default();
        let rows = self
            .system
            .build(&self.name, &visible)?
            .expect("a view that exists");
        rows.scan(state, projection, filters, limit).await
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let name = name.to_lowercase();
        // The columns come from a build with no row to hide; the rows, when it is scanned.
        let Some(all) = self.build(&name, &VisibleDatabases(Some(Arc::default())))? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(StatusView {
            name,
            schema: all.schema(),
            system: self.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name.to_lowercase().as_str())
    }
}
