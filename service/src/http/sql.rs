//! `POST /v1/sql`: one statement in (plain text, or JSON `{"sql": "..."}`), its answer out as JSON
//! (default), CSV, NDJSON or an Arrow IPC stream, by `Accept`.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Number, Value, json};
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
        (
            "application/json",
            serde_json::to_vec(&to_json(&out)?).expect("JSON serializes"),
        )
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

/// `{"columns": [{"name", "type"}], "rows": [[...]]}`: numbers and booleans as JSON values,
/// decimals, dates and times as strings (exact, as MySQL clients show them).
pub fn to_json(out: &QueryOutput) -> Result<Value, ServiceError> {
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": arrow_to_sql_name(f.data_type())}))
        .collect();
    let mut rows = Vec::new();
    for batch in &out.batches {
        let cols: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(column_values)
            .collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            rows.push(Value::Array(cols.iter().map(|c| c[r].clone()).collect()));
        }
    }
    Ok(json!({"columns": columns, "rows": rows}))
}

fn column_values(col: &ArrayRef) -> Result<Vec<Value>, ServiceError> {
    let n = col.len();
    let valid = |i: usize| col.is_valid(i);
    macro_rules! ints {
        ($t:ty) => {{
            let a = col.as_primitive::<$t>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Value::from(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }};
    }
    use arrow::datatypes::*;
    Ok(match col.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let a = col.as_boolean();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Value::Bool(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Float32 => {
            let a = col.as_primitive::<Float32Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        float(f64::from(a.value(i)))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        float(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        _ => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(col.as_ref(), &opts).map_err(|e| {
                ServiceError::Internal(format!("formatting {}: {e}", col.data_type()))
            })?;
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Value::String(f.value(i).to_string())
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
    })
}

/// JSON has no NaN or infinity: those travel as strings.
fn float(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}
