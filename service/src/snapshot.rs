//! Snapshots: each published table version persisted in Tarn's own columnar form (Arrow IPC), so
//! a restart recovers tables without reading and parsing their sources again.
//!
//! Layout under the snapshot root (`data_dir/snapshots/` by default, or a bucket):
//!
//! ```text
//! <db>/<table>/loaded                 the table was loaded: recover it (written before the load answers)
//! <db>/<table>/snapshot.json          the latest complete snapshot: format, definition, version, manifest, segments
//! <db>/<table>/segments/<name>.arrow  one Arrow IPC file per segment (source file), with its CRC-32 in snapshot.json
//! ```
//!
//! A segment file is written once and shared by every later snapshot that keeps the segment, so a
//! refresh writes only the files it read. `snapshot.json` is put last (a put is atomic on local
//! disk and on object stores): until then the previous snapshot stands, so a crash mid-write never
//! leaves a torn snapshot in use. Segment files no snapshot refers to are deleted afterwards.
//! Writes run in the background, one at a time per table, always of the newest version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::writer::FileWriter;
use arrow::ipc::{Block, root_as_footer};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tarn_catalog::{TableDef, TableKey};
use tarn_connectors::{Manifest, RejectedRow};
use tracing::{info, warn};

use crate::error::{Result, ServiceError};
use crate::state::AppState;
use crate::store::{BatchStats, LoadState, Segment, TableEntry, TableVersion};
use datafusion::common::ScalarValue;

/// Bumped whenever the layout changes; older snapshots are not read (the table loads from its
/// source instead).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    table: String,
    /// CRC-32 of the table's definition as the catalog holds it.
    definition: u32,
    version: u64,
    written_at: DateTime<Utc>,
    /// The table's schema, as an Arrow IPC file without batches (hex).
    schema: String,
    manifest: Manifest,
    segments: Vec<SegmentMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegmentMeta {
    /// The source file the segment was read from.
    source: String,
    /// Name of its file under `segments/`.
    name: String,
    size: u64,
    /// CRC-32 of each `CHUNK` bytes of the file, checked in parallel when it is read back.
    crc32: Vec<u32>,
    rows: u64,
    rejected: Vec<RejectedRow>,
    /// Per-batch min, max and null counts as an Arrow IPC file (hex), so recovery need not
    /// compute them again; absent when they could not be encoded.
    #[serde(default)]
    stats: Option<String>,
}

/// Checksummed piece of a segment file.
const CHUNK: usize = 16 << 20;

