//! What a `CALL sys.HEATWAVE_LOAD` reports, as HeatWave keeps it in
//! `sys.heatwave_autopilot_report` ([`tarn_engine::query::report`]), made from the call's whole
//! answer; and the answer as the call's `output` option shapes it.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use serde_json::{Map, Value, json};
use tarn_catalog::{LoadMode, LoadOutput};
use tarn_engine::QueryStream;
use tarn_engine::query::report::{AutopilotReport, schema};

use crate::error::{Result, ServiceError};

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The answer's rows as JSON objects (NULLs left out).
fn objects(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        w.write(b).map_err(internal)?;
    }
    w.finish().map_err(internal)?;
    let text = w.into_inner();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&text).map_err(internal)
}

/// The report rows (type, log) an answer row gives.
fn messages(mode: LoadMode, row: Map<String, Value>) -> Vec<(&'static str, Value)> {
    match mode {
        LoadMode::DryRun => {
            let mut row = row;
            let sql = row.remove("sql");
            match row.get("table").and_then(Value::as_str).map(str::to_string) {
                Some(table) => {
                    let alter = match table.split_once('.') {
                        Some((db, t)) => format!("ALTER TABLE `{db}`.`{t}` SECONDARY_LOAD;"),
                        None => format!("ALTER TABLE `{table}` SECONDARY_LOAD;"),
                    };
                    let mut out = vec![("info", Value::Object(row))];
                    if let Some(Value::String(ddl)) = sql {
                        out.push(("sql", json!({ "sql": format!("{ddl};") })));
                    }
                    out.push(("sql", json!({ "sql": alter })));
                    out
                }
                None => {
                    if let Some(message) = sql {
                        row.insert("message".into(), message);
                    }
                    vec![("info", Value::Object(row))]
                }
            }
        }
        // A rejected row (it names its file) warns; a table that failed is an error.
        LoadMode::Validation | LoadMode::Normal => {
            let kind = match (mode, row.contains_key("file"), row.contains_key("error")) {
                (LoadMode::Validation, true, _) => "warn",
                (LoadMode::Normal, _, true) => "error",
                _ => "info",
            };
            vec![(kind, Value::Object(row))]
        }
    }
}

/// The report of a call's whole answer, and the answer shaped by `output`: `normal` as it is,
/// `compact` the table, what was done and any error (of a load), `silent` nothing.
pub(super) async fn report(
    mode: LoadMode,
    output: LoadOutput,
    answer: QueryStream,
) -> Result<(AutopilotReport, QueryStream)> {
    let answer_schema = answer.schema.clone();
    let batches = answer.collect().await?;
    let stage = match mode {
        LoadMode::Normal => "LOAD",
        LoadMode::Validation => "VALIDATION",
        LoadMode::DryRun => "DRYRUN",
    };
    let now = chrono::Utc::now().timestamp_micros();
    let (mut types, mut logs) = (Vec::new(), Vec::new());
    for row in objects(&batches)? {
        for (kind, log) in messages(mode, row) {
            types.push(kind);
            logs.push(tarn_catalog::json::to_text(&log));
        }
    }
    let n = types.len();
    let rows = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(UInt64Array::from_iter_values(1..=n as u64)) as ArrayRef,
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(vec![stage; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n])),
            Arc::new(StringArray::from(logs)),
        ],
    )
    .map_err(internal)?;
    let shaped = match (output, mode) {
        (LoadOutput::Silent, _) => {
            QueryStream::from_batches(Arc::new(arrow::datatypes::Schema::empty()), Vec::new())
        }
        (LoadOutput::Compact, LoadMode::Normal) => {
            let keep: Vec<usize> = ["table", "action", "error"]
                .iter()
                .filter_map(|c| answer_schema.index_of(c).ok())
                .collect();
            let projected = answer_schema.project(&keep).map_err(internal)?;
            let batches = batches
                .iter()
                .map(|b| b.project(&keep))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(internal)?;
            QueryStream::from_batches(Arc::new(projected), batches)
        }
        _ => QueryStream::from_batches(answer_schema, batches),
    };
    Ok((AutopilotReport(Arc::new(rows)), shaped))
}
