//! Snapshots: each published table version persisted in Tarn's own columnar form (Arrow IPC), so
//! a restart recovers tables without reading and parsing their sources again.
//!
//! Layout under the snapshot root (`data_dir/snapshots/` by default, or a bucket):
//!
//! ```text
//! <db>/<table>/loaded                 the table was loaded: recover it (written before the load answers)
//! <db>/<table>/snapshot.json          the latest complete snapshot: format, definition, version, manifest, segments
//! <db>/<table>/segments/<name>.arrow  one Arrow IPC file per segment (source file), with its CRC-32 in snapshot.json
//! <db>/<table>/segments/<name>.arrow.stats  its batches' min, max and null counts (Arrow IPC, CRC-32 in snapshot.json)
//! ```
//!
//! A segment file is written once and shared by every later snapshot that keeps the segment, so a
//! refresh writes only the files it read. `snapshot.json` is put last (a put is atomic on local
//! disk and on object stores): until then the previous snapshot stands, so a crash mid-write never
//! leaves a torn snapshot in use. Segment files no snapshot refers to are deleted afterwards.
//! Writes run in the background, one at a time per table, always of the newest version
//! ([`writer`], which listens to the store); a restart reads them back ([`recovery`]).

mod format;
pub mod recovery;
pub mod shared;
pub mod writer;

pub use format::FORMAT_VERSION;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tarn_catalog::{TableDef, TableKey};
use tarn_engine::store::{Segment, TableVersion};
use tracing::warn;

use crate::error::{Result, ServiceError};
use format::{
    Meta, SegmentMeta, chunk_crcs, decode_ipc, definition_crc, hex, ipc_bytes, map_checked,
    name_of_path, reading_crc, redacted, restored_key, stats_batch, stats_from_batch, stats_name,
    table_dir, unhex,
};

/// Where snapshots live and what has been written of each table.
pub struct Snapshots {
    store: Arc<dyn ObjectStore>,
    /// Shown in logs and status.
    root: String,
    /// Per table: segment (by its id) -> its file, for segments already persisted.
    written: std::sync::Mutex<HashMap<TableKey, HashMap<u64, SegmentMeta>>>,
    /// Tables whose segment directory this process has cleared of files no snapshot uses.
    swept: std::sync::Mutex<HashSet<TableKey>>,
    /// The directory, when snapshots are on local disk (read by mapping the files).
    local: Option<std::path::PathBuf>,
    /// `TARN_TEST_SNAPSHOT_DELAY_MS`, for tests only: a delay before `snapshot.json` is put (to
    /// kill the process mid-write) and before a snapshot is read (to query a recovering table).
    test_delay: Option<std::time::Duration>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("root", &self.root)
            .finish()
    }
}

