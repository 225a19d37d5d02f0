//! SECONDARY_LOAD and refresh: list the table's files, read them (all of them, or for a refresh
//! only the added and changed ones) in parallel through the format readers, lay the result out in
//! shards and publish it as the table's next version.
//!
//! Bytes are counted against the memory limit as files arrive, so a load that would not fit stops
//! early and the published version (if any) keeps serving. Any failure leaves it in place and puts
//! the reason in the table's status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{Schema, SchemaRef};
use chrono::Utc;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use object_store::ObjectStore;
use serde::Serialize;
use tarn_catalog::{FormatKind, TableDef, TableKey, types::schema_of};
use tarn_connectors::listing::{self, FileEntry, Manifest};
use tarn_connectors::read::{self, ReadOptions};
use tarn_connectors::{ConnectorError, Location};
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Result, ServiceError};
use crate::regions::{Route, SourceState};
use crate::state::AppState;
use crate::store::{HistoryEntry, LoadState, Segment, TableVersion};

/// What a load or a refresh did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub table: String,
    /// `load` or `refresh`.
    pub kind: &'static str,
    /// The published version before and after (equal when a refresh found nothing to do).
    pub version_before: Option<u64>,
    pub version: u64,
    /// For Delta tables, the table version before and after.
    pub delta_version_before: Option<u64>,
    pub delta_version: Option<u64>,
    pub files: usize,
    pub files_added: usize,
    pub files_changed: usize,
    pub files_removed: usize,
    /// Files whose loaded data was kept as it was (not read again).
    pub files_reused: usize,
    pub rows: u64,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub bytes: u64,
    /// Bytes of source files read.
    pub bytes_read: u64,
    pub rejected_rows: usize,
    /// Columns the refresh added to the table (additive schema evolution).
    pub columns_added: usize,
    /// For Delta, why the log was read from its latest checkpoint instead of from the loaded
    /// version (the commits since it were cleaned up, for one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_fallback: Option<String>,
    /// The region of the copy read (tables under `[[replicas]]`, or with a region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    /// The region that failed while this load or refresh read it; it was run again from the
    /// next copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_over_from: Option<String>,
    /// Why the copy read was not taken as it is: it is behind the loaded version, so the table
    /// stayed where it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_behind: Option<String>,
    /// Files kept as loaded because the copy read does not show them (yet) alike.
    pub files_awaiting_replication: usize,
    pub seconds: f64,
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
}

/// Loads (or reloads everything of) `key`. Two loads or refreshes of one table never run at once:
/// the second waits.
pub async fn load_table(state: &AppState, key: &TableKey) -> Result<LoadReport> {
    run(state, key, Mode::Load).await
}

/// Refreshes a loaded table: lists its files again, reads only added and changed ones, drops
/// removed ones, keeps every unchanged file's data without copying it, and publishes the result
/// (or nothing, when nothing changed). Waits for the refresh [`request_refresh`] starts or joins.
pub async fn refresh_table(state: &AppState, key: &TableKey) -> Result<LoadReport> {
    request_refresh(state, key)?.wait().await
}

type SharedResult = Shared<BoxFuture<'static, Result<LoadReport, Arc<ServiceError>>>>;

/// A refresh that was asked for. It runs whether or not anyone waits for it.
#[derive(Clone)]
pub struct RefreshJob {
    pub id: u64,
    pub table: TableKey,
    pub requested_at: chrono::DateTime<Utc>,
    result: SharedResult,
}

impl std::fmt::Debug for RefreshJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshJob")
            .field("id", &self.id)
            .field("table", &self.table)
            .field("done", &self.result.peek().is_some())
            .finish()
    }
}

impl RefreshJob {
    /// Waits for the refresh to finish.
    pub async fn wait(&self) -> Result<LoadReport> {
        self.result.clone().await.map_err(ServiceError::Shared)
    }

    /// The outcome, once there is one.
    pub fn outcome(&self) -> Option<Result<LoadReport, Arc<ServiceError>>> {
        self.result.peek().cloned()
    }
}

