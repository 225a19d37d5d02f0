//! `POST /v1/sql`: one statement in (plain text, or JSON `{"sql": "..."}`), its answer out as JSON
//! (default), CSV, NDJSON or an Arrow IPC stream, by `Accept`.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, LargeStringArray,
    StringArray, StringViewArray, UInt64Array,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tarn_catalog::types::arrow_to_sql_name;

use super::ApiError;
use crate::error::ServiceError;
use crate::sql::{QueryOutput, execute};
use crate::state::AppState;

use super::sql_accept::ARROW as ARROW_STREAM;

fn statement(headers: &HeaderMap, body: &[u8]) -> Result<String, ServiceError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sql = if is_json {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ServiceError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        v.get("sql")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ServiceError::BadRequest("expected a JSON body {\"sql\": \"...\"}".into())
            })?
            .to_string()
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ServiceError::BadRequest("the body is not UTF-8 text".into()))?
    };
    if sql.trim().is_empty() {
        return Err(ServiceError::BadRequest(
            "no SQL statement in the request body".into(),
        ));
    }
    Ok(sql)
}

pub async fn post_sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sql = statement(&headers, &body)?;
    let out = execute(&state, &sql).await?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    encode(out, accept).map_err(ApiError)
}

fn encode(out: QueryOutput, accept: &str) -> Result<Response, ServiceError> {
    let fail =
        |e: arrow::error::ArrowError| ServiceError::Internal(format!("encoding the result: {e}"));
    let (ctype, body) = if accept.contains(ARROW_STREAM) {
        let mut buf = Vec::new();
        let mut w =
            arrow::ipc::writer::StreamWriter::try_new(&mut buf, &out.schema).map_err(fail)?;
        for b in &out.batches {
            w.write(b).map_err(fail)?;
        }
        w.finish().map_err(fail)?;
        drop(w);
        (ARROW_STREAM, buf)
    } else if accept.contains("text/csv") {
        let mut buf = Vec::new();
        if out.batches.is_empty() {
            // arrow's writer writes the header only with a first batch.
            let names: Vec<&str> = out
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            buf.extend_from_slice(names.join(",").as_bytes());
            buf.push(b'\n');
        } else {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buf);
            for b in &out.batches {
                w.write(b).map_err(fail)?;
            }
        }
        ("text/csv", buf)
    } else if accept.contains("application/x-ndjson") {
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            for b in &out.batches {
                w.write(b).map_err(fail)?;
            }
            w.finish().map_err(fail)?;
        }
        ("application/x-ndjson", buf)
    } else {
        ("application/json", to_json(&out)?)
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

/// `{"columns": [{"name", "type"}], "rows": [[...]]}`: numbers and booleans as JSON values,
/// decimals, dates and times as strings (exact, as MySQL clients show them). Written straight
/// from the Arrow columns, a row at a time, without building a JSON value per cell.
pub fn to_json(out: &QueryOutput) -> Result<Vec<u8>, ServiceError> {
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": arrow_to_sql_name(f.data_type())}))
        .collect();
    let batches = out
        .batches
        .iter()
        .map(|b| {
            let cells = b
                .columns()
                .iter()
                .map(Cells::of)
                .collect::<Result<_, _>>()?;
            Ok((b.num_rows(), cells))
        })
        .collect::<Result<Vec<(usize, Vec<Cells>)>, ServiceError>>()?;
    let body = Body {
        columns,
        rows: Rows(&batches),
    };
    serde_json::to_vec(&body)
        .map_err(|e| ServiceError::Internal(format!("encoding the result: {e}")))
}

#[derive(serde::Serialize)]
struct Body<'a> {
    columns: Vec<Value>,
    rows: Rows<'a>,
}

/// One column of a batch, as its cells are written: the array already taken as its type, so
/// writing a cell needs no downcast.
enum Cells<'a> {
    Null,
    Bool(&'a BooleanArray),
    Int(Int64Array),
    UInt(UInt64Array),
    Float(Float64Array),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Decimals, dates, times and the rest: as Arrow displays them.
    Shown(&'a ArrayRef, ArrayFormatter<'a>),
}

impl<'a> Cells<'a> {
    fn of(col: &'a ArrayRef) -> Result<Self, ServiceError> {
        use arrow::datatypes::{DataType as T, Float64Type, Int64Type, UInt64Type};
        let widened = |to: &T| {
            arrow::compute::cast(col, to).map_err(|e| {
                ServiceError::Internal(format!("encoding a {} column: {e}", col.data_type()))
            })
        };
        Ok(match col.data_type() {
            T::Null => Cells::Null,
            T::Boolean => Cells::Bool(col.as_boolean()),
            T::Int8 | T::Int16 | T::Int32 | T::Int64 => {
                Cells::Int(widened(&T::Int64)?.as_primitive::<Int64Type>().clone())
            }
            T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64 => {
                Cells::UInt(widened(&T::UInt64)?.as_primitive::<UInt64Type>().clone())
            }
            T::Float16 | T::Float32 | T::Float64 => {
                Cells::Float(widened(&T::Float64)?.as_primitive::<Float64Type>().clone())
            }
            T::Utf8 => Cells::Utf8(col.as_string::<i32>()),
            T::LargeUtf8 => Cells::LargeUtf8(col.as_string::<i64>()),
            T::Utf8View => Cells::Utf8View(col.as_string_view()),
            _ => {
                let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).map_err(
                    |e| ServiceError::Internal(format!("formatting {}: {e}", col.data_type())),
                )?;
                Cells::Shown(col, f)
            }
        })
    }
}

