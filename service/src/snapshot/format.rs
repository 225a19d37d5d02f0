//! The snapshot format: `snapshot.json` (format, definition checksum, version, manifest, the
//! segments with their checksums and statistics) and one Arrow IPC file per segment, read back
//! without a copy.

use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::writer::FileWriter;
use arrow::ipc::{Block, root_as_footer};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use tarn_catalog::{TableDef, TableKey};
use tarn_connectors::{Manifest, RejectedRow};
use tarn_engine::store::BatchStats;

use crate::error::{Result, ServiceError};

/// Bumped whenever the layout changes; older snapshots are not read (the table loads from its
/// source instead).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Meta {
    pub(super) format: u32,
    pub(super) table: String,
    /// CRC-32 of the table's definition as the catalog holds it.
    pub(super) definition: u32,
    /// CRC-32 of what decides a file's rows once its columns are known (the file format and its
    /// options, strict loading): another worker reading the same file this way gets the same
    /// rows. Absent in snapshots written before it was kept.
    #[serde(default)]
    pub(super) reading: Option<u32>,
    pub(super) version: u64,
    pub(super) written_at: DateTime<Utc>,
    /// The table's schema, as an Arrow IPC file without batches (hex).
    pub(super) schema: String,
    pub(super) manifest: Manifest,
    pub(super) segments: Vec<SegmentMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SegmentMeta {
    /// The source file the segment was read from.
    pub(super) source: String,
    /// Name of its file under `segments/`.
    pub(super) name: String,
    pub(super) size: u64,
    /// CRC-32 of each `CHUNK` bytes of the file, checked in parallel when it is read back.
    pub(super) crc32: Vec<u32>,
    pub(super) rows: u64,
    pub(super) rejected: Vec<RejectedRow>,
    /// Per-batch min, max and null counts as an Arrow IPC file (hex), in snapshots written
    /// before [`Self::stats_crc`]: kept here, they made a table of 10,000 files a
    /// `snapshot.json` of 236 MB, written again by every refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) stats: Option<String>,
    /// The CRC-32 of the segment's per-batch min, max and null counts, kept beside it as an
    /// Arrow IPC file (`segments/<name>.stats`), so recovery need not compute them again;
    /// absent when they could not be encoded. Read, not mapped: they are not the table's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) stats_crc: Option<u32>,
}

/// The name of the file beside segment file `name` that holds its per-batch statistics.
pub(super) fn stats_name(name: &str) -> String {
    format!("{name}.stats")
}

/// Checksummed piece of a segment file.
pub(super) const CHUNK: usize = 16 << 20;

/// The CRC-32 of each [`CHUNK`] of `data`, on every core.
pub(super) fn chunk_crcs(data: &[u8]) -> Vec<u32> {
    chunk_crcs_after(data, |_, _| {})
}

/// The CRC-32 of each [`CHUNK`] of `data`, the chunks dealt out over the cores in turn;
/// `read_in(start, end)` runs on each chunk's range before its checksum, on the same thread.
fn chunk_crcs_after(data: &[u8], read_in: impl Fn(usize, usize) + Sync) -> Vec<u32> {
    let chunks = data.len().div_ceil(CHUNK);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(chunks)
        .max(1);
    let read_in = &read_in;
    let mut crcs = vec![0; chunks];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..chunks)
                        .step_by(threads)
                        .map(|i| {
                            let (start, end) = (i * CHUNK, ((i + 1) * CHUNK).min(data.len()));
                            read_in(start, end);
                            (i, crc32fast::hash(&data[start..end]))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, crc) in h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) {
                crcs[i] = crc;
            }
        }
    });
    crcs
}