/// Asks for a refresh of `key`. Triggers coalesce: while a refresh waits to start (behind a
/// running load or refresh of the table), every further trigger joins it instead of queueing
/// another, so a burst of triggers costs at most one refresh after the running one, and each
/// trigger is answered by a refresh that listed the files after it arrived.
pub fn request_refresh(state: &AppState, key: &TableKey) -> Result<RefreshJob> {
    state.catalog.get(key)?;
    let entry = state.memory.entry(key);
    let mut pending = entry
        .pending_refresh
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(job) = pending.as_ref() {
        state
            .memory
            .refreshes_coalesced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(job.clone());
    }
    let result: SharedResult = {
        let (state, key, entry) = (state.clone(), key.clone(), entry.clone());
        async move {
            let guard = entry.load_lock.lock().await;
            // Started: triggers from now on need a refresh that lists after them.
            entry
                .pending_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            run_locked(&state, &key, Mode::Refresh, guard)
                .await
                .map_err(Arc::new)
        }
        .boxed()
        .shared()
    };
    let job = RefreshJob {
        id: state.memory.jobs.next_id(),
        table: key.clone(),
        requested_at: Utc::now(),
        result: result.clone(),
    };
    *pending = Some(job.clone());
    state.memory.jobs.remember(job.clone());
    tokio::spawn(result);
    Ok(job)
}

/// The refreshes asked for lately, by id, for `?async=true` callers to poll.
#[derive(Debug, Default)]
pub struct RefreshJobs {
    next: std::sync::atomic::AtomicU64,
    recent: std::sync::Mutex<std::collections::VecDeque<RefreshJob>>,
}

/// How many refresh requests are remembered for polling.
pub const JOBS_KEPT: usize = 1000;

impl RefreshJobs {
    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    fn remember(&self, job: RefreshJob) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == JOBS_KEPT {
            r.pop_front();
        }
        r.push_back(job);
    }

    pub fn get(&self, id: u64) -> Option<RefreshJob> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().find(|j| j.id == id).cloned()
    }
}

async fn run(state: &AppState, key: &TableKey, mode: Mode) -> Result<LoadReport> {
    let entry = state.memory.entry(key);
    let guard = entry.load_lock.lock().await;
    run_locked(state, key, mode, guard).await
}

