//! The sharded in-memory store: per table, the published [`TableVersion`] and the status.
//!
//! A version is immutable: N shards of Arrow batches with per-batch statistics, grouped by source
//! file into segments. Publishing swaps one `Arc`, so a query that took a version keeps reading it
//! while the next is published, and a failed load never touches the published one.
//!
//! The store holds data and status only. It knows nothing of where data comes from (loading,
//! snapshots, regions are the service's): what must react to a publish, an unload or a drop
//! subscribes to it ([`StoreListener`]) and is told, in order, right after the change.

mod events;
mod segment;
mod status;
mod version;

pub use events::{PublishCause, StoreEvent, StoreListener};
pub use segment::{BatchStats, Segment, memory_size};
pub use status::{HISTORY_LEN, HistoryEntry, LoadReport, LoadState, RecoverySource, TableStatus};
pub use version::{
    ColumnBounds, RemotePart, Shard, TableVersion, column_statistics, merge_bounds, merge_column,
};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::future::BoxFuture;
use tarn_catalog::TableKey;
use tarn_connectors::read::{MemoryRefused, ReadMemory};

use crate::error::{EngineError, Result};

/// How many replaced versions a cluster's worker keeps per table (see [`TableEntry::version`]).
pub const KEPT_REPLACED: usize = 3;

#[derive(Debug)]
pub struct TableEntry {
    pub key: TableKey,
    current: RwLock<Option<Arc<TableVersion>>>,
    /// On a cluster's worker: the last [`KEPT_REPLACED`] versions the current one replaced, so
    /// that queries the coordinator planned before it published the cluster's next versions still
    /// find theirs (they share the segments of files that did not change).
    replaced: RwLock<VecDeque<Arc<TableVersion>>>,
    status: Mutex<TableStatus>,
    /// The table's one writer: held for the length of anything that publishes or frees a
    /// version of it (a load, a refresh, an unload, a recovery, a placement), so two never run
    /// at once on one table.
    pub writer: tokio::sync::Mutex<()>,
    next_version: AtomicU64,
    /// Bytes of source files read by the load in progress, and how many it will read.
    pub progress: Arc<AtomicU64>,
    progress_total: AtomicU64,
    history: Mutex<VecDeque<HistoryEntry>>,
}

