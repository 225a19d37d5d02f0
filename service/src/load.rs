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

use arrow::datatypes::SchemaRef;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use object_store::ObjectStore;
use serde::Serialize;
use tarn_catalog::{FormatKind, TableDef, TableKey, types::schema_of};
use tarn_connectors::ConnectorError;
use tarn_connectors::listing::{self, FileEntry, Manifest};
use tarn_connectors::read::{self, ReadOptions};
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Result, ServiceError};
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
/// (or nothing, when nothing changed). Delta tables compare table versions and read the new one.
pub async fn refresh_table(state: &AppState, key: &TableKey) -> Result<LoadReport> {
    run(state, key, Mode::Refresh).await
}

async fn run(state: &AppState, key: &TableKey, mode: Mode) -> Result<LoadReport> {
    let def = state.catalog.get(key)?;
    let entry = state.memory.entry(key);
    let _guard = entry.load_lock.lock().await;
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
    let result = build_version(state, &def, &entry, base)
        .instrument(span)
        .await;
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

/// Builds the next version of `def`; with `previous`, reuses the segments of files that did not
/// change. `None` for the version means nothing changed.
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

    if def.format.kind == FormatKind::Delta {
        let spec = &def.files[0];
        let loc = state.stores.check(&spec.uri)?;
        let store = state.stores.store_for(&loc, spec.region.as_deref()).await?;
        let snap = read::delta_snapshot(store, &loc).await?;
        if let Some(prev) = previous
            && prev.manifest.delta_version == Some(snap.version)
        {
            report.files_reused = prev.manifest.files.len();
            return Ok((None, report));
        }
        // A new Delta version is read whole (its add and remove actions are not applied one by
        // one yet); the report still says which data files came and went.
        let before: HashSet<&str> = previous
            .map(|p| p.manifest.files.iter().map(|f| f.key.as_str()).collect())
            .unwrap_or_default();
        let after: HashSet<&str> = snap.manifest.files.iter().map(|f| f.key.as_str()).collect();
        report.files_added = after.difference(&before).count();
        report.files_removed = before.difference(&after).count();
        report.rows_removed = previous.map_or(0, |p| p.rows);
        report.bytes_read = snap.manifest.total_bytes();
        let schema = match (declared, previous) {
            (Some(s), _) => s,
            (None, Some(p)) => p.schema.clone(),
            (None, None) => snap.schema.clone(),
        };
        let opts = ReadOptions {
            progress: entry.progress.clone(),
            ..ReadOptions::new(def.format.clone(), schema.clone(), def.options.strict_load)
        };
        entry.start_progress(snap.manifest.total_bytes());
        let out = read::read_delta(&snap, &loc, &opts).await?;
        let seg = Segment::new(
            format!("{}@v{}", loc, snap.version),
            out.batches,
            out.rejected,
        );
        reservation.grow(key, seg.bytes)?;
        report.rows_added = seg.rows;
        let v = TableVersion::build(
            entry.next_version(),
            schema,
            vec![Arc::new(seg)],
            snap.manifest,
            state.memory.shards,
        );
        return Ok((Some(v), report));
    }

    // List every FILES entry first: nothing is read unless all of them resolve.
    let mut files: Vec<(Arc<dyn ObjectStore>, FileEntry)> = Vec::new();
    for spec in &def.files {
        let loc = state.stores.check(&spec.uri)?;
        let store = state.stores.store_for(&loc, spec.region.as_deref()).await?;
        let found = listing::list(
            state.stores.http_client(),
            &store,
            &loc,
            spec.pattern.as_deref(),
        )
        .await?;
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

    // What the previous version holds of each file, if the file is unchanged (same ETag and size;
    // last-modified is not compared, replication does not keep it).
    let prev_files: HashMap<&str, &FileEntry> = previous
        .map(|p| {
            p.manifest
                .files
                .iter()
                .map(|f| (f.uri.as_str(), f))
                .collect()
        })
        .unwrap_or_default();
    let prev_segments: HashMap<&str, &Arc<Segment>> = previous
        .map(|p| p.segments.iter().map(|s| (s.file.as_str(), s)).collect())
        .unwrap_or_default();
    let unchanged = |f: &FileEntry| {
        prev_files
            .get(f.uri.as_str())
            .is_some_and(|p| p.etag == f.etag && p.size == f.size)
    };
    let listed: HashSet<&str> = files.iter().map(|f| f.1.uri.as_str()).collect();
    for (uri, _) in prev_files.iter().filter(|(uri, _)| !listed.contains(**uri)) {
        report.files_removed += 1;
        report.rows_removed += prev_segments.get(uri).map_or(0, |s| s.rows);
    }
    if previous.is_some() && report.files_removed == 0 && files.iter().all(|f| unchanged(&f.1)) {
        report.files_reused = files.len();
        return Ok((None, report));
    }

    let schema: SchemaRef = match (declared, previous) {
        (Some(s), _) => s,
        // A refresh keeps the loaded columns: new files are read into them.
        (None, Some(p)) => p.schema.clone(),
        (None, None) => match files.first() {
            Some((store, f)) => read::infer_schema(store.clone(), f, &def.format).await?,
            None => {
                return Err(ServiceError::BadRequest(format!(
                    "no files to infer the columns of '{key}' from: declare its columns, or add files"
                )));
            }
        },
    };
    let opts = ReadOptions {
        progress: entry.progress.clone(),
        ..ReadOptions::new(def.format.clone(), schema.clone(), def.options.strict_load)
    };
    let manifest = Manifest {
        files: files.iter().map(|f| f.1.clone()).collect(),
        delta_version: None,
    };
    let mut segments: Vec<Option<Arc<Segment>>> = Vec::with_capacity(files.len());
    let mut to_read = Vec::new();
    for (i, (store, f)) in files.into_iter().enumerate() {
        match prev_segments.get(f.uri.as_str()).filter(|_| unchanged(&f)) {
            Some(seg) => {
                report.files_reused += 1;
                segments.push(Some(Arc::clone(seg)));
            }
            None => {
                if prev_files.contains_key(f.uri.as_str()) {
                    report.files_changed += 1;
                    report.rows_removed += prev_segments.get(f.uri.as_str()).map_or(0, |s| s.rows);
                } else {
                    report.files_added += 1;
                }
                report.bytes_read += f.size;
                segments.push(None);
                to_read.push((i, store, f));
            }
        }
    }
    entry.start_progress(2 * report.bytes_read.max(1));
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        * 2;
    info!(
        files = manifest.files.len(),
        reading = to_read.len(),
        bytes = report.bytes_read,
        "reading"
    );
    let reads: Vec<futures::future::BoxFuture<'static, _>> = to_read
        .into_iter()
        .map(|(i, store, f)| {
            read_one(store, f, opts.clone())
                .map(move |r| (i, r))
                .boxed()
        })
        .collect();
    let mut reads = futures::stream::iter(reads).buffered(parallel);
    while let Some((i, (f, out))) = reads.next().await {
        let out = out?;
        let seg = Segment::new(f.uri.clone(), out.batches, out.rejected);
        reservation.grow(key, seg.bytes)?;
        report.rows_added += seg.rows;
        segments[i] = Some(Arc::new(seg));
    }
    let segments = segments
        .into_iter()
        .map(|s| s.expect("every file read or reused"))
        .collect();
    Ok((
        Some(TableVersion::build(
            entry.next_version(),
            schema,
            segments,
            manifest,
            state.memory.shards,
        )),
        report,
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
    entry.update_status(|s| {
        *s = Default::default();
    });
    info!(table = %key, "unloaded");
    Ok(())
}
