//! SECONDARY_LOAD and refresh: list the table's files, read them (all of them, or for a refresh
//! only the added and changed ones) in parallel through the format readers, lay the result out in
//! shards and publish it as the table's next version.
//!
//! Bytes are counted against the memory limit as files arrive, so a load that would not fit stops
//! early and the published version (if any) keeps serving. Any failure leaves it in place and puts
//! the reason in the table's status.
//!
//! The seams: where to read from ([`source`]), what changed ([`diff`], pure), reading
//! ([`read`]), building the version ([`assemble`]), refresh jobs and their coalescing ([`jobs`]),
//! the refresh schedule ([`scheduler`]). The [`Loader`] owns a table's life in memory (load,
//! refresh, unload, drop); what reacts to a publish (snapshots, placement, kept plans) listens to
//! the store instead of being called from here.

mod assemble;
pub mod diff;
pub mod jobs;
mod keys;
mod read;
pub mod scheduler;
pub mod source;

pub use jobs::{JOBS_KEPT, RefreshJob, RefreshJobs};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::Utc;
use futures::FutureExt;
use tarn_catalog::{CatalogStore, TableDef, TableKey};
use tarn_connectors::StoreRegistry;
use tarn_connectors::read::DeltaTable;
use tarn_engine::store::{
    HistoryEntry, LoadReport, LoadState, MemoryStore, PublishCause, TableEntry, TableVersion,
};
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Result, ServiceError};
use crate::regions::{Regions, ReplicatedTables, TableCopies};
use assemble::Build;
use source::CopyState;

/// What a dry run expects of a table: its files, their bytes, its columns, and the rows and
/// memory a load would take.
#[derive(Debug)]
pub struct Estimate {
    pub files: usize,
    pub source_bytes: u64,
    pub columns: arrow::datatypes::SchemaRef,
    pub rows: u64,
    pub memory_bytes: u64,
}

impl Estimate {
    /// What `sample` (read as a load keeps it) holds, scaled from the `sampled` bytes of the
    /// files it was read from to all `source_bytes`.
    fn scaled(
        files: usize,
        source_bytes: u64,
        columns: arrow::datatypes::SchemaRef,
        sample: tarn_connectors::read::FileBatches,
        file: &str,
        sampled: f64,
    ) -> Self {
        let sample =
            tarn_engine::store::Segment::new(file.to_string(), sample.batches, sample.rejected);
        let scale = match sampled > 0.0 {
            true => source_bytes as f64 / sampled,
            false => 0.0,
        };
        Self {
            files,
            source_bytes,
            columns,
            rows: (sample.rows as f64 * scale).round() as u64,
            memory_bytes: (sample.bytes as f64 * scale).round() as u64,
        }
    }
}

/// What a validation found: files and rows read, and the rows a load would reject.
#[derive(Debug)]
pub struct Validation {
    pub files: usize,
    pub rows: u64,
    pub rejected: Vec<tarn_connectors::read::RejectedRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Load,
    Refresh,
}

impl Mode {
    /// The name reports, history and logs use.
    fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Refresh => "refresh",
        }
    }

    fn cause(self) -> PublishCause {
        match self {
            Self::Load => PublishCause::Load,
            Self::Refresh => PublishCause::Refresh,
        }
    }
}

/// What loading keeps of a table between its loads and refreshes.
#[derive(Debug, Default)]
pub struct TableLoads {
    /// A refresh that was asked for and has not started yet: later triggers join it.
    pending_refresh: Mutex<Option<RefreshJob>>,
    /// For Delta tables, the log as the last load or refresh left it, so the next one replays
    /// only the commits since.
    delta: Mutex<Option<DeltaTable>>,
    /// The copy the last load or refresh read, and what it carried over from the one before.
    copy: Mutex<Option<CopyState>>,
}