/// Per-batch statistics as one row each: `min_<i>`, `max_<i>`, `nulls_<i>` per column, `rows`.
pub(super) fn stats_batch(schema: &SchemaRef, stats: &[BatchStats]) -> Option<RecordBatch> {
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

pub(super) fn stats_from_batch(
    b: &RecordBatch,
    ncols: usize,
    nbatches: usize,
) -> Option<Vec<BatchStats>> {
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

/// `<db>/<table>` under the snapshot root, each name as it is when it is plain (lower-case
/// letters, digits, `_`, `-`), else `h.` and its bytes in hex: a name holding `/` or `..` can
/// neither nest nor climb, and two tables never share a directory.
pub(super) fn table_dir(key: &TableKey) -> String {
    format!("{}/{}", path_name(&key.database), path_name(&key.table))
}

fn path_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if plain {
        name.to_string()
    } else {
        format!("h.{}", hex(name.as_bytes()))
    }
}

/// `manifest` as it is written into a snapshot: pre-authenticated request tokens redacted from
/// the files' keys (their names are redacted as they are listed; the catalog keeps the token,
/// apart, in the owner-only secrets file).
pub(super) fn redacted(manifest: &Manifest) -> Manifest {
    let mut m = manifest.clone();
    for f in &mut m.files {
        f.uri = tarn_connectors::location::redact(&f.uri);
        f.key = tarn_catalog::model::redact_path(&f.key);
    }
    m
}

/// `text` (a file's name or key, redacted) with the token of `real` put back where `shown` (the
/// same location, redacted) has it: both are cut where the object names start (`.../o/`).
fn put_back(text: &str, shown: &str, real: &str) -> Option<String> {
    let (s, r) = (shown.find("/o/")?, real.find("/o/")?);
    let rest = text.strip_prefix(&shown[..s + 3])?;
    Some(format!("{}{rest}", &real[..r + 3]))
}

/// A file's key read back from a snapshot, with the token of the definition's location that
/// covers it put back (the inverse of [`redacted`] for the files of `def`).
pub(super) fn restored_key(key: &str, def: &TableDef) -> String {
    def.files
        .iter()
        .find_map(|spec| {
            let path = spec.uri.split_once("://")?.1.split_once('/')?.1;
            let shown = tarn_catalog::model::redact_path(path);
            (shown != path).then(|| put_back(key, &shown, path))?
        })
        .unwrap_or_else(|| key.to_string())
}

/// The name [`path_name`] made `part` of.
pub(super) fn name_of_path(part: &str) -> Option<String> {
    match part.strip_prefix("h.") {
        Some(h) => unhex(h).and_then(|b| String::from_utf8(b).ok()),
        None => Some(part.to_string()),
    }
}

pub(super) fn definition_crc(def: &TableDef) -> u32 {
    crc32fast::hash(serde_json::to_string(def).unwrap_or_default().as_bytes())
}

pub(super) fn reading_crc(def: &TableDef) -> u32 {
    let reading = serde_json::json!([def.format, def.options.strict_load]);
    crc32fast::hash(reading.to_string().as_bytes())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

pub(super) fn ipc_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
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
pub(super) fn decode_ipc(
    bytes: Bytes,
) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), String> {
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

/// Maps the segment file at `path` and checks it against `crcs` (one per [`CHUNK`]) as it comes
/// in from the disk: the chunks are dealt out over the cores in turn ([`chunk_crcs_after`]), and
/// each thread reads its chunk's pages in (`MADV_POPULATE_READ`, where the kernel has it) and
/// then checks them, so one
/// thread's checksum runs while another's read waits on the disk, and the disk sees a read or
/// two at a time along the file. `None` when the size or a checksum does not hold; an error
/// when the file cannot be mapped.
#[allow(unsafe_code)]
pub(super) fn map_checked(
    path: &std::path::Path,
    size: u64,
    crcs: &[u32],
) -> std::io::Result<Option<Bytes>> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() != size || (size as usize).div_ceil(CHUNK) != crcs.len() {
        return Ok(None);
    }
    // SAFETY: segment files are written once under a fresh name and never modified afterwards
    // (only deleted, which a mapping survives).
    let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
    let intact = chunk_crcs_after(&map, |start, end| {
        // Not all kernels have it: the checksum then faults the pages in.
        let _ = map.advise_range(memmap2::Advice::PopulateRead, start, end - start);
    }) == crcs;
    Ok(intact.then(|| Bytes::from_owner(map)))
}

fn block_data(buffer: &Buffer, block: &Block) -> std::result::Result<Buffer, String> {
    let start = usize::try_from(block.offset()).map_err(|e| e.to_string())?;
    let len = block.metaDataLength() as usize + block.bodyLength() as usize;
    if start.checked_add(len).is_none_or(|end| end > buffer.len()) {
        return Err("a block lies outside the file".into());
    }
    Ok(buffer.slice_with_length(start, len))
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn par_tokens_are_kept_out_of_the_manifest_and_put_back_from_the_definition() {
        let base = "http://127.0.0.1:1234/p/TOK-123/n/ns/b/bucket/o/";
        let def = match tarn_catalog::parse_statement(&format!(
            "CREATE EXTERNAL TABLE o.par FILE_FORMAT = (FORMAT parquet) FILES = (URI '{base}parquet/')"
        ))
        .unwrap()
        {
            tarn_catalog::Statement::CreateTable { table, .. } => table,
            _ => unreachable!(),
        };
        let file = tarn_connectors::FileEntry {
            // Listed names come redacted already; keys carry the token.
            uri: tarn_connectors::location::redact(&format!("{base}parquet/orders-0.parquet")),
            key: "p/TOK-123/n/ns/b/bucket/o/parquet/orders-0.parquet".into(),
            size: 1,
            etag: None,
            last_modified: chrono::DateTime::UNIX_EPOCH,
        };
        let manifest = Manifest {
            files: vec![file.clone()],
            ..Default::default()
        };
        let shown = redacted(&manifest);
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains("TOK-123"), "{text}");
        assert_eq!(restored_key(&shown.files[0].key, &def), file.key);
    }

    #[test]
    fn names_that_could_nest_or_climb_get_paths_of_their_own() {
        let dirs: Vec<String> = [("a/b", "c"), ("a", "b/c"), ("..", "x"), ("s", "orders")]
            .iter()
            .map(|(d, t)| {
                table_dir(&TableKey {
                    database: d.to_string(),
                    table: t.to_string(),
                })
            })
            .collect();
        assert_eq!(dirs[3], "s/orders");
        assert_ne!(dirs[0], dirs[1]);
        for d in &dirs {
            assert_eq!(d.matches('/').count(), 1, "{d}");
            assert!(!d.split('/').any(|p| p == ".." || p == "."), "{d}");
        }
        for (d, t) in [("a/b", "c"), ("..", "x"), ("sales", "t-1")] {
            let dir = table_dir(&TableKey {
                database: d.into(),
                table: t.into(),
            });
            let (pd, pt) = dir.split_once('/').unwrap();
            assert_eq!(
                (name_of_path(pd).unwrap(), name_of_path(pt).unwrap()),
                (d.to_string(), t.to_string())
            );
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

    /// A mapped segment is checked chunk by chunk as it is read in: a file of several chunks
    /// maps when every chunk's checksum holds, and not with one byte of its last chunk flipped,
    /// another size, or other checksums; a missing file is an error.
    #[test]
    fn a_mapped_segment_is_checked_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.arrow");
        let data: Vec<u8> = (0..(2 * CHUNK + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let crcs = chunk_crcs(&data);
        assert_eq!(crcs.len(), 3);
        let mapped = map_checked(&path, data.len() as u64, &crcs)
            .unwrap()
            .unwrap();
        assert_eq!(&mapped[..], &data[..]);
        assert!(
            map_checked(&path, data.len() as u64 + 1, &crcs)
                .unwrap()
                .is_none()
        );
        assert!(
            map_checked(&path, data.len() as u64, &crcs[..2])
                .unwrap()
                .is_none()
        );
        let mut bad = data.clone();
        let last = bad.len() - 7;
        bad[last] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            map_checked(&path, data.len() as u64, &crcs)
                .unwrap()
                .is_none()
        );
        assert!(map_checked(&dir.path().join("none"), 1, &crcs).is_err());
    }
}
