//! Data placement: a table declared with a placement key (HeatWave's `DATA_PLACEMENT_KEY`) has the
//! rows of each file ordered by that key once they are loaded.
//!
//! Ordering runs in the background, after the load or refresh has published: the table answers
//! at once from file order, and a moment later from the same rows in key order (the version
//! number does not change, the data does not either). The table's status says `pending` until
//! then and `placed` after. Placement listens to the store for publishes, and takes the table's
//! writer lock, so it never races a load, a refresh or an unload; it holds the reordered copy
//! against the memory limit while it runs: if that copy does not fit, the rows stay in file order
//! and the status says why.
//!
//! Ordered rows give every batch a narrow min/max on the key, so a filter or a join's run-time
//! filter on it skips most batches without reading them: a one-year range over seven years of
//! orders reads about a seventh of the batches. Each file is ordered in runs of 32 batches, the
//! runs shared out over the cores: batches inside a run are ordered and narrow, which is what
//! batch-level pruning needs, and a run is small enough to be reordered inside the CPU cache.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{SortColumn, concat, interleave_record_batch, lexsort_to_indices};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use tarn_catalog::{CatalogStore, TableKey};
use tarn_engine::store::{
    MemoryStore, PublishCause, StoreEvent, StoreListener, TableEntry, TableVersion,
};
use tracing::{info, warn};

use crate::error::{Result, ServiceError};

/// Rows per batch after placement (the size the readers produce).
const BATCH_ROWS: usize = 8192;

/// Rows ordered together. Small enough that one run's column fits in the CPU cache while its rows
/// are gathered (a whole-file order costs several times more for the same data), large enough
/// that each of its 32 batches spans a thirty-second of the key's range.
const RUN_ROWS: usize = 32 * BATCH_ROWS;

/// Orders rows by placement keys after each publish: listens to the store.
pub struct Placement {
    catalog: Arc<CatalogStore>,
}

impl Placement {
    pub fn new(catalog: Arc<CatalogStore>) -> Self {
        Self { catalog }
    }
}

impl StoreListener for Placement {
    fn on_change(
        &self,
        memory: &Arc<MemoryStore>,
        event: &StoreEvent<'_>,
    ) -> Option<BoxFuture<'static, ()>> {
        // A cluster's workers order their own parts (their definitions carry the key).
        if let StoreEvent::Published {
            entry,
            cause,
            version,
        } = event
            && *cause != PublishCause::Placement
            && !version.is_remote()
        {
            order_in_background(&self.catalog, memory, entry);
        }
        None
    }
}

/// After a publish: orders the table's rows by its placement key in the background, if it has one
/// and some rows are not in that order yet.
fn order_in_background(
    catalog: &Arc<CatalogStore>,
    memory: &Arc<MemoryStore>,
    entry: &Arc<TableEntry>,
) {
    let needed = catalog
        .get(&entry.key)
        .is_ok_and(|def| !def.options.placement_key.is_empty());
    if !needed
        || entry
            .current()
            .is_none_or(|v| v.segments.iter().all(|s| s.placed))
    {
        return;
    }
    entry.update_status(|s| s.placement = Some("pending".into()));
    let (catalog, memory, entry) = (catalog.clone(), memory.clone(), entry.clone());
    tokio::spawn(async move {
        if let Err(e) = place_table(&catalog, &memory, &entry).await {
            warn!(table = %entry.key, error = %e, "rows not placed by the key");
            entry.update_status(|s| s.placement = Some(format!("not placed: {e}")));
        }
    });
}

async fn place_table(
    catalog: &CatalogStore,
    memory: &Arc<MemoryStore>,
    entry: &Arc<TableEntry>,
) -> Result<()> {
    let key = &entry.key;
    let _guard = entry.writer.lock().await;
    let def = catalog.get(key)?;
    let Some(current) = entry.current() else {
        return Ok(());
    };
    let columns = key_columns(key, &current.schema, &def.options.placement_key)?;
    let unplaced: u64 = current
        .segments
        .iter()
        .filter(|s| !s.placed)
        .map(|s| s.bytes)
        .sum();
    if unplaced == 0 {
        return Ok(());
    }
    // The reordered copy exists beside the original until the original is freed.
    let _reservation = memory.reserve(key, unplaced)?;
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut segments = Vec::with_capacity(current.segments.len());
    for seg in &current.segments {
        if seg.placed {
            segments.push(seg.clone());
            continue;
        }
        let (seg, columns) = (seg.clone(), columns.clone());
        let placed = tokio::task::spawn_blocking(move || {
            place(seg.batches.clone(), &columns, threads)
                .map(|batches| seg.placed(batches))
                .map_err(|e| format!("{}: {e}", seg.file))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("placement task failed: {e}")))?
        .map_err(ServiceError::Internal)?;
        segments.push(Arc::new(placed));
    }
    let mut next = TableVersion::build(
        current.version,
        current.schema.clone(),
        segments,
        current.manifest.clone(),
        memory.shards,
    );
    next.loaded_at = current.loaded_at;
    memory
        .publish(entry, Arc::new(next), PublishCause::Placement)
        .await;
    entry.update_status(|s| s.placement = Some("placed".into()));
    info!(table = %key, version = current.version, bytes = unplaced,
          seconds = started.elapsed().as_secs_f64(), "rows placed by the key");
    Ok(())
}

