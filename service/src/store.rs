//! The sharded in-memory store: per table, the published [`TableVersion`] and the load status.
//!
//! A version is immutable: N shards of Arrow batches with per-batch statistics, grouped by source
//! file into segments. Publishing swaps one `Arc`, so a query that took a version keeps reading it
//! while the next is published, and a failed load never touches the published one.
//!
//! This module holds data and status only; loading is [`crate::load`], querying [`crate::sql`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{ArrayData, ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use chrono::{DateTime, Utc};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use serde::Serialize;
use tarn_catalog::TableKey;
use tarn_connectors::{Manifest, RejectedRow};

use crate::error::{Result, ServiceError};

/// Min, max and null count of each column of one batch.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub min: Vec<ScalarValue>,
    pub max: Vec<ScalarValue>,
    pub nulls: Vec<u64>,
    pub rows: u64,
}

impl BatchStats {
    pub fn compute(batch: &RecordBatch) -> Self {
        let mut min = Vec::with_capacity(batch.num_columns());
        let mut max = Vec::with_capacity(batch.num_columns());
        let mut nulls = Vec::with_capacity(batch.num_columns());
        for col in batch.columns() {
            let t = col.data_type();
            let null = || ScalarValue::try_from(t).unwrap_or(ScalarValue::Null);
            let mn = MinAccumulator::try_new(t)
                .and_then(|mut a| {
                    a.update_batch(std::slice::from_ref(col))
                        .and_then(|_| a.evaluate())
                })
                .unwrap_or_else(|_| null());
            let mx = MaxAccumulator::try_new(t)
                .and_then(|mut a| {
                    a.update_batch(std::slice::from_ref(col))
                        .and_then(|_| a.evaluate())
                })
                .unwrap_or_else(|_| null());
            min.push(mn);
            max.push(mx);
            nulls.push(col.null_count() as u64);
        }
        Self {
            min,
            max,
            nulls,
            rows: batch.num_rows() as u64,
        }
    }
}

/// The batches read from one source file, with their statistics. Shared (never copied) between
/// versions that keep the file.
#[derive(Debug)]
pub struct Segment {
    pub file: String,
    /// Rows of this file left out of a non-strict load.
    pub rejected: Vec<RejectedRow>,
    pub batches: Vec<RecordBatch>,
    pub stats: Vec<BatchStats>,
    pub bytes: u64,
    pub rows: u64,
    /// Whether the rows are in the order of the table's placement key (see
    /// [`crate::placement`]); false as read from a file or a snapshot.
    pub placed: bool,
}

impl Segment {
    pub fn new(file: String, batches: Vec<RecordBatch>, rejected: Vec<RejectedRow>) -> Self {
        // Readers build with headroom; loaded data keeps only what it uses.
        let batches: Vec<RecordBatch> = batches.into_iter().map(shrink).collect();
        let stats = batches.iter().map(BatchStats::compute).collect();
        let bytes = memory_size(&batches);
        Self::from_parts(file, batches, stats, rejected, bytes)
    }

    fn from_parts(
        file: String,
        batches: Vec<RecordBatch>,
        stats: Vec<BatchStats>,
        rejected: Vec<RejectedRow>,
        bytes: u64,
    ) -> Self {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        Self {
            file,
            rejected,
            batches,
            stats,
            bytes,
            rows,
            placed: false,
        }
    }

    /// The same rows as `self`, reordered by the placement key into `batches`.
    pub fn placed(&self, batches: Vec<RecordBatch>) -> Self {
        Self {
            placed: true,
            ..Self::new(self.file.clone(), batches, self.rejected.clone())
        }
    }

    /// Batches read back from a snapshot: already compact, so kept as they are, pointing into
    /// the snapshot file's `bytes` (one allocation, which is what they hold) without a copy.
    /// Statistics come with them when the snapshot kept them (else they are computed again).
    pub fn recovered(
        file: String,
        batches: Vec<RecordBatch>,
        stats: Option<Vec<BatchStats>>,
        rejected: Vec<RejectedRow>,
        bytes: u64,
    ) -> Self {
        let stats = stats.unwrap_or_else(|| batches.iter().map(BatchStats::compute).collect());
        Self::from_parts(file, batches, stats, rejected, bytes)
    }

