//! Avro object container files: apache-avro decodes records (null, deflate and snappy codecs);
//! each field goes to a column builder of its natural Arrow type, and [`conform`] casts to the
//! table's types. Nested values (records, arrays, maps) are kept as JSON text.

use std::sync::Arc;

use apache_avro::schema::Schema as Avro;
use apache_avro::types::Value;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;

use super::RowOrigin;
use super::{BATCH_ROWS, FileBatches, ReadOptions};
use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

fn open<'a>(file: &FileEntry, bytes: &'a [u8]) -> Result<apache_avro::Reader<'a, &'a [u8]>> {
    apache_avro::Reader::new(bytes)
        .map_err(|e| ConnectorError::data(&file.uri, format!("not a readable Avro file: {e}")))
}

fn record_fields(file: &FileEntry, schema: &Avro) -> Result<Vec<(String, DataType)>> {
    match schema {
        Avro::Record(r) => Ok(r
            .fields
            .iter()
            .map(|f| (f.name.to_lowercase(), natural(&f.schema)))
            .collect()),
        other => Err(ConnectorError::data(
            &file.uri,
            format!("the Avro schema is not a record but {other:?}"),
        )),
    }
}

/// The Arrow type an Avro type reads into.
fn natural(s: &Avro) -> DataType {
    match s {
        Avro::Boolean => DataType::Boolean,
        Avro::Int => DataType::Int32,
        Avro::Long => DataType::Int64,
        Avro::Float => DataType::Float32,
        Avro::Double => DataType::Float64,
        Avro::Bytes | Avro::Fixed(_) => DataType::Binary,
        Avro::Decimal(d) if d.precision <= 38 => {
            DataType::Decimal128(d.precision as u8, d.scale as i8)
        }
        Avro::Date => DataType::Date32,
        Avro::TimeMillis | Avro::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
        Avro::TimestampMillis
        | Avro::TimestampMicros
        | Avro::TimestampNanos
        | Avro::LocalTimestampMillis
        | Avro::LocalTimestampMicros
        | Avro::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Microsecond, None),
        Avro::Union(u) => optional(u).map_or(DataType::Utf8, natural),
        _ => DataType::Utf8,
    }
}

