//! Format readers: one file in, record batches in the table's schema out.
//!
//! Every reader decodes with its format's own crate (csv, parquet, arrow-json, apache-avro,
//! deltalake) into the file's natural Arrow types, then [`conform`] casts the columns to the
//! table's schema. A value that does not convert, a NULL in a NOT NULL column or a row with the
//! wrong number of fields is a *bad row*: with `strict` it fails the read with an error naming
//! file, line and column; otherwise the row is dropped and returned as a [`RejectedRow`].

mod avro;
pub mod conform;
mod csv;
mod delta;
mod json;
pub mod memory;
mod parquet;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use tarn_catalog::types::{is_json, is_nested, json_field};
use tarn_catalog::{Compression, FileFormat, FormatKind};

use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

pub use delta::{DeltaSnapshot, delta_snapshot, read_delta_files};
/// A Delta table's log as last read; kept to replay only newer commits next time.
pub use deltalake::DeltaTable;
pub use memory::{FileMemory, MemoryRefused, ReadMemory};

/// Rows per batch the readers aim for.
pub const BATCH_ROWS: usize = 8192;

/// A row left out of a non-strict load, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RejectedRow {
    pub file: String,
    /// 1-based line (CSV, JSON) or row number (Parquet, Avro, Delta) in the file.
    pub line: u64,
    pub column: Option<String>,
    pub reason: String,
}

/// What reading one file produced.
#[derive(Debug, Default)]
pub struct FileBatches {
    pub batches: Vec<RecordBatch>,
    pub rejected: Vec<RejectedRow>,
    /// What the read holds of the load's memory account (when it has one): settle it with
    /// [`FileMemory::keep`] once the loaded size of the batches is known.
    pub memory: Option<Arc<FileMemory>>,
}

/// Where the rows of a batch came from, for messages: the file, and the line (or row number) of
/// each row of the batch.
pub(crate) struct RowOrigin<'a> {
    pub file: &'a str,
    pub line: &'a dyn Fn(usize) -> u64,
}

impl FileBatches {
    /// The parts of one file read in parallel, in order; the first failure fails the file.
    pub(crate) fn concat(parts: Vec<Result<FileBatches>>) -> Result<FileBatches> {
        let mut out = FileBatches::default();
        for part in parts {
            let part = part?;
            out.batches.extend(part.batches);
            out.rejected.extend(part.rejected);
        }
        Ok(out)
    }

    /// Conforms one decoded batch to the table's schema ([`conform::conform`]) and keeps what
    /// survives; `pre_rejected` rows were found bad while decoding.
    pub(crate) fn push(
        &mut self,
        columns: Vec<Option<arrow::array::ArrayRef>>,
        num_rows: usize,
        origin: &RowOrigin<'_>,
        opts: &ReadOptions,
        pre_rejected: Vec<(usize, Option<String>, String)>,
    ) -> Result<()> {
        if let Some(b) = conform::conform(
            columns,
            num_rows,
            &opts.schema,
            origin,
            opts.strict,
            pre_rejected,
            &mut self.rejected,
        )? {
            opts.take(b.get_array_memory_size() as u64)?;
            self.batches.push(b);
        }
        Ok(())
    }

    /// [`Self::push`] for a batch of a self-describing format (Parquet, Delta): columns matched
    /// by name, rows numbered from `first_row + 1` in `file`.
    pub(crate) fn push_named(
        &mut self,
        batch: &arrow::record_batch::RecordBatch,
        file: &str,
        first_row: u64,
        opts: &ReadOptions,
    ) -> Result<()> {
        let line = move |r: usize| first_row + r as u64 + 1;
        let origin = RowOrigin { file, line: &line };
        let columns = conform::by_name(batch, &opts.schema, opts.format.match_columns_by);
        if !opts.format.allow_missing_columns
            && let Some((f, _)) = opts
                .schema
                .fields()
                .iter()
                .zip(&columns)
                .find(|(_, c)| c.is_none())
        {
            return Err(ConnectorError::Data {
                file: file.to_string(),
                line: None,
                column: Some(f.name().clone()),
                message: format!(
                    "the file has no column '{}' (matched {}) and allow_missing_columns is off",
                    f.name(),
                    match opts.format.match_columns_by {
                        tarn_catalog::MatchColumns::Position => "by position",
                        tarn_catalog::MatchColumns::NameCaseSensitive => "by exact name",
                        tarn_catalog::MatchColumns::NameCaseInsensitive => "by name",
                    }
                ),
            });
        }
        self.push(columns, batch.num_rows(), &origin, opts, vec![])
    }
}