    /// The same data under `schema`, which adds columns at the end: they hold NULLs.
    pub fn widen(&self, schema: &SchemaRef) -> Self {
        let batches = self
            .batches
            .iter()
            .map(|b| {
                let mut cols = b.columns().to_vec();
                for f in schema.fields().iter().skip(cols.len()) {
                    cols.push(arrow::array::new_null_array(f.data_type(), b.num_rows()));
                }
                RecordBatch::try_new(schema.clone(), cols).expect("added columns are nullable")
            })
            .collect();
        Self::new(self.file.clone(), batches, self.rejected.clone())
    }
}

/// Bytes the batches hold, counting each allocation once: batches may share buffers (Parquet's
/// string views point into page buffers shared by many batches), which
/// `RecordBatch::get_array_memory_size` would count again for every batch.
pub fn memory_size(batches: &[RecordBatch]) -> u64 {
    fn walk(d: &ArrayData, seen: &mut HashSet<usize>, total: &mut u64) {
        let nulls = d.nulls().map(|n| n.buffer());
        for b in d.buffers().iter().chain(nulls) {
            if seen.insert(b.data_ptr().as_ptr() as usize) {
                *total += b.capacity() as u64;
            }
        }
        for c in d.child_data() {
            walk(c, seen, total);
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for b in batches {
        for c in b.columns() {
            walk(&c.to_data(), &mut seen, &mut total);
        }
    }
    total
}

fn shrink(batch: RecordBatch) -> RecordBatch {
    let (schema, mut columns, rows) = batch.into_parts();
    for c in &mut columns {
        // String views from Parquet point into whole decoded pages; keep only the bytes they use.
        match c.data_type() {
            DataType::Utf8View => *c = Arc::new(c.as_string_view().gc()),
            DataType::BinaryView => *c = Arc::new(c.as_binary_view().gc()),
            _ => arrow::array::Array::shrink_to_fit(c),
        }
    }
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("same columns, same schema")
}

/// One shard: the batches a scan partition reads, and their statistics as arrays (one entry per
/// batch) in the shape DataFusion's pruning wants.
#[derive(Debug)]
pub struct Shard {
    pub batches: Vec<RecordBatch>,
    pub mins: Vec<ArrayRef>,
    pub maxs: Vec<ArrayRef>,
    pub nulls: Vec<ArrayRef>,
    pub rows: ArrayRef,
    /// Per column, its min, max and null count over the whole shard (for the planner).
    pub columns: Vec<datafusion::common::ColumnStatistics>,
}

#[derive(Debug)]
pub struct TableVersion {
    pub version: u64,
    pub schema: SchemaRef,
    /// `schema` as queries see this version: a column without a single NULL in it is NOT NULL.
    /// The planner then needs no NULL handling for it (a `NOT IN` over it becomes a plain anti
    /// join, which can build on its smaller side). Loads still conform to `schema`.
    pub query_schema: SchemaRef,
    pub segments: Vec<Arc<Segment>>,
    pub shards: Vec<Shard>,
    pub manifest: Manifest,
    pub rows: u64,
    pub bytes: u64,
    pub rejected: Vec<RejectedRow>,
    pub loaded_at: DateTime<Utc>,
}

impl TableVersion {
    /// Lays the segments' batches out over `nshards` shards, round robin, so every shard gets a
    /// similar share of every file.
    pub fn build(
        version: u64,
        schema: SchemaRef,
        segments: Vec<Arc<Segment>>,
        manifest: Manifest,
        nshards: usize,
    ) -> Self {
        let nshards = nshards.max(1);
        let mut parts: Vec<Vec<(RecordBatch, &BatchStats)>> =
            (0..nshards).map(|_| Vec::new()).collect();
        let mut i = 0;
        for seg in &segments {
            for (b, s) in seg.batches.iter().zip(&seg.stats) {
                parts[i % nshards].push((b.clone(), s));
                i += 1;
            }
        }
        let ncols = schema.fields().len();
        let shards: Vec<Shard> = parts
            .into_iter()
            .map(|part| {
                let col = |f: &dyn Fn(&BatchStats) -> ScalarValue, c: usize| -> ArrayRef {
                    let vals: Vec<ScalarValue> = part.iter().map(|(_, s)| f(s)).collect();
                    if vals.is_empty() {
                        return arrow::array::new_empty_array(schema.field(c).data_type());
                    }
                    ScalarValue::iter_to_array(vals).unwrap_or_else(|_| {
                        arrow::array::new_null_array(schema.field(c).data_type(), part.len())
                    })
                };
                let mut shard = Shard {
                    columns: Vec::new(),
                    mins: (0..ncols).map(|c| col(&|s| s.min[c].clone(), c)).collect(),
                    maxs: (0..ncols).map(|c| col(&|s| s.max[c].clone(), c)).collect(),
                    nulls: (0..ncols)
                        .map(|c| {
                            Arc::new(UInt64Array::from_iter_values(
                                part.iter().map(|(_, s)| s.nulls[c]),
                            )) as ArrayRef
                        })
                        .collect(),
                    rows: Arc::new(UInt64Array::from_iter_values(
                        part.iter().map(|(_, s)| s.rows),
                    )),
                    batches: part.into_iter().map(|(b, _)| b).collect(),
                };
                shard.columns = (0..ncols)
                    .map(|c| {
                        crate::sql::column_statistics(&shard, c, schema.field(c).data_type(), None)
                    })
                    .collect();
                shard
            })
            .collect();
        let query_schema = without_nulls(&schema, &shards);
        let rows = segments.iter().map(|s| s.rows).sum();
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let rejected = segments
            .iter()
            .flat_map(|s| s.rejected.iter().cloned())
            .collect();
        Self {
            version,
            schema,
            query_schema,
            segments,
            shards,
            manifest,
            rows,
            bytes,
            rejected,
            loaded_at: Utc::now(),
        }
    }
}

/// `schema` with every column that holds no NULL in `shards` (by their column statistics)
/// marked NOT NULL.
fn without_nulls(schema: &SchemaRef, shards: &[Shard]) -> SchemaRef {
    let no_nulls = |c: usize| {
        shards
            .iter()
            .all(|s| s.columns[c].null_count == datafusion::common::stats::Precision::Exact(0))
    };
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| match f.is_nullable() && no_nulls(c) {
            true => Arc::new(f.as_ref().clone().with_nullable(false)),
            false => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// LOAD_STATUS values, named as HeatWave's `performance_schema.rpd_tables` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LoadState {
    #[serde(rename = "NOLOAD_RPDGSTABSTATE")]
    NoLoad,
    #[serde(rename = "LOADING_RPDGSTABSTATE")]
    Loading,
    #[serde(rename = "AVAIL_RPDGSTABSTATE")]
    Avail,
    #[serde(rename = "STALE_RPDGSTABSTATE")]
    Stale,
    #[serde(rename = "UNLOADING_RPDGSTABSTATE")]
    Unloading,
    #[serde(rename = "INRECOVERY_RPDGSTABSTATE")]
    InRecovery,
    #[serde(rename = "RECOVERYFAILED_RPDGSTABSTATE")]
    RecoveryFailed,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoLoad => "NOLOAD_RPDGSTABSTATE",
            Self::Loading => "LOADING_RPDGSTABSTATE",
            Self::Avail => "AVAIL_RPDGSTABSTATE",
            Self::Stale => "STALE_RPDGSTABSTATE",
            Self::Unloading => "UNLOADING_RPDGSTABSTATE",
            Self::InRecovery => "INRECOVERY_RPDGSTABSTATE",
            Self::RecoveryFailed => "RECOVERYFAILED_RPDGSTABSTATE",
        }
    }
}

/// What `rpd_tables` and `GET /v1/tables` show of a table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub load_status: LoadState,
    /// 0 to 100.
    pub load_progress: f64,
    pub load_start: Option<DateTime<Utc>>,
    pub load_end: Option<DateTime<Utc>>,
    /// Why the last load failed, if it did (the published version, if any, still serves).
    pub last_error: Option<String>,
    /// When a load or refresh last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When the scheduler will refresh the table next (tables with a refresh interval).
    pub next_refresh: Option<DateTime<Utc>>,
    /// Scheduled refreshes failed in a row (each one waits longer).
    pub refresh_failures: u32,
    /// After a restart: where the table came back from, when, and why its snapshot was not used.
    pub recovery_source: Option<crate::snapshot::RecoverySource>,
    pub recovery_start: Option<DateTime<Utc>>,
    pub recovery_end: Option<DateTime<Utc>>,
    pub recovery_error: Option<String>,
    /// The newest version persisted as a snapshot, when, what writing it cost, or why it failed.
    pub snapshot_version: Option<u64>,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub snapshot_bytes_written: u64,
    pub snapshot_seconds: f64,
    pub snapshot_error: Option<String>,
    /// The region and location of the copy the last load or refresh read (see `[[replicas]]`).
    pub source_region: Option<String>,
    pub source_location: Option<String>,
    /// Tables with a placement key: `pending` while rows wait to be ordered by it, `placed`
    /// once every file's rows are, or why it could not be done.
    pub placement: Option<String>,
}

