//! Casting decoded columns to the table's schema, row by row where it matters: a value that does not
//! convert is found by comparing null masks before and after arrow's (safe) cast, so conversion
//! stays vectorised and only failing rows are looked at.

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBufferBuilder, new_null_array};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use tarn_catalog::MatchColumns;
use tarn_catalog::types::{is_json, is_nested};

use super::{RejectedRow, RowOrigin};
use crate::error::{ConnectorError, Result};

/// Casts `columns` (already aligned with `target`'s fields; `None` for a column the file lacks) to
/// `target`. Bad rows fail with `strict`, else are dropped and pushed to `rejected`. Rows listed in
/// `pre_rejected` (with their reasons) were found bad before conversion and are dropped as well.
pub(super) fn conform(
    columns: Vec<Option<ArrayRef>>,
    num_rows: usize,
    target: &SchemaRef,
    origin: &RowOrigin<'_>,
    strict: bool,
    pre_rejected: Vec<(usize, Option<String>, String)>,
    rejected: &mut Vec<RejectedRow>,
) -> Result<Option<RecordBatch>> {
    let mut bad: Vec<(usize, Option<String>, String)> = pre_rejected;
    let mut out = Vec::with_capacity(columns.len());
    let opts = CastOptions {
        safe: true,
        ..Default::default()
    };
    for (field, col) in target.fields().iter().zip(columns) {
        let Some(col) = col else {
            out.push(new_null_array(field.data_type(), num_rows));
            if !field.is_nullable() {
                bad.extend((0..num_rows).map(|r| {
                    (
                        r,
                        Some(field.name().clone()),
                        "column missing from file and declared NOT NULL".to_string(),
                    )
                }));
            }
            continue;
        };
        let cast = if col.data_type() == field.data_type() {
            col.clone()
        } else if is_nested(col.data_type()) && matches!(field.data_type(), DataType::Utf8) {
            json_text(&col).map_err(|e| ConnectorError::Data {
                file: origin.file.to_string(),
                line: None,
                column: Some(field.name().clone()),
                message: format!("cannot write {} as JSON: {e}", col.data_type()),
            })?
        } else {
            cast_with_options(&col, field.data_type(), &opts).map_err(|e| ConnectorError::Data {
                file: origin.file.to_string(),
                line: None,
                column: Some(field.name().clone()),
                message: format!(
                    "cannot convert {} to {}: {e}",
                    col.data_type(),
                    field.data_type()
                ),
            })?
        };
        if cast.null_count() > col.null_count() {
            let fmt = ArrayFormatter::try_new(&col, &FormatOptions::default()).ok();
            for r in 0..num_rows {
                if col.is_valid(r) && cast.is_null(r) {
                    let v = fmt
                        .as_ref()
                        .map(|f| f.value(r).to_string())
                        .unwrap_or_default();
                    bad.push((
                        r,
                        Some(field.name().clone()),
                        format!(
                            "value '{v}' is not a valid {}",
                            type_name(field.data_type())
                        ),
                    ));
                }
            }
        }
        if is_json(field) && !is_nested(col.data_type()) {
            // Text declared JSON must hold JSON documents.
            if let Some(text) = cast.as_any().downcast_ref::<arrow::array::StringArray>() {
                for (r, v) in text.iter().enumerate() {
                    if let Some(v) = v
                        && serde_json::from_str::<serde::de::IgnoredAny>(v).is_err()
                    {
                        bad.push((
                            r,
                            Some(field.name().clone()),
                            format!("value '{}' is not a valid JSON document", shorten(v)),
                        ));
                    }
                }
            }
        }
        if !field.is_nullable() && cast.null_count() > 0 {
            for r in 0..num_rows {
                if col.is_null(r) {
                    bad.push((
                        r,
                        Some(field.name().clone()),
                        "NULL in a NOT NULL column".to_string(),
                    ));
                }
            }
        }
        out.push(cast);
    }
    bad.sort_by_key(|b| b.0);
    if let Some((row, column, reason)) = bad.first().cloned()
        && strict
    {
        return Err(ConnectorError::Data {
            file: origin.file.to_string(),
            line: Some((origin.line)(row)),
            column,
            message: reason,
        });
    }
    let opts = RecordBatchOptions::new().with_row_count(Some(num_rows));
    if bad.is_empty() {
        let batch = RecordBatch::try_new_with_options(target.clone(), out, &opts)
            .map_err(|e| ConnectorError::data(origin.file, e))?;
        return Ok((num_rows > 0).then_some(batch));
    }
    // Bad rows may hold NULLs in NOT NULL columns: filter them out before the schema is enforced.
    let loose = Arc::new(Schema::new(
        target
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new_with_options(loose, out, &opts)
        .map_err(|e| ConnectorError::data(origin.file, e))?;
    let mut keep = BooleanBufferBuilder::new(num_rows);
    keep.append_n(num_rows, true);
    let mut last = usize::MAX;
    for (row, column, reason) in bad {
        keep.set_bit(row, false);
        // One record per row: the first reason found.
        if row != last {
            rejected.push(RejectedRow {
                file: origin.file.to_string(),
                line: (origin.line)(row),
                column,
                reason,
            });
            last = row;
        }
    }
    let mask = BooleanArray::new(keep.finish(), None);
    let kept =
        filter_record_batch(&batch, &mask).map_err(|e| ConnectorError::data(origin.file, e))?;
    let kept = RecordBatch::try_new_with_options(
        target.clone(),
        kept.columns().to_vec(),
        &RecordBatchOptions::new().with_row_count(Some(kept.num_rows())),
    )
    .map_err(|e| ConnectorError::data(origin.file, e))?;
    Ok((kept.num_rows() > 0).then_some(kept))
}

/// Nested values (lists, structs, maps) as JSON documents, one a row; NULL stays NULL, and a
/// struct's NULL fields are written as `null`.
pub(super) fn json_text(col: &ArrayRef) -> std::result::Result<ArrayRef, arrow::error::ArrowError> {
    use arrow::array::StringBuilder;
    use arrow::json::writer::{EncoderOptions, make_encoder};
    let field = Arc::new(arrow::datatypes::Field::new(
        "v",
        col.data_type().clone(),
        true,
    ));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, col.as_ref(), &options)?;
    let mut out = StringBuilder::with_capacity(col.len(), col.len() * 16);
    let mut buf = Vec::new();
    for r in 0..col.len() {
        if col.is_null(r) {
            out.append_null();
            continue;
        }
        buf.clear();
        encoder.encode(r, &mut buf);
        // Kept as MySQL writes JSON, so that a column reads as its `->'$'` does.
        match serde_json::from_slice::<serde_json::Value>(&buf) {
            Ok(v) => out.append_value(tarn_catalog::json::to_text(&v)),
            Err(_) => out.append_value(String::from_utf8_lossy(&buf)),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// For each field of `target`, the index of the file's column that feeds it: by name without
/// case (the default), by exact name, or by position.
pub fn matched(file: &Schema, target: &Schema, how: MatchColumns) -> Vec<Option<usize>> {
    target
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match how {
            MatchColumns::Position => (i < file.fields().len()).then_some(i),
            MatchColumns::NameCaseSensitive => {
                file.fields().iter().position(|sf| sf.name() == f.name())
            }
            MatchColumns::NameCaseInsensitive => file
                .fields()
                .iter()
                .position(|sf| sf.name().eq_ignore_ascii_case(f.name())),
        })
        .collect()
}

/// Picks the file's columns for each field of `target` ([`matched`]).
pub fn by_name(
    batch: &RecordBatch,
    target: &SchemaRef,
    how: MatchColumns,
) -> Vec<Option<ArrayRef>> {
    matched(&batch.schema(), target, how)
        .into_iter()
        .map(|i| i.map(|i| batch.column(i).clone()))
        .collect()
}

/// A value as an error quotes it: at most 60 characters.
fn shorten(v: &str) -> String {
    match v.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_string(),
    }
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(..) => "DATETIME".into(),
        DataType::Time64(_) => "TIME".into(),
        DataType::Boolean => "BOOLEAN".into(),
        other => other.to_string(),
    }
}
