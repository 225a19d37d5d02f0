//! Arrow results as MySQL result sets: each Arrow type as the MySQL column type drivers map to
//! the right host type (exact decimals, dates, datetimes), values in MySQL's text forms.

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use opensrv_mysql::{Column, ColumnFlags, ColumnType, RowWriter};
use tokio::io::AsyncWrite;

/// The MySQL column of each field.
pub fn columns(schema: &Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let (coltype, unsigned) = match tarn_catalog::types::is_json(f) {
                // JSON columns as MySQL's JSON type (the values are its text).
                true => (ColumnType::MYSQL_TYPE_JSON, false),
                false => column_type(f.data_type()),
            };
            let mut colflags = ColumnFlags::empty();
            if unsigned {
                colflags |= ColumnFlags::UNSIGNED_FLAG;
            }
            if !f.is_nullable() {
                colflags |= ColumnFlags::NOT_NULL_FLAG;
            }
            Column {
                table: String::new(),
                column: f.name().clone(),
                coltype,
                colflags,
            }
        })
        .collect()
}

fn column_type(t: &DataType) -> (ColumnType, bool) {
    use ColumnType as C;
    match t {
        DataType::Boolean | DataType::Int8 => (C::MYSQL_TYPE_TINY, false),
        DataType::UInt8 => (C::MYSQL_TYPE_TINY, true),
        DataType::Int16 => (C::MYSQL_TYPE_SHORT, false),
        DataType::UInt16 => (C::MYSQL_TYPE_SHORT, true),
        DataType::Int32 => (C::MYSQL_TYPE_LONG, false),
        DataType::UInt32 => (C::MYSQL_TYPE_LONG, true),
        DataType::Int64 => (C::MYSQL_TYPE_LONGLONG, false),
        DataType::UInt64 => (C::MYSQL_TYPE_LONGLONG, true),
        DataType::Float16 | DataType::Float32 => (C::MYSQL_TYPE_FLOAT, false),
        DataType::Float64 => (C::MYSQL_TYPE_DOUBLE, false),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => (C::MYSQL_TYPE_NEWDECIMAL, false),
        DataType::Date32 | DataType::Date64 => (C::MYSQL_TYPE_DATE, false),
        DataType::Timestamp(_, _) => (C::MYSQL_TYPE_DATETIME, false),
        DataType::Time32(_) | DataType::Time64(_) => (C::MYSQL_TYPE_TIME, false),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            (C::MYSQL_TYPE_BLOB, false)
        }
        DataType::FixedSizeBinary(_) => (C::MYSQL_TYPE_STRING, false),
        DataType::Null => (C::MYSQL_TYPE_NULL, false),
        _ => (C::MYSQL_TYPE_VAR_STRING, false),
    }
}

/// Each column of `batch` as MySQL text (NULLs kept): what the text protocol sends.
fn as_text(column: &ArrayRef) -> Result<StringArray, arrow::error::ArrowError> {
    let strings = match column.data_type() {
        DataType::Boolean => {
            let b = column.as_boolean();
            b.iter()
                .map(|v| v.map(|v| if v { "1" } else { "0" }))
                .collect()
        }
        // MySQL writes a datetime with a space, not ISO 8601's `T`.
        DataType::Timestamp(unit, _) => {
            let text = arrow::compute::cast(column, &DataType::Utf8)?;
            let digits = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                _ => 6,
            };
            text.as_string::<i32>()
                .iter()
                .map(|v| v.map(|v| datetime_text(v, digits)))
                .collect()
        }
        DataType::Utf8 => column.as_string::<i32>().clone(),
        _ => {
            let text = arrow::compute::cast(column, &DataType::Utf8)?;
            text.as_string::<i32>().clone()
        }
    };
    Ok(strings)
}

/// `2024-01-02T03:04:05.5+00:00` as `2024-01-02 03:04:05.500000`: a space, no zone, the unit's
/// digits of fraction.
fn datetime_text(iso: &str, digits: usize) -> String {
    let iso = iso.trim_end_matches('Z');
    let iso = match iso.rfind(['+', '-']) {
        Some(i) if i > 10 => &iso[..i],
        _ => iso,
    };
    let (main, frac) = iso.split_once('.').unwrap_or((iso, ""));
    let mut out = main.replacen('T', " ", 1);
    if digits > 0 {
        out.push('.');
        out.extend(frac.chars().chain(std::iter::repeat('0')).take(digits));
    }
    out
}

/// A column of a batch, ready to write each row in the binary protocol (prepared statements),
/// where every value must be of its column's MySQL type.
enum Binary {
    I8(arrow::array::Int8Array),
    I16(arrow::array::Int16Array),
    I32(arrow::array::Int32Array),
    I64(arrow::array::Int64Array),
    U8(arrow::array::UInt8Array),
    U16(arrow::array::UInt16Array),
    U32(arrow::array::UInt32Array),
    U64(arrow::array::UInt64Array),
    F32(arrow::array::Float32Array),
    F64(arrow::array::Float64Array),
    Date(arrow::array::Date32Array),
    /// Microseconds since the epoch.
    DateTime(arrow::array::TimestampMicrosecondArray),
    /// Microseconds since midnight.
    Time(arrow::array::Time64MicrosecondArray),
    Bytes(ArrayRef),
    /// Everything else (strings, decimals, nested values) in its text form.
    Text(StringArray),
}