/// The one type besides null of a union (`["null", T]`), if it has exactly one.
fn optional(u: &apache_avro::schema::UnionSchema) -> Option<&Avro> {
    let mut non_null = u.variants().iter().filter(|v| !matches!(v, Avro::Null));
    match (non_null.next(), non_null.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Whether values of an Avro type are records, arrays or maps (kept as JSON documents).
fn nested(s: &Avro) -> bool {
    match s {
        Avro::Record(_) | Avro::Array(_) | Avro::Map(_) => true,
        Avro::Union(u) => optional(u).is_some_and(nested),
        _ => false,
    }
}

pub(super) fn infer(file: &FileEntry, bytes: Bytes) -> Result<SchemaRef> {
    let reader = open(file, &bytes)?;
    let fields = record_fields(file, reader.writer_schema())?;
    let Avro::Record(record) = reader.writer_schema() else {
        unreachable!("record_fields accepts records only")
    };
    Ok(Arc::new(Schema::new(
        fields
            .into_iter()
            .zip(&record.fields)
            .map(|((n, t), f)| match nested(&f.schema) {
                true => tarn_catalog::types::json_field(&n, true),
                false => Field::new(n, t, true),
            })
            .collect::<Vec<_>>(),
    )))
}

enum Col {
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bin(BinaryBuilder),
    Str(StringBuilder),
    Dec(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Col {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::Boolean => Self::Bool(BooleanBuilder::new()),
            DataType::Int32 => Self::I32(Int32Builder::new()),
            DataType::Int64 => Self::I64(Int64Builder::new()),
            DataType::Float32 => Self::F32(Float32Builder::new()),
            DataType::Float64 => Self::F64(Float64Builder::new()),
            DataType::Binary => Self::Bin(BinaryBuilder::new()),
            DataType::Decimal128(p, s) => Self::Dec(Decimal128Builder::new(), *p, *s),
            DataType::Date32 => Self::Date(Date32Builder::new()),
            DataType::Time64(_) => Self::Time(Time64MicrosecondBuilder::new()),
            DataType::Timestamp(..) => Self::Ts(TimestampMicrosecondBuilder::new()),
            _ => Self::Str(StringBuilder::new()),
        }
    }

    fn null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Bin(b) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Dec(b, ..) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Ts(b) => b.append_null(),
        }
    }

    /// Appends `v`; a value of another type appends NULL and says why.
    fn push(&mut self, v: &Value) -> std::result::Result<(), String> {
        let v = match v {
            Value::Union(_, inner) => inner.as_ref(),
            other => other,
        };
        match (self, v) {
            (s, Value::Null) => s.null(),
            (Self::Bool(b), Value::Boolean(x)) => b.append_value(*x),
            (Self::I32(b), Value::Int(x)) => b.append_value(*x),
            (Self::I64(b), Value::Long(x)) => b.append_value(*x),
            (Self::I64(b), Value::Int(x)) => b.append_value(i64::from(*x)),
            (Self::F32(b), Value::Float(x)) => b.append_value(*x),
            (Self::F64(b), Value::Double(x)) => b.append_value(*x),
            (Self::F64(b), Value::Float(x)) => b.append_value(f64::from(*x)),
            (Self::Bin(b), Value::Bytes(x) | Value::Fixed(_, x)) => b.append_value(x),
            (Self::Date(b), Value::Date(x)) => b.append_value(*x),
            (Self::Time(b), Value::TimeMillis(x)) => b.append_value(i64::from(*x) * 1000),
            (Self::Time(b), Value::TimeMicros(x)) => b.append_value(*x),
            (Self::Ts(b), Value::TimestampMillis(x) | Value::LocalTimestampMillis(x)) => {
                b.append_value(x * 1000)
            }
            (Self::Ts(b), Value::TimestampMicros(x) | Value::LocalTimestampMicros(x)) => {
                b.append_value(*x)
            }
            (Self::Ts(b), Value::TimestampNanos(x) | Value::LocalTimestampNanos(x)) => {
                b.append_value(x / 1000)
            }
            (Self::Dec(b, ..), Value::Decimal(d)) => {
                let bytes: Vec<u8> = d.try_into().map_err(|e| format!("bad decimal: {e}"))?;
                if bytes.len() > 16 {
                    return Err("decimal wider than 128 bits".into());
                }
                let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                    0xff
                } else {
                    0
                };
                let mut buf = [fill; 16];
                buf[16 - bytes.len()..].copy_from_slice(&bytes);
                b.append_value(i128::from_be_bytes(buf));
            }
            (Self::Str(b), Value::String(s) | Value::Enum(_, s)) => b.append_value(s),
            (Self::Str(b), Value::Uuid(u)) => b.append_value(u.to_string()),
            (Self::Str(b), other) => match serde_json::Value::try_from(other.clone()) {
                Ok(j) => b.append_value(tarn_catalog::json::to_text(&j)),
                Err(e) => {
                    b.append_null();
                    return Err(format!("cannot represent value: {e}"));
                }
            },
            (s, other) => {
                s.null();
                return Err(format!("unexpected Avro value {other:?}"));
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::I32(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::F32(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::Bin(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::Dec(mut b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(p, s)
                    .expect("valid decimal"),
            ),
            Self::Date(mut b) => Arc::new(b.finish()),
            Self::Time(mut b) => Arc::new(b.finish()),
            Self::Ts(mut b) => Arc::new(b.finish()),
        }
    }
}

pub(super) fn read(file: &FileEntry, bytes: Bytes, opts: &ReadOptions) -> Result<FileBatches> {
    let reader = open(file, &bytes)?;
    let fields = record_fields(file, reader.writer_schema())?;
    // For each file field, the table column it feeds (if any).
    let target_of: Vec<Option<usize>> = fields
        .iter()
        .map(|(n, _)| opts.schema.fields().iter().position(|f| f.name() == n))
        .collect();
    if target_of.iter().all(Option::is_none) && !opts.schema.fields().is_empty() {
        return Err(ConnectorError::data(
            &file.uri,
            "none of the table's columns is in the file",
        ));
    }
    let mut out = FileBatches::default();
    let new_cols = || -> Vec<Option<Col>> {
        opts.schema
            .fields()
            .iter()
            .map(|f| {
                fields
                    .iter()
                    .find(|(n, _)| n == f.name())
                    .map(|(_, t)| Col::new(t))
            })
            .collect()
    };
    let mut cols = new_cols();
    let mut bad = Vec::new();
    let mut rows = 0usize;
    let mut first_row = 1u64;
    for (i, rec) in reader.enumerate() {
        let rec = rec.map_err(|e| ConnectorError::Data {
            file: file.uri.clone(),
            line: Some(i as u64 + 1),
            column: None,
            message: format!("corrupt or truncated Avro data: {e}"),
        })?;
        let Value::Record(values) = rec else {
            return Err(ConnectorError::data(
                &file.uri,
                "an Avro datum is not a record",
            ));
        };
        for ((_, v), t) in values.iter().zip(&target_of) {
            if let Some(c) = t.and_then(|t| cols[t].as_mut())
                && let Err(reason) = c.push(v)
            {
                bad.push((
                    rows,
                    Some(opts.schema.field(t.unwrap_or(0)).name().clone()),
                    reason,
                ));
            }
        }
        rows += 1;
        if rows == BATCH_ROWS {
            flush(
                file,
                std::mem::replace(&mut cols, new_cols()),
                rows,
                first_row,
                std::mem::take(&mut bad),
                opts,
                &mut out,
            )?;
            first_row += rows as u64;
            rows = 0;
        }
    }
    flush(file, cols, rows, first_row, bad, opts, &mut out)?;
    Ok(out)
}

fn flush(
    file: &FileEntry,
    cols: Vec<Option<Col>>,
    rows: usize,
    first_row: u64,
    bad: Vec<(usize, Option<String>, String)>,
    opts: &ReadOptions,
    out: &mut FileBatches,
) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let arrays = cols.into_iter().map(|c| c.map(Col::finish)).collect();
    let line = |r: usize| first_row + r as u64;
    let origin = RowOrigin {
        file: &file.uri,
        line: &line,
    };
    out.push(arrays, rows, &origin, opts, bad)?;
    Ok(())
}
