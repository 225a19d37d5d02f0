//! The background writer: listens to the store and persists each table's newest version.
//!
//! A load is marked for recovery before it answers (the marker is the one thing the loader waits
//! for); the snapshot itself is written in the background, one writer at a time per table. While
//! one writes, further publishes only mark the table dirty, and the writer then writes the newest
//! version once more. An unload or drop deletes the table's snapshot before it answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use tarn_catalog::{CatalogStore, TableKey};
use tarn_engine::store::{MemoryStore, PublishCause, StoreEvent, StoreListener, TableEntry};
use tracing::{info, warn};

use super::Snapshots;

/// Per table: a writer runs / a newer version waits to be written.
#[derive(Debug, Default)]
struct Flags {
    running: AtomicBool,
    dirty: AtomicBool,
}

pub struct SnapshotWriter {
    snapshots: Arc<Snapshots>,
    catalog: Arc<CatalogStore>,
    /// `snapshots = false`: nothing is written (what an earlier run wrote is still deleted when
    /// its table is unloaded or dropped).
    write: bool,
    flags: Mutex<HashMap<TableKey, Arc<Flags>>>,
}

impl SnapshotWriter {
    pub fn new(snapshots: Arc<Snapshots>, catalog: Arc<CatalogStore>, write: bool) -> Arc<Self> {
        Arc::new(Self {
            snapshots,
            catalog,
            write,
            flags: Mutex::new(HashMap::new()),
        })
    }

    fn flags(&self, key: &TableKey) -> Arc<Flags> {
        self.flags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Writes a snapshot of the table's newest version in the background (see the module).
    fn request(self: &Arc<Self>, entry: &Arc<TableEntry>) {
        let flags = self.flags(&entry.key);
        flags.dirty.store(true, Ordering::SeqCst);
        if flags.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let (writer, entry) = (self.clone(), entry.clone());
        tokio::spawn(async move {
            loop {
                flags.dirty.store(false, Ordering::SeqCst);
                writer.write_newest(&entry).await;
                flags.running.store(false, Ordering::SeqCst);
                // A publish that came in after the last check needs a writer again.
                if !flags.dirty.load(Ordering::SeqCst) || flags.running.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }

    async fn write_newest(&self, entry: &TableEntry) {
        let key = &entry.key;
        let (Ok(def), Some(version)) = (self.catalog.get(key), entry.current()) else {
            return;
        };
        if entry.status().snapshot_version == Some(version.version) {
            return;
        }
        let started = Instant::now();
        match self.snapshots.write(&def, &version).await {
            Ok(bytes) => {
                let seconds = started.elapsed().as_secs_f64();
                info!(table = %key, version = version.version, bytes, seconds, "snapshot written");
                entry.update_status(|s| {
                    s.snapshot_version = Some(version.version);
                    s.snapshot_at = Some(Utc::now());
                    s.snapshot_bytes_written = bytes;
                    s.snapshot_seconds = seconds;
                    s.snapshot_error = None;
                });
            }
            Err(e) => {
                warn!(table = %key, version = version.version, error = %e, "snapshot not written");
                entry.update_status(|s| s.snapshot_error = Some(e.to_string()));
            }
        }
    }

    /// Marks the table as loaded, so a restart recovers it; then writes its snapshot.
    async fn mark_and_write(self: Arc<Self>, entry: Arc<TableEntry>) {
        if let Err(e) = self.snapshots.mark_loaded(&entry.key).await {
            warn!(table = %entry.key, error = %e, "table not marked for recovery");
            entry.update_status(|s| s.snapshot_error = Some(e.to_string()));
        }
        self.request(&entry);
    }

    async fn forget(self: Arc<Self>, key: TableKey) {
        self.snapshots.forget(&key).await;
        self.flags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

/// The writer as a listener: a load is marked (waited for) and written, a refresh written; an
/// unload or drop deletes the snapshot (waited for). A recovery or a placement writes nothing:
/// the snapshot has those rows already.
pub struct Listener(pub Arc<SnapshotWriter>);

impl StoreListener for Listener {
    fn on_change(
        &self,
        _memory: &Arc<MemoryStore>,
        event: &StoreEvent<'_>,
    ) -> Option<BoxFuture<'static, ()>> {
        let writer = self.0.clone();
        match event {
            // A coordinator's version of a table its workers hold: the workers write theirs.
            StoreEvent::Published { version, .. } if !writer.write || version.is_remote() => None,
            StoreEvent::Published {
                entry,
                cause: PublishCause::Load,
                ..
            } => Some(writer.mark_and_write((*entry).clone()).boxed()),
            StoreEvent::Published {
                entry,
                cause: PublishCause::Refresh,
                ..
            } => {
                writer.request(entry);
                None
            }
            StoreEvent::Published { .. } => None,
            StoreEvent::Unloaded { entry } => Some(writer.forget(entry.key.clone()).boxed()),
            StoreEvent::Dropped { key } => Some(writer.forget((*key).clone()).boxed()),
        }
    }
}
