//! `tarn bench parquet`: Tarn's query engine (DataFusion with Tarn's session settings) over
//! Parquet files as they are, without loading them: what a user gets before `SECONDARY_LOAD`. The
//! TPC-H benchmark (`bench/tpch.sh`) runs it beside DuckDB over the same files.

use std::path::PathBuf;
use std::time::Instant;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Args)]
pub struct ParquetArgs {
    /// A table as `name=/path/to/file.parquet` (or a directory of them); repeat per table.
    #[arg(long = "table", required = true)]
    pub tables: Vec<String>,
    /// A JSON object of queries by name: `{"1": "SELECT ...", ...}`.
    #[arg(long)]
    pub queries: PathBuf,
    /// Timed runs per query, after one warm-up run.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Runs every query `runs` times after a warm-up and prints, as JSON, each query's run times in
/// seconds and its answer (from the warm-up run).
pub async fn parquet(args: ParquetArgs) -> Result<(), String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let ctx = SessionContext::new_with_config(tarn_engine::query::engine_config(cores));
    for t in &args.tables {
        let (name, path) = t
            .split_once('=')
            .ok_or_else(|| format!("--table '{t}': expected name=/path/to/file.parquet"))?;
        ctx.register_parquet(name, path, ParquetReadOptions::default())
            .await
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let text = std::fs::read_to_string(&args.queries)
        .map_err(|e| format!("{}: {e}", args.queries.display()))?;
    let queries: serde_json::Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.queries.display()))?;
    let mut out = serde_json::Map::new();
    for (name, sql) in &queries {
        let sql = sql
            .as_str()
            .ok_or_else(|| format!("query {name} is not a string"))?;
        let mut seconds = Vec::new();
        let mut answer = Value::Null;
        for run in 0..=args.runs {
            let started = Instant::now();
            let batches = ctx
                .sql(sql)
                .await
                .map_err(|e| format!("query {name}: {e}"))?
                .collect()
                .await
                .map_err(|e| format!("query {name}: {e}"))?;
            let took = started.elapsed().as_secs_f64();
            if run == 0 {
                answer = rows(&batches)?;
            } else {
                seconds.push(took);
            }
        }
        out.insert(name.clone(), json!({ "seconds": seconds, "rows": answer }));
    }
    use std::io::Write;
    let text = serde_json::to_string(&Value::Object(out)).map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())
}

/// The answer as JSON rows (arrays of values in column order).
fn rows(batches: &[arrow::record_batch::RecordBatch]) -> Result<Value, String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        let refs: Vec<&arrow::record_batch::RecordBatch> = batches.iter().collect();
        w.write_batches(&refs).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    let objects: Value = if buf.is_empty() {
        Value::Array(vec![])
    } else {
        serde_json::from_slice(&buf).map_err(|e| e.to_string())?
    };
    let names: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(Value::Array(
        objects
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| Value::Array(names.iter().map(|n| o[n].clone()).collect()))
            .collect(),
    ))
}