impl TableStatus {
    /// Coming back after a restart: from its snapshot, or by the full load that replaces it.
    pub fn recovering(&self) -> bool {
        self.recovery_start.is_some() && self.recovery_end.is_none()
    }
}

impl Default for TableStatus {
    fn default() -> Self {
        Self {
            load_status: LoadState::NoLoad,
            load_progress: 0.0,
            load_start: None,
            load_end: None,
            last_error: None,
            last_success: None,
            next_refresh: None,
            recovery_source: None,
            recovery_start: None,
            recovery_end: None,
            recovery_error: None,
            snapshot_version: None,
            snapshot_at: None,
            snapshot_bytes_written: 0,
            snapshot_seconds: 0.0,
            snapshot_error: None,
            refresh_failures: 0,
            source_region: None,
            source_location: None,
            placement: None,
        }
    }
}

#[derive(Debug)]
pub struct TableEntry {
    pub key: TableKey,
    current: RwLock<Option<Arc<TableVersion>>>,
    status: Mutex<TableStatus>,
    /// Held for the length of a load or unload, so two never run at once on one table.
    pub load_lock: tokio::sync::Mutex<()>,
    next_version: AtomicU64,
    /// Bytes of source files read by the load in progress, and how many it will read.
    pub progress: Arc<AtomicU64>,
    progress_total: AtomicU64,
    history: Mutex<std::collections::VecDeque<HistoryEntry>>,
    /// For Delta tables, the log as the last load or refresh left it, so the next one replays
    /// only the commits since.
    delta: Mutex<Option<tarn_connectors::read::DeltaTable>>,
    /// A refresh that was asked for and has not started yet: later triggers join it.
    pub pending_refresh: Mutex<Option<crate::load::RefreshJob>>,
    /// A snapshot writer runs for this table / a newer version waits to be written.
    pub snapshot_running: std::sync::atomic::AtomicBool,
    pub snapshot_dirty: std::sync::atomic::AtomicBool,
    /// The copy the last load or refresh read, and what it carried over from the one before.
    source: Mutex<Option<crate::regions::SourceState>>,
}

