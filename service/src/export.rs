//! Writing a query's rows to object storage (`SELECT ... INTO OUTFILE`): CSV, Parquet or NDJSON
//! files in a new folder under the given prefix, named as HeatWave names them
//! (`<prefix><export id>/n0-t<writer>-c<chunk>.<format>`), with `_manifest.json` beside them.
//!
//! Batches go round-robin to one writer a core, each encoding on a blocking thread and sending
//! parts of 8 MiB to a multipart upload as they fill; a file rolls over to the next chunk at
//! 256 MiB. Nothing appears under the final names until every writer has finished: only then are
//! the uploads completed, and the manifest (written last) says the export is whole. On any
//! failure the uploads are aborted (and any already completed deleted), so a failed export leaves
//! no files behind. Stores without multipart uploads (pre-authenticated request URLs) keep each
//! file's bytes until then, up to [`BUFFERED_LIMIT`].

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use tarn_catalog::export::{CsvDialect, ExportCompression, ExportFormat, ExportSpec};
use tarn_connectors::location::Location;
use tarn_engine::QueryStream;

use crate::error::{Result, ServiceError};

/// Bytes sent to an upload at a time (S3 takes parts of 5 MiB and more).
const PART_BYTES: usize = 8 << 20;
/// A file's size (as encoded) past which its writer starts the next chunk.
const CHUNK_BYTES: u64 = 256 << 20;
/// Parquet rows per row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Bytes an export may hold for stores that take whole objects only.
pub const BUFFERED_LIMIT: usize = 512 << 20;

/// One file an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct WrittenFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The export's folder (a pre-authenticated request's token redacted).
    pub location: String,
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<WrittenFile>,
}

fn failed(what: impl std::fmt::Display) -> ServiceError {
    ServiceError::BadRequest(format!("export failed: {what}"))
}