impl TableEntry {
    fn new(key: TableKey) -> Self {
        Self {
            key,
            current: RwLock::new(None),
            replaced: RwLock::new(VecDeque::new()),
            status: Mutex::new(TableStatus::default()),
            writer: tokio::sync::Mutex::new(()),
            next_version: AtomicU64::new(0),
            progress: Arc::new(AtomicU64::new(0)),
            progress_total: AtomicU64::new(0),
            history: Mutex::new(VecDeque::new()),
        }
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

    /// Version `number` of the table: the current one, or (on a worker) the one it replaced.
    pub fn version(&self, number: u64) -> Option<Arc<TableVersion>> {
        let current = self.current();
        if let Some(v) = current.filter(|v| v.version == number) {
            return Some(v);
        }
        self.replaced
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|v| v.version == number)
            .cloned()
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

pub struct MemoryStore {
    tables: RwLock<HashMap<TableKey, Arc<TableEntry>>>,
    limit: Option<u64>,
    /// Bytes held by loads in progress, counted against the limit before they publish.
    reserved: AtomicU64,
    /// Bytes held by running queries' operators (hash tables, sorts), counted against the limit.
    queries: AtomicU64,
    pub shards: usize,
    listeners: RwLock<Vec<Arc<dyn StoreListener>>>,
    /// Whether a published version keeps the one it replaced (a cluster's worker: see
    /// [`TableEntry::version`]).
    keep_replaced: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limit", &self.limit)
            .field("shards", &self.shards)
            .finish()
    }
}

impl MemoryStore {
    pub fn new(limit: Option<u64>, shards: usize) -> Self {
        Self {
            tables: RwLock::new(HashMap::new()),
            limit,
            reserved: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            shards: shards.max(1),
            listeners: RwLock::new(Vec::new()),
            keep_replaced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Keeps, per table, the version the current one replaced (for a cluster's worker).
    pub fn keep_replaced_versions(&self) {
        self.keep_replaced.store(true, Ordering::SeqCst);
    }

    /// Tells `listener` of every publish, unload and drop from now on, after those it was
    /// subscribed after.
    pub fn subscribe(&self, listener: Arc<dyn StoreListener>) {
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    /// Tells every listener of `event`; answers what they asked to be waited for.
    fn notify(self: &Arc<Self>, event: StoreEvent<'_>) -> Vec<BoxFuture<'static, ()>> {
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        listeners
            .iter()
            .filter_map(|l| l.on_change(self, &event))
            .collect()
    }

    pub fn entry(&self, key: &TableKey) -> Arc<TableEntry> {
        if let Some(e) = self.get(key) {
            return e;
        }
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        t.entry(key.clone())
            .or_insert_with(|| Arc::new(TableEntry::new(key.clone())))
            .clone()
    }

    pub fn get(&self, key: &TableKey) -> Option<Arc<TableEntry>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Frees the table's data and forgets it (DROP TABLE); queries already running keep their
    /// version.
    pub async fn drop_table(self: &Arc<Self>, key: &TableKey) {
        let gone = self
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let waits = self.notify(StoreEvent::Dropped { key });
        drop(gone);
        futures::future::join_all(waits).await;
    }

    pub fn used_bytes(&self) -> u64 {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        // A coordinator's versions of tables its workers hold take nothing here.
        t.values()
            .filter_map(|e| e.current())
            .filter(|v| !v.is_remote())
            .map(|v| v.bytes)
            .sum()
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Bytes loads and refreshes in progress hold.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved.load(Ordering::SeqCst)
    }

    /// Bytes running queries hold.
    pub fn query_bytes(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }

    /// Counts `bytes` more held by running queries; false (and nothing counted) when that would
    /// pass the limit beside the loaded data, the loads in progress and the other queries.
    pub fn try_grow_queries(&self, bytes: u64) -> bool {
        let Some(limit) = self.limit else {
            self.queries.fetch_add(bytes, Ordering::SeqCst);
            return true;
        };
        let others = self.used_bytes() + self.reserved.load(Ordering::SeqCst);
        self.queries
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (others + q + bytes <= limit).then_some(q + bytes)
            })
            .is_ok()
    }

    /// Counts `bytes` more held by running queries, whatever the limit (memory already taken).
    pub fn grow_queries(&self, bytes: u64) {
        self.queries.fetch_add(bytes, Ordering::SeqCst);
    }

    pub fn shrink_queries(&self, bytes: u64) {
        self.queries.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Counts `bytes` more of a load in progress against the limit; refuses when it would exceed it.
    /// The previous version of the table being loaded still counts: it serves until the swap, and
    /// so does what running queries hold.
    pub fn reserve(self: &Arc<Self>, key: &TableKey, bytes: u64) -> Result<Reservation> {
        self.take_reserved(bytes)
            .map_err(|r| EngineError::MemoryLimit {
                table: key.clone(),
                needed: r.needed,
                available: r.available,
                limit: r.limit,
            })?;
        Ok(Reservation {
            store: self.clone(),
            key: key.clone(),
            bytes: AtomicU64::new(bytes),
        })
    }

    fn take_reserved(&self, bytes: u64) -> std::result::Result<(), MemoryRefused> {
        let reserved = self.reserved.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if let Some(limit) = self.limit {
            let used = self.used_bytes() + self.queries.load(Ordering::SeqCst);
            if used + reserved > limit {
                self.reserved.fetch_sub(bytes, Ordering::SeqCst);
                return Err(MemoryRefused {
                    needed: bytes,
                    available: limit.saturating_sub(used + reserved - bytes),
                    limit,
                });
            }
        }
        Ok(())
    }

    /// Makes `version` the table's current one; the previous one is freed once no query holds
    /// it. The listeners are told before this returns (see [`StoreListener`]).
    pub async fn publish(
        self: &Arc<Self>,
        entry: &Arc<TableEntry>,
        version: Arc<TableVersion>,
        cause: PublishCause,
    ) {
        let mut previous = entry.swap(Some(version.clone()));
        if self.keep_replaced.load(Ordering::SeqCst)
            && let Some(p) = previous.take()
        {
            let mut kept = entry.replaced.write().unwrap_or_else(|e| e.into_inner());
            kept.push_back(p);
            if kept.len() > KEPT_REPLACED {
                previous = kept.pop_front();
            }
        }
        let waits = self.notify(StoreEvent::Published {
            entry,
            version: &version,
            cause,
        });
        // Freed here, unless a query still reads it (the listeners let go of theirs above), before
        // anything is waited for.
        drop(previous);
        futures::future::join_all(waits).await;
    }

    /// Frees the table's data (SECONDARY_UNLOAD); queries already running keep their version.
    pub async fn unload(self: &Arc<Self>, entry: &Arc<TableEntry>) -> Option<Arc<TableVersion>> {
        let gone = entry.swap(None);
        entry
            .replaced
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let waits = self.notify(StoreEvent::Unloaded { entry });
        futures::future::join_all(waits).await;
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
/// version is published, its bytes count as used instead). The load's readers take from it as they
/// read ([`ReadMemory`]), so a file that would pass the limit stops while it is read.
#[derive(Debug)]
pub struct Reservation {
    store: Arc<MemoryStore>,
    key: TableKey,
    bytes: AtomicU64,
}

impl Reservation {
    pub fn grow(&self, bytes: u64) -> Result<()> {
        self.store
            .take_reserved(bytes)
            .map_err(|r| EngineError::MemoryLimit {
                table: self.key.clone(),
                needed: r.needed,
                available: r.available,
                limit: r.limit,
            })?;
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
        Ok(())
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl ReadMemory for Reservation {
    fn take(&self, bytes: u64) -> std::result::Result<(), MemoryRefused> {
        self.store.take_reserved(bytes)?;
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
        Ok(())
    }

    fn give_back(&self, bytes: u64) {
        let bytes = bytes.min(self.bytes.load(Ordering::SeqCst));
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.store.reserved.fetch_sub(bytes, Ordering::SeqCst);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.store
            .reserved
            .fetch_sub(*self.bytes.get_mut(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use tarn_connectors::Manifest;

    use super::*;

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

    /// Records what it is told, and whether the replaced version was already freed by then.
    struct Recorder {
        seen: Mutex<Vec<String>>,
        weak: Mutex<Option<std::sync::Weak<TableVersion>>>,
        waited: Arc<AtomicBool>,
    }

    impl StoreListener for Recorder {
        fn on_change(
            &self,
            _store: &Arc<MemoryStore>,
            event: &StoreEvent<'_>,
        ) -> Option<BoxFuture<'static, ()>> {
            let what = match event {
                StoreEvent::Published { version, cause, .. } => {
                    format!("published {} by {cause:?}", version.version)
                }
                StoreEvent::Unloaded { .. } => "unloaded".to_string(),
                StoreEvent::Dropped { .. } => "dropped".to_string(),
            };
            self.seen
                .lock()
                .unwrap()
                .push(format!("{} {what}", event.key()));
            let weak = self.weak.lock().unwrap().clone();
            let waited = self.waited.clone();
            Some(Box::pin(async move {
                // The version replaced is gone before anything is waited for.
                assert!(weak.is_none_or(|w| w.upgrade().is_none()));
                tokio::task::yield_now().await;
                waited.store(true, Ordering::SeqCst);
            }))
        }
    }

    #[tokio::test]
    async fn a_worker_keeps_the_versions_its_current_one_replaced_until_unloaded() {
        let store = Arc::new(MemoryStore::new(None, 1));
        let e = store.entry(&TableKey::new("d", "t"));
        for v in 1..=2 {
            store.publish(&e, version(v), PublishCause::Load).await;
        }
        assert!(e.version(1).is_none(), "kept only on a worker");
        store.keep_replaced_versions();
        for v in 3..=7 {
            store.publish(&e, version(v), PublishCause::Refresh).await;
        }
        let found: Vec<u64> = (1..=7).filter(|&v| e.version(v).is_some()).collect();
        assert_eq!(
            found,
            vec![4, 5, 6, 7],
            "the current one and {KEPT_REPLACED} before it"
        );
        store.unload(&e).await;
        assert!((1..=7).all(|v| e.version(v).is_none()));
    }

    fn version(v: u64) -> Arc<TableVersion> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..10))],
        )
        .unwrap();
        let seg = Segment::new("f".into(), vec![batch], vec![]);
        Arc::new(TableVersion::build(
            v,
            schema,
            vec![Arc::new(seg)],
            Manifest::default(),
            1,
        ))
    }

    #[tokio::test]
    async fn listeners_hear_every_change_in_order_and_the_caller_waits_for_them() {
        let store = Arc::new(MemoryStore::new(None, 1));
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(vec![]),
            weak: Mutex::new(None),
            waited: Arc::new(AtomicBool::new(false)),
        });
        store.subscribe(recorder.clone());
        let key = TableKey::new("d", "t");
        let entry = store.entry(&key);
        let v1 = version(1);
        store.publish(&entry, v1.clone(), PublishCause::Load).await;
        assert!(recorder.waited.swap(false, Ordering::SeqCst));
        *recorder.weak.lock().unwrap() = Some(Arc::downgrade(&v1));
        drop(v1);
        store
            .publish(&entry, version(2), PublishCause::Refresh)
            .await;
        assert!(recorder.waited.swap(false, Ordering::SeqCst));
        *recorder.weak.lock().unwrap() = None;
        assert_eq!(entry.current().unwrap().version, 2);
        assert!(store.unload(&entry).await.is_some());
        assert!(entry.current().is_none());
        store.drop_table(&key).await;
        assert!(store.get(&key).is_none());
        assert_eq!(
            *recorder.seen.lock().unwrap(),
            vec![
                "d.t published 1 by Load",
                "d.t published 2 by Refresh",
                "d.t unloaded",
                "d.t dropped"
            ]
        );
    }
}
