//! Delta Lake: deltalake resolves the table's current version from its `_delta_log` (checkpoints,
//! deletion vectors, column mapping); its active `add` actions are the manifest, and each data
//! file is scanned on its own through deltalake's DataFusion provider, so a refresh reads only
//! the files the commits since the loaded version added.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{TimeZone, Utc};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTableBuilder;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::ObjectStore;
use url::Url;

use super::{FileBatches, ReadOptions, lowercase_names};
use crate::error::{ConnectorError, Result};
use crate::listing::{FileEntry, Manifest};
use crate::location::Location;

/// A Delta table's current version as its log describes it.
pub struct DeltaSnapshot {
    pub table: deltalake::DeltaTable,
    pub version: u64,
    pub schema: SchemaRef,
    /// The active data files (`add` actions). A file's `etag` names its deletion vector, so a
    /// file that gains or changes one counts as changed.
    pub manifest: Manifest,
    /// Path of each manifest file relative to the table root, as the log has it.
    pub paths: Vec<String>,
    /// Why the snapshot was loaded from scratch instead of advancing the previous one.
    pub fallback: Option<String>,
}

impl DeltaSnapshot {
    /// Keeps only the active files whose URI `keep` holds (a cluster's worker: its part).
    pub fn keep_only(&mut self, keep: &[String]) {
        let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
        let (files, paths): (Vec<_>, Vec<_>) = std::mem::take(&mut self.manifest.files)
            .into_iter()
            .zip(std::mem::take(&mut self.paths))
            .filter(|(f, _)| keep.contains(f.uri.as_str()))
            .unzip();
        self.manifest.files = files;
        self.paths = paths;
    }
}

fn table_url(loc: &Location) -> Result<Url> {
    let root = loc.key().trim_end_matches('/');
    let s = match loc {
        Location::File { .. } => format!("file:///{root}/"),
        Location::S3 { bucket, .. } | Location::Oci { bucket, .. } => {
            format!("s3://{bucket}/{root}/")
        }
        Location::Http { .. } => {
            return Err(ConnectorError::Delta {
                location: loc.to_string(),
                message: "Delta tables are read from file://, s3:// or oci:// locations".into(),
            });
        }
    };
    Url::parse(&s).map_err(|e| ConnectorError::InvalidLocation {
        uri: loc.to_string(),
        reason: e.to_string(),
    })
}

/// deltalake finds a log store by URL scheme; it knows `file://` only, unless its (large) AWS
/// integration is compiled in. Tarn hands deltalake its own, already configured object store, so
/// the plain log store serves `s3://` (also used for `oci://`) as well.
#[derive(Debug, Default)]
struct PlainLogStores;

impl LogStoreFactory for PlainLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registry = logstore_factories();
        let url = Url::parse("s3://").expect("valid scheme URL");
        if !registry.contains_key(&url) {
            registry.insert(url, Arc::new(PlainLogStores));
        }
    });
}

/// Opens the table at `loc` (its root) at its latest version. With `previous` (the table as an
/// earlier call left it), only the commits since that version are read from the log; when that
/// fails (the log was cleaned up past it, for one) the table is opened from scratch, from its
/// latest checkpoint, and the reason kept in `fallback`.
pub async fn delta_snapshot(
    store: Arc<dyn ObjectStore>,
    loc: &Location,
    previous: Option<deltalake::DeltaTable>,
) -> Result<DeltaSnapshot> {
    register_log_stores();
    let err = |e: &dyn std::fmt::Display| ConnectorError::Delta {
        location: loc.to_string(),
        message: e.to_string(),
    };
    let url = table_url(loc)?;
    let mut fallback = None;
    let advanced = match previous {
        Some(mut table) => match table.update_incremental(None).await {
            Ok(()) => Some(table),
            Err(e) => {
                tracing::warn!(location = %loc, error = %e, "Delta log replay from the loaded version failed; reading the table from its latest checkpoint");
                fallback = Some(format!("log replay from the loaded version failed: {e}"));
                None
            }
        },
        None => None,
    };
    let table = match advanced {
        Some(t) => t,
        None => DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| err(&e))?
            .with_storage_backend(store, url)
            .load()
            .await
            .map_err(|e| err(&e))?,
    };
    let version = table
        .version()
        .ok_or_else(|| err(&"the table has no committed version"))?;
    let snapshot = table.snapshot().map_err(|e| err(&e))?;
    let fingerprint = format!(
        "{:?}|{:?}|{:?}",
        snapshot.schema(),
        snapshot.metadata().partition_columns(),
        snapshot.protocol()
    );
    let root = loc.to_string();
    let root = root.trim_end_matches('/');
    let mut paths = Vec::new();
    let files = snapshot
        .log_data()
        .iter()
        .map(|f| {
            let path = f.path().to_string();
            let entry = FileEntry {
                uri: format!("{root}/{path}"),
                key: format!("{}/{path}", loc.key().trim_end_matches('/')),
                size: f.size().max(0) as u64,
                etag: f.deletion_vector_descriptor().map(|d| {
                    format!(
                        "dv:{:?}:{}:{:?}",
                        d.storage_type, d.path_or_inline_dv, d.offset
                    )
                }),
                last_modified: Utc
                    .timestamp_millis_opt(f.modification_time())
                    .single()
                    .unwrap_or_default(),
            };
            paths.push(path);
            entry
        })
        .collect();
    let provider = table.table_provider().await.map_err(|e| err(&e))?;
    let schema = lowercase_names(&provider.schema());
    Ok(DeltaSnapshot {
        table,
        version: version as u64,
        schema,
        manifest: Manifest {
            files,
            delta_version: Some(version as u64),
            delta_layout: Some(fingerprint),
        },
        paths,
        fallback,
    })
}

/// Reads the listed data files (indexes into the snapshot's manifest) of the snapshot's version,
/// each on its own, with their deletion vectors and partition values applied: one
/// [`FileBatches`] per file, in the order given.
pub async fn read_delta_files(
    snap: &DeltaSnapshot,
    files: &[usize],
    opts: &ReadOptions,
) -> Result<Vec<FileBatches>> {
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        * 2;
    let reads: Vec<futures::future::BoxFuture<'_, Result<FileBatches>>> = files
        .iter()
        .map(|&i| read_delta_file(snap, i, opts).boxed())
        .collect();
    futures::stream::iter(reads)
        .buffered(parallel)
        .try_collect()
        .await
}

async fn read_delta_file(
    snap: &DeltaSnapshot,
    index: usize,
    opts: &ReadOptions,
) -> Result<FileBatches> {
    let file = &snap.manifest.files[index];
    let opts = &opts.for_file(&file.uri);
    let err = |e: &dyn std::fmt::Display| ConnectorError::Delta {
        location: file.uri.clone(),
        message: e.to_string(),
    };
    let ctx = SessionContext::new();
    snap.table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| err(&e))?;
    let provider = snap
        .table
        .table_provider()
        .with_file_paths([snap.paths[index].clone()])
        .await
        .map_err(|e| err(&e))?;
    let mut stream = ctx
        .read_table(provider)
        .map_err(|e| err(&e))?
        .execute_stream()
        .await
        .map_err(|e| err(&e))?;
    let mut out = FileBatches::default();
    let mut row = 0u64;
    while let Some(batch) = stream.try_next().await.map_err(|e| err(&e))? {
        out.push_named(&batch, &file.uri, row, opts)?;
        row += batch.num_rows() as u64;
    }
    opts.progress
        .fetch_add(2 * file.size, std::sync::atomic::Ordering::Relaxed);
    out.memory = opts.file_memory.clone();
    Ok(out)
}