impl Snapshots {
    /// Snapshots under `data_dir/snapshots/`, or at `location` (an object store URI) when given.
    pub async fn open(
        data_dir: &std::path::Path,
        location: Option<&str>,
        object_stores: &tarn_connectors::StoreRegistry,
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
            Some(uri) => (
                store_at(uri, object_stores, region).await?,
                uri.to_string(),
                None,
            ),
        };
        let test_delay = std::env::var("TARN_TEST_SNAPSHOT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        Ok(Self {
            store,
            root,
            written: Default::default(),
            swept: Default::default(),
            local,
            test_delay,
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
            if parts.len() == 3
                && parts[2].as_ref() == "loaded"
                && let (Some(database), Some(table)) = (
                    name_of_path(parts[0].as_ref()),
                    name_of_path(parts[1].as_ref()),
                )
            {
                out.push(TableKey { database, table });
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
    pub(crate) async fn write(&self, def: &TableDef, version: &TableVersion) -> Result<u64> {
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
        // Whether the segment directory was cleared of files no snapshot uses since this process
        // started; taken back until this write has finished, so that the next write after one
        // that failed half-way (its files out, its snapshot.json not) clears them.
        let swept = self
            .swept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let mut segments = Vec::with_capacity(version.segments.len());
        let mut by_id = HashMap::new();
        let mut bytes_written = 0u64;
        let mut written = Vec::new();
        for (i, seg) in version.segments.iter().enumerate() {
            let meta = match known.get(&seg.id) {
                Some(m) => m.clone(),
                None => {
                    let (schema, seg2) = (version.schema.clone(), seg.clone());
                    let (data, crc32, stats) = tokio::task::spawn_blocking(move || {
                        let data = ipc_bytes(&schema, &seg2.batches)?;
                        let crc32 = chunk_crcs(&data);
                        let stats = stats_batch(&schema, &seg2.stats)
                            .and_then(|b| ipc_bytes(&b.schema(), &[b]).ok());
                        Ok::<_, ServiceError>((data, crc32, stats))
                    })
                    .await
                    .map_err(|e| ServiceError::Internal(format!("snapshot encoding: {e}")))??;
                    let name = format!("v{}-{i}.arrow", version.version);
                    let m = SegmentMeta {
                        source: tarn_connectors::location::redact(&seg.file),
                        name: name.clone(),
                        size: data.len() as u64,
                        crc32,
                        rows: seg.rows,
                        rejected: seg.rejected.clone(),
                        stats: None,
                        stats_crc: stats.as_ref().map(|b| crc32fast::hash(b)),
                    };
                    bytes_written += data.len() as u64;
                    let path = self.path(key, &format!("segments/{name}"));
                    self.store
                        .put(&path, PutPayload::from(data))
                        .await
                        .map_err(err)?;
                    written.push(path);
                    if let Some(stats) = stats {
                        bytes_written += stats.len() as u64;
                        let path = self.path(key, &format!("segments/{}", stats_name(&name)));
                        self.store
                            .put(&path, PutPayload::from(stats))
                            .await
                            .map_err(err)?;
                        written.push(path);
                    }
                    m
                }
            };
            by_id.insert(seg.id, meta.clone());
            segments.push(meta);
        }
        let meta = Meta {
            format: FORMAT_VERSION,
            table: key.to_string(),
            definition: definition_crc(def),
            reading: Some(reading_crc(def)),
            version: version.version,
            written_at: chrono::Utc::now(),
            schema: hex(&ipc_bytes(&version.schema, &[])?),
            manifest: redacted(&version.manifest),
            segments,
        };
        let json = serde_json::to_vec(&meta)
            .map_err(|e| ServiceError::Internal(format!("snapshot metadata: {e}")))?;
        bytes_written += json.len() as u64;
        // On local disk, the segment files are made durable before the metadata that names them.
        self.sync(written).await?;
        if let Some(d) = self.test_delay {
            tokio::time::sleep(d).await;
        }
        let meta_path = self.path(key, "snapshot.json");
        self.store
            .put(&meta_path, PutPayload::from(json))
            .await
            .map_err(err)?;
        self.sync(vec![meta_path]).await?;
        // Segment files the new snapshot does not use are garbage now: those of the snapshot
        // before it; on this process's first write of the table, whatever the directory holds
        // (files of a write a crash cut short, too).
        let keep: HashSet<String> = meta.segments.iter().flat_map(files_of).collect();
        if !swept {
            let prefix = self.path(key, "segments");
            let mut list = self.store.list(Some(&prefix));
            while let Some(Ok(obj)) = list.next().await {
                if obj.location.filename().is_some_and(|n| !keep.contains(n)) {
                    let _ = self.store.delete(&obj.location).await;
                }
            }
        } else {
            for name in known.values().flat_map(files_of) {
                if !keep.contains(&name) {
                    let path = self.path(key, &format!("segments/{name}"));
                    let _ = self.store.delete(&path).await;
                }
            }
        }
        self.swept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), by_id);
        Ok(bytes_written)
    }

