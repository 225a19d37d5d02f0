//! Parquet: the whole object is fetched with parallel ranged reads (one round of large requests
//! instead of a small request per column chunk, which is what makes object stores slow), then row
//! groups are decoded in parallel from memory, one blocking task per slice of row groups. Columns
//! match the table's by name.
//!
//! Strings are decoded as plain offset arrays (`Utf8`), also when the file's Arrow schema says
//! string views: a loaded string then costs 4 bytes beside its text instead of a 16-byte view,
//! which for TPC-H's lineitem is about a third of its memory.
// parquet 59 deprecates ParquetObjectReader in favour of hand-written AsyncFileReaders; it is still
// the maintained object_store bridge, used here only to read a footer for schema inference.
#![allow(deprecated)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::errors::ParquetError;

use super::{BATCH_ROWS, FileBatches, ReadOptions, fetch};
use tarn_catalog::MatchColumns;

use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

pub(super) async fn infer(store: Arc<dyn ObjectStore>, file: &FileEntry) -> Result<SchemaRef> {
    let mut reader = ParquetObjectReader::new(store, file.path()).with_file_size(file.size);
    let meta = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|e| parquet_error(&file.uri, "not a readable Parquet file", e))?;
    Ok(plain_strings(meta.schema()).unwrap_or_else(|| meta.schema().clone()))
}

/// The first row group of a Parquet file, decoded as a load decodes it, and the share of the
/// file's rows it holds: what a dry run measures. Only the footer and that row group are fetched.
pub(super) async fn sample(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    opts: &ReadOptions,
) -> Result<(FileBatches, f64)> {
    use futures::TryStreamExt;
    use parquet::arrow::ParquetRecordBatchStreamBuilder;
    let mut reader = ParquetObjectReader::new(store, file.path()).with_file_size(file.size);
    let meta = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|e| parquet_error(&file.uri, "not a readable Parquet file", e))?;
    let meta = with_plain_strings(meta, file)?;
    let total: i64 = meta
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .sum();
    let Some(first) = meta.metadata().row_groups().first() else {
        return Ok((FileBatches::default(), 1.0));
    };
    let share = first.num_rows() as f64 / total.max(1) as f64;
    let wanted = wanted_columns(meta.schema(), &opts.schema, opts.format.match_columns_by);
    let mask = ProjectionMask::roots(meta.parquet_schema(), wanted);
    let batches: Vec<_> = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
        .with_row_groups(vec![0])
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(&file.uri, "corrupt Parquet data", e))?
        .try_collect()
        .await
        .map_err(|e| parquet_error(&file.uri, "corrupt Parquet data", e))?;
    let mut out = FileBatches::default();
    let mut row = 0u64;
    for batch in &batches {
        out.push_named(batch, &file.uri, row, opts)?;
        row += batch.num_rows() as u64;
    }
    Ok((out, share))
}

/// `meta` reading string and binary views as plain columns, as every load keeps them.
fn with_plain_strings(meta: ArrowReaderMetadata, file: &FileEntry) -> Result<ArrowReaderMetadata> {
    match plain_strings(meta.schema()) {
        Some(plain) => ArrowReaderMetadata::try_new(
            meta.metadata().clone(),
            ArrowReaderOptions::new().with_schema(plain),
        )
        .map_err(|e| parquet_error(&file.uri, "not a readable Parquet file", e)),
        None => Ok(meta),
    }
}

/// The positions of the file's columns that feed the table's ([`super::conform::matched`]), in
/// file order.
fn wanted_columns(file: &Schema, table: &Schema, how: MatchColumns) -> Vec<usize> {
    let mut wanted: Vec<usize> = super::conform::matched(file, table, how)
        .into_iter()
        .flatten()
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// `schema` with string and binary views as plain string and binary columns, if it has views.
fn plain_strings(schema: &SchemaRef) -> Option<SchemaRef> {
    let plain = |t: &DataType| match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    };
    if !schema
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match plain(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

pub(super) async fn read(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    opts: &ReadOptions,
) -> Result<FileBatches> {
    let bytes = fetch(&store, file, Some(opts)).await?;
    let file = file.clone();
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || decode(bytes, &file, &opts))
        .await
        .map_err(|e| ConnectorError::data("parquet reader", format!("reader failed: {e}")))?
}

fn decode(bytes: Bytes, file: &FileEntry, opts: &ReadOptions) -> Result<FileBatches> {
    let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new())
        .map_err(|e| parquet_error(&file.uri, "not a readable Parquet file", e))?;
    let meta = with_plain_strings(meta, file)?;
    let file_schema = meta.schema().clone();
    // Decode only the file's columns that the table has.
    let wanted = wanted_columns(&file_schema, &opts.schema, opts.format.match_columns_by);
    if wanted.is_empty() && !opts.schema.fields().is_empty() {
        return Err(ConnectorError::data(
            &file.uri,
            format!(
                "none of the table's columns ({}) is in the file (it has {})",
                names(&opts.schema),
                names(&file_schema)
            ),
        ));
    }
    let mask = ProjectionMask::roots(meta.parquet_schema(), wanted);
    let row_groups = meta.metadata().row_groups();
    let mut starts = Vec::with_capacity(row_groups.len());
    let mut acc = 0u64;
    for rg in row_groups {
        starts.push(acc);
        acc += rg.num_rows() as u64;
    }
    let total_rows = acc.max(1);
    // Decoding counts the second half of the file's progress (fetching counted the first).
    let counted = AtomicU64::new(0);
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunk = row_groups.len().div_ceil(parallel).max(1);
    let groups: Vec<Vec<usize>> = (0..row_groups.len())
        .collect::<Vec<_>>()
        .chunks(chunk)
        .map(<[usize]>::to_vec)
        .collect();
    let parts: Vec<Result<FileBatches>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|rgs| {
                let (bytes, meta, mask, counted) =
                    (bytes.clone(), meta.clone(), mask.clone(), &counted);
                let first_row = starts[rgs[0]];
                scope.spawn(move || -> Result<FileBatches> {
                    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
                        .with_row_groups(rgs)
                        .with_projection(mask)
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| parquet_error(&file.uri, "corrupt Parquet data", e))?;
                    let mut out = FileBatches::default();
                    let mut row = first_row;
                    for batch in reader {
                        let batch = batch.map_err(|e| {
                            ConnectorError::data(&file.uri, format!("corrupt Parquet data: {e}"))
                        })?;
                        let n = batch.num_rows();
                        out.push_named(&batch, &file.uri, row, opts)?;
                        row += n as u64;
                        let share = file.size * n as u64 / total_rows;
                        counted.fetch_add(share, Ordering::Relaxed);
                        opts.advance(share);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ConnectorError::data(&file.uri, "Parquet reader panicked"))
                })
            })
            .collect()
    });
    let out = FileBatches::concat(parts)?;
    opts.advance(file.size.saturating_sub(counted.load(Ordering::Relaxed)));
    Ok(out)
}

/// A failure of the store under the reader is the store's (retried, 5xx); anything else is the
/// file's.
fn parquet_error(uri: &str, what: &str, e: ParquetError) -> ConnectorError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store) => ConnectorError::store(uri, *store),
            Err(other) => ConnectorError::data(uri, format!("{what}: {other}")),
        },
        other => ConnectorError::data(uri, format!("{what}: {other}")),
    }
}

fn names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
