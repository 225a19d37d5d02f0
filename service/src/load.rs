//! SECONDARY_LOAD: list the table's files, read them in parallel through the format readers, lay
//! the result out in shards and publish it as the table's next version.
//!
//! Bytes are counted against the memory limit as files arrive, so a load that would not fit stops
//! early and the published version (if any) keeps serving. Any failure leaves it in place and puts
//! the reason in the table's status.

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use object_store::ObjectStore;
use serde::Serialize;
use tarn_catalog::{FormatKind, TableDef, TableKey, types::schema_of};
use tarn_connectors::listing::{self, FileEntry, Manifest};
use tarn_connectors::read::{self, ReadOptions};
use tarn_connectors::{ConnectorError, RejectedRow};
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Result, ServiceError};
use crate::state::AppState;
use crate::store::{LoadState, Segment, TableVersion};

/// What a load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub table: String,
    pub version: u64,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub bytes_read: u64,
    pub rejected_rows: usize,
    pub seconds: f64,
}

/// Loads (or reloads) `key`. Two loads of one table never run at once: the second waits.
pub async fn load_table(state: &AppState, key: &TableKey) -> Result<LoadReport> {
    let def = state.catalog.get(key)?;
    let entry = state.memory.entry(key);
    let _guard = entry.load_lock.lock().await;
    let started = Instant::now();
    entry.update_status(|s| {
        s.load_status = LoadState::Loading;
        s.load_progress = 0.0;
        s.load_start = Some(Utc::now());
        s.load_end = None;
    });
    let span = info_span!("load", table = %key);
    let result = build_version(state, &def, &entry).instrument(span).await;
    match result {
        Ok(version) => {
            let report = LoadReport {
                table: key.to_string(),
                version: version.version,
                files: version.manifest.files.len(),
                rows: version.rows,
                bytes: version.bytes,
                bytes_read: version.manifest.total_bytes(),
                rejected_rows: version.rejected.len(),
                seconds: started.elapsed().as_secs_f64(),
            };
            state.memory.publish(&entry, Arc::new(version));
            state
                .memory
                .loads_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            entry.update_status(|s| {
                s.load_status = LoadState::Avail;
                s.load_progress = 100.0;
                s.load_end = Some(Utc::now());
                s.last_error = None;
            });
            info!(table = %key, rows = report.rows, bytes = report.bytes, files = report.files,
                  rejected = report.rejected_rows, seconds = report.seconds, "loaded");
            Ok(report)
        }
        Err(e) => {
            let serving = entry.current().is_some();
            state
                .memory
                .loads_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(table = %key, error = %e, serving_previous = serving, "load failed");
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

async fn build_version(
    state: &AppState,
    def: &TableDef,
    entry: &crate::store::TableEntry,
) -> Result<TableVersion> {
    let key = &def.key;
    let declared = def.columns.as_deref().map(schema_of).transpose()?;
    let mut reservation = state.memory.reserve(key, 0)?;

    if def.format.kind == FormatKind::Delta {
        let spec = &def.files[0];
        let loc = state.stores.check(&spec.uri)?;
        let store = state.stores.store_for(&loc, spec.region.as_deref()).await?;
        let snap = read::delta_snapshot(store, &loc).await?;
        let schema = declared.unwrap_or_else(|| snap.schema.clone());
        let opts = ReadOptions {
            progress: entry.progress.clone(),
            ..ReadOptions::new(def.format.clone(), schema.clone(), def.options.strict_load)
        };
        entry.start_progress(snap.manifest.total_bytes());
        let out = read::read_delta(&snap, &loc, &opts).await?;
        let seg = Segment::new(format!("{}@v{}", loc, snap.version), out.batches);
        reservation.grow(key, seg.bytes)?;
        return Ok(TableVersion::build(
            entry.next_version(),
            schema,
            vec![Arc::new(seg)],
            snap.manifest,
            out.rejected,
            state.memory.shards,
        ));
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

    let schema: SchemaRef = match declared {
        Some(s) => s,
        None => match files.first() {
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
    let total_bytes: u64 = files.iter().map(|f| f.1.size).sum::<u64>().max(1);
    entry.start_progress(2 * total_bytes);
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        * 2;
    info!(files = files.len(), bytes = total_bytes, "reading");

    let manifest = Manifest {
        files: files.iter().map(|f| f.1.clone()).collect(),
        delta_version: None,
    };
    let reads: Vec<futures::future::BoxFuture<'static, _>> = files
        .into_iter()
        .map(|(store, f)| read_one(store, f, opts.clone()).boxed())
        .collect();
    let mut reads = futures::stream::iter(reads).buffered(parallel);
    let mut segments = Vec::new();
    let mut rejected: Vec<RejectedRow> = Vec::new();
    while let Some((f, out)) = reads.next().await {
        let out = out?;
        let seg = Segment::new(f.uri.clone(), out.batches);
        reservation.grow(key, seg.bytes)?;
        rejected.extend(out.rejected);
        segments.push(Arc::new(seg));
    }
    Ok(TableVersion::build(
        entry.next_version(),
        schema,
        segments,
        manifest,
        rejected,
        state.memory.shards,
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