/// Everything a reader needs besides the file itself.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub format: FileFormat,
    /// The table's schema (declared or inferred), with lower-case names.
    pub schema: SchemaRef,
    pub strict: bool,
    /// Progress: every reader adds exactly twice its file's size by the time it succeeds, once for
    /// fetching (as bytes arrive) and once for decoding (as it goes for CSV and Parquet, at the
    /// end for JSON and Avro). A load's total is twice its bytes.
    pub progress: Arc<AtomicU64>,
    /// The load's memory account; without one, reads take memory unchecked.
    pub memory: Option<Arc<dyn ReadMemory>>,
    /// What the file being read holds of `memory` (set per file by [`Self::for_file`]).
    pub(crate) file_memory: Option<Arc<FileMemory>>,
}

impl ReadOptions {
    pub fn new(format: FileFormat, schema: SchemaRef, strict: bool) -> Self {
        Self {
            format,
            schema,
            strict,
            progress: Arc::new(AtomicU64::new(0)),
            memory: None,
            file_memory: None,
        }
    }

    /// Progress is counted into `progress` (see the field).
    pub fn with_progress(mut self, progress: Arc<AtomicU64>) -> Self {
        self.progress = progress;
        self
    }

    /// Reads take their memory from `account` first.
    pub fn with_memory(mut self, account: Arc<dyn ReadMemory>) -> Self {
        self.memory = Some(account);
        self
    }

    /// The options for reading `file`: its own share of the memory account.
    pub(crate) fn for_file(&self, file: &str) -> Self {
        let mut opts = self.clone();
        opts.file_memory = self.memory.clone().map(|m| FileMemory::new(m, file));
        opts
    }

    /// Takes `bytes` for the file being read, if there is an account.
    pub(crate) fn take(&self, bytes: u64) -> Result<()> {
        match &self.file_memory {
            Some(m) => m.take(bytes),
            None => Ok(()),
        }
    }