/// Runs a load or refresh while holding the table's `load_lock` (`_guard`).
async fn run_locked(
    state: &AppState,
    key: &TableKey,
    mode: Mode,
    _guard: tokio::sync::MutexGuard<'_, ()>,
) -> Result<LoadReport> {
    let def = state.catalog.get(key)?;
    let entry = state.memory.entry(key);
    let previous = entry.current();
    if mode == Mode::Refresh && previous.is_none() {
        return Err(ServiceError::NotLoaded { table: key.clone() });
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
    let span = info_span!("load", table = %key, kind = mode.name());
    let base = if mode == Mode::Refresh {
        previous.as_deref()
    } else {
        None
    };
    let read_from = first_route(state, &def).and_then(|r| r.region);
    let mut result = build_version(state, &def, &entry, base)
        .instrument(span.clone())
        .await;
    // A region that fails while the load runs: once it is failed over, run again from the
    // next copy.
    if result.is_err()
        && let Some(region) = read_from
        && wait_for_failover(state, &def, &region).await
    {
        info!(table = %key, region, "the region read failed over; reading the next copy");
        result = build_version(state, &def, &entry, base)
            .instrument(span)
            .await;
        if let Ok((_, report)) = &mut result {
            report.failed_over_from = Some(region);
        }
    }
    match result {
        Ok((next, mut report)) => {
            report.table = key.to_string();
            report.kind = mode.name();
            report.version_before = previous.as_ref().map(|v| v.version);
            report.delta_version_before = previous.as_ref().and_then(|v| v.manifest.delta_version);
            let published = match next {
                Some(v) => {
                    let v = Arc::new(v);
                    state.memory.publish(&entry, v.clone());
                    // Recovered after a restart from now on: marked before the load answers,
                    // persisted in the background.
                    if state.config.snapshots {
                        if mode == Mode::Load
                            && let Err(e) = state.snapshots.mark_loaded(key).await
                        {
                            warn!(table = %key, error = %e, "table not marked for recovery");
                            entry.update_status(|s| s.snapshot_error = Some(e.to_string()));
                        }
                        crate::snapshot::schedule(state, key);
                    }
                    crate::placement::schedule(state, key);
                    v
                }
                None => previous.clone().expect("a refresh has a loaded version"),
            };
            report.version = published.version;
            report.delta_version = published.manifest.delta_version;
            report.files = published.manifest.files.len();
            report.rows = published.rows;
            report.bytes = published.bytes;
            report.rejected_rows = published.rejected.len();
            report.seconds = started.elapsed().as_secs_f64();
            state
                .memory
                .loads_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            info!(table = %key, kind = report.kind, version = report.version, rows = report.rows, bytes = report.bytes,
                  added = report.files_added, changed = report.files_changed, removed = report.files_removed,
                  bytes_read = report.bytes_read, rejected = report.rejected_rows, seconds = report.seconds, "published");
            Ok(report)
        }
        Err(e) => {
            let serving = entry.current().is_some();
            state
                .memory
                .loads_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(table = %key, error = %e, serving_previous = serving, "load failed");
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
            Err(ServiceError::LoadFailed {
                table: key.clone(),
                source: Box::new(e),
            })
        }
    }
}

/// Where a version's files come from: a listing, or a Delta table's log.
enum Source {
    Files(Vec<(Arc<dyn ObjectStore>, FileEntry)>),
    Delta(Box<read::DeltaSnapshot>),
}

/// Builds the next version of `def`; with `previous`, reuses the segments of files that did not
/// change. `None` for the version means nothing changed.
///
/// Delta tables diff the same way: their files are the `add` actions of the latest version
/// (reached by replaying only the commits since the loaded one), so a commit's added files are
/// read, its removed ones dropped, and a file whose deletion vector changed is read again.
async fn build_version(
    state: &AppState,
    def: &TableDef,
    entry: &crate::store::TableEntry,
    previous: Option<&TableVersion>,
) -> Result<(Option<TableVersion>, LoadReport)> {
    let key = &def.key;
    let declared = def.columns.as_deref().map(schema_of).transpose()?;
    let mut reservation = state.memory.reserve(key, 0)?;
    let mut report = LoadReport::default();

    // The copy each FILES entry is read from now, and what changed since the last read.
    let routes: Vec<Route> = def
        .files
        .iter()
        .map(|f| state.regions.route(&f.uri, f.region.as_deref()))
        .collect();
    let mut source = next_source(state, entry, &routes, previous);
    report.source_region = source.region.clone();
    let result = build_from(
        state,
        def,
        entry,
        previous,
        &routes,
        &mut source,
        &mut report,
        &declared,
        &mut reservation,
    )
    .await;
    match &result {
        Ok(_) => {
            source.waiting = report.replica_behind.clone();
            entry.set_source(source);
        }
        Err(ServiceError::ReplicaBehind { detail, .. }) => {
            source.waiting = Some(detail.clone());
            entry.set_source(source);
        }
        Err(_) => {}
    }
    result.map(|v| (v, report))
}

/// The copy a table reads now: if it moved to another copy, every loaded file is awaited there
/// (kept as loaded until the new copy shows it alike), and the Delta log is opened afresh.
fn next_source(
    state: &AppState,
    entry: &crate::store::TableEntry,
    routes: &[Route],
    previous: Option<&TableVersion>,
) -> SourceState {
    let read_prefix = routes
        .iter()
        .map(|r| r.read_prefix.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let fresh = |pending| SourceState {
        region: routes.first().and_then(|r| r.region.clone()),
        uri: routes.first().map(|r| r.uri.clone()).unwrap_or_default(),
        read_prefix: read_prefix.clone(),
        since: std::time::Instant::now(),
        pending,
        waiting: None,
    };
    match (entry.source(), previous) {
        (Some(mut s), Some(_)) if s.read_prefix == read_prefix => {
            if s.since.elapsed() > state.regions.config().settings.max_replication_lag {
                s.pending.clear();
            }
            s
        }
        (Some(_), Some(p)) => {
            info!(table = %entry.key, to = %tarn_connectors::location::redact(&routes[0].uri), "reading another copy");
            entry.clear_delta_handle();
            fresh(p.manifest.files.iter().map(|f| f.uri.clone()).collect())
        }
        _ => fresh(HashSet::new()),
    }
}

/// The route of a table's first FILES entry, if it lies in a group of copies.
fn first_route(state: &AppState, def: &TableDef) -> Option<Route> {
    def.files
        .first()
        .map(|f| state.regions.route(&f.uri, f.region.as_deref()))
        .filter(|r| r.replicated)
}

/// After a load or refresh of a replicated table failed reading `region`: waits (up to the
/// failure threshold's worth of probes) for the region to be failed over. True when it was and
/// the table now routes elsewhere, so the next copy should be tried.
async fn wait_for_failover(state: &AppState, def: &TableDef, region: &str) -> bool {
    let failing = state
        .stores
        .gate(region)
        .is_some_and(|g| g.consecutive_failures() > 0 || g.is_cut());
    if !failing && !state.regions.is_failed_over(region) {
        return false;
    }
    let s = &state.regions.config().settings;
    let deadline = std::time::Instant::now() + s.probe_interval * (s.failure_threshold + 1);
    loop {
        if state.regions.is_failed_over(region) {
            return first_route(state, def).is_some_and(|r| r.region.as_deref() != Some(region));
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn build_from(
    state: &AppState,
    def: &TableDef,
    entry: &crate::store::TableEntry,
    previous: Option<&TableVersion>,
    routes: &[Route],
    source_state: &mut SourceState,
    report: &mut LoadReport,
    declared: &Option<SchemaRef>,
    reservation: &mut crate::store::Reservation<'_>,
) -> Result<Option<TableVersion>> {
    let key = &def.key;
    // A copy in another region that lacks an object its listing or log names is behind.
    let read_error = |e: ConnectorError, route: &Route| -> ServiceError {
        if route.replicated && e.is_not_found() {
            ServiceError::ReplicaBehind {
                table: key.clone(),
                region: route.region.clone().unwrap_or_default(),
                detail: e.to_string(),
            }
        } else {
            e.into()
        }
    };
    let source = if def.format.kind == FormatKind::Delta {
        let route = &routes[0];
        let (loc, store) = open_route(state, &def.files[0].uri, route).await?;
        let handle = entry.delta_handle();
        let mut snap = read::delta_snapshot(store, &loc, handle)
            .await
            .map_err(|e| read_error(e, route))?;
        for f in &mut snap.manifest.files {
            f.uri = route.logical(&f.uri);
        }
        entry.set_delta_handle(snap.table.clone());
        report.delta_fallback = snap.fallback.clone();
        if let Some(prev) = previous
            && let Some(loaded) = prev.manifest.delta_version
            && snap.version <= loaded
        {
            if snap.version < loaded {
                // Versions only go forward: the copy has not caught up with what was loaded.
                let why = format!(
                    "{} in region '{}' is at Delta version {} and the loaded version is {loaded}",
                    tarn_connectors::location::redact(&route.uri),
                    route.region.as_deref().unwrap_or("-"),
                    snap.version
                );
                warn!(table = %key, "{why}; keeping the loaded version");
                report.replica_behind = Some(why);
            }
            report.files_reused = prev.manifest.files.len();
            return Ok(None);
        }
        Source::Delta(Box::new(snap))
    } else {
        let mut listed = list_files(state, def, routes).await?;
        if let Some(p) = previous
            && !source_state.pending.is_empty()
        {
            report.files_awaiting_replication =
                await_replication(&mut listed, p, &mut source_state.pending);
        }
        Source::Files(listed)
    };
    let files: Vec<&FileEntry> = match &source {
        Source::Files(f) => f.iter().map(|f| &f.1).collect(),
        Source::Delta(s) => s.manifest.files.iter().collect(),
    };

    // The columns of the next version, and whether the loaded data can be kept under them.
    let (schema, reuse) = match (&declared, previous, &source) {
        (Some(s), _, _) => (s.clone(), true),
        (None, None, Source::Files(listed)) => match listed.first() {
            Some((store, f)) => (
                read::infer_schema(store.clone(), f, &def.format).await?,
                true,
            ),
            None => {
                return Err(ServiceError::BadRequest(format!(
                    "no files to infer the columns of '{key}' from: declare its columns, or add files"
                )));
            }
        },
        (None, None, Source::Delta(snap)) => (snap.schema.clone(), true),
        (None, Some(p), Source::Files(_)) => (p.schema.clone(), true),
        (None, Some(p), Source::Delta(snap)) => {
            if p.manifest.delta_layout == snap.manifest.delta_layout {
                (p.schema.clone(), true)
            } else {
                // The schema, partitioning or protocol changed: files written under the old
                // layout are read again under the new one, if the change is additive.
                let schema = evolve(&p.schema, &snap.schema, true)
                    .map_err(|why| schema_changed(key, &def.files[0].uri, &why))?
                    .unwrap_or_else(|| snap.schema.clone());
                (schema, false)
            }
        }
    };

    // A placement key must name columns of the table (checked before anything is read).
    crate::placement::key_columns(key, &schema, &def.options.placement_key)?;

    // What the previous version holds of each file, if the file is unchanged (same ETag, or
    // for Delta the same deletion vector, and size; last-modified is not compared, replication
    // does not keep it).
    let prev_files: HashMap<&str, &FileEntry> = previous
        .filter(|_| reuse)
        .map(|p| {
            p.manifest
                .files
                .iter()
                .map(|f| (f.uri.as_str(), f))
                .collect()
        })
        .unwrap_or_default();
    let prev_segments: HashMap<&str, &Arc<Segment>> = previous
        .filter(|_| reuse)
        .map(|p| p.segments.iter().map(|s| (s.file.as_str(), s)).collect())
        .unwrap_or_default();
    let unchanged = |f: &FileEntry| {
        prev_files
            .get(f.uri.as_str())
            .is_some_and(|p| p.etag == f.etag && p.size == f.size)
    };
    let listed: HashSet<&str> = files.iter().map(|f| f.uri.as_str()).collect();
    // Every file the previous version had, whether or not its data can be kept.
    let known: HashSet<&str> = previous
        .map(|p| p.manifest.files.iter().map(|f| f.uri.as_str()).collect())
        .unwrap_or_default();
    if let Some(p) = previous {
        for seg in p
            .segments
            .iter()
            .filter(|s| !listed.contains(s.file.as_str()))
        {
            report.files_removed += 1;
            report.rows_removed += seg.rows;
        }
        if !reuse {
            // Nothing is kept: every file still listed counts as changed.
            report.rows_removed = p.rows;
        }
    }
    if previous.is_some()
        && reuse
        && report.files_removed == 0
        && files.iter().all(|f| unchanged(f))
    {
        report.files_reused = files.len();
        return Ok(None);
    }

    let mut schema = schema;
    let manifest = match &source {
        Source::Files(f) => Manifest {
            files: f.iter().map(|f| f.1.clone()).collect(),
            ..Default::default()
        },
        Source::Delta(s) => s.manifest.clone(),
    };
    let mut segments: Vec<Option<Arc<Segment>>> = Vec::with_capacity(files.len());
    let mut to_read = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match prev_segments.get(f.uri.as_str()).filter(|_| unchanged(f)) {
            Some(seg) => {
                report.files_reused += 1;
                segments.push(Some(Arc::clone(seg)));
            }
            None => {
                if known.contains(f.uri.as_str()) {
                    report.files_changed += 1;
                    report.rows_removed += prev_segments.get(f.uri.as_str()).map_or(0, |s| s.rows);
                } else {
                    report.files_added += 1;
                }
                report.bytes_read += f.size;
                segments.push(None);
                to_read.push(i);
            }
        }
    }

    // Parquet tables whose columns were inferred take new columns from new files (additive
    // evolution): the footer says which, and data already loaded gets NULLs in them.
    if let (None, Some(_), Source::Files(listed)) = (&declared, previous, &source)
        && def.format.kind == FormatKind::Parquet
    {
        for &i in &to_read {
            let (store, f) = &listed[i];
            let found = read::infer_schema(store.clone(), f, &def.format).await?;
            if let Some(wider) =
                evolve(&schema, &found, false).map_err(|why| schema_changed(key, &f.uri, &why))?
            {
                info!(table = %key, file = %f.uri, columns = wider.fields().len(), "new columns");
                schema = wider;
            }
        }
        if let Some(p) = previous
            && p.schema.fields().len() != schema.fields().len()
        {
            report.columns_added = schema.fields().len() - p.schema.fields().len();
            for seg in segments.iter_mut().flatten() {
                *seg = Arc::new(seg.widen(&schema));
            }
        }
    }
    if let (Some(p), Source::Delta(_)) = (previous, &source) {
        report.columns_added = schema
            .fields()
            .len()
            .saturating_sub(p.schema.fields().len());
    }

    let opts = ReadOptions {
        progress: entry.progress.clone(),
        ..ReadOptions::new(def.format.clone(), schema.clone(), def.options.strict_load)
    };
    entry.start_progress(2 * report.bytes_read.max(1));
    info!(
        files = manifest.files.len(),
        reading = to_read.len(),
        bytes = report.bytes_read,
        "reading"
    );
    match &source {
        Source::Files(listed) => {
            let parallel = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                * 2;
            let reads: Vec<futures::future::BoxFuture<'static, _>> = to_read
                .iter()
                .map(|&i| {
                    let (store, f) = listed[i].clone();
                    read_one(store, f, opts.clone())
                        .map(move |r| (i, r))
                        .boxed()
                })
                .collect();
            let mut reads = futures::stream::iter(reads).buffered(parallel);
            while let Some((i, (f, out))) = reads.next().await {
                let out = out.map_err(|e| read_error(e, &routes[0]))?;
                let seg = Segment::new(f.uri.clone(), out.batches, out.rejected);
                reservation.grow(key, seg.bytes)?;
                report.rows_added += seg.rows;
                segments[i] = Some(Arc::new(seg));
            }
        }
        Source::Delta(snap) => {
            let outs = read::read_delta_files(snap, &to_read, &opts)
                .await
                .map_err(|e| read_error(e, &routes[0]))?;
            for (&i, out) in to_read.iter().zip(outs) {
                let seg = Segment::new(files[i].uri.clone(), out.batches, out.rejected);
                reservation.grow(key, seg.bytes)?;
                report.rows_added += seg.rows;
                segments[i] = Some(Arc::new(seg));
            }
        }
    }
    let segments = segments
        .into_iter()
        .map(|s| s.expect("every file read or reused"))
        .collect();
    Ok(Some(TableVersion::build(
        entry.next_version(),
        schema,
        segments,
        manifest,
        state.memory.shards,
    )))
}

/// The rule for plain files after a table moved to another copy: a file loaded from the
/// previous copy that this one lacks, or holds with another ETag or size, is taken to be on its
/// way (replication lag) and kept as loaded, so a refresh never moves the table backwards. A file
/// this copy shows alike is confirmed and from then on follows this copy (changes and deletions
/// apply). Files new to the table are added. Returns how many files are still awaited.
fn await_replication(
    listed: &mut Vec<(Arc<dyn ObjectStore>, FileEntry)>,
    previous: &TableVersion,
    pending: &mut HashSet<String>,
) -> usize {
    let loaded: HashMap<&str, &FileEntry> = previous
        .manifest
        .files
        .iter()
        .map(|f| (f.uri.as_str(), f))
        .collect();
    let mut seen = HashSet::new();
    for (_, f) in listed.iter_mut() {
        seen.insert(f.uri.clone());
        if !pending.contains(&f.uri) {
            continue;
        }
        match loaded.get(f.uri.as_str()) {
            Some(l) if l.etag == f.etag && l.size == f.size => {
                pending.remove(&f.uri);
            }
            Some(l) => *f = (*l).clone(),
            None => {
                pending.remove(&f.uri);
            }
        }
    }
    let store = listed.first().map(|(s, _)| s.clone());
    if let Some(store) = store {
        for uri in pending.iter().filter(|u| !seen.contains(*u)) {
            if let Some(l) = loaded.get(uri.as_str()) {
                listed.push((store.clone(), (*l).clone()));
            }
        }
    }
    pending.retain(|u| loaded.contains_key(u.as_str()));
    listed.sort_by(|a, b| a.1.uri.cmp(&b.1.uri));
    pending.len()
}

/// The store to read `uri` (a FILES entry, which the allow-list must cover) through `route`
/// (the copy read, which the replica mapping vouches for).
async fn open_route(
    state: &AppState,
    uri: &str,
    route: &Route,
) -> Result<(Location, Arc<dyn ObjectStore>)> {
    state.stores.check(uri)?;
    let loc = Location::parse(&route.uri)?;
    let store = state
        .stores
        .store_for(&loc, route.region.as_deref())
        .await?;
    Ok((loc, store))
}

/// Lists every FILES entry of `def` through its route: nothing is read unless all of them
/// resolve. Files are named as the table names its location, whichever copy they are read from.
async fn list_files(
    state: &AppState,
    def: &TableDef,
    routes: &[Route],
) -> Result<Vec<(Arc<dyn ObjectStore>, FileEntry)>> {
    let mut files: Vec<(Arc<dyn ObjectStore>, FileEntry)> = Vec::new();
    for (spec, route) in def.files.iter().zip(routes) {
        let (loc, store) = open_route(state, &spec.uri, route).await?;
        let mut found = listing::list(
            state.stores.http_client(),
            &store,
            &loc,
            spec.pattern.as_deref(),
        )
        .await?;
        for f in &mut found {
            f.uri = route.logical(&f.uri);
        }
        if found.is_empty() && !def.options.allow_missing_files {
            return Err(ConnectorError::NoFiles {
                uri: tarn_connectors::location::redact(&spec.uri),
            }
            .into());
        }
        files.extend(found.into_iter().map(|f| (store.clone(), f)));
    }
    files.sort_by(|a, b| a.1.uri.cmp(&b.1.uri));
    files.dedup_by(|a, b| a.1.uri == b.1.uri);
    Ok(files)
}

/// The schema-change policy. `found` (a new file's or a new Delta version's columns) may add
/// columns to `table`: the answer is the wider schema (`None` when nothing was added). With
/// `complete` (`found` is the whole table's schema, as a Delta log gives it), a column of
/// `table` that `found` drops or retypes is refused; a single file may lack columns (they read
/// as NULL) and differ in type (values are converted, or fail the load naming the value).
fn evolve(table: &Schema, found: &Schema, complete: bool) -> Result<Option<SchemaRef>, String> {
    if complete {
        for f in table.fields() {
            match found.field_with_name(f.name()) {
                Err(_) => return Err(format!("column '{}' was dropped", f.name())),
                Ok(n) if n.data_type() != f.data_type() => {
                    return Err(format!(
                        "column '{}' changed type from {} to {}",
                        f.name(),
                        f.data_type(),
                        n.data_type()
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    let added: Vec<_> = found
        .fields()
        .iter()
        .filter(|f| table.field_with_name(f.name()).is_err())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if added.is_empty() {
        return Ok(None);
    }
    let mut fields: Vec<_> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(added);
    Ok(Some(Arc::new(Schema::new(fields))))
}

fn schema_changed(key: &TableKey, uri: &str, why: &str) -> ServiceError {
    ServiceError::BadRequest(format!(
        "the schema of '{key}' changed at {}: {why}; the loaded version keeps serving; \
         run ALTER TABLE {key} SECONDARY_LOAD to load the table with its new columns",
        tarn_connectors::location::redact(uri)
    ))
}

async fn read_one(
    store: Arc<dyn ObjectStore>,
    file: FileEntry,
    opts: ReadOptions,
) -> (FileEntry, tarn_connectors::Result<read::FileBatches>) {
    let out = read::read_file(store, &file, &opts).await;
    (file, out)
}

/// SECONDARY_UNLOAD: frees the table's data (queries already running keep their version).
pub async fn unload_table(state: &AppState, key: &TableKey) -> Result<()> {
    state.catalog.get(key)?;
    let entry = state.memory.entry(key);
    let _guard = entry.load_lock.lock().await;
    if entry.current().is_none() {
        return Err(ServiceError::NotLoaded { table: key.clone() });
    }
    state.memory.unload(&entry);
    state.snapshots.forget(key).await;
    entry.update_status(|s| {
        *s = Default::default();
    });
    info!(table = %key, "unloaded");
    Ok(())
}