/// A new export folder's name: a random id, as HeatWave makes one per query.
fn export_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Writes `answer`'s rows as `spec` says under `loc` (a prefix) in `store`.
pub async fn export(
    answer: QueryStream,
    store: Arc<dyn ObjectStore>,
    loc: &Location,
    spec: &ExportSpec,
) -> Result<Exported> {
    let folder = format!("{}{}/", loc.key().trim_start_matches('/'), export_id());
    let writers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let mut senders = Vec::with_capacity(writers);
    let mut handles = Vec::with_capacity(writers);
    for t in 0..writers {
        let (tx, rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let writer = Writer {
            store: store.clone(),
            folder: folder.clone(),
            thread: t,
            spec: spec.clone(),
            schema: answer.schema.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        handles.push(tokio::task::spawn_blocking(move || writer.run(rx)));
        senders.push(tx);
    }
    // Hand the batches out; a writer that stopped (it failed) ends the export.
    let mut stream = answer.stream;
    let mut next = 0usize;
    let mut query_error = None;
    while let Some(batch) = stream.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                query_error = Some(ServiceError::from(tarn_engine::EngineError::from(e)));
                break;
            }
        };
        if batch.num_rows() == 0 {
            continue;
        }
        if senders[next % writers].send(batch).await.is_err() {
            break;
        }
        next += 1;
    }
    drop(senders);
    drop(stream);
    let mut pending = Vec::new();
    let mut first_error = query_error;
    for h in handles {
        match h.await {
            Ok(Ok(files)) => pending.extend(files),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(failed(format!("a writer stopped: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        abort(pending).await;
        return Err(e);
    }
    commit(&store, loc, &folder, spec, pending).await
}

/// A file written but not yet visible.
struct Pending {
    path: Path,
    name: String,
    rows: u64,
    bytes: u64,
    body: Body,
}

enum Body {
    Upload(Box<dyn MultipartUpload>),
    Buffered(Vec<Bytes>),
}

/// Drops files not yet visible: uploads are aborted; nothing of a buffered file reached the store.
async fn abort(pending: Vec<Pending>) {
    for p in pending {
        if let Body::Upload(mut u) = p.body {
            let _ = u.abort().await;
        }
    }
}

/// Makes the files visible, then writes the manifest; on a failure, deletes what was made.
async fn commit(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
    folder: &str,
    spec: &ExportSpec,
    pending: Vec<Pending>,
) -> Result<Exported> {
    let mut files = Vec::with_capacity(pending.len());
    let mut done: Vec<Path> = Vec::new();
    let mut rest = pending.into_iter();
    let mut error = None;
    for p in rest.by_ref() {
        let made = match p.body {
            Body::Upload(mut u) => u.complete().await.map(|_| ()),
            Body::Buffered(parts) => {
                let payload: PutPayload = parts.into_iter().collect();
                store.put(&p.path, payload).await.map(|_| ())
            }
        };
        if let Err(e) = made {
            error = Some(failed(format!(
                "writing {}: {e}",
                loc.object_uri(p.path.as_ref())
            )));
            break;
        }
        done.push(p.path.clone());
        files.push(WrittenFile {
            name: p.name,
            rows: p.rows,
            bytes: p.bytes,
        });
    }
    let location = loc.object_uri(folder);
    let exported = Exported {
        location: location.clone(),
        rows: files.iter().map(|f| f.rows).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
    };
    if error.is_none() {
        let manifest = serde_json::json!({
            "location": location,
            "query": spec.query,
            "format": spec.format,
            "compression": spec.compression,
            "csv": (spec.format == ExportFormat::Csv).then_some(&spec.csv),
            "rows": exported.rows,
            "bytes": exported.bytes,
            "files": exported.files,
            "finished_at": chrono::Utc::now().to_rfc3339(),
        });
        let path = Path::from(format!("{folder}_manifest.json"));
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        if let Err(e) = store.put(&path, PutPayload::from(body)).await {
            error = Some(failed(format!("writing the manifest: {e}")));
        }
    }
    match error {
        None => Ok(exported),
        Some(e) => {
            abort(rest.collect()).await;
            for path in done {
                let _ = store.delete(&path).await;
            }
            Err(e)
        }
    }
}

/// One writer: its share of the batches, in files of up to [`CHUNK_BYTES`].
struct Writer {
    store: Arc<dyn ObjectStore>,
    folder: String,
    thread: usize,
    spec: ExportSpec,
    schema: SchemaRef,
    handle: tokio::runtime::Handle,
}

impl Writer {
    fn run(self, mut rx: tokio::sync::mpsc::Receiver<RecordBatch>) -> Result<Vec<Pending>> {
        let mut done = Vec::new();
        let mut file: Option<OpenFile> = None;
        let mut chunk = 0usize;
        let outcome = (|| -> Result<()> {
            while let Some(batch) = rx.blocking_recv() {
                if file.is_none() {
                    file = Some(self.open(chunk)?);
                    chunk += 1;
                }
                let f = file.as_mut().expect("opened above");
                f.write(&batch)?;
                self.send_parts(f, false)?;
                if f.encoded >= CHUNK_BYTES {
                    let f = file.take().expect("open");
                    done.push(self.close(f)?);
                }
            }
            if let Some(f) = file.take() {
                done.push(self.close(f)?);
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => Ok(done),
            Err(e) => {
                self.handle.block_on(abort(done));
                if let Some(f) = file {
                    self.handle.block_on(abort(vec![f.pending]));
                }
                Err(e)
            }
        }
    }

    fn open(&self, chunk: usize) -> Result<OpenFile> {
        let name = file_name(&self.spec, self.thread, chunk);
        let path = Path::from(format!("{}{name}", self.folder));
        let body = match self.handle.block_on(self.store.put_multipart(&path)) {
            Ok(u) => Body::Upload(u),
            Err(object_store::Error::NotImplemented { .. }) => Body::Buffered(Vec::new()),
            Err(e) => return Err(failed(format!("starting {name}: {e}"))),
        };
        Ok(OpenFile {
            encoder: Encoder::new(&self.spec, &self.schema)?,
            encoded: 0,
            pending: Pending {
                path,
                name,
                rows: 0,
                bytes: 0,
                body,
            },
        })
    }

    /// Sends what the encoder has made, in parts of [`PART_BYTES`] (all of it when `last`).
    fn send_parts(&self, f: &mut OpenFile, last: bool) -> Result<()> {
        let out = f.encoder.output();
        if out.len() < PART_BYTES && !last {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::take(out));
        if bytes.is_empty() && matches!(f.pending.body, Body::Buffered(_)) {
            return Ok(());
        }
        f.pending.bytes += bytes.len() as u64;
        match &mut f.pending.body {
            Body::Upload(u) => self
                .handle
                .block_on(u.put_part(PutPayload::from(bytes)))
                .map_err(|e| failed(format!("writing {}: {e}", f.pending.name)))?,
            Body::Buffered(parts) => {
                parts.push(bytes);
                if f.pending.bytes as usize > BUFFERED_LIMIT {
                    return Err(failed(format!(
                        "the location takes whole files only (no multipart uploads) and {} \
                         passed {} MiB: export less, or to an s3:// or oci:// location",
                        f.pending.name,
                        BUFFERED_LIMIT >> 20
                    )));
                }
            }
        }
        Ok(())
    }

    fn close(&self, mut f: OpenFile) -> Result<Pending> {
        f.encoder.finish()?;
        self.send_parts(&mut f, true)?;
        Ok(f.pending)
    }
}

fn file_name(spec: &ExportSpec, thread: usize, chunk: usize) -> String {
    format!("n0-t{thread}-c{chunk}.{}", spec.extension())
}

struct OpenFile {
    encoder: Encoder,
    /// Bytes encoded so far (before whole-file compression).
    encoded: u64,
    pending: Pending,
}

impl OpenFile {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.encoded += self.encoder.write(batch)?;
        self.pending.rows += batch.num_rows() as u64;
        Ok(())
    }
}

/// Whole-file compression of CSV and JSON text, into a buffer drained as parts are sent.
enum Sink {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Bzip2(bzip2::write::BzEncoder<Vec<u8>>),
}

impl Sink {
    fn new(c: ExportCompression) -> Result<Self> {
        Ok(match c {
            ExportCompression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            ExportCompression::Zstd => Self::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), 3)
                    .map_err(|e| failed(format!("zstd: {e}")))?,
            ),
            ExportCompression::Bzip2 => Self::Bzip2(bzip2::write::BzEncoder::new(
                Vec::new(),
                bzip2::Compression::default(),
            )),
            _ => Self::Plain(Vec::new()),
        })
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Plain(v) => v,
            Self::Gzip(e) => e.get_mut(),
            Self::Zstd(e) => e.get_mut(),
            Self::Bzip2(e) => e.get_mut(),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        let rest = match std::mem::replace(self, Self::Plain(Vec::new())) {
            Self::Plain(v) => v,
            Self::Gzip(e) => e.finish()?,
            Self::Zstd(e) => e.finish()?,
            Self::Bzip2(e) => e.finish()?,
        };
        *self = Self::Plain(rest);
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(v) => v.write(buf),
            Self::Gzip(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
            Self::Bzip2(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Encoder {
    Csv {
        sink: Sink,
        dialect: CsvDialect,
        header_due: bool,
        schema: SchemaRef,
    },
    Json {
        sink: Sink,
        terminator: String,
    },
    Parquet(Box<parquet::arrow::ArrowWriter<Vec<u8>>>),
}

fn io(e: impl std::fmt::Display) -> ServiceError {
    failed(format!("encoding: {e}"))
}

impl Encoder {
    fn new(spec: &ExportSpec, schema: &SchemaRef) -> Result<Self> {
        Ok(match spec.format {
            ExportFormat::Csv => Self::Csv {
                sink: Sink::new(spec.compression)?,
                dialect: spec.csv.clone(),
                header_due: spec.csv.header,
                schema: schema.clone(),
            },
            ExportFormat::Json => Self::Json {
                sink: Sink::new(spec.compression)?,
                terminator: spec.csv.line_terminator.clone(),
            },
            ExportFormat::Parquet => {
                use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
                let compression = match spec.compression {
                    ExportCompression::Snappy => Compression::SNAPPY,
                    ExportCompression::Gzip => Compression::GZIP(GzipLevel::default()),
                    ExportCompression::Brotli => Compression::BROTLI(BrotliLevel::default()),
                    ExportCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
                    ExportCompression::Lz4 => Compression::LZ4_RAW,
                    _ => Compression::UNCOMPRESSED,
                };
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                Self::Parquet(Box::new(
                    parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                        .map_err(io)?,
                ))
            }
        })
    }

    /// Encodes `batch`; answers the bytes it made (before whole-file compression).
    fn write(&mut self, batch: &RecordBatch) -> Result<u64> {
        match self {
            Self::Csv {
                sink,
                dialect,
                header_due,
                schema,
            } => {
                let mut text = Vec::with_capacity(batch.num_rows() * 64);
                if std::mem::take(header_due) {
                    let names: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    for (i, n) in names.iter().enumerate() {
                        if i > 0 {
                            text.extend_from_slice(dialect.delimiter.as_bytes());
                        }
                        csv_field(&mut text, n, dialect);
                    }
                    text.extend_from_slice(dialect.line_terminator.as_bytes());
                }
                csv_rows(&mut text, batch, dialect)?;
                sink.write_all(&text).map_err(io)?;
                Ok(text.len() as u64)
            }
            Self::Json { sink, terminator } => {
                let mut text = Vec::with_capacity(batch.num_rows() * 64);
                let mut w = arrow::json::WriterBuilder::new()
                    .with_encoder_factory(Arc::new(RawJson))
                    .build::<_, arrow::json::writer::LineDelimited>(&mut text);
                w.write(batch).map_err(io)?;
                w.finish().map_err(io)?;
                if terminator != "\n" {
                    // JSON text holds no raw line feeds: each one ends a record.
                    let mut out = Vec::with_capacity(text.len());
                    for part in text.split_inclusive(|b| *b == b'\n') {
                        out.extend_from_slice(part.strip_suffix(b"\n").unwrap_or(part));
                        if part.ends_with(b"\n") {
                            out.extend_from_slice(terminator.as_bytes());
                        }
                    }
                    text = out;
                }
                sink.write_all(&text).map_err(io)?;
                Ok(text.len() as u64)
            }
            Self::Parquet(w) => {
                let before = w.bytes_written() + w.in_progress_size();
                w.write(batch).map_err(io)?;
                let after = w.bytes_written() + w.in_progress_size();
                Ok(after.saturating_sub(before) as u64)
            }
        }
    }

    /// The bytes made so far and not yet sent.
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Csv { sink, .. } | Self::Json { sink, .. } => sink.output(),
            Self::Parquet(w) => w.inner_mut(),
        }
    }

    /// Ends the file (compression trailer, Parquet footer); what remains is in [`Self::output`].
    fn finish(&mut self) -> Result<()> {
        match self {
            Self::Csv { sink, .. } | Self::Json { sink, .. } => sink.finish().map_err(io),
            Self::Parquet(w) => {
                w.finish().map_err(io)?;
                Ok(())
            }
        }
    }
}

/// JSON columns go into NDJSON as the documents they hold, not as strings of their text.
#[derive(Debug)]
struct RawJson;

impl arrow::json::writer::EncoderFactory for RawJson {
    fn make_default_encoder<'a>(
        &self,
        field: &'a arrow::datatypes::FieldRef,
        array: &'a dyn Array,
        _options: &'a arrow::json::writer::EncoderOptions,
    ) -> std::result::Result<
        Option<arrow::json::writer::NullableEncoder<'a>>,
        arrow::error::ArrowError,
    > {
        use arrow::array::AsArray;
        if !tarn_catalog::types::is_json(field)
            || array.data_type() != &arrow::datatypes::DataType::Utf8
        {
            return Ok(None);
        }
        Ok(Some(arrow::json::writer::NullableEncoder::new(
            Box::new(RawText(array.as_string::<i32>().clone())),
            array.nulls().cloned(),
        )))
    }
}

struct RawText(arrow::array::StringArray);

impl arrow::json::writer::Encoder for RawText {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.value(idx).as_bytes());
    }
}