fn chunk_crcs(data: &[u8]) -> Vec<u32> {
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = chunks.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .chunks(per)
            .map(|group| {
                s.spawn(move || group.iter().map(|c| crc32fast::hash(c)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("checksum thread"))
            .collect()
    })
}

/// Per-batch statistics as one row each: `min_<i>`, `max_<i>`, `nulls_<i>` per column, `rows`.
fn stats_batch(schema: &SchemaRef, stats: &[BatchStats]) -> Option<RecordBatch> {
    use arrow::array::{ArrayRef, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    if stats.is_empty() {
        return None;
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for c in 0..schema.fields().len() {
        let mins = ScalarValue::iter_to_array(stats.iter().map(|s| s.min[c].clone())).ok()?;
        let maxs = ScalarValue::iter_to_array(stats.iter().map(|s| s.max[c].clone())).ok()?;
        fields.push(Field::new(
            format!("min_{c}"),
            mins.data_type().clone(),
            true,
        ));
        fields.push(Field::new(
            format!("max_{c}"),
            maxs.data_type().clone(),
            true,
        ));
        fields.push(Field::new(format!("nulls_{c}"), DataType::UInt64, false));
        cols.push(mins);
        cols.push(maxs);
        cols.push(Arc::new(UInt64Array::from_iter_values(
            stats.iter().map(|s| s.nulls[c]),
        )));
    }
    fields.push(Field::new("rows", DataType::UInt64, false));
    cols.push(Arc::new(UInt64Array::from_iter_values(
        stats.iter().map(|s| s.rows),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).ok()
}

fn stats_from_batch(b: &RecordBatch, ncols: usize, nbatches: usize) -> Option<Vec<BatchStats>> {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    if b.num_columns() != 3 * ncols + 1 || b.num_rows() != nbatches {
        return None;
    }
    (0..b.num_rows())
        .map(|i| {
            let mut s = BatchStats {
                min: Vec::with_capacity(ncols),
                max: Vec::with_capacity(ncols),
                nulls: Vec::with_capacity(ncols),
                rows: b
                    .column(3 * ncols)
                    .as_primitive_opt::<UInt64Type>()?
                    .value(i),
            };
            for c in 0..ncols {
                s.min
                    .push(ScalarValue::try_from_array(b.column(3 * c), i).ok()?);
                s.max
                    .push(ScalarValue::try_from_array(b.column(3 * c + 1), i).ok()?);
                s.nulls.push(
                    b.column(3 * c + 2)
                        .as_primitive_opt::<UInt64Type>()?
                        .value(i),
                );
            }
            Some(s)
        })
        .collect()
}

/// Where snapshots live and what has been written of each table.
pub struct Snapshots {
    store: Arc<dyn ObjectStore>,
    /// Shown in logs and status.
    root: String,
    /// Per table: segment (by address) -> its file, for segments already persisted.
    written: std::sync::Mutex<HashMap<TableKey, HashMap<usize, SegmentMeta>>>,
    /// The directory, when snapshots are on local disk (read by mapping the files).
    local: Option<std::path::PathBuf>,
    /// `TARN_TEST_SNAPSHOT_DELAY_MS`, for tests only: a delay before `snapshot.json` is put (to
    /// kill the process mid-write) and before a snapshot is read (to query a recovering table).
    test_delay: Option<std::time::Duration>,
    /// Tables still recovering, and whether the list of tables to recover is known yet.
    pub recovering: std::sync::atomic::AtomicUsize,
    pub listed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("root", &self.root)
            .finish()
    }
}

fn table_dir(key: &TableKey) -> String {
    format!("{}/{}", key.database, key.table)
}

fn definition_crc(def: &TableDef) -> u32 {
    crc32fast::hash(serde_json::to_string(def).unwrap_or_default().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn ipc_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut w = FileWriter::try_new(Vec::new(), schema)
        .map_err(|e| ServiceError::Internal(format!("snapshot encoding: {e}")))?;
    for b in batches {
        w.write(b)
            .map_err(|e| ServiceError::Internal(format!("snapshot encoding: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| ServiceError::Internal(format!("snapshot encoding: {e}")))
}

/// Decodes an Arrow IPC file without copying: the batches' buffers point into `bytes`.
fn decode_ipc(bytes: Bytes) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), String> {
    let buffer = Buffer::from(bytes);
    let len = buffer.len();
    if len < 10 {
        return Err("file too short".into());
    }
    let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(|e| e.to_string())?;
    let footer_start = len
        .checked_sub(10 + footer_len)
        .ok_or("footer longer than the file")?;
    let footer = root_as_footer(&buffer[footer_start..len - 10]).map_err(|e| e.to_string())?;
    let schema = Arc::new(fb_to_schema(footer.schema().ok_or("no schema")?));
    let mut decoder = FileDecoder::new(schema.clone(), footer.version());
    for block in footer.dictionaries().iter().flatten() {
        let data = block_data(&buffer, block)?;
        decoder
            .read_dictionary(block, &data)
            .map_err(|e| e.to_string())?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        let data = block_data(&buffer, block)?;
        if let Some(b) = decoder
            .read_record_batch(block, &data)
            .map_err(|e| e.to_string())?
        {
            batches.push(b);
        }
    }
    Ok((schema, batches))
}

#[allow(unsafe_code)]
fn map_file(path: &std::path::Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    // SAFETY: segment files are written once under a fresh name and never modified afterwards
    // (only deleted, which a mapping survives).
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
    Ok(Bytes::from_owner(map))
}

fn block_data(buffer: &Buffer, block: &Block) -> std::result::Result<Buffer, String> {
    let start = usize::try_from(block.offset()).map_err(|e| e.to_string())?;
    let len = block.metaDataLength() as usize + block.bodyLength() as usize;
    if start.checked_add(len).is_none_or(|end| end > buffer.len()) {
        return Err("a block lies outside the file".into());
    }
    Ok(buffer.slice_with_length(start, len))
}

impl Snapshots {
    /// Snapshots under `data_dir/snapshots/`, or at `location` (an object store URI) when given.
    pub async fn open(
        data_dir: &std::path::Path,
        location: Option<&str>,
        stores: &tarn_connectors::StoreRegistry,
        region: Option<&str>,
    ) -> Result<Self> {
        let (store, root, local): (Arc<dyn ObjectStore>, String, _) = match location {
            None => {
                let dir = data_dir.join("snapshots");
                std::fs::create_dir_all(&dir).map_err(|e| {
                    ServiceError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| ServiceError::Config(format!("{}: {e}", dir.display())))?;
                (
                    Arc::new(store),
                    format!("file://{}/", dir.display()),
                    Some(dir),
                )
            }
            Some(uri) => {
                let loc = tarn_connectors::Location::parse(uri)?;
                let store = stores.store_for(&loc, region).await?;
                let prefix = loc.key().trim_end_matches('/').to_string();
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    store
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                };
                (store, uri.to_string(), None)
            }
        };
        let test_delay = std::env::var("TARN_TEST_SNAPSHOT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        Ok(Self {
            store,
            root,
            written: Default::default(),
            local,
            test_delay,
            recovering: Default::default(),
            listed: Default::default(),
        })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    fn path(&self, key: &TableKey, rest: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{rest}", table_dir(key)))
    }

    /// Marks `key` as loaded, so a restart recovers it. Called before a load answers.
    pub async fn mark_loaded(&self, key: &TableKey) -> Result<()> {
        self.store
            .put(&self.path(key, "loaded"), PutPayload::from_static(b"1"))
            .await
            .map_err(|e| ServiceError::Internal(format!("snapshot store {}: {e}", self.root)))?;
        Ok(())
    }

    /// Tables marked as loaded.
    pub async fn loaded_tables(&self) -> Result<Vec<TableKey>> {
        let mut out = Vec::new();
        let mut list = self.store.list(None);
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| {
                ServiceError::Internal(format!("snapshot store {}: {e}", self.root))
            })?;
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() == 3 && parts[2].as_ref() == "loaded" {
                out.push(TableKey::new(parts[0].as_ref(), parts[1].as_ref()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Forgets `key` (unloaded or dropped): its snapshot is deleted and it is not recovered.
    pub async fn forget(&self, key: &TableKey) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let prefix = ObjectPath::from(table_dir(key));
        let mut list = self.store.list(Some(&prefix));
        let mut paths = Vec::new();
        while let Some(Ok(meta)) = list.next().await {
            paths.push(meta.location);
        }
        // The marker first: a crash half-way leaves files a later load overwrites or cleans up.
        paths.sort_by_key(|p| !p.as_ref().ends_with("/loaded"));
        for p in paths {
            if let Err(e) = self.store.delete(&p).await {
                warn!(table = %key, path = %p, error = %e, "could not delete snapshot file");
            }
        }
    }

    /// Writes `version` of `def` unless a newer snapshot was written meanwhile. Answers the bytes
    /// written (new segment files and metadata).
    async fn write(&self, def: &TableDef, version: &TableVersion) -> Result<u64> {
        let key = &def.key;
        let err = |e: object_store::Error| {
            ServiceError::Internal(format!("snapshot store {}: {e}", self.root))
        };
        let known = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default();
        let mut segments = Vec::with_capacity(version.segments.len());
        let mut by_addr = HashMap::new();
        let mut bytes_written = 0u64;
        for (i, seg) in version.segments.iter().enumerate() {
            let addr = Arc::as_ptr(seg) as usize;
            let meta = match known.get(&addr) {
                Some(m) => m.clone(),
                None => {
                    let (schema, seg2) = (version.schema.clone(), seg.clone());
                    let (data, crc32, stats) = tokio::task::spawn_blocking(move || {
                        let data = ipc_bytes(&schema, &seg2.batches)?;
                        let crc32 = chunk_crcs(&data);
                        let stats = stats_batch(&schema, &seg2.stats)
                            .and_then(|b| ipc_bytes(&b.schema(), &[b]).ok())
                            .map(|b| hex(&b));
                        Ok::<_, ServiceError>((data, crc32, stats))
                    })
                    .await
                    .map_err(|e| ServiceError::Internal(format!("snapshot encoding: {e}")))??;
                    let name = format!("v{}-{i}.arrow", version.version);
                    let m = SegmentMeta {
                        source: seg.file.clone(),
                        name: name.clone(),
                        size: data.len() as u64,
                        crc32,
                        rows: seg.rows,
                        rejected: seg.rejected.clone(),
                        stats,
                    };
                    bytes_written += data.len() as u64;
                    self.store
                        .put(
                            &self.path(key, &format!("segments/{name}")),
                            PutPayload::from(data),
                        )
                        .await
                        .map_err(err)?;
                    m
                }
            };
            by_addr.insert(addr, meta.clone());
            segments.push(meta);
        }
        let meta = Meta {
            format: FORMAT_VERSION,
            table: key.to_string(),
            definition: definition_crc(def),
            version: version.version,
            written_at: Utc::now(),
            schema: hex(&ipc_bytes(&version.schema, &[])?),
            manifest: version.manifest.clone(),
            segments,
        };
        let json = serde_json::to_vec(&meta)
            .map_err(|e| ServiceError::Internal(format!("snapshot metadata: {e}")))?;
        bytes_written += json.len() as u64;
        if let Some(d) = self.test_delay {
            tokio::time::sleep(d).await;
        }
        self.store
            .put(&self.path(key, "snapshot.json"), PutPayload::from(json))
            .await
            .map_err(err)?;
        // Segment files the new snapshot does not use are garbage now.
        let keep: HashSet<String> = meta.segments.iter().map(|s| s.name.clone()).collect();
        let prefix = self.path(key, "segments");
        let mut list = self.store.list(Some(&prefix));
        while let Some(Ok(obj)) = list.next().await {
            if obj.location.filename().is_some_and(|n| !keep.contains(n)) {
                let _ = self.store.delete(&obj.location).await;
            }
        }
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), by_addr);
        Ok(bytes_written)
    }

    /// Reads the snapshot of `def`, checking that it is complete, intact, of this format and of
    /// this definition. The error says why it cannot be used.
    async fn read(
        &self,
        def: &TableDef,
        nshards: usize,
    ) -> std::result::Result<(TableVersion, u64), String> {
        let key = &def.key;
        if let Some(d) = self.test_delay {
            tokio::time::sleep(d).await;
        }
        let raw = match self.store.get(&self.path(key, "snapshot.json")).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| format!("cannot read the snapshot: {e}"))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err("no snapshot was written".into());
            }
            Err(e) => return Err(format!("cannot read the snapshot: {e}")),
        };
        let meta: Meta = serde_json::from_slice(&raw)
            .map_err(|e| format!("snapshot metadata is corrupt: {e}"))?;
        if meta.format != FORMAT_VERSION {
            return Err(format!(
                "snapshot format {} is not this build's ({FORMAT_VERSION})",
                meta.format
            ));
        }
        if meta.definition != definition_crc(def) {
            return Err("the snapshot was built from a different table definition".into());
        }
        let schema = unhex(&meta.schema)
            .and_then(|b| decode_ipc(Bytes::from(b)).ok())
            .map(|(s, _)| s)
            .ok_or("the snapshot's schema is corrupt")?;
        type Read<'a> =
            futures::future::BoxFuture<'a, std::result::Result<(SegmentMeta, Segment), String>>;
        let reads: Vec<Read<'_>> = meta
            .segments
            .iter()
            .map(|s| {
                let schema = schema.clone();
                async move {
                    let path = self.path(key, &format!("segments/{}", s.name));
                    let data = match &self.local {
                        // Mapped, not copied: snapshot files never change once written.
                        Some(dir) => map_file(&dir.join(path.as_ref()))
                            .map_err(|e| format!("segment {} is missing: {e}", s.name))?,
                        None => self
                            .store
                            .get(&path)
                            .await
                            .map_err(|e| format!("segment {} is missing: {e}", s.name))?
                            .bytes()
                            .await
                            .map_err(|e| format!("segment {}: {e}", s.name))?,
                    };
                    let s = s.clone();
                    tokio::task::spawn_blocking(move || {
                        if data.len() as u64 != s.size || chunk_crcs(&data) != s.crc32 {
                            return Err(format!(
                                "segment {} is corrupt (size or checksum)",
                                s.name
                            ));
                        }
                        let (seg_schema, batches) = decode_ipc(data)
                            .map_err(|e| format!("segment {} is corrupt: {e}", s.name))?;
                        if seg_schema.fields() != schema.fields() {
                            return Err(format!("segment {} has other columns", s.name));
                        }
                        let stats = s
                            .stats
                            .as_deref()
                            .and_then(unhex)
                            .and_then(|b| decode_ipc(Bytes::from(b)).ok())
                            .and_then(|(_, b)| b.into_iter().next())
                            .and_then(|b| {
                                stats_from_batch(&b, schema.fields().len(), batches.len())
                            });
                        let seg = Segment::recovered(
                            s.source.clone(),
                            batches,
                            stats,
                            s.rejected.clone(),
                            s.size,
                        );
                        Ok((s, seg))
                    })
                    .await
                    .map_err(|e| format!("segment: {e}"))?
                }
                .boxed()
            })
            .collect();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let results: Vec<_> = futures::stream::iter(reads)
            .buffered(parallel)
            .collect()
            .await;
        let mut segments = Vec::with_capacity(results.len());
        let mut by_addr = HashMap::new();
        let mut bytes = 0;
        for r in results {
            let (m, seg) = r?;
            bytes += m.size;
            let seg = Arc::new(seg);
            by_addr.insert(Arc::as_ptr(&seg) as usize, m);
            segments.push(seg);
        }
        let version = TableVersion::build(meta.version, schema, segments, meta.manifest, nshards);
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), by_addr);
        Ok((version, bytes))
    }
}

/// Writes a snapshot of `key`'s newest version in the background. While one is being written,
/// further calls only mark the table dirty: the writer then writes the newest version once more.
pub fn schedule(state: &AppState, key: &TableKey) {
    let entry = state.memory.entry(key);
    entry.snapshot_dirty.store(true, Ordering::SeqCst);
    if entry.snapshot_running.swap(true, Ordering::SeqCst) {
        return;
    }
    let (state, key) = (state.clone(), key.clone());
    tokio::spawn(async move {
        loop {
            entry.snapshot_dirty.store(false, Ordering::SeqCst);
            write_newest(&state, &key, &entry).await;
            entry.snapshot_running.store(false, Ordering::SeqCst);
            // A publish that came in after the last check needs a writer again.
            if !entry.snapshot_dirty.load(Ordering::SeqCst)
                || entry.snapshot_running.swap(true, Ordering::SeqCst)
            {
                break;
            }
        }
    });
}

async fn write_newest(state: &AppState, key: &TableKey, entry: &TableEntry) {
    let (Ok(def), Some(version)) = (state.catalog.get(key), entry.current()) else {
        return;
    };
    if entry.status().snapshot_version == Some(version.version) {
        return;
    }
    let started = Instant::now();
    match state.snapshots.write(&def, &version).await {
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

/// Recovers every table that was loaded when the service stopped: from its snapshot when there
/// is a usable one (then an incremental refresh catches up with the sources), else by a full
/// load, the reason kept in the status. Tables recover in parallel; the service is ready when all
/// have finished, one way or another.
pub async fn recover_all(state: AppState) {
    let tables = match state.snapshots.loaded_tables().await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "cannot list the tables to recover");
            Vec::new()
        }
    };
    let tables: Vec<TableKey> = tables
        .into_iter()
        .filter(|k| state.catalog.get(k).is_ok())
        .collect();
    state
        .snapshots
        .recovering
        .store(tables.len(), Ordering::SeqCst);
    for key in &tables {
        state.memory.entry(key).update_status(|s| {
            s.load_status = LoadState::InRecovery;
            s.recovery_start = Some(Utc::now());
        });
    }
    state.snapshots.listed.store(true, Ordering::SeqCst);
    info!(
        tables = tables.len(),
        root = state.snapshots.root(),
        "recovering"
    );
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    futures::stream::iter(tables.into_iter().map(|key| {
        let state = state.clone();
        async move {
            recover(&state, &key).await;
            state.snapshots.recovering.fetch_sub(1, Ordering::SeqCst);
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<()>>()
    .await;
    info!("recovery finished");
}

async fn recover(state: &AppState, key: &TableKey) {
    let Ok(def) = state.catalog.get(key) else {
        return;
    };
    let entry = state.memory.entry(key);
    let started = Instant::now();
    let outcome = {
        let _guard = entry.load_lock.lock().await;
        match state.snapshots.read(&def, state.memory.shards).await {
            Ok((version, bytes)) => match state.memory.reserve(key, version.bytes) {
                Err(e) => Err(format!("the snapshot does not fit: {e}")),
                // Held until published: tables recovering side by side count against the
                // memory limit together.
                Ok(_reservation) => {
                    entry.set_next_version(version.version + 1);
                    let version = Arc::new(version);
                    state.memory.publish(&entry, version.clone());
                    entry.update_status(|s| {
                        s.load_status = LoadState::Avail;
                        s.load_progress = 100.0;
                        s.recovery_source = Some(RecoverySource::Snapshot);
                        s.recovery_end = Some(Utc::now());
                        s.snapshot_version = Some(version.version);
                    });
                    info!(table = %key, version = version.version, rows = version.rows, snapshot_bytes = bytes,
                      seconds = started.elapsed().as_secs_f64(), "recovered from snapshot");
                    // Snapshots keep rows as they were written; placement runs again.
                    crate::placement::schedule(state, key);
                    Ok(())
                }
            },
            Err(why) => Err(why),
        }
    };
    match outcome {
        Ok(()) => {
            // Catch up with what changed in the sources while the service was down.
            let state = state.clone();
            let key = key.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::load::refresh_table(&state, &key).await {
                    warn!(table = %key, error = %e, "refresh after recovery failed");
                }
            });
        }
        Err(why) => {
            warn!(table = %key, reason = %why, "snapshot not usable; loading from the source");
            entry.update_status(|s| s.recovery_error = Some(why.clone()));
            match crate::load::load_table(state, key).await {
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
}

/// Where a recovered table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecoverySource {
    /// Tarn's snapshot.
    Snapshot,
    /// A full load from the table's files (no usable snapshot).
    Source,
}

impl RecoverySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "Snapshot",
            Self::Source => "Source",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Date32Array, Decimal128Array, Int64Array, StringArray};

    #[test]
    fn statistics_and_segments_survive_the_round_trip() {
        let batch = |ids: Vec<Option<i64>>, names: Vec<Option<&str>>| {
            let n = ids.len();
            RecordBatch::try_from_iter(vec![
                ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ("name", Arc::new(StringArray::from(names)) as ArrayRef),
                (
                    "day",
                    Arc::new(Date32Array::from_iter_values(0..n as i32)) as ArrayRef,
                ),
                (
                    "amount",
                    Arc::new(
                        Decimal128Array::from_iter_values((0..n as i128).map(|v| v * 100))
                            .with_precision_and_scale(15, 2)
                            .unwrap(),
                    ) as ArrayRef,
                ),
            ])
            .unwrap()
        };
        let batches = vec![
            batch(
                vec![Some(3), None, Some(9)],
                vec![Some("b"), Some("a"), None],
            ),
            batch(vec![Some(-1), Some(4)], vec![None, None]),
        ];
        let schema = batches[0].schema();
        let stats: Vec<BatchStats> = batches.iter().map(BatchStats::compute).collect();
        let encoded = ipc_bytes(
            &stats_batch(&schema, &stats).unwrap().schema(),
            &[stats_batch(&schema, &stats).unwrap()],
        )
        .unwrap();
        let (_, decoded) = decode_ipc(Bytes::from(encoded)).unwrap();
        let back = stats_from_batch(&decoded[0], 4, 2).unwrap();
        for (a, b) in stats.iter().zip(&back) {
            assert_eq!(
                (&a.min, &a.max, &a.nulls, a.rows),
                (&b.min, &b.max, &b.nulls, b.rows)
            );
        }
        assert_eq!(back[0].min[0], ScalarValue::Int64(Some(3)));
        assert_eq!(back[1].max[1], ScalarValue::Utf8(None));

        // The data itself: decoded without a copy, equal to what was written; checksums catch
        // a flipped byte.
        let data = ipc_bytes(&schema, &batches).unwrap();
        let crcs = chunk_crcs(&data);
        let (s, got) = decode_ipc(Bytes::from(data.clone())).unwrap();
        assert_eq!(s, schema);
        assert_eq!(got.len(), batches.len());
        for (g, w) in got.iter().zip(&batches) {
            for (c, (x, y)) in g.columns().iter().zip(w.columns()).enumerate() {
                assert_eq!(x.to_data(), y.to_data(), "column {c}");
            }
        }
        let mut bad = data;
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        assert_ne!(chunk_crcs(&bad), crcs);
        assert!(decode_ipc(Bytes::from(bad[..bad.len() - 3].to_vec())).is_err());
    }
}
