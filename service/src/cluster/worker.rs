//! A cluster's worker (`tarn worker`): what it answers its coordinator. It holds its part of
//! each table as a table of its own (the table's columns, its files only), loaded and refreshed
//! by its own loader (so a refresh reads only what changed in its files) and written to its own
//! snapshots; and it runs the query tasks the coordinator sends (datafusion-distributed's worker
//! service, over its memory store).

use std::sync::Arc;

use tarn_catalog::{CatalogStore, TableKey};
use tarn_engine::store::{LoadReport, MemoryStore};

use super::{PartLoaded, PartRequest, WorkerInfo, WorkerTable};
use crate::error::{Result, ServiceError};
use crate::load::Loader;

/// Takes the part of a table the coordinator gives: its definition (replacing what this worker
/// had of it), then a load or a refresh of it.
pub async fn put_part(
    catalog: &CatalogStore,
    loader: &Arc<Loader>,
    memory: &MemoryStore,
    request: PartRequest,
) -> Result<PartLoaded> {
    let key = request.def.key.clone();
    let replaced = catalog
        .get(&key)
        .is_ok_and(|d| d.files != request.def.files);
    catalog.put_table(request.def)?;
    if replaced {
        loader.files_replaced(&key);
    }
    let loaded = memory.get(&key).and_then(|e| e.current()).is_some();
    let report: LoadReport = if request.load || !loaded {
        loader.load(&key).await?
    } else {
        loader.refresh(&key).await?
    };
    Ok(PartLoaded {
        version: report.version,
        rows: report.rows,
        bytes: report.bytes,
        files: report.files,
        shards: memory.shards,
        files_added: report.files_added,
        files_changed: report.files_changed,
        files_removed: report.files_removed,
        files_reused: report.files_reused,
        files_from_snapshots: report.files_from_snapshots,
        rows_added: report.rows_added,
        rows_removed: report.rows_removed,
        bytes_read: report.bytes_read,
        rejected_rows: report.rejected_rows,
        delta_version: report.delta_version,
        bounds: memory
            .get(&key)
            .and_then(|e| e.current())
            .map(|v| v.column_bounds())
            .unwrap_or_default(),
    })
}

/// Forgets this worker's part of `key` (its data and its definition); nothing to forget is fine.
pub async fn drop_part(catalog: &CatalogStore, loader: &Loader, key: &TableKey) -> Result<()> {
    loader.forget(key).await;
    match catalog.drop_table(key, true) {
        Ok(_) | Err(tarn_catalog::CatalogError::DatabaseNotFound { .. }) => Ok(()),
        Err(e) => Err(ServiceError::from(e)),
    }
}

/// What this worker holds; with `files`, each part's files and columns too.
pub fn info(catalog: &CatalogStore, memory: &MemoryStore, files: bool) -> WorkerInfo {
    let mut tables: Vec<WorkerTable> = memory
        .entries()
        .into_iter()
        .filter_map(|e| {
            let v = e.current()?;
            Some(WorkerTable {
                table: e.key.to_string(),
                version: v.version,
                rows: v.rows,
                bytes: v.bytes,
                files: v.manifest.files.len(),
                shards: v.shards.len(),
                manifest: if files {
                    v.manifest.files.clone()
                } else {
                    Vec::new()
                },
                // Declared, or as the part was read (a Delta table's log says them).
                columns: files.then(|| {
                    catalog
                        .get(&e.key)
                        .ok()
                        .and_then(|d| d.columns)
                        .unwrap_or_else(|| tarn_catalog::types::columns_of(&v.schema))
                }),
                bounds: if files { v.column_bounds() } else { Vec::new() },
            })
        })
        .collect();
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    WorkerInfo {
        memory_used: memory.used_bytes(),
        memory_limit: memory.limit(),
        shards: memory.shards,
        tables,
    }
}
