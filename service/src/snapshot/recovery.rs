//! Recovery after a restart, and readiness.
//!
//! Every table that was loaded when the service stopped comes back: from its snapshot when there
//! is a usable one (then an incremental refresh catches up with the sources), else by a full load,
//! the reason kept in the status. Tables recover in parallel; the service is ready when all have
//! finished, one way or another (or the configured `ready_tables` have).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use tarn_catalog::{CatalogStore, TableKey};
use tarn_engine::store::{LoadState, MemoryStore, PublishCause, RecoverySource};
use tracing::{info, warn};

use super::Snapshots;
use crate::load::Loader;

pub struct Recovery {
    snapshots: Arc<Snapshots>,
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
    loader: Arc<Loader>,
    /// Tables still recovering, and whether the list of tables to recover is known yet.
    unfinished: AtomicUsize,
    listed: AtomicBool,
    /// The tables readiness waits for; all being recovered when none are named.
    ready_tables: Option<Vec<TableKey>>,
}

impl Recovery {
    pub fn new(
        snapshots: Arc<Snapshots>,
        catalog: Arc<CatalogStore>,
        memory: Arc<MemoryStore>,
        loader: Arc<Loader>,
        ready_tables: Option<Vec<TableKey>>,
    ) -> Self {
        Self {
            snapshots,
            catalog,
            memory,
            loader,
            unfinished: AtomicUsize::new(0),
            listed: AtomicBool::new(false),
            ready_tables,
        }
    }

    /// Whether the service is ready, and the tables it waits for.
    pub fn readiness(&self) -> (bool, Vec<TableKey>) {
        let recovering: Vec<TableKey> = self
            .memory
            .entries()
            .into_iter()
            .filter(|e| e.status().recovering())
            .map(|e| e.key.clone())
            .collect();
        let (ready, waiting) = readiness(
            self.listed.load(Ordering::SeqCst),
            self.unfinished.load(Ordering::SeqCst),
            &recovering,
            self.ready_tables.as_deref(),
        );
        (ready, waiting.into_iter().cloned().collect())
    }

    /// Recovers every table that was loaded when the service stopped (see the module).
    pub async fn recover_all(self: Arc<Self>) {
        let tables = match self.snapshots.loaded_tables().await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "cannot list the tables to recover");
                Vec::new()
            }
        };
        let tables: Vec<TableKey> = tables
            .into_iter()
            .filter(|k| self.catalog.get(k).is_ok())
            .collect();
        self.unfinished.store(tables.len(), Ordering::SeqCst);
        for key in &tables {
            self.memory.entry(key).update_status(|s| {
                s.load_status = LoadState::InRecovery;
                s.recovery_start = Some(Utc::now());
            });
        }
        self.listed.store(true, Ordering::SeqCst);
        info!(
            tables = tables.len(),
            root = self.snapshots.root(),
            "recovering"
        );
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        futures::stream::iter(tables.into_iter().map(|key| {
            let this = self.clone();
            async move {
                this.recover(&key).await;
                this.unfinished.fetch_sub(1, Ordering::SeqCst);
            }
        }))
        .buffer_unordered(parallel)
        .collect::<Vec<()>>()
        .await;
        info!("recovery finished");
    }

    async fn recover(&self, key: &TableKey) {
        if self.catalog.get(key).is_err() {
            return;
        }
        match self.recover_from_snapshot(key).await {
            Ok(()) => {
                // Catch up with what changed in the sources while the service was down.
                let (loader, key) = (self.loader.clone(), key.clone());
                tokio::spawn(async move {
                    if let Err(e) = loader.refresh(&key).await {
                        warn!(table = %key, error = %e, "refresh after recovery failed");
                    }
                });
            }
            Err(why) => self.load_from_source(key, why).await,
        }
    }

    /// Publishes the table's snapshot; the error says why it cannot be used.
    async fn recover_from_snapshot(&self, key: &TableKey) -> Result<(), String> {
        let def = self.catalog.get(key).map_err(|e| e.to_string())?;
        let entry = self.memory.entry(key);
        let started = Instant::now();
        let _guard = entry.writer.lock().await;
        let (version, bytes) = self.snapshots.read(&def, self.memory.shards).await?;
        // Held until published: tables recovering side by side count against the memory limit
        // together.
        let _reservation = self
            .memory
            .reserve(key, version.bytes)
            .map_err(|e| format!("the snapshot does not fit: {e}"))?;
        entry.set_next_version(version.version + 1);
        let version = Arc::new(version);
        self.memory
            .publish(&entry, version.clone(), PublishCause::Recovery)
            .await;
        entry.update_status(|s| {
            s.load_status = LoadState::Avail;
            s.load_progress = 100.0;
            s.recovery_source = Some(RecoverySource::Snapshot);
            s.recovery_end = Some(Utc::now());
            s.snapshot_version = Some(version.version);
        });
        info!(table = %key, version = version.version, rows = version.rows, snapshot_bytes = bytes,
              seconds = started.elapsed().as_secs_f64(), "recovered from snapshot");
        Ok(())
    }

    /// No usable snapshot (`why`): the table loads from its files.
    async fn load_from_source(&self, key: &TableKey, why: String) {
        let entry = self.memory.entry(key);
        warn!(table = %key, reason = %why, "snapshot not usable; loading from the source");
        entry.update_status(|s| s.recovery_error = Some(why.clone()));
        match self.loader.load(key).await {
            Ok(_) => entry.update_status(|s| {
                s.recovery_source = Some(RecoverySource::Source);
                s.recovery_end = Some(Utc::now());
            }),
            Err(e) => {
                warn!(table = %key, error = %e, "recovery failed");
                entry.update_status(|s| {
                    s.load_status = LoadState::RecoveryFailed;
                    s.recovery_end = Some(Utc::now());
                    s.recovery_error =
                        Some(format!("{why}; the load from the source failed too: {e}"));
                });
            }
        }
    }
}

/// Ready once the tables to recover are known and every one of them (or of `wanted`, when the
/// configuration names some) has finished recovering; also answers the tables waited for.
fn readiness<'a>(
    listed: bool,
    unfinished: usize,
    recovering: &'a [TableKey],
    wanted: Option<&[TableKey]>,
) -> (bool, Vec<&'a TableKey>) {
    let waiting: Vec<&TableKey> = recovering
        .iter()
        .filter(|k| wanted.is_none_or(|w| w.contains(k)))
        .collect();
    let ready = listed && waiting.is_empty() && (wanted.is_some() || unfinished == 0);
    (ready, waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_recovery_is_done_or_the_wanted_tables_are_back() {
        let (a, b) = (TableKey::new("s", "a"), TableKey::new("s", "b"));
        // Before the tables to recover are listed: never ready.
        assert!(!readiness(false, 0, &[], None).0);
        // Everything recovering must finish, by default.
        assert_eq!(
            readiness(true, 2, &[a.clone(), b.clone()], None),
            (false, vec![&a, &b])
        );
        assert!(
            !readiness(true, 1, &[], None).0,
            "a fallback load still running"
        );
        assert!(readiness(true, 0, &[], None).0);
        // With ready_tables, only those are waited for.
        let wanted = [a.clone()];
        assert_eq!(
            readiness(true, 1, std::slice::from_ref(&b), Some(&wanted)),
            (true, vec![])
        );
        assert_eq!(
            readiness(true, 2, &[a.clone(), b.clone()], Some(&wanted)),
            (false, vec![&a])
        );
    }
}