/// How many loads and refreshes each table remembers.
pub const HISTORY_LEN: usize = 100;

/// One finished load or refresh: its report, or why it failed.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub finished_at: DateTime<Utc>,
    pub kind: &'static str,
    pub report: Option<crate::load::LoadReport>,
    pub error: Option<String>,
}

impl TableEntry {
    pub fn delta_handle(&self) -> Option<tarn_connectors::read::DeltaTable> {
        self.delta.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_delta_handle(&self, table: tarn_connectors::read::DeltaTable) {
        *self.delta.lock().unwrap_or_else(|e| e.into_inner()) = Some(table);
    }

    /// Forgets the Delta log handle: the next load or refresh opens the log afresh (from
    /// another copy, say).
    pub fn clear_delta_handle(&self) {
        *self.delta.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn source(&self) -> Option<crate::regions::SourceState> {
        self.source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_source(&self, source: crate::regions::SourceState) {
        let (region, uri) = (source.region.clone(), source.uri.clone());
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
        self.update_status(|s| {
            s.source_region = region;
            s.source_location = Some(tarn_connectors::location::redact(&uri));
        });
    }

    pub fn record(&self, entry: HistoryEntry) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY_LEN {
            h.pop_front();
        }
        h.push_back(entry);
    }

    /// Oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn start_progress(&self, total_bytes: u64) {
        self.progress.store(0, Ordering::Relaxed);
        self.progress_total
            .store(total_bytes.max(1), Ordering::Relaxed);
    }

    pub fn current(&self) -> Option<Arc<TableVersion>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The status; while a load runs, its progress is the share of source bytes read so far.
    pub fn status(&self) -> TableStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if s.load_status == LoadState::Loading {
            let total = self.progress_total.load(Ordering::Relaxed);
            if total > 0 {
                let done = self.progress.load(Ordering::Relaxed);
                s.load_progress = (done as f64 / total as f64 * 100.0).min(99.9);
            }
        }
        s
    }

