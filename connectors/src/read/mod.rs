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
mod parquet;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use tarn_catalog::{Compression, FileFormat, FormatKind};

use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

pub use delta::{DeltaSnapshot, delta_snapshot};

/// Rows per batch the readers aim for.
pub const BATCH_ROWS: usize = 8192;

/// A row left out of a non-strict load, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Bytes fetched from the store for this file.
    pub bytes_read: u64,
}

/// Where the rows of a batch came from, for messages: the file, and the line (or row number) of
/// each row of the batch.
pub(crate) struct RowOrigin<'a> {
    pub file: &'a str,
    pub line: &'a dyn Fn(usize) -> u64,
}

impl FileBatches {
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
            self.batches.push(b);
        }
        Ok(())
    }
}

/// Everything a reader needs besides the file itself.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub format: FileFormat,
    /// The table's schema (declared or inferred), with lower-case names.
    pub schema: SchemaRef,
    pub strict: bool,
    /// Bytes of source files read so far; each reader adds exactly its file's size by the time it
    /// succeeds, as it goes (CSV, Parquet) or at the end (JSON, Avro).
    pub progress: Arc<AtomicU64>,
}

impl ReadOptions {
    pub fn new(format: FileFormat, schema: SchemaRef, strict: bool) -> Self {
        Self {
            format,
            schema,
            strict,
            progress: Arc::new(AtomicU64::new(0)),
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

/// Reads one file of a CSV, Parquet, JSON or Avro table. (Delta tables are read whole by
/// [`delta::read_delta`].)
pub async fn read_file(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    opts: &ReadOptions,
) -> Result<FileBatches> {
    match opts.format.kind {
        FormatKind::Parquet => parquet::read(store, file, opts).await,
        FormatKind::Csv | FormatKind::Json | FormatKind::Avro => {
            let bytes = fetch(&store, file).await?;
            let owned = file.clone();
            let opts = opts.clone();
            // Decoding is CPU work: keep it off the async workers.
            tokio::task::spawn_blocking(move || {
                let file = owned;
                let n = bytes.len() as u64;
                let mut out = match opts.format.kind {
                    FormatKind::Csv => csv::read(&file, bytes, &opts),
                    FormatKind::Json => json::read(&file, bytes, &opts),
                    _ => avro::read(&file, bytes, &opts),
                }?;
                if opts.format.kind != FormatKind::Csv {
                    opts.advance(n);
                }
                out.bytes_read = n;
                Ok(out)
            })
            .await
            .map_err(|e| ConnectorError::data(&file.uri, format!("reader failed: {e}")))?
        }
        FormatKind::Delta => Err(ConnectorError::data(
            &file.uri,
            "Delta tables are read through their log, not file by file",
        )),
    }
}

pub use delta::read_delta;

/// Infers a table's schema from one of its files (names lower-cased).
pub async fn infer_schema(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    format: &FileFormat,
) -> Result<SchemaRef> {
    let schema = match format.kind {
        FormatKind::Parquet => parquet::infer(store, file).await?,
        FormatKind::Csv | FormatKind::Json | FormatKind::Avro => {
            let bytes = fetch(&store, file).await?;
            let owned = file.clone();
            let format = format.clone();
            tokio::task::spawn_blocking(move || match format.kind {
                FormatKind::Csv => csv::infer(&owned, bytes, &format),
                FormatKind::Json => json::infer(&owned, bytes, &format),
                _ => avro::infer(&owned, bytes),
            })
            .await
            .map_err(|e| ConnectorError::data(&file.uri, format!("inference failed: {e}")))??
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

pub(crate) fn lowercase_names(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name().to_lowercase(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

async fn fetch(store: &Arc<dyn ObjectStore>, file: &FileEntry) -> Result<Bytes> {
    let r = store
        .get(&file.path())
        .await
        .map_err(|e| ConnectorError::store(&file.uri, e))?;
    r.bytes()
        .await
        .map_err(|e| ConnectorError::store(&file.uri, e))
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
        Compression::None | Compression::Auto => Box::new(raw),
    })
}