    /// On local disk: fsyncs `paths` and the directories holding them (object stores make a put
    /// durable themselves).
    async fn sync(&self, paths: Vec<ObjectPath>) -> Result<()> {
        let Some(dir) = self.local.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let mut dirs = HashSet::new();
            for p in &paths {
                let file = dir.join(p.as_ref());
                std::fs::File::open(&file).and_then(|f| f.sync_all())?;
                if let Some(parent) = file.parent() {
                    dirs.insert(parent.to_path_buf());
                }
            }
            for d in dirs {
                std::fs::File::open(&d).and_then(|f| f.sync_all())?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("snapshot sync: {e}")))?
        .map_err(|e| ServiceError::Internal(format!("snapshot sync {}: {e}", self.root)))
    }

    /// Reads the snapshot of `def`, checking that it is complete, intact, of this format and of
    /// this definition. The error says why it cannot be used.
    pub(crate) async fn read(
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
                let path = self.path(key, &format!("segments/{}", s.name));
                let local = self.local.as_ref().map(|dir| dir.join(path.as_ref()));
                read_segment(
                    &*self.store,
                    path,
                    local,
                    s,
                    schema.clone(),
                    s.source.clone(),
                )
                .map(|r| r.map(|seg| (s.clone(), seg)))
                .boxed()
            })
            .collect();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let results: Vec<_> = futures::stream::iter(reads)
            .buffered(parallel)
            .collect()
            .await;
        let mut segments = Vec::with_capacity(results.len());
        let mut by_id = HashMap::new();
        let mut bytes = 0;
        for r in results {
            let (m, seg) = r?;
            bytes += m.size;
            let seg = Arc::new(seg);
            by_id.insert(seg.id, m);
            segments.push(seg);
        }
        let mut manifest = meta.manifest;
        for f in &mut manifest.files {
            f.key = restored_key(&f.key, def);
        }
        let version = TableVersion::build(meta.version, schema, segments, manifest, nshards);
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), by_id);
        Ok((version, bytes))
    }
}

/// The store at `uri`, with paths below its prefix.
async fn store_at(
    uri: &str,
    object_stores: &tarn_connectors::StoreRegistry,
    region: Option<&str>,
) -> Result<Arc<dyn ObjectStore>> {
    let loc = tarn_connectors::Location::parse(uri)?;
    let store = object_stores.store_for(&loc, region).await?;
    let prefix = loc.key().trim_end_matches('/').to_string();
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    })
}

/// A segment's files: its rows, and its statistics when kept beside them.
fn files_of(s: &SegmentMeta) -> Vec<String> {
    let mut files = vec![s.name.clone()];
    if s.stats_crc.is_some() {
        files.push(stats_name(&s.name));
    }
    files
}