    pub fn update_status(&self, f: impl FnOnce(&mut TableStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Versions published from now on are numbered from `next` (a recovered table goes on
    /// from its snapshot's version).
    pub fn set_next_version(&self, next: u64) {
        self.next_version
            .fetch_max(next.saturating_sub(1), Ordering::SeqCst);
    }

    pub fn next_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn swap(&self, v: Option<Arc<TableVersion>>) -> Option<Arc<TableVersion>> {
        std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            v,
        )
    }
}

#[derive(Debug)]
pub struct MemoryStore {
    tables: RwLock<HashMap<TableKey, Arc<TableEntry>>>,
    limit: Option<u64>,
    /// Bytes held by loads in progress, counted against the limit before they publish.
    reserved: AtomicU64,
    pub shards: usize,
    pub loads_ok: AtomicU64,
    pub loads_failed: AtomicU64,
    /// Refresh triggers that joined a refresh already asked for.
    pub refreshes_coalesced: AtomicU64,
    pub jobs: crate::load::RefreshJobs,
    /// Optimized plans of queries run before; emptied whenever a version is published or freed.
    pub plans: crate::sql::PlanCache,
}

impl MemoryStore {
    pub fn new(limit: Option<u64>, shards: usize) -> Self {
        Self {
            tables: RwLock::new(HashMap::new()),
            limit,
            reserved: AtomicU64::new(0),
            shards: shards.max(1),
            loads_ok: AtomicU64::new(0),
            loads_failed: AtomicU64::new(0),
            refreshes_coalesced: AtomicU64::new(0),
            jobs: Default::default(),
            plans: crate::sql::PlanCache::new(crate::sql::PLAN_CACHE_ENTRIES),
        }
    }

    /// Keeps up to `entries` query plans (0: none).
    pub fn with_plan_cache(mut self, entries: usize) -> Self {
        self.plans = crate::sql::PlanCache::new(entries);
        self
    }

    pub fn entry(&self, key: &TableKey) -> Arc<TableEntry> {
        if let Some(e) = self.get(key) {
            return e;
        }
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        t.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(TableEntry {
                    key: key.clone(),
                    current: RwLock::new(None),
                    status: Mutex::new(TableStatus::default()),
                    load_lock: tokio::sync::Mutex::new(()),
                    next_version: AtomicU64::new(0),
                    progress: Arc::new(AtomicU64::new(0)),
                    progress_total: AtomicU64::new(0),
                    history: Mutex::new(std::collections::VecDeque::new()),
                    delta: Mutex::new(None),
                    pending_refresh: Mutex::new(None),
                    snapshot_running: Default::default(),
                    snapshot_dirty: Default::default(),
                    source: Mutex::new(None),
                })
            })
            .clone()
    }

    pub fn get(&self, key: &TableKey) -> Option<Arc<TableEntry>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Frees the table's data and forgets it (DROP TABLE).
    pub fn remove(&self, key: &TableKey) {
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.plans.clear();
    }

