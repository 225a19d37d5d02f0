//! A cluster's shared `snapshot_location`: each worker writes its snapshots below it in a place
//! of its own (`worker-<id>/`). When a worker is lost, the workers its files go to find those
//! files' rows in its snapshots and take them from there, instead of reading and parsing the
//! source again ([`ReadElsewhere`]).
//!
//! A segment is taken only when it is certainly the file's rows as this worker would read them:
//! the snapshot is of this format, its file format and options are the table's (`reading`), its
//! columns are the ones asked for, and its manifest shows the file as the listing does (size,
//! ETag, last-modified; a Delta file's deletion vector). It is checked against its checksums as
//! it is read. Anything else (a place without the table, a snapshot being replaced, a segment
//! that does not read) is skipped, and the file is read from the source.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tarn_catalog::TableDef;
use tarn_connectors::listing::FileEntry;
use tarn_engine::store::Segment;
use tracing::{debug, warn};

use super::format::{FORMAT_VERSION, Meta, decode_ipc, reading_crc, table_dir, unhex};
use super::{read_segment, store_at};
use crate::error::Result;
use crate::load::ReadElsewhere;

/// The workers' places below a shared snapshot location, seen from one of them.
pub struct SharedSnapshots {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// This worker's own place (`worker-<id>`), which is not looked in.
    own: String,
}

impl SharedSnapshots {
    /// The places below `location`, for the worker whose own place is `own`.
    pub async fn open(
        location: &str,
        own: &str,
        object_stores: &tarn_connectors::StoreRegistry,
        region: Option<&str>,
    ) -> Result<Self> {
        Ok(Self {
            store: store_at(location, object_stores, region).await?,
            root: location.to_string(),
            own: own.trim_end_matches('/').to_string(),
        })
    }

    /// The other workers' places.
    async fn places(&self) -> std::result::Result<Vec<String>, object_store::Error> {
        let listed = self.store.list_with_delimiter(None).await?;
        let mut places: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|p| p.starts_with("worker-") && *p != self.own)
            .collect();
        places.sort();
        Ok(places)
    }

    /// The snapshot of `def` in `place`, when there is one of this format, read the way `def`
    /// reads its files, with `schema`'s columns.
    async fn usable(&self, place: &str, def: &TableDef, schema: &SchemaRef) -> Option<Meta> {
        let path = ObjectPath::from(format!("{place}/{}/snapshot.json", table_dir(&def.key)));
        let raw = self.store.get(&path).await.ok()?.bytes().await.ok()?;
        let meta: Meta = serde_json::from_slice(&raw).ok()?;
        let columns = unhex(&meta.schema)
            .and_then(|b| decode_ipc(Bytes::from(b)).ok())
            .map(|(s, _)| s)?;
        (meta.format == FORMAT_VERSION
            && meta.reading == Some(reading_crc(def))
            && columns.fields() == schema.fields())
        .then_some(meta)
    }
}