    /// `input`, taking memory for what is read through it when there is an account.
    pub(crate) fn charged<R: Read + Send + 'static>(
        &self,
        input: R,
    ) -> (Box<dyn Read + Send>, Option<memory::Releaser>) {
        match &self.file_memory {
            Some(m) => {
                let c = memory::Charged::new(input, m.clone());
                let releaser = c.releaser();
                (Box::new(c), Some(releaser))
            }
            None => (Box::new(input), None),
        }
    }

    pub(crate) fn advance(&self, bytes: u64) {
        self.progress.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Counts the bytes read through it into a progress counter.
pub(crate) struct Counting<R> {
    inner: R,
    progress: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Decodes the bytes of a CSV, JSON or Avro file (or of its start) by the table's format.
fn decode_bytes(file: &FileEntry, bytes: Bytes, opts: &ReadOptions) -> Result<FileBatches> {
    match opts.format.kind {
        FormatKind::Csv => csv::read(file, bytes, opts),
        FormatKind::Json => json::read(file, bytes, opts),
        _ => avro::read(file, bytes, opts),
    }
}

/// Reads one file of a CSV, Parquet, JSON or Avro table. (Delta data files are read through
/// the table's log by [`delta::read_delta_files`].)
pub async fn read_file(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    opts: &ReadOptions,
) -> Result<FileBatches> {
    let opts = &opts.for_file(&file.uri);
    let mut out = match opts.format.kind {
        FormatKind::Parquet => parquet::read(store, file, opts).await,
        FormatKind::Csv | FormatKind::Json | FormatKind::Avro => {
            let started = std::time::Instant::now();
            let bytes = fetch(&store, file, Some(opts)).await?;
            let fetched = started.elapsed();
            let owned = file.clone();
            let opts = opts.clone();
            // Decoding is CPU work: keep it off the async workers.
            tokio::task::spawn_blocking(move || {
                let file = owned;
                let _timing = Timing {
                    file: &file.uri,
                    started,
                    fetched,
                };
                let n = bytes.len() as u64;
                let out = decode_bytes(&file, bytes, &opts)?;
                if opts.format.kind != FormatKind::Csv {
                    opts.advance(n);
                }
                Ok(out)
            })
            .await
            .map_err(|e| ConnectorError::data(&file.uri, format!("reader failed: {e}")))?
        }
        FormatKind::Delta => Err(ConnectorError::data(
            &file.uri,
            "Delta tables are read through their log, not file by file",
        )),
    }?;
    out.memory = opts.file_memory.clone();
    Ok(out)
}

/// What a dry run reads of a file: its start, decoded as a load would, and the share of the file
/// it is (rows for Parquet, bytes for text formats). Parquet: the first row group; CSV and JSON:
/// the first whole lines of at most [`INFER_BYTES`]; Avro and compressed files: the whole file.
pub async fn sample_file(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    opts: &ReadOptions,
) -> Result<(FileBatches, f64)> {
    let opts = &opts.for_file(&file.uri);
    let plain_text = matches!(opts.format.kind, FormatKind::Csv | FormatKind::Json)
        && opts.format.compression.for_file(&file.key) == Compression::None;
    match opts.format.kind {
        FormatKind::Parquet => parquet::sample(store, file, opts).await,
        _ if plain_text && file.size > INFER_BYTES => {
            let bytes = store
                .get_range(&file.path(), 0..INFER_BYTES)
                .await
                .map_err(|e| ConnectorError::store(&file.uri, e))?;
            // Whole lines only.
            let term = opts.format.line_terminator.unwrap_or(b'\n');
            let end = memchr::memrchr(term, &bytes).map_or(0, |i| i + 1);
            let bytes = bytes.slice(..end);
            let share = end as f64 / file.size as f64;
            let owned = file.clone();
            let opts = opts.clone();
            let out = tokio::task::spawn_blocking(move || decode_bytes(&owned, bytes, &opts))
                .await
                .map_err(|e| ConnectorError::data(&file.uri, format!("reader failed: {e}")))??;
            Ok((out, share))
        }
        _ => Ok((read_file(store, file, opts).await?, 1.0)),
    }
}

/// Infers a table's schema from one of its files (names lower-cased).
pub async fn infer_schema(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    format: &FileFormat,
) -> Result<SchemaRef> {
    let schema = match format.kind {
        FormatKind::Parquet => parquet::infer(store, file).await?,
        FormatKind::Csv | FormatKind::Json | FormatKind::Avro => {
            // Inference looks at the start of the file only: a bounded range, however large the
            // listing says the file is.
            let size = file.size.min(INFER_BYTES);
            let bytes = if size == 0 {
                Bytes::new()
            } else {
                store
                    .get_range(&file.path(), 0..size)
                    .await
                    .map_err(|e| ConnectorError::store(&file.uri, e))?
            };
            let truncated = file.size > size;
            let owned = file.clone();
            let format = format.clone();
            let store = store.clone();
            let avro = tokio::task::spawn_blocking(move || match format.kind {
                FormatKind::Csv | FormatKind::Json => {
                    let sample = sample_text(&owned, bytes, &format, truncated)?;
                    let plain = FileFormat {
                        compression: Compression::None,
                        ..format.clone()
                    };
                    if format.kind == FormatKind::Csv {
                        csv::infer(&owned, sample, &plain).map(Some)
                    } else {
                        json::infer(&owned, sample, &plain).map(Some)
                    }
                }
                _ => match avro::infer(&owned, bytes) {
                    Ok(s) => Ok(Some(s)),
                    // A header (schema) longer than the range: read the whole file, if it is not
                    // too large to.
                    Err(_) if truncated && owned.size <= INFER_WHOLE_AVRO => Ok(None),
                    Err(e) => Err(e),
                },
            })
            .await
            .map_err(|e| ConnectorError::data(&file.uri, format!("inference failed: {e}")))??;
            match avro {
                Some(s) => s,
                None => {
                    let bytes = fetch(&store, file, None).await?;
                    let owned = file.clone();
                    tokio::task::spawn_blocking(move || avro::infer(&owned, bytes))
                        .await
                        .map_err(|e| {
                            ConnectorError::data(&file.uri, format!("inference failed: {e}"))
                        })??
                }
            }
        }
        FormatKind::Delta => {
            return Err(ConnectorError::data(
                &file.uri,
                "Delta schemas come from the log",
            ));
        }
    };
    Ok(lowercase_names(&schema))
}

/// Bytes of a file (compressed or not) schema inference reads at most, and text it decodes.
const INFER_BYTES: u64 = 16 << 20;
/// An Avro file whose schema does not fit in [`INFER_BYTES`] is read whole up to this size.
const INFER_WHOLE_AVRO: u64 = 256 << 20;

/// The first whole lines of a CSV or JSON file's text (decompressed), at most [`INFER_BYTES`]:
/// when the file goes on past them (`truncated`, or more text than that), the partial last line
/// is cut off.
fn sample_text(
    file: &FileEntry,
    bytes: Bytes,
    format: &FileFormat,
    truncated: bool,
) -> Result<Bytes> {
    let mut input = decompressed(file, bytes, format.compression, None)?.take(INFER_BYTES);
    let mut text = Vec::new();
    let mut cut = truncated;
    if let Err(e) = input.read_to_end(&mut text) {
        // A compressed stream cut by the range ends early; anything else is a bad file.
        if !truncated {
            return Err(ConnectorError::data(&file.uri, format!("cannot read: {e}")));
        }
    }
    if text.len() as u64 >= INFER_BYTES {
        cut = true;
    }
    if cut {
        let term = format.line_terminator.unwrap_or(b'\n');
        let end = memchr::memrchr(term, &text).map_or(0, |i| i + 1);
        text.truncate(end);
    }
    Ok(Bytes::from(text))
}

/// An inferred schema as a table keeps it: names in lower case, every column nullable, nested
/// columns (lists, structs, maps) as JSON documents.
pub(crate) fn lowercase_names(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().to_lowercase();
                match is_json(f) || is_nested(f.data_type()) {
                    true => json_field(&name, true),
                    false => Field::new(name, f.data_type().clone(), true),
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// Objects larger than this are fetched as ranges of this size, several at once.
const FETCH_RANGE: u64 = 8 << 20;
const FETCH_CONCURRENCY: usize = 8;

/// Fetches a whole object, counting bytes into `progress` as they arrive. A large object comes
/// as parallel ranged reads (parallel connections to an object store, parallel reads of a local
/// file) assembled in order.
pub(super) async fn fetch(
    store: &Arc<dyn ObjectStore>,
    file: &FileEntry,
    progress: Option<&ReadOptions>,
) -> Result<Bytes> {
    let path = file.path();
    let fail = |e| ConnectorError::store(&file.uri, e);
    // The listed size is taken before anything is fetched: a listing that claims more than fits
    // fails here, naming the limit.
    if let Some(o) = progress {
        o.take(file.size)?;
    }
    let advance = |n: usize| {
        if let Some(o) = progress {
            o.advance(n as u64);
        }
    };
    if file.size == 0 {
        return Ok(Bytes::new());
    }
    if file.size <= FETCH_RANGE {
        // A range, not the whole object: an object that grew after it was listed must not bring
        // more than the listing (and the memory account) allowed for.
        let b = store.get_range(&path, 0..file.size).await.map_err(fail)?;
        advance(b.len());
        if b.len() as u64 != file.size {
            return Err(changed(file, b.len()));
        }
        return Ok(b);
    }
    let ranges: Vec<futures::future::BoxFuture<'static, object_store::Result<Bytes>>> = (0..file
        .size)
        .step_by(FETCH_RANGE as usize)
        .map(|start| {
            let (store, path) = (store.clone(), path.clone());
            let range = start..(start + FETCH_RANGE).min(file.size);
            async move { store.get_range(&path, range).await }.boxed()
        })
        .collect();
    let mut parts = futures::stream::iter(ranges).buffered(FETCH_CONCURRENCY);
    // Without an account nothing has vouched for the listed size: do not trust it with an
    // allocation up front.
    let vouched = progress.is_some_and(|o| o.file_memory.is_some());
    let capacity = if vouched {
        file.size
    } else {
        file.size.min(FETCH_RANGE * 16)
    };
    let mut buf = Vec::with_capacity(capacity as usize);
    while let Some(part) = parts.next().await {
        let part = part.map_err(fail)?;
        advance(part.len());
        buf.extend_from_slice(&part);
    }
    if buf.len() as u64 != file.size {
        return Err(changed(file, buf.len()));
    }
    Ok(Bytes::from(buf))
}

fn changed(file: &FileEntry, read: usize) -> ConnectorError {
    ConnectorError::data(
        &file.uri,
        format!(
            "the object changed while it was read ({} bytes listed, {read} read)",
            file.size
        ),
    )
}

/// The longest line a CSV or JSON file may hold. A line is held whole while it is parsed (in a buffer that
/// doubles as it grows), so one endless line (say, a compressed file of a single byte repeated)
/// would otherwise grow without bound before any batch is built and counted.
pub(crate) const MAX_LINE_BYTES: u64 = 64 << 20;

/// A line past [`MAX_LINE_BYTES`]; `line` is its 1-based number in the stream the guard watched.
#[derive(Debug)]
pub(crate) struct LineTooLong {
    pub line: u64,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a line longer than {} MiB: is the line terminator the table's?",
            MAX_LINE_BYTES >> 20
        )
    }
}

impl std::error::Error for LineTooLong {}

impl LineTooLong {
    /// The guard's error inside `e`, if that is what it is.
    pub(crate) fn within(e: &std::io::Error) -> Option<&Self> {
        e.get_ref()?.downcast_ref::<Self>()
    }
}

/// Fails the read once more than [`MAX_LINE_BYTES`] come without a line terminator.
pub(crate) struct LineGuard<R> {
    inner: R,
    term: u8,
    since_term: u64,
    /// Terminators seen so far.
    lines: u64,
}

impl<R> LineGuard<R> {
    pub(crate) fn new(inner: R, term: u8) -> Self {
        Self {
            inner,
            term,
            since_term: 0,
            lines: 0,
        }
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        // One pass: how many terminators, and where the last one is.
        let mut last = None;
        for i in memchr::memchr_iter(self.term, &buf[..n]) {
            self.lines += 1;
            last = Some(i);
        }
        match last {
            Some(i) => self.since_term = (n - i - 1) as u64,
            None => self.since_term += n as u64,
        }
        if self.since_term > MAX_LINE_BYTES {
            return Err(std::io::Error::other(LineTooLong {
                line: self.lines + 1,
            }));
        }
        Ok(n)
    }
}

/// Logs how long a file took to fetch and to decode, when dropped.
struct Timing<'a> {
    file: &'a str,
    started: std::time::Instant,
    fetched: std::time::Duration,
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        let total = self.started.elapsed();
        tracing::debug!(
            file = self.file,
            fetch_ms = self.fetched.as_millis() as u64,
            decode_ms = (total - self.fetched).as_millis() as u64,
            "read"
        );
    }
}