    pub fn used_bytes(&self) -> u64 {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        t.values()
            .filter_map(|e| e.current())
            .map(|v| v.bytes)
            .sum()
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Counts `bytes` more of a load in progress against the limit; refuses when it would exceed it.
    /// The previous version of the table being loaded still counts: it serves until the swap.
    pub fn reserve(&self, key: &TableKey, bytes: u64) -> Result<Reservation<'_>> {
        if let Some(limit) = self.limit {
            let used = self.used_bytes();
            let reserved = self.reserved.fetch_add(bytes, Ordering::SeqCst) + bytes;
            if used + reserved > limit {
                self.reserved.fetch_sub(bytes, Ordering::SeqCst);
                return Err(ServiceError::MemoryLimit {
                    table: key.clone(),
                    needed: bytes,
                    available: limit.saturating_sub(used + reserved - bytes),
                    limit,
                });
            }
        } else {
            self.reserved.fetch_add(bytes, Ordering::SeqCst);
        }
        Ok(Reservation { store: self, bytes })
    }

    /// Makes `version` the table's current one; the previous one is freed once no query holds it.
    pub fn publish(&self, entry: &TableEntry, version: Arc<TableVersion>) {
        entry.swap(Some(version));
        // Plans pinning the previous version would keep it in memory.
        self.plans.clear();
        // What the load or placement decoded and dropped is not needed again soon.
        crate::allocator::return_unused_soon();
    }

    pub fn unload(&self, entry: &TableEntry) -> Option<Arc<TableVersion>> {
        let gone = entry.swap(None);
        self.plans.clear();
        crate::allocator::return_unused_soon();
        gone
    }

    pub fn entries(&self) -> Vec<Arc<TableEntry>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Bytes held against the memory limit by a load in progress; released when dropped (after the
/// version is published, its bytes count as used instead).
#[derive(Debug)]
pub struct Reservation<'a> {
    store: &'a MemoryStore,
    bytes: u64,
}

impl Reservation<'_> {
    pub fn grow(&mut self, key: &TableKey, bytes: u64) -> Result<()> {
        let r = self.store.reserve(key, bytes)?;
        std::mem::forget(r);
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.store.reserved.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn shared_buffers_count_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let ints = Int64Array::from_iter_values(0..1000);
        let strs =
            StringArray::from_iter((0..1000).map(|i| (i % 3 != 0).then(|| format!("value {i}"))));
        let whole = RecordBatch::try_new(schema, vec![Arc::new(ints), Arc::new(strs)]).unwrap();
        let one = memory_size(std::slice::from_ref(&whole));
        assert!((8000 + 4004 + 5000..25_000).contains(&one), "{one}");
        // Ten slices of one batch share its buffers: same memory, not ten times it.
        let slices: Vec<RecordBatch> = (0..10).map(|i| whole.slice(i * 100, 100)).collect();
        assert_eq!(memory_size(&slices), one);
        assert!(
            slices
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum::<u64>()
                > 5 * one
        );
    }

    #[test]
    fn progress_is_live_while_loading() {
        let store = MemoryStore::new(None, 2);
        let e = store.entry(&TableKey::new("d", "t"));
        e.update_status(|s| s.load_status = LoadState::Loading);
        e.start_progress(1000);
        e.progress.fetch_add(250, Ordering::Relaxed);
        assert_eq!(e.status().load_progress, 25.0);
        e.progress.fetch_add(750, Ordering::Relaxed);
        assert_eq!(e.status().load_progress, 99.9, "100 only once published");
        e.update_status(|s| {
            s.load_status = LoadState::Avail;
            s.load_progress = 100.0;
        });
        assert_eq!(e.status().load_progress, 100.0);
    }

    #[test]
    fn shards_get_batches_round_robin_with_their_stats() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = |lo: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(lo..lo + 10))],
            )
            .unwrap()
        };
        let seg = Segment::new("f".into(), (0..5).map(|i| batch(i * 10)).collect(), vec![]);
        assert_eq!(seg.rows, 50);
        let v = TableVersion::build(
            1,
            schema.clone(),
            vec![Arc::new(seg)],
            Manifest::default(),
            2,
        );
        assert_eq!(v.shards[0].batches.len(), 3);
        assert_eq!(v.shards[1].batches.len(), 2);
        let mins = v.shards[1].mins[0]
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let maxs = v.shards[1].maxs[0]
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(mins.values(), &[10, 30]);
        assert_eq!(maxs.values(), &[19, 39]);
        assert_eq!(v.rows, 50);
    }
}