impl Binary {
    fn new(column: &ArrayRef) -> Result<Self, arrow::error::ArrowError> {
        use arrow::compute::cast;
        use arrow::datatypes::DataType as T;
        let as_ = |t: &DataType| cast(column, t);
        Ok(match column.data_type() {
            T::Boolean => Self::I8(as_(&T::Int8)?.as_primitive().clone()),
            T::Int8 => Self::I8(column.as_primitive().clone()),
            T::Int16 => Self::I16(column.as_primitive().clone()),
            T::Int32 => Self::I32(column.as_primitive().clone()),
            T::Int64 => Self::I64(column.as_primitive().clone()),
            T::UInt8 => Self::U8(column.as_primitive().clone()),
            T::UInt16 => Self::U16(column.as_primitive().clone()),
            T::UInt32 => Self::U32(column.as_primitive().clone()),
            T::UInt64 => Self::U64(column.as_primitive().clone()),
            T::Float16 | T::Float32 => Self::F32(as_(&T::Float32)?.as_primitive().clone()),
            T::Float64 => Self::F64(column.as_primitive().clone()),
            T::Date32 | T::Date64 => Self::Date(as_(&T::Date32)?.as_primitive().clone()),
            T::Timestamp(_, _) => Self::DateTime(
                as_(&T::Timestamp(TimeUnit::Microsecond, None))?
                    .as_primitive()
                    .clone(),
            ),
            T::Time32(_) | T::Time64(_) => Self::Time(
                as_(&T::Time64(TimeUnit::Microsecond))?
                    .as_primitive()
                    .clone(),
            ),
            T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => {
                Self::Bytes(as_(&T::Binary)?)
            }
            _ => Self::Text(as_text(column)?),
        })
    }

    fn write<W: AsyncWrite + Send + Unpin>(
        &self,
        rows: &mut RowWriter<'_, W>,
        r: usize,
    ) -> std::io::Result<()> {
        use arrow::array::PrimitiveArray;
        use arrow::datatypes::ArrowPrimitiveType;
        fn get<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, r: usize) -> Option<T::Native> {
            a.is_valid(r).then(|| a.value(r))
        }
        match self {
            Self::I8(a) => rows.write_col(get(a, r)),
            Self::I16(a) => rows.write_col(get(a, r)),
            Self::I32(a) => rows.write_col(get(a, r)),
            Self::I64(a) => rows.write_col(get(a, r)),
            Self::U8(a) => rows.write_col(get(a, r)),
            Self::U16(a) => rows.write_col(get(a, r)),
            Self::U32(a) => rows.write_col(get(a, r)),
            Self::U64(a) => rows.write_col(get(a, r)),
            Self::F32(a) => rows.write_col(get(a, r)),
            Self::F64(a) => rows.write_col(get(a, r)),
            Self::Date(a) => rows.write_col(a.is_valid(r).then(|| a.value_as_date(r)).flatten()),
            Self::DateTime(a) => {
                rows.write_col(a.is_valid(r).then(|| a.value_as_datetime(r)).flatten())
            }
            Self::Time(a) => rows
                .write_col(get(a, r).map(|us| std::time::Duration::from_micros(us.max(0) as u64))),
            Self::Bytes(a) => {
                let b = a.as_binary::<i32>();
                rows.write_col(b.is_valid(r).then(|| b.value(r)))
            }
            Self::Text(a) => rows.write_col(a.is_valid(r).then(|| a.value(r))),
        }
    }
}

/// Writes every row of `batch`: in the text protocol every value in its MySQL text form, in the
/// binary one (the answer to a prepared statement) each in its column's type.
pub async fn write_batch<W: AsyncWrite + Send + Unpin>(
    rows: &mut RowWriter<'_, W>,
    batch: &RecordBatch,
    binary: bool,
) -> std::io::Result<()> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if binary {
                Binary::new(c)
            } else {
                as_text(c).map(Binary::Text)
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    for r in 0..batch.num_rows() {
        for c in &columns {
            c.write(rows, r)?;
        }
        rows.end_row().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Decimal128Array, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn values_take_mysqls_text_forms() {
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_704_164_645_500_000),
            None,
        ]));
        let t = as_text(&ts).unwrap();
        assert_eq!(t.value(0), "2024-01-02 03:04:05.500000");
        assert!(t.is_null(1));
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let b = as_text(&b).unwrap();
        assert_eq!((b.value(0), b.value(1)), ("1", "0"));
        let d: ArrayRef = Arc::new(
            Decimal128Array::from(vec![12345, -5])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let d = as_text(&d).unwrap();
        assert_eq!((d.value(0), d.value(1)), ("123.45", "-0.05"));
        assert_eq!(
            datetime_text("2024-01-02T03:04:05+00:00", 0),
            "2024-01-02 03:04:05"
        );
    }
}