/// Reads one segment file (mapped when `local` names it on disk), checking its size and
/// checksums and that its columns are `schema`'s; the segment is `file`'s.
async fn read_segment(
    store: &dyn ObjectStore,
    path: ObjectPath,
    local: Option<std::path::PathBuf>,
    s: &SegmentMeta,
    schema: arrow::datatypes::SchemaRef,
    file: String,
) -> std::result::Result<Segment, String> {
    let (data, checked) = match &local {
        // Mapped, not copied: snapshot files never change once written. Mapping reads the
        // pages from the disk, checked as they come: on the blocking pool, not on a thread that
        // serves requests.
        Some(file) => {
            let (file, size, crcs) = (file.clone(), s.size, s.crc32.clone());
            let mapped = tokio::task::spawn_blocking(move || map_checked(&file, size, &crcs))
                .await
                .map_err(|e| format!("segment {}: {e}", s.name))?
                .map_err(|e| format!("segment {} is missing: {e}", s.name))?;
            match mapped {
                Some(data) => (data, true),
                None => return Err(format!("segment {} is corrupt (size or checksum)", s.name)),
            }
        }
        None => (
            store
                .get(&path)
                .await
                .map_err(|e| format!("segment {} is missing: {e}", s.name))?
                .bytes()
                .await
                .map_err(|e| format!("segment {}: {e}", s.name))?,
            false,
        ),
    };
    // Its statistics, when intact; else they are computed again from the rows.
    let stats_bytes: Option<Bytes> = match (s.stats_crc, &local) {
        (None, _) => None,
        (Some(_), Some(file)) => std::fs::read(file.with_file_name(stats_name(&s.name)))
            .ok()
            .map(Bytes::from),
        (Some(_), None) => {
            let path = ObjectPath::from(stats_name(path.as_ref()));
            match store.get(&path).await {
                Ok(r) => r.bytes().await.ok(),
                Err(_) => None,
            }
        }
    }
    .filter(|b| Some(crc32fast::hash(b)) == s.stats_crc);
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        if !checked && (data.len() as u64 != s.size || chunk_crcs(&data) != s.crc32) {
            return Err(format!("segment {} is corrupt (size or checksum)", s.name));
        }
        let (seg_schema, batches) =
            decode_ipc(data).map_err(|e| format!("segment {} is corrupt: {e}", s.name))?;
        if seg_schema.fields() != schema.fields() {
            return Err(format!("segment {} has other columns", s.name));
        }
        let stats = s
            .stats
            .as_deref()
            .and_then(unhex)
            .map(Bytes::from)
            .or(stats_bytes)
            .and_then(|b| decode_ipc(b).ok())
            .and_then(|(_, b)| b.into_iter().next())
            .and_then(|b| stats_from_batch(&b, schema.fields().len(), batches.len()));
        Ok(Segment::recovered(
            file,
            batches,
            stats,
            s.rejected.clone(),
            s.size,
        ))
    })
    .await
    .map_err(|e| format!("segment: {e}"))?
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use tarn_connectors::{Manifest, StoreConfig, StoreRegistry};
    use tarn_engine::store::{Segment, TableVersion};

    use super::Snapshots;

    fn def() -> tarn_catalog::TableDef {
        match tarn_catalog::parse_statement(
            "CREATE EXTERNAL TABLE d.t (a BIGINT) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///x/')",
        )
        .unwrap()
        {
            tarn_catalog::Statement::CreateTable { table, .. } => *table,
            _ => unreachable!(),
        }
    }

    fn segment(from: i64) -> Segment {
        let batch = RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from_iter_values(from..from + 5))],
        )
        .unwrap();
        Segment::new("file:///x/a.csv".into(), vec![batch], vec![])
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]))
    }

    fn version(v: u64, seg: Arc<Segment>) -> TableVersion {
        TableVersion::build(v, schema(), vec![seg], Manifest::default(), 1)
    }

    /// Snapshots under a new temporary data directory.
    async fn local_snapshots() -> (tempfile::TempDir, Snapshots) {
        let dir = tempfile::tempdir().unwrap();
        let stores = StoreRegistry::new(StoreConfig::default()).unwrap();
        let snapshots = Snapshots::open(dir.path(), None, &stores, None)
            .await
            .unwrap();
        (dir, snapshots)
    }

    fn values(v: &TableVersion) -> Vec<i64> {
        v.segments
            .iter()
            .flat_map(|s| s.batches.iter())
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    /// Each segment's per-batch statistics are kept in a file beside it, not in `snapshot.json`
    /// (which every refresh writes again), and come back with it when their checksum holds;
    /// else they are computed again from the rows. Files of replaced snapshots go.
    #[tokio::test]
    async fn batch_statistics_are_kept_beside_each_segment_and_checked() {
        let (dir, snapshots) = local_snapshots().await;
        let def = def();
        let shown = |v: &TableVersion| {
            let s = &v.segments[0].stats[0];
            format!("{:?} {:?} {:?} {}", s.min, s.max, s.nulls, s.rows)
        };
        let first = version(1, Arc::new(segment(100)));
        snapshots.write(&def, &first).await.unwrap();
        let written = version(2, Arc::new(segment(10)));
        snapshots.write(&def, &written).await.unwrap();
        let table = dir.path().join("snapshots/d/t");
        let mut files: Vec<String> = std::fs::read_dir(table.join("segments"))
            .unwrap()
            .flatten()
            .map(|f| f.file_name().into_string().unwrap())
            .collect();
        files.sort();
        // Only the latest snapshot's files are left.
        assert_eq!(files, ["v2-0.arrow", "v2-0.arrow.stats"]);
        let meta = std::fs::read_to_string(table.join("snapshot.json")).unwrap();
        assert!(
            !meta.contains("\"stats\"") && meta.contains("\"stats_crc\""),
            "{meta}"
        );

        let (back, bytes) = snapshots.read(&def, 1).await.unwrap();
        assert_eq!(shown(&back), "[Int64(10)] [Int64(14)] [0] 5");
        // The data's memory is the segment file's, not its statistics'.
        let size = std::fs::metadata(table.join("segments/v2-0.arrow"))
            .unwrap()
            .len();
        assert_eq!((bytes, back.segments[0].bytes), (size, size));

        // Statistics of other rows, with their checksum: read from the file, as they are.
        let stats_file = table.join("segments/v2-0.arrow.stats");
        let other = super::stats_batch(&schema(), &segment(500).stats)
            .and_then(|b| super::ipc_bytes(&b.schema(), &[b]).ok())
            .unwrap();
        std::fs::write(&stats_file, &other).unwrap();
        let crc = crc32fast::hash(&other);
        let mut m: serde_json::Value = serde_json::from_str(&meta).unwrap();
        m["segments"][0]["stats_crc"] = crc.into();
        std::fs::write(table.join("snapshot.json"), m.to_string()).unwrap();
        let (back, _) = snapshots.read(&def, 1).await.unwrap();
        assert_eq!(shown(&back), "[Int64(500)] [Int64(504)] [0] 5");
        // A statistics file that does not match its checksum is not used.
        std::fs::write(&stats_file, b"damaged").unwrap();
        let (back, _) = snapshots.read(&def, 1).await.unwrap();
        assert_eq!(shown(&back), "[Int64(10)] [Int64(14)] [0] 5");
    }

    /// A process's first write of a table clears its segment directory of files no snapshot
    /// uses (a write a crash cut short), even when it recovered the table first; later writes
    /// delete the replaced snapshot's files by name.
    #[tokio::test]
    async fn files_no_snapshot_uses_are_cleared_after_a_restart() {
        let (dir, snapshots) = local_snapshots().await;
        let def = def();
        snapshots
            .write(&def, &version(1, Arc::new(segment(0))))
            .await
            .unwrap();
        let segments = dir.path().join("snapshots/d/t/segments");
        // A write cut short: its files are out, its snapshot.json is not.
        std::fs::write(segments.join("v2-0.arrow"), b"torn").unwrap();
        std::fs::write(segments.join("v2-0.arrow.stats"), b"torn").unwrap();
        let files = || {
            let mut f: Vec<String> = std::fs::read_dir(&segments)
                .unwrap()
                .flatten()
                .map(|f| f.file_name().into_string().unwrap())
                .collect();
            f.sort();
            f
        };
        // The next process recovers the table, then writes its next version.
        let stores = StoreRegistry::new(StoreConfig::default()).unwrap();
        let restarted = Snapshots::open(dir.path(), None, &stores, None)
            .await
            .unwrap();
        let (back, _) = restarted.read(&def, 1).await.unwrap();
        let next = version(3, Arc::new(segment(50)));
        let next = TableVersion::build(
            3,
            schema(),
            vec![back.segments[0].clone(), next.segments[0].clone()],
            Manifest::default(),
            1,
        );
        restarted.write(&def, &next).await.unwrap();
        assert_eq!(
            files(),
            [
                "v1-0.arrow",
                "v1-0.arrow.stats",
                "v3-1.arrow",
                "v3-1.arrow.stats"
            ]
        );
        // A later write deletes what the snapshot it replaces used and the new one does not.
        restarted
            .write(&def, &version(4, next.segments[1].clone()))
            .await
            .unwrap();
        assert_eq!(files(), ["v3-1.arrow", "v3-1.arrow.stats"]);
    }

    /// A segment is known by what it is, not where it lives: a new segment that the allocator
    /// puts where a freed one was is written, not taken for the freed one's file.
    #[tokio::test]
    async fn each_new_segment_is_written_even_at_a_freed_segments_address() {
        let (_dir, snapshots) = local_snapshots().await;
        let def = def();
        let mut collisions = 0;
        for round in 0..20i64 {
            let first = version(2 * round as u64 + 1, Arc::new(segment(round * 100)));
            let addr = Arc::as_ptr(&first.segments[0]) as usize;
            snapshots.write(&def, &first).await.unwrap();
            let next = segment(round * 100 + 50);
            drop(first);
            // The freed segment's place is the first one of its size asked for.
            let next = Arc::new(next);
            collisions += usize::from(Arc::as_ptr(&next) as usize == addr);
            let second = version(2 * round as u64 + 2, next);
            snapshots.write(&def, &second).await.unwrap();
            let (back, _) = snapshots.read(&def, 1).await.unwrap();
            assert_eq!(
                values(&back),
                values(&second),
                "round {round} ({collisions} reused addresses so far)"
            );
        }
    }
}