/// The rows of `batch` as CSV text: values as MySQL writes them (dates `2024-01-31`, datetimes
/// `2024-01-31 12:00:00`), NULL as the dialect's null value.
fn csv_rows(out: &mut Vec<u8>, batch: &RecordBatch, d: &CsvDialect) -> Result<()> {
    let options = FormatOptions::default()
        .with_date_format(Some("%Y-%m-%d"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
        .with_time_format(Some("%H:%M:%S%.f"));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(io)?;
    let mut value = String::new();
    for r in 0..batch.num_rows() {
        for (i, (col, f)) in batch.columns().iter().zip(&formatters).enumerate() {
            if i > 0 {
                out.extend_from_slice(d.delimiter.as_bytes());
            }
            if col.is_null(r) {
                out.extend_from_slice(d.null_value.as_bytes());
                continue;
            }
            value.clear();
            use std::fmt::Write as _;
            let _ = write!(value, "{}", f.value(r));
            csv_field(out, &value, d);
        }
        out.extend_from_slice(d.line_terminator.as_bytes());
    }
    Ok(())
}

/// One field: enclosed when the dialect says always, or when it holds the delimiter, the
/// enclosure, the escape, a line break, or reads as the null value; inside, the enclosure and
/// the escape are escaped (or the enclosure doubled when there is no escape).
fn csv_field(out: &mut Vec<u8>, v: &str, d: &CsvDialect) {
    let Some(q) = d.enclosed_by else {
        out.extend_from_slice(v.as_bytes());
        return;
    };
    let needs = d.always_enclose
        || v.is_empty()
        || v == d.null_value
        || v.contains(d.delimiter.as_str())
        || v.contains(d.line_terminator.as_str())
        || v.bytes()
            .any(|b| b == q || Some(b) == d.escaped_by || b == b'\n' || b == b'\r');
    if !needs {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    out.push(q);
    for b in v.bytes() {
        if b == q || Some(b) == d.escaped_by {
            out.push(d.escaped_by.unwrap_or(q));
        }
        out.push(b);
    }
    out.push(q);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_enclosed_and_escaped_only_where_needed() {
        let d = CsvDialect::default();
        let field = |v: &str, d: &CsvDialect| {
            let mut out = Vec::new();
            csv_field(&mut out, v, d);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(field("plain", &d), "plain");
        assert_eq!(field("a,b", &d), "\"a,b\"");
        assert_eq!(field("say \"hi\"", &d), "\"say \\\"hi\\\"\"");
        assert_eq!(field("back\\slash", &d), "\"back\\\\slash\"");
        assert_eq!(field("two\nlines", &d), "\"two\nlines\"");
        assert_eq!(field("", &d), "\"\"");
        // A value that reads as NULL is enclosed, so it stays a value.
        assert_eq!(field("\\N", &d), "\"\\\\N\"");
        let rfc = CsvDialect {
            escaped_by: None,
            always_enclose: true,
            ..CsvDialect::default()
        };
        assert_eq!(field("say \"hi\"", &rfc), "\"say \"\"hi\"\"\"");
        assert_eq!(field("x", &rfc), "\"x\"");
    }

    #[test]
    fn files_are_named_as_heatwave_names_them_with_the_compression_where_readers_look() {
        let spec = |format, compression| ExportSpec {
            query: String::new(),
            uri: "s3://b/".into(),
            format,
            compression,
            csv: CsvDialect::default(),
        };
        assert_eq!(
            file_name(&spec(ExportFormat::Csv, ExportCompression::Gzip), 1, 0),
            "n0-t1-c0.csv.gz"
        );
        assert_eq!(
            file_name(&spec(ExportFormat::Json, ExportCompression::None), 0, 2),
            "n0-t0-c2.json"
        );
        assert_eq!(
            file_name(
                &spec(ExportFormat::Parquet, ExportCompression::Snappy),
                0,
                0
            ),
            "n0-t0-c0.snappy.parquet"
        );
    }
}
