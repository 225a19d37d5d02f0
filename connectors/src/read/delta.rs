//! Delta Lake: deltalake resolves the table's current version from its `_delta_log` (checkpoints,
//! deletion vectors, column mapping) and scans it through DataFusion; the add actions of that
//! version are the manifest.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{TimeZone, Utc};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTableBuilder;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use futures::TryStreamExt;
use object_store::ObjectStore;
use url::Url;

use super::RowOrigin;
use super::conform::by_name;
use super::{FileBatches, ReadOptions, lowercase_names};
use crate::error::{ConnectorError, Result};
use crate::listing::{FileEntry, Manifest};
use crate::location::Location;

/// A Delta table's current version as its log describes it.
pub struct DeltaSnapshot {
    pub table: deltalake::DeltaTable,
    pub version: u64,
    pub schema: SchemaRef,
    pub manifest: Manifest,
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

/// Opens the table at `loc` (its root) at its latest version.
pub async fn delta_snapshot(store: Arc<dyn ObjectStore>, loc: &Location) -> Result<DeltaSnapshot> {
    register_log_stores();
    let err = |e: &dyn std::fmt::Display| ConnectorError::Delta {
        location: loc.to_string(),
        message: e.to_string(),
    };
    let url = table_url(loc)?;
    let table = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| err(&e))?
        .with_storage_backend(store, url)
        .load()
        .await
        .map_err(|e| err(&e))?;
    let version = table
        .version()
        .ok_or_else(|| err(&"the table has no committed version"))?;
    let snapshot = table.snapshot().map_err(|e| err(&e))?;
    let root = loc.to_string();
    let root = root.trim_end_matches('/');
    let files = snapshot
        .log_data()
        .iter()
        .map(|f| FileEntry {
            uri: format!("{root}/{}", f.path()),
            key: format!("{}/{}", loc.key().trim_end_matches('/'), f.path()),
            size: f.size().max(0) as u64,
            etag: None,
            last_modified: Utc
                .timestamp_millis_opt(f.modification_time())
                .single()
                .unwrap_or_default(),
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
        },
    })
}

/// Reads the whole current version of the table.
pub async fn read_delta(
    snap: &DeltaSnapshot,
    loc: &Location,
    opts: &ReadOptions,
) -> Result<FileBatches> {
    let err = |e: &dyn std::fmt::Display| ConnectorError::Delta {
        location: loc.to_string(),
        message: e.to_string(),
    };
    let ctx = SessionContext::new();
    snap.table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| err(&e))?;
    let provider = snap.table.table_provider().await.map_err(|e| err(&e))?;
    let mut stream = ctx
        .read_table(provider)
        .map_err(|e| err(&e))?
        .execute_stream()
        .await
        .map_err(|e| err(&e))?;
    let mut out = FileBatches::default();
    let uri = loc.to_string();
    let mut row = 0u64;
    while let Some(batch) = stream.try_next().await.map_err(|e| err(&e))? {
        let n = batch.num_rows();
        let base = row;
        let line = move |r: usize| base + r as u64 + 1;
        let origin = RowOrigin {
            file: &uri,
            line: &line,
        };
        out.push(by_name(&batch, &opts.schema), n, &origin, opts, vec![])?;
        row += n as u64;
    }
    Ok(out)
}
