//! Parquet: parquet's async Arrow reader over the object store, row groups decoded in parallel
//! (one task per slice of row groups), columns matched to the table's by name.
// parquet 59 deprecates ParquetObjectReader in favour of hand-written AsyncFileReaders; it is still
// the maintained object_store bridge that DataFusion itself uses, so Tarn keeps it until replaced.
#![allow(deprecated)]

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;

use super::RowOrigin;
use super::conform::{by_name, no_column_matches};
use super::{BATCH_ROWS, FileBatches, ReadOptions};
use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

fn object_reader(store: Arc<dyn ObjectStore>, file: &FileEntry) -> ParquetObjectReader {
    ParquetObjectReader::new(store, file.path()).with_file_size(file.size)
}

async fn metadata(store: Arc<dyn ObjectStore>, file: &FileEntry) -> Result<ArrowReaderMetadata> {
    ArrowReaderMetadata::load_async(&mut object_reader(store, file), ArrowReaderOptions::new())
        .await
        .map_err(|e| parquet_error(&file.uri, "not a readable Parquet file", e))
}

pub(super) async fn infer(store: Arc<dyn ObjectStore>, file: &FileEntry) -> Result<SchemaRef> {
    Ok(metadata(store, file).await?.schema().clone())
}

pub(super) async fn read(
    store: Arc<dyn ObjectStore>,
    file: &FileEntry,
    opts: &ReadOptions,
) -> Result<FileBatches> {
    let meta = metadata(store.clone(), file).await?;
    let file_schema = meta.schema().clone();
    // Read only the file's columns that the table has.
    let wanted: Vec<usize> = file_schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            opts.schema
                .fields()
                .iter()
                .any(|t| t.name().eq_ignore_ascii_case(f.name()))
        })
        .map(|(i, _)| i)
        .collect();
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
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunk = row_groups.len().div_ceil(parallel).max(1);
    let mut tasks = Vec::new();
    for rgs in (0..row_groups.len()).collect::<Vec<_>>().chunks(chunk) {
        let rgs = rgs.to_vec();
        let first_row = starts[rgs[0]];
        let reader = object_reader(store.clone(), file);
        let meta = meta.clone();
        let mask = mask.clone();
        let opts = opts.clone();
        let uri = file.uri.clone();
        let (counted, size) = (counted.clone(), file.size);
        tasks.push(tokio::spawn(async move {
            let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
                .with_row_groups(rgs)
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| ConnectorError::data(&uri, e))?;
            let mut out = FileBatches::default();
            let mut row = first_row;
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|e| parquet_error(&uri, "corrupt Parquet data", e))?
            {
                let n = batch.num_rows();
                let cols = by_name(&batch, &opts.schema);
                debug_assert!(!no_column_matches(&cols) || opts.schema.fields().is_empty());
                let base = row;
                let line = move |r: usize| base + r as u64 + 1;
                let origin = RowOrigin {
                    file: &uri,
                    line: &line,
                };
                out.push(cols, n, &origin, &opts, vec![])?;
                row += n as u64;
                let share = 2 * size * n as u64 / total_rows;
                counted.fetch_add(share, std::sync::atomic::Ordering::Relaxed);
                opts.advance(share);
            }
            Ok::<_, ConnectorError>(out)
        }));
    }
    let mut out = FileBatches {
        bytes_read: file.size,
        ..Default::default()
    };
    for t in tasks {
        let part = t
            .await
            .map_err(|e| ConnectorError::data(&file.uri, format!("reader failed: {e}")))??;
        out.batches.extend(part.batches);
        out.rejected.extend(part.rejected);
    }
    opts.advance(
        file.size
            .saturating_sub(counted.load(std::sync::atomic::Ordering::Relaxed)),
    );
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