#[async_trait::async_trait]
impl ReadElsewhere for SharedSnapshots {
    async fn segments(
        &self,
        def: &TableDef,
        schema: &SchemaRef,
        files: &[(usize, &FileEntry)],
    ) -> Vec<(usize, Segment)> {
        let places = match self.places().await {
            Ok(p) => p,
            Err(e) => {
                warn!(location = %self.root, error = %e, "cannot list the workers' snapshots");
                return Vec::new();
            }
        };
        // Segments name their files redacted, as the snapshot's manifest does.
        let mut wanted: HashMap<String, (usize, &FileEntry)> = files
            .iter()
            .map(|&(i, f)| (tarn_connectors::location::redact(&f.uri), (i, f)))
            .collect();
        let mut found = Vec::new();
        for place in places {
            if wanted.is_empty() {
                break;
            }
            let Some(meta) = self.usable(&place, def, schema).await else {
                continue;
            };
            let listed: HashMap<&str, &FileEntry> = meta
                .manifest
                .files
                .iter()
                .map(|m| (m.uri.as_str(), m))
                .collect();
            for s in &meta.segments {
                let Some(&(i, f)) = wanted.get(&s.source) else {
                    continue;
                };
                let same = listed.get(s.source.as_str()).is_some_and(|m| {
                    m.size == f.size && m.etag == f.etag && m.last_modified == f.last_modified
                });
                if same {
                    wanted.remove(&s.source);
                    let path = format!("{place}/{}/segments/{}", table_dir(&def.key), s.name);
                    found.push((i, f.uri.clone(), path, s.clone()));
                }
            }
        }
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        futures::stream::iter(found)
            .map(|(i, uri, path, s)| {
                let schema = schema.clone();
                async move {
                    let read =
                        read_segment(&*self.store, ObjectPath::from(path.as_str()), None, &s, schema, uri)
                            .await;
                    match read {
                        Ok(seg) => Some((i, seg)),
                        Err(e) => {
                            // Replaced meanwhile, or damaged: the source is read instead.
                            debug!(segment = %path, error = %e, "another worker's segment not taken");
                            None
                        }
                    }
                }
                .boxed()
            })
            .buffer_unordered(parallel)
            .filter_map(|r| async move { r })
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use arrow::record_batch::RecordBatch;
    use tarn_catalog::TableDef;
    use tarn_connectors::listing::FileEntry;
    use tarn_connectors::{Manifest, StoreConfig, StoreRegistry};
    use tarn_engine::store::{Segment, TableVersion};

    use super::SharedSnapshots;
    use crate::load::ReadElsewhere;
    use crate::snapshot::Snapshots;

    fn def(ddl_format: &str) -> TableDef {
        let ddl = format!(
            "CREATE EXTERNAL TABLE d.t (a BIGINT) FILE_FORMAT = ({ddl_format}) FILES = (URI 'file:///x/')"
        );
        match tarn_catalog::parse_statement(&ddl).unwrap() {
            tarn_catalog::Statement::CreateTable { table, .. } => *table,
            _ => unreachable!(),
        }
    }

    fn schema(column: &str) -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new(column, DataType::Int64, true)]))
    }

    fn file(name: &str, etag: &str) -> FileEntry {
        FileEntry {
            uri: format!("file:///x/{name}"),
            key: format!("x/{name}"),
            size: 40,
            etag: Some(etag.into()),
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    fn values(seg: &Segment) -> Vec<i64> {
        seg.batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    /// A lost worker's snapshot holds `a.csv` (rows 1..=5) and `b.csv` (rows 6..=8): another
    /// worker takes exactly the files it asks for, as they were read, and only when the file,
    /// the way it is read and its columns are all the same.
    #[tokio::test]
    async fn another_workers_segments_are_taken_only_when_they_are_the_files_rows() {
        let dir = tempfile::tempdir().unwrap();
        let shared = format!("file://{}/", dir.path().display());
        let stores = StoreRegistry::new(StoreConfig::default()).unwrap();
        let lost = Snapshots::open(
            dir.path(),
            Some(&format!("{shared}worker-lost/")),
            &stores,
            None,
        )
        .await
        .unwrap();
        let csv = def("FORMAT csv");
        let seg = |name: &str, rows: std::ops::RangeInclusive<i64>| {
            let batch = RecordBatch::try_new(
                schema("a"),
                vec![Arc::new(Int64Array::from_iter_values(rows))],
            )
            .unwrap();
            Arc::new(Segment::new(
                format!("file:///x/{name}"),
                vec![batch],
                vec![],
            ))
        };
        let manifest = Manifest {
            files: vec![file("a.csv", "e1"), file("b.csv", "e2")],
            ..Default::default()
        };
        let version = TableVersion::build(
            3,
            schema("a"),
            vec![seg("a.csv", 1..=5), seg("b.csv", 6..=8)],
            manifest,
            1,
        );
        lost.write(&csv, &version).await.unwrap();

        let here = SharedSnapshots::open(&shared, "worker-here", &stores, None)
            .await
            .unwrap();
        let (a, b, c) = (
            file("a.csv", "e1"),
            file("b.csv", "e2"),
            file("c.csv", "e3"),
        );
        let mut got = here
            .segments(&csv, &schema("a"), &[(4, &b), (7, &c), (9, &a)])
            .await;
        got.sort_by_key(|(i, _)| *i);
        let got: Vec<(usize, String, Vec<i64>)> = got
            .iter()
            .map(|(i, s)| (*i, s.file.clone(), values(s)))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, "file:///x/b.csv".to_string(), vec![6, 7, 8]),
                (9, "file:///x/a.csv".to_string(), vec![1, 2, 3, 4, 5]),
            ]
        );

        // The file changed since (another ETag): read from the source.
        let changed = file("a.csv", "e9");
        assert!(
            here.segments(&csv, &schema("a"), &[(0, &changed)])
                .await
                .is_empty()
        );
        // Read another way (a field separator of its own), or with other columns: not the same rows.
        let other = def("FORMAT csv FIELDS TERMINATED BY ';'");
        assert!(
            here.segments(&other, &schema("a"), &[(0, &a)])
                .await
                .is_empty()
        );
        assert!(
            here.segments(&csv, &schema("z"), &[(0, &a)])
                .await
                .is_empty()
        );
        // A worker does not look in its own place.
        let itself = SharedSnapshots::open(&shared, "worker-lost", &stores, None)
            .await
            .unwrap();
        assert!(
            itself
                .segments(&csv, &schema("a"), &[(0, &a)])
                .await
                .is_empty()
        );
        // A damaged segment is not taken.
        let segments = dir.path().join("worker-lost/d/t/segments");
        for f in std::fs::read_dir(&segments).unwrap().flatten() {
            let mut bytes = std::fs::read(f.path()).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(f.path(), bytes).unwrap();
        }
        assert!(
            here.segments(&csv, &schema("a"), &[(0, &a)])
                .await
                .is_empty()
        );
    }
}
