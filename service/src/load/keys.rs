//! Declared keys checked at load and refresh (`VERIFY_KEY_CONSTRAINTS = 1`): no two rows of the
//! next version may hold the same values in a `PRIMARY KEY` or `UNIQUE` key (a unique key's rows
//! with a NULL in it may repeat, as in MySQL). Strict loads fail on the first duplicate, naming
//! the key, its values and both rows (file and row); otherwise each later duplicate is left out
//! and listed among the table's rejected rows, with where the first one is.
//!
//! Rows are numbered within their file from 1, in the order read (the line of a CSV file with no
//! header, no skipped lines and no rejected rows); a file whose rows were reordered by placement
//! is named without a row number.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use tarn_catalog::{CatalogError, KeyDef, TableKey};
use tarn_connectors::RejectedRow;
use tarn_engine::store::Segment;

use crate::error::{Result, ServiceError};

/// Where a row is: its segment and its index among the segment's rows.
#[derive(Clone, Copy)]
struct At {
    segment: usize,
    row: u64,
}

fn place(segments: &[Arc<Segment>], at: At) -> String {
    let s = &segments[at.segment];
    match s.placed {
        true => format!("{} (rows reordered by placement)", s.file),
        false => format!("{} row {}", s.file, at.row + 1),
    }
}

/// Checks `keys` over `segments` (in file order), leaving later duplicates out unless `strict`.
/// Answers how many rows were left out.
pub fn check(
    table: &TableKey,
    schema: &SchemaRef,
    keys: &[KeyDef],
    segments: &mut [Arc<Segment>],
    strict: bool,
) -> Result<u64> {
    let mut dropped = 0;
    for key in keys {
        let columns: Vec<usize> = key
            .columns
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| {
                    ServiceError::from(CatalogError::invalid(format!(
                        "{} of {table} names '{c}', which the table does not have",
                        key.describe()
                    )))
                })
            })
            .collect::<Result<_>>()?;
        let converter = RowConverter::new(
            columns
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut seen: HashMap<Box<[u8]>, At> = HashMap::new();
        // Per segment, the rows to leave out and why.
        let mut out: Vec<Vec<(u64, String)>> = vec![Vec::new(); segments.len()];
        for (si, segment) in segments.iter().enumerate() {
            let mut row = 0u64;
            for batch in &segment.batches {
                let cols: Vec<_> = columns.iter().map(|&i| batch.column(i).clone()).collect();
                let rows = converter
                    .convert_columns(&cols)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                for r in 0..batch.num_rows() {
                    let at = At {
                        segment: si,
                        row: row + r as u64,
                    };
                    // Rows with a NULL in a unique key may repeat.
                    if cols.iter().any(|c| c.is_null(r)) {
                        continue;
                    }
                    let Some(first) = seen.get(rows.row(r).as_ref()).copied() else {
                        seen.insert(rows.row(r).as_ref().into(), at);
                        continue;
                    };
                    let values = shown(&cols, r);
                    if strict {
                        return Err(CatalogError::invalid(format!(
                            "duplicate value ({values}) for {} of {table}: {} and {}",
                            key.describe(),
                            place(segments, first),
                            place(segments, at)
                        ))
                        .into());
                    }
                    out[si].push((
                        at.row,
                        format!(
                            "duplicate value ({values}) for {}; the first is {}",
                            key.describe(),
                            place(segments, first)
                        ),
                    ));
                }
                row += batch.num_rows() as u64;
            }
        }
        for (si, leave) in out.into_iter().enumerate() {
            if !leave.is_empty() {
                dropped += leave.len() as u64;
                segments[si] = Arc::new(without(&segments[si], &leave)?);
            }
        }
    }
    Ok(dropped)
}

/// `values` of row `r` as an error quotes them.
fn shown(cols: &[arrow::array::ArrayRef], r: usize) -> String {
    cols.iter()
        .map(|c| {
            ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())
                .map(|f| f.value(r).to_string())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `segment` without the rows listed (sorted), which join its rejected rows.
fn without(segment: &Segment, leave: &[(u64, String)]) -> Result<Segment> {
    let mut batches = Vec::with_capacity(segment.batches.len());
    let mut start = 0u64;
    let mut next = leave.iter().peekable();
    for batch in &segment.batches {
        let n = batch.num_rows() as u64;
        let mut keep = vec![true; batch.num_rows()];
        while let Some((row, _)) = next.peek() {
            if *row >= start + n {
                break;
            }
            keep[(row - start) as usize] = false;
            next.next();
        }
        let kept = filter_record_batch(batch, &BooleanArray::from(keep))
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if kept.num_rows() > 0 {
            batches.push(kept);
        }
        start += n;
    }
    let mut rejected = segment.rejected.clone();
    rejected.extend(leave.iter().map(|(row, reason)| RejectedRow {
        file: segment.file.clone(),
        line: row + 1,
        column: None,
        reason: reason.clone(),
    }));
    Ok(Segment::new(segment.file.clone(), batches, rejected))
}