impl TableLoads {
    fn delta(&self) -> Option<DeltaTable> {
        self.delta.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_delta(&self, table: Option<DeltaTable>) {
        *self.delta.lock().unwrap_or_else(|e| e.into_inner()) = table;
    }

    fn copy(&self) -> Option<CopyState> {
        self.copy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_copy(&self, copy: CopyState) {
        *self.copy.lock().unwrap_or_else(|e| e.into_inner()) = Some(copy);
    }
}

/// Counts of what the loader did, for `/metrics`.
#[derive(Debug, Default)]
pub struct LoadCounters {
    pub loads_ok: AtomicU64,
    pub loads_failed: AtomicU64,
    /// Refresh triggers that joined a refresh already asked for.
    pub refreshes_coalesced: AtomicU64,
}

/// Where the rows are when this process coordinates a cluster: the workers build each version
/// of a table (the cluster's side is `crate::cluster`).
#[async_trait::async_trait]
pub trait Workers: Send + Sync {
    /// The next version of `def`: every worker loads (or, with `previous`, refreshes) its part;
    /// numbered by `entry` when there is one, `None` when nothing changed.
    async fn build(
        &self,
        def: &TableDef,
        previous: Option<&TableVersion>,
        entry: &TableEntry,
        report: &mut LoadReport,
    ) -> Result<Option<TableVersion>>;

    /// Frees the table's parts on every worker.
    async fn drop_table(&self, key: &TableKey) -> Result<()>;
}

/// Rows of files already read elsewhere: on a cluster's worker, the snapshots the other workers
/// wrote in the shared `snapshot_location`, so a lost worker's files are taken from its snapshot
/// rather than read and parsed again from the source.
#[async_trait::async_trait]
pub trait ReadElsewhere: Send + Sync {
    /// Of `files` (each with its index), those whose rows, read for `def` under `schema`, are
    /// found intact elsewhere: each index with its segment. Whatever is not found (or cannot be
    /// read) is left out, and the loader reads it from the source.
    async fn segments(
        &self,
        def: &TableDef,
        schema: &arrow::datatypes::SchemaRef,
        files: &[(usize, &tarn_connectors::listing::FileEntry)],
    ) -> Vec<(usize, tarn_engine::store::Segment)>;
}

/// Loads, refreshes, unloads and drops tables.
pub struct Loader {
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
    object_stores: Arc<StoreRegistry>,
    regions: Arc<Regions>,
    tables: RwLock<HashMap<TableKey, Arc<TableLoads>>>,
    jobs: RefreshJobs,
    pub counters: LoadCounters,
    /// The workers that hold the tables, when this process coordinates a cluster.
    workers: Option<Arc<dyn Workers>>,
    /// Where files already read by others may be found (a cluster's worker).
    elsewhere: Option<Arc<dyn ReadElsewhere>>,
}

impl Loader {
    pub fn new(
        catalog: Arc<CatalogStore>,
        memory: Arc<MemoryStore>,
        object_stores: Arc<StoreRegistry>,
        regions: Arc<Regions>,
    ) -> Self {
        Self {
            catalog,
            memory,
            object_stores,
            regions,
            tables: RwLock::new(HashMap::new()),
            jobs: RefreshJobs::default(),
            counters: LoadCounters::default(),
            workers: None,
            elsewhere: None,
        }
    }

    /// Files to read are looked for in `elsewhere` first.
    pub fn with_read_elsewhere(mut self, elsewhere: Option<Arc<dyn ReadElsewhere>>) -> Self {
        self.elsewhere = elsewhere;
        self
    }

    /// Loads and refreshes go to `workers`: this process coordinates a cluster.
    pub fn with_workers(mut self, workers: Option<Arc<dyn Workers>>) -> Self {
        self.workers = workers;
        self
    }

    fn not_on_a_cluster(&self, what: &str) -> Result<()> {
        match self.workers {
            Some(_) => Err(ServiceError::NotSupported(format!(
                "{what} is not offered on a cluster yet: load the table (its errors name the file)"
            ))),
            None => Ok(()),
        }
    }

    fn loads(&self, key: &TableKey) -> Arc<TableLoads> {
        if let Some(l) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return l.clone();
        }
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// The table's FILES were replaced (a cluster's worker given other files): its next refresh
    /// reads the new list as the table's own, not as another copy of the same files (whose
    /// missing files would be kept as awaited replicas).
    pub fn files_replaced(&self, key: &TableKey) {
        *self
            .loads(key)
            .copy
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A refresh asked for lately, by id.
    pub fn job(&self, id: u64) -> Option<RefreshJob> {
        self.jobs.get(id)
    }

    /// Loads (or reloads everything of) `key`. Two loads or refreshes of one table never run at
    /// once: the second waits.
    pub async fn load(&self, key: &TableKey) -> Result<LoadReport> {
        let entry = self.memory.entry(key);
        let guard = entry.writer.lock().await;
        self.run_locked(key, Mode::Load, guard).await
    }

    /// `SECONDARY_LOAD VALIDATE ONLY` (and `sys.HEATWAVE_LOAD`'s validation mode): reads every file
    /// of `key` against its columns as a load would, with every bad row reported rather than
    /// failing at the first; nothing is published (the loaded version, if any, keeps serving) and
    /// the memory the reading took is given back. A file that cannot be read at all fails it,
    /// named.
    pub async fn validate(&self, key: &TableKey) -> Result<Validation> {
        self.not_on_a_cluster("validation (VALIDATE ONLY, HEATWAVE_LOAD's validation mode)")?;
        let mut def = self.catalog.get(key)?;
        def.options.strict_load = false;
        let entry = self.memory.entry(key);
        let (next, _) = self
            .build_with_failover(&def, &entry, None, Mode::Load)
            .await?;
        Ok(next.map_or_else(
            || Validation {
                files: 0,
                rows: 0,
                rejected: Vec::new(),
            },
            |v| Validation {
                files: v.manifest.files.len(),
                rows: v.rows,
                rejected: v.rejected,
            },
        ))
    }

    /// `sys.HEATWAVE_LOAD`'s dry run: lists `def`'s files, takes its columns (declared, or
    /// inferred from the first file as a load would), reads the start of the largest file
    /// (Parquet: its first row group; CSV, JSON: up to 16 MiB of whole lines; Avro and compressed
    /// files: the whole file) into the form a load keeps, and scales what it holds by the share of
    /// the table's bytes that start is. Nothing is kept.
    pub async fn estimate(&self, def: &TableDef) -> Result<Estimate> {
        use tarn_connectors::read;
        if def.format.kind == tarn_catalog::FormatKind::Delta {
            return self.estimate_delta(def).await;
        }
        let routes = source::routes(&self.regions, def);
        let files = source::list_files(&self.object_stores, def, &routes).await?;
        let source_bytes: u64 = files.iter().map(|(_, f)| f.size).sum();
        let Some((store, largest)) = files.iter().max_by_key(|(_, f)| f.size) else {
            return Err(ServiceError::BadRequest(format!(
                "{} has no files to estimate from",
                def.key
            )));
        };
        let columns = match &def.columns {
            Some(c) => tarn_catalog::types::schema_of(c)?,
            None => read::infer_schema(store.clone(), largest, &def.format).await?,
        };
        let opts = self.sample_options(def, &columns)?;
        let (sample, share) = read::sample_file(store.clone(), largest, &opts).await?;
        Ok(Estimate::scaled(
            files.len(),
            source_bytes,
            columns,
            sample,
            &largest.uri,
            largest.size as f64 * share,
        ))
    }

    /// How a dry run reads its sample: as a load would, not strict, and counted against
    /// memory_limit as a load's reading is (given back when the estimate is done).
    fn sample_options(
        &self,
        def: &TableDef,
        columns: &arrow::datatypes::SchemaRef,
    ) -> Result<tarn_connectors::read::ReadOptions> {
        let reservation = Arc::new(self.memory.reserve(&def.key, 0)?);
        Ok(
            tarn_connectors::read::ReadOptions::new(def.format.clone(), columns.clone(), false)
                .with_memory(reservation),
        )
    }

    /// A Delta table's dry run: its log names its files (and columns); the largest data file is
    /// read whole (deletion vectors applied) and scaled by the bytes of all of them.
    async fn estimate_delta(&self, def: &TableDef) -> Result<Estimate> {
        use tarn_connectors::read;
        let routes = source::routes(&self.regions, def);
        let route = routes
            .first()
            .ok_or_else(|| ServiceError::BadRequest(format!("{} has no files", def.key)))?;
        let snap = source::delta_snapshot(&self.object_stores, def, route, None).await?;
        let files = &snap.manifest.files;
        let source_bytes: u64 = files.iter().map(|f| f.size).sum();
        let Some((largest, file)) = files.iter().enumerate().max_by_key(|(_, f)| f.size) else {
            return Ok(Estimate {
                files: 0,
                source_bytes: 0,
                columns: snap.schema.clone(),
                rows: 0,
                memory_bytes: 0,
            });
        };
        let columns = match &def.columns {
            Some(c) => tarn_catalog::types::schema_of(c)?,
            None => snap.schema.clone(),
        };
        let opts = self.sample_options(def, &columns)?;
        let sample = read::read_delta_files(&snap, &[largest], &opts)
            .await
            .map_err(|e| self::read::read_error(&def.key, e, route))?
            .pop()
            .unwrap_or_default();
        Ok(Estimate::scaled(
            files.len(),
            source_bytes,
            columns,
            sample,
            &file.uri,
            file.size as f64,
        ))
    }

    /// Refreshes a loaded table: lists its files again, reads only added and changed ones, drops
    /// removed ones, keeps every unchanged file's data without copying it, and publishes the
    /// result (or nothing, when nothing changed). Waits for the refresh [`Self::request_refresh`]
    /// starts or joins.
    pub async fn refresh(self: &Arc<Self>, key: &TableKey) -> Result<LoadReport> {
        self.request_refresh(key)?.wait().await
    }

    /// Asks for a refresh of `key`. Triggers coalesce: while a refresh waits to start (behind a
    /// running load or refresh of the table), every further trigger joins it instead of queueing
    /// another, so a burst of triggers costs at most one refresh after the running one, and each
    /// trigger is answered by a refresh that listed the files after it arrived.
    pub fn request_refresh(self: &Arc<Self>, key: &TableKey) -> Result<RefreshJob> {
        self.catalog.get(key)?;
        let loads = self.loads(key);
        let mut pending = loads
            .pending_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(job) = pending.as_ref() {
            self.counters
                .refreshes_coalesced
                .fetch_add(1, Ordering::Relaxed);
            return Ok(job.clone());
        }
        let result: jobs::SharedResult = {
            let (loader, key, loads) = (self.clone(), key.clone(), loads.clone());
            let entry = self.memory.entry(&key);
            async move {
                let guard = entry.writer.lock().await;
                // Started: triggers from now on need a refresh that lists after them.
                loads
                    .pending_refresh
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                loader
                    .run_locked(&key, Mode::Refresh, guard)
                    .await
                    .map_err(Arc::new)
            }
            .boxed()
            .shared()
        };
        let job = RefreshJob {
            id: self.jobs.next_id(),
            table: key.clone(),
            requested_at: Utc::now(),
            result: result.clone(),
        };
        *pending = Some(job.clone());
        self.jobs.remember(job.clone());
        tokio::spawn(result);
        Ok(job)
    }

    /// Runs a load or refresh while holding the table's writer lock (`_guard`).
    async fn run_locked(
        &self,
        key: &TableKey,
        mode: Mode,
        _guard: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<LoadReport> {
        let def = self.catalog.get(key)?;
        let entry = self.memory.entry(key);
        let previous = entry.current();
        if mode == Mode::Refresh && previous.is_none() {
            return Err(ServiceError::not_loaded(key));
        }
        let started = Instant::now();
        entry.update_status(|s| {
            // A refresh runs while the loaded version keeps serving: the table stays available.
            if mode == Mode::Load {
                s.load_status = LoadState::Loading;
            }
            s.load_progress = 0.0;
            s.load_start = Some(Utc::now());
            s.load_end = None;
        });
        let base = match mode {
            Mode::Refresh => previous.as_deref(),
            Mode::Load => None,
        };
        let result = match &self.workers {
            Some(workers) => {
                let mut report = LoadReport::default();
                workers
                    .build(&def, base, &entry, &mut report)
                    .await
                    .map(|next| (next, report))
            }
            None => self.build_with_failover(&def, &entry, base, mode).await,
        };
        match result {
            Ok((next, report)) => {
                let report = self
                    .publish(&entry, next, previous, report, mode, started)
                    .await;
                Ok(report)
            }
            Err(e) => Err(self.failed(&entry, mode, e)),
        }
    }

    /// Builds the next version; when the region read fails over while the build runs, builds
    /// again from the next copy.
    async fn build_with_failover(
        &self,
        def: &TableDef,
        entry: &TableEntry,
        previous: Option<&TableVersion>,
        mode: Mode,
    ) -> Result<(Option<TableVersion>, LoadReport)> {
        let span = info_span!("load", table = %def.key, kind = mode.name());
        let loads = self.loads(&def.key);
        let build = Build {
            object_stores: &self.object_stores,
            regions: &self.regions,
            memory: &self.memory,
            def,
            entry,
            loads: &loads,
            previous,
            elsewhere: self.elsewhere.as_deref(),
        };
        let read_from = source::first_route(&self.regions, def).and_then(|r| r.region);
        let result = build.run().instrument(span.clone()).await;
        if result.is_err()
            && let Some(region) = read_from
            && source::wait_for_failover(&self.regions, &self.object_stores, def, &region).await
        {
            info!(table = %def.key, region, "the region read failed over; reading the next copy");
            let mut again = build.run().instrument(span).await;
            if let Ok((_, report)) = &mut again {
                report.failed_over_from = Some(region);
            }
            return again;
        }
        result
    }

    /// Publishes `next` (or keeps `previous` when nothing changed) and records the report.
    async fn publish(
        &self,
        entry: &Arc<TableEntry>,
        next: Option<TableVersion>,
        previous: Option<Arc<TableVersion>>,
        mut report: LoadReport,
        mode: Mode,
        started: Instant,
    ) -> LoadReport {
        report.table = entry.key.to_string();
        report.kind = mode.name();
        report.version_before = previous.as_ref().map(|v| v.version);
        report.delta_version_before = previous.as_ref().and_then(|v| v.manifest.delta_version);
        let published = match next {
            Some(v) => {
                let v = Arc::new(v);
                self.memory.publish(entry, v.clone(), mode.cause()).await;
                v
            }
            None => previous.expect("a refresh has a loaded version"),
        };
        report.version = published.version;
        report.delta_version = published.manifest.delta_version;
        report.files = published.manifest.files.len();
        report.rows = published.rows;
        report.bytes = published.bytes;
        report.rejected_rows = published.rejected.len();
        report.seconds = started.elapsed().as_secs_f64();
        self.counters.loads_ok.fetch_add(1, Ordering::Relaxed);
        entry.update_status(|s| {
            s.load_status = LoadState::Avail;
            s.load_progress = 100.0;
            s.load_end = Some(Utc::now());
            s.last_error = None;
            s.last_success = s.load_end;
        });
        entry.record(HistoryEntry {
            finished_at: Utc::now(),
            kind: report.kind,
            report: Some(report.clone()),
            error: None,
        });
        info!(table = %entry.key, kind = report.kind, version = report.version, rows = report.rows, bytes = report.bytes,
              added = report.files_added, changed = report.files_changed, removed = report.files_removed,
              bytes_read = report.bytes_read, rejected = report.rejected_rows, seconds = report.seconds, "published");
        report
    }

    /// Records a failed load or refresh; the published version, if any, keeps serving.
    fn failed(&self, entry: &TableEntry, mode: Mode, e: ServiceError) -> ServiceError {
        let serving = entry.current().is_some();
        self.counters.loads_failed.fetch_add(1, Ordering::Relaxed);
        warn!(table = %entry.key, error = %e, serving_previous = serving, "load failed");
        entry.record(HistoryEntry {
            finished_at: Utc::now(),
            kind: mode.name(),
            report: None,
            error: Some(e.to_string()),
        });
        entry.update_status(|s| {
            s.load_status = if serving {
                LoadState::Stale
            } else {
                LoadState::NoLoad
            };
            s.load_end = Some(Utc::now());
            s.last_error = Some(e.to_string());
        });
        ServiceError::LoadFailed {
            table: entry.key.clone(),
            source: Box::new(e),
        }
    }

    /// SECONDARY_UNLOAD: frees the table's data (queries already running keep their version).
    pub async fn unload(&self, key: &TableKey) -> Result<()> {
        self.catalog.get(key)?;
        let entry = self.memory.entry(key);
        let _guard = entry.writer.lock().await;
        if entry.current().is_none() {
            return Err(ServiceError::not_loaded(key));
        }
        if let Some(workers) = &self.workers {
            workers.drop_table(key).await?;
        }
        self.memory.unload(&entry).await;
        entry.update_status(|s| {
            *s = Default::default();
        });
        info!(table = %key, "unloaded");
        Ok(())
    }

    /// The table was dropped from the catalog: frees its data and forgets what loading kept of
    /// it.
    pub async fn forget(&self, key: &TableKey) {
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(workers) = &self.workers
            && let Err(e) = workers.drop_table(key).await
        {
            warn!(table = %key, error = %e, "a worker keeps the dropped table's part");
        }
        self.memory.drop_table(key).await;
    }
}

impl ReplicatedTables for Arc<Loader> {
    fn tables(&self) -> Vec<TableCopies> {
        let mut out = Vec::new();
        for (_, def) in self.catalog.all_tables() {
            let Some(spec) = def.files.first() else {
                continue;
            };
            let entry = self.memory.get(&def.key);
            let copy = self
                .tables
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&def.key)
                .and_then(|l| l.copy());
            let current = entry.as_ref().and_then(|e| e.current());
            let status = entry.as_ref().map(|e| e.status());
            out.push(TableCopies {
                key: def.key.clone(),
                uri: spec.uri.clone(),
                region: spec.region.clone(),
                loaded: current.is_some(),
                recovering: status.as_ref().is_some_and(|s| s.recovering()),
                version: current.map(|v| v.version),
                last_success: status.and_then(|s| s.last_success),
                copy: copy.map(|c| c.summary()),
            });
        }
        out
    }

    fn request_refresh(&self, key: &TableKey) -> Result<()> {
        Loader::request_refresh(self, key).map(|_| ())
    }
}