/// Per batch, its rows and its columns.
struct Rows<'a>(&'a [(usize, Vec<Cells<'a>>)]);

impl serde::Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.iter().map(|(n, _)| n).sum()))?;
        for (rows, cells) in self.0 {
            for row in 0..*rows {
                seq.serialize_element(&Row(cells, row))?;
            }
        }
        seq.end()
    }
}

struct Row<'a>(&'a [Cells<'a>], usize);

impl serde::Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for cells in self.0 {
            seq.serialize_element(&Cell(cells, self.1))?;
        }
        seq.end()
    }
}

struct Cell<'a>(&'a Cells<'a>, usize);

impl serde::Serialize for Cell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.1;
        match self.0 {
            Cells::Null => s.serialize_unit(),
            Cells::Bool(a) if a.is_valid(i) => s.serialize_bool(a.value(i)),
            Cells::Int(a) if a.is_valid(i) => s.serialize_i64(a.value(i)),
            Cells::UInt(a) if a.is_valid(i) => s.serialize_u64(a.value(i)),
            Cells::Float(a) if a.is_valid(i) => {
                // JSON has no NaN or infinity: those travel as strings.
                let v = a.value(i);
                if v.is_finite() {
                    s.serialize_f64(v)
                } else {
                    s.serialize_str(&v.to_string())
                }
            }
            Cells::Utf8(a) if a.is_valid(i) => s.serialize_str(a.value(i)),
            Cells::LargeUtf8(a) if a.is_valid(i) => s.serialize_str(a.value(i)),
            Cells::Utf8View(a) if a.is_valid(i) => s.serialize_str(a.value(i)),
            Cells::Shown(a, f) if a.is_valid(i) => s.collect_str(&f.value(i)),
            _ => s.serialize_unit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;

    use super::to_json;
    use crate::sql::QueryOutput;

    #[test]
    fn every_column_type_is_written_as_its_json_value() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i8", DataType::Int8, true),
            Field::new("u64", DataType::UInt64, true),
            Field::new("f32", DataType::Float32, true),
            Field::new("f64", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("ls", DataType::LargeUtf8, true),
            Field::new("vs", DataType::Utf8View, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("n", DataType::Null, true),
        ]));
        let batch = |i8s: Vec<Option<i8>>, strs: Vec<Option<&str>>| {
            let n = i8s.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int8Array::from(i8s)),
                    Arc::new(UInt64Array::from(vec![Some(u64::MAX); n])),
                    Arc::new(Float32Array::from(vec![Some(0.5f32); n])),
                    Arc::new(Float64Array::from(
                        [Some(f64::NAN), None, Some(-2.25)][..n].to_vec(),
                    )),
                    Arc::new(BooleanArray::from(
                        [Some(true), Some(false), None][..n].to_vec(),
                    )),
                    Arc::new(StringArray::from(strs.clone())),
                    Arc::new(LargeStringArray::from(strs.clone())),
                    Arc::new(StringViewArray::from(strs)),
                    Arc::new(
                        Decimal128Array::from([Some(12345), None, Some(-5)][..n].to_vec())
                            .with_precision_and_scale(10, 2)
                            .unwrap(),
                    ),
                    Arc::new(Date32Array::from(
                        [Some(0), Some(19000), None][..n].to_vec(),
                    )),
                    Arc::new(NullArray::new(n)),
                ],
            )
            .unwrap()
        };
        let out = QueryOutput {
            schema: schema.clone(),
            batches: vec![
                batch(
                    vec![Some(-1), None],
                    vec![
                        Some("say \"hi\"\n"),
                        Some("größe, a longer text than twelve"),
                    ],
                ),
                batch(vec![], vec![]),
                batch(
                    vec![Some(7), Some(8), Some(9)],
                    vec![None, Some(""), Some("\u{1}")],
                ),
            ],
        };
        let got: serde_json::Value = serde_json::from_slice(&to_json(&out).unwrap()).unwrap();
        assert_eq!(got["columns"][0], json!({"name": "i8", "type": "TINYINT"}));
        assert_eq!(got["columns"].as_array().unwrap().len(), 11);
        let big = u64::MAX;
        let texts = |s: serde_json::Value| [s.clone(), s.clone(), s];
        let row = |i: serde_json::Value,
                   f: serde_json::Value,
                   b: serde_json::Value,
                   s: serde_json::Value,
                   d: serde_json::Value,
                   day: serde_json::Value| {
            let [s1, s2, s3] = texts(s);
            json!([i, big, 0.5, f, b, s1, s2, s3, d, day, null])
        };
        assert_eq!(
            got["rows"],
            json!([
                row(
                    json!(-1),
                    json!("NaN"),
                    json!(true),
                    json!("say \"hi\"\n"),
                    json!("123.45"),
                    json!("1970-01-01")
                ),
                row(
                    json!(null),
                    json!(null),
                    json!(false),
                    json!("größe, a longer text than twelve"),
                    json!(null),
                    json!("2022-01-08")
                ),
                row(
                    json!(7),
                    json!("NaN"),
                    json!(true),
                    json!(null),
                    json!("123.45"),
                    json!("1970-01-01")
                ),
                row(
                    json!(8),
                    json!(null),
                    json!(false),
                    json!(""),
                    json!(null),
                    json!("2022-01-08")
                ),
                row(
                    json!(9),
                    json!(-2.25),
                    json!(null),
                    json!("\u{1}"),
                    json!("-0.05"),
                    json!(null)
                ),
            ])
        );
    }
}