/// The columns of `schema` named by the placement key `names` of `table`, in order; the first
/// name that is not a column is the error.
pub fn key_columns(table: &TableKey, schema: &SchemaRef, names: &[String]) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|name| {
            schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    ServiceError::BadRequest(format!(
                        "DATA_PLACEMENT_KEY of '{table}' names '{name}', which is not a column of the table"
                    ))
                })
        })
        .collect()
}

/// `batches` reordered by the columns `key` (ascending, nulls first) in ordered runs of about
/// [`RUN_ROWS`] rows, the runs spread over `threads` threads.
pub fn place(
    batches: Vec<RecordBatch>,
    key: &[usize],
    threads: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if key.is_empty() || total < 2 {
        return Ok(batches);
    }
    // Consecutive batches, up to RUN_ROWS rows each (at least one batch).
    let mut runs: Vec<&[RecordBatch]> = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, b) in batches.iter().enumerate() {
        if rows > 0 && rows + b.num_rows() > RUN_ROWS {
            runs.push(&batches[start..i]);
            (start, rows) = (i, 0);
        }
        rows += b.num_rows();
    }
    runs.push(&batches[start..]);
    let next = AtomicUsize::new(0);
    let mut placed: Vec<(usize, Result<Vec<RecordBatch>, ArrowError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.clamp(1, runs.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let r = next.fetch_add(1, Ordering::Relaxed);
                        let Some(run) = runs.get(r) else { break done };
                        done.push((r, place_run(run, key)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("placement thread panicked"))
            .collect()
    });
    placed.sort_by_key(|(r, _)| *r);
    let mut out = Vec::with_capacity(batches.len());
    for (_, run) in placed {
        out.extend(run?);
    }
    Ok(out)
}

/// One run: the key columns are gathered and sorted, then the rows are copied out in key order.
fn place_run(batches: &[RecordBatch], key: &[usize]) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut positions: Vec<(usize, usize)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        positions.extend((0..batch.num_rows()).map(|r| (b, r)));
    }
    let sort_columns = key
        .iter()
        .map(|&c| {
            let parts: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            Ok(SortColumn {
                values: concat(&parts)? as ArrayRef,
                options: None,
            })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let order = lexsort_to_indices(&sort_columns, None)?;
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    order
        .values()
        .chunks(BATCH_ROWS)
        .map(|chunk| {
            let rows: Vec<(usize, usize)> = chunk.iter().map(|&i| positions[i as usize]).collect();
            interleave_record_batch(&refs, &rows)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;

    #[test]
    fn rows_come_out_ordered_by_the_key_in_runs_and_none_is_lost() {
        const N: i32 = 600_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("s", DataType::Utf8, false),
        ]));
        // 600,000 rows in batches of 3,000, the key descending with a null.
        let batches: Vec<RecordBatch> = (0..N)
            .collect::<Vec<i32>>()
            .chunks(3000)
            .map(|c| {
                let keys: Vec<Option<i32>> = c
                    .iter()
                    .map(|&i| if i == 7 { None } else { Some(N - i) })
                    .collect();
                let strings: Vec<String> = c.iter().map(|i| format!("row {i}")).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int32Array::from(keys)),
                        Arc::new(StringArray::from(strings)),
                    ],
                )
                .unwrap()
            })
            .collect();
        let table = TableKey::new("d", "t");
        let key = key_columns(&table, &schema, &["K".to_string()]).unwrap();
        let placed = place(batches, &key, 2).unwrap();
        assert_eq!(
            placed.iter().map(|b| b.num_rows()).sum::<usize>(),
            N as usize
        );
        assert!(placed.iter().all(|b| b.num_rows() <= BATCH_ROWS));
        // Two runs, each ascending, every key still beside its own string.
        let mut runs = 0;
        let mut last: Option<Option<i32>> = None;
        for b in &placed {
            let k = b.column(0).as_primitive::<Int32Type>();
            let s = b.column(1).as_string::<i32>();
            for r in 0..b.num_rows() {
                let key = k.is_valid(r).then(|| k.value(r));
                let row: i32 = s.value(r)[4..].parse().unwrap();
                assert_eq!(key, (row != 7).then_some(N - row));
                if last.is_none_or(|l| key < l) {
                    runs += 1;
                }
                last = Some(key);
            }
        }
        // Runs of whole input batches up to RUN_ROWS rows: 87 batches each.
        assert_eq!(
            runs,
            (N as usize).div_ceil(RUN_ROWS / 3000 * 3000),
            "ordered runs"
        );
        let e = key_columns(&table, &schema, &["nope".to_string()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DATA_PLACEMENT_KEY of 'd.t' names 'nope', which is not a column of the table"
        );
    }
}