/// A reader over `bytes` that counts what is read into `progress`.
pub(crate) fn counting(bytes: Bytes, progress: Arc<AtomicU64>) -> Counting<std::io::Cursor<Bytes>> {
    Counting {
        inner: std::io::Cursor::new(bytes),
        progress,
    }
}

/// A reader over the file's bytes, decompressed as the format (or the file name) says.
pub(crate) fn decompressed(
    file: &FileEntry,
    bytes: Bytes,
    compression: Compression,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Box<dyn Read + Send>> {
    let raw = Counting {
        inner: std::io::Cursor::new(bytes),
        progress: progress.unwrap_or_default(),
    };
    Ok(match compression.for_file(&file.key) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| ConnectorError::data(&file.uri, format!("zstd: {e}")))?,
        ),
        Compression::Zip => unzipped(file, raw.inner.into_inner(), raw.progress)?,
        Compression::None | Compression::Auto => Box::new(raw),
    })
}

/// The entries of a zip archive, one after another (directories skipped): the archive's
/// directory is read with the zip crate, each entry's data is inflated (or taken as stored) from
/// its range of the bytes.
fn unzipped(
    file: &FileEntry,
    bytes: Bytes,
    progress: Arc<AtomicU64>,
) -> Result<Box<dyn Read + Send>> {
    let bad = |e: &dyn std::fmt::Display| ConnectorError::data(&file.uri, format!("zip: {e}"));
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).map_err(|e| bad(&e))?;
    let mut out: Box<dyn Read + Send> = Box::new(std::io::empty());
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| bad(&e))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        if entry.encrypted() {
            return Err(bad(&format!("{name} is encrypted")));
        }
        let start = entry
            .data_start()
            .ok_or_else(|| bad(&"an entry without data"))? as usize;
        let end = start + entry.compressed_size() as usize;
        if end > bytes.len() {
            return Err(bad(&format!("{name} runs past the end of the file")));
        }
        let data = Counting {
            inner: std::io::Cursor::new(bytes.slice(start..end)),
            progress: progress.clone(),
        };
        let reader: Box<dyn Read + Send> = match entry.compression() {
            zip::CompressionMethod::Stored => Box::new(data),
            zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(data)),
            other => {
                return Err(bad(&format!(
                    "{name} is compressed with {other}; Tarn reads stored and deflated entries"
                )));
            }
        };
        out = Box::new(out.chain(reader));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use tarn_catalog::FormatKind;

    use super::*;
    use crate::location::Location;

    #[tokio::test]
    async fn large_objects_arrive_whole_through_parallel_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap().join("big.bin");
        let content: Vec<u8> = (0..(FETCH_RANGE * 3 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &content).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let loc = Location::parse(&format!("file://{}", path.display())).unwrap();
        let file = crate::listing::list(&reqwest::Client::new(), &store, &loc, None)
            .await
            .unwrap()
            .remove(0);
        let opts = ReadOptions::new(
            FileFormat::heatwave(FormatKind::Csv),
            Arc::new(Schema::empty()),
            true,
        );
        let got = fetch(&store, &file, Some(&opts)).await.unwrap();
        assert!(got[..] == content[..], "bytes differ");
        assert_eq!(opts.progress.load(Ordering::Relaxed), content.len() as u64);
        // An object that changed after listing is not taken as whole.
        std::fs::write(&path, &content[..content.len() - 1]).unwrap();
        let e = fetch(&store, &file, None).await.unwrap_err().to_string();
        assert!(
            e.contains("big.bin") && e.contains("changed while it was read"),
            "{e}"
        );
    }
}
