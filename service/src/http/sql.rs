//! `POST /v1/sql`: one statement in (plain text, or JSON `{"sql": "..."}`), its answer out as JSON
//! (default), CSV, NDJSON or an Arrow IPC stream, by `Accept`.
//!
//! The answer is encoded as the session produces it, batch by batch, so a large result starts
//! arriving before the query ends and is never held whole. The first batch is awaited before the
//! status goes out, so an error met by then answers with its own status; an error after it ends
//! a JSON answer with an `"error"` member after the rows, and cuts the other formats short (the
//! body ends without its end marker: the Arrow stream without its end-of-stream, the chunked
//! transfer without its last chunk).

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, LargeStringArray,
    StringArray, StringViewArray, UInt64Array,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tarn_catalog::types::field_sql_name;
use tarn_engine::QueryStream;

use super::sql_accept::{ARROW, CSV, JSON, NDJSON};
use super::{ApiError, HttpState};
use crate::access::Caller;
use crate::error::ServiceError;
use crate::session::Lifetime;

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
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sql = statement(&headers, &body)?;
    let mut session = state.sessions.open(caller, Lifetime::Statement);
    let answer = session.execute(&sql).await?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    respond(answer, Format::from_accept(accept)).await
}

/// The encodings `POST /v1/sql` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Ndjson,
    Arrow,
}

impl Format {
    fn from_accept(accept: &str) -> Self {
        if accept.contains(ARROW) {
            Self::Arrow
        } else if accept.contains(CSV) {
            Self::Csv
        } else if accept.contains(NDJSON) {
            Self::Ndjson
        } else {
            Self::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::Csv => CSV,
            Self::Ndjson => NDJSON,
            Self::Arrow => ARROW,
        }
    }
}

/// Streams `answer` as `format` (see the module for how errors end it).
async fn respond(mut answer: QueryStream, format: Format) -> Result<Response, ApiError> {
    let first = match answer.stream.next().await {
        Some(Err(e)) => return Err(ServiceError::from(e).into()),
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let mut encoder = Encoder::new(format, answer.schema.clone())?;
    let mut head = encoder.head();
    if let Some(b) = &first {
        head.extend(encoder.batch(b)?);
    }
    // The batches after the first, if there was one; then the end.
    let rest = first.map(|_| answer.stream);
    let tail = futures::stream::unfold(Some((encoder, rest)), |state| async move {
        let (mut encoder, rest) = state?;
        let Some(mut rest) = rest else {
            return Some((Ok(Bytes::from(encoder.finish())), None));
        };
        match rest.next().await {
            Some(Ok(b)) => match encoder.batch(&b) {
                Ok(chunk) => Some((Ok(Bytes::from(chunk)), Some((encoder, Some(rest))))),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            },
            None => Some((Ok(Bytes::from(encoder.finish())), None)),
            Some(Err(e)) => {
                let e = ServiceError::from(e);
                tracing::warn!(error = %e, code = %e.code(), "query failed while its answer was sent");
                match encoder.fail(&e) {
                    Some(trailer) => Some((Ok(Bytes::from(trailer)), None)),
                    None => Some((Err(std::io::Error::other(e.to_string())), None)),
                }
            }
        }
    });
    let head = futures::stream::once(futures::future::ready(Ok::<_, std::io::Error>(
        Bytes::from(head),
    )));
    let mut resp = Body::from_stream(head.chain(tail)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// Turns batches into the bytes of one format, a piece at a time.
enum Encoder {
    Json { schema: SchemaRef, first_row: bool },
    Csv { schema: SchemaRef, header: bool },
    Ndjson,
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
}

fn encoding(e: arrow::error::ArrowError) -> ServiceError {
    ServiceError::Internal(format!("encoding the result: {e}"))
}

impl Encoder {
    fn new(format: Format, schema: SchemaRef) -> Result<Self, ServiceError> {
        Ok(match format {
            Format::Json => Self::Json {
                schema,
                first_row: true,
            },
            Format::Csv => Self::Csv {
                schema,
                header: true,
            },
            Format::Ndjson => Self::Ndjson,
            Format::Arrow => Self::Arrow(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(encoding)?,
            )),
        })
    }

    /// What comes before the first batch.
    fn head(&mut self) -> Vec<u8> {
        match self {
            Self::Json { schema, .. } => json_head(schema),
            Self::Csv { .. } | Self::Ndjson => Vec::new(),
            Self::Arrow(w) => std::mem::take(w.get_mut()),
        }
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ServiceError> {
        match self {
            Self::Json { first_row, .. } => json_rows(batch, first_row),
            Self::Csv { header, .. } => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(std::mem::take(header))
                    .build(Vec::new());
                w.write(batch).map_err(encoding)?;
                Ok(w.into_inner())
            }
            Self::Ndjson => {
                let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
                w.write(batch).map_err(encoding)?;
                w.finish().map_err(encoding)?;
                Ok(w.into_inner())
            }
            Self::Arrow(w) => {
                w.write(batch).map_err(encoding)?;
                Ok(std::mem::take(w.get_mut()))
            }
        }
    }

    /// What comes after the last batch.
    fn finish(&mut self) -> Vec<u8> {
        match self {
            Self::Json { .. } => b"]}".to_vec(),
            // arrow's writer writes the header only with a first batch.
            Self::Csv {
                schema,
                header: true,
            } => {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!("{}\n", names.join(",")).into_bytes()
            }
            Self::Csv { .. } | Self::Ndjson => Vec::new(),
            Self::Arrow(w) => match w.finish() {
                Ok(()) => std::mem::take(w.get_mut()),
                Err(_) => Vec::new(),
            },
        }
    }

    /// What ends the answer when the query fails after its first batch went out: JSON says so
    /// after the rows; the other formats have no place for it (`None`: the body is cut short).
    fn fail(&mut self, e: &ServiceError) -> Option<Vec<u8>> {
        match self {
            Self::Json { .. } => {
                let error = json!({"code": e.code().as_str(), "message": e.to_string()});
                Some(format!("],\"error\":{error}}}").into_bytes())
            }
            _ => None,
        }
    }
}

/// The start of a JSON answer: `{"columns": [{"name", "type"}], "rows": [`.
fn json_head(schema: &SchemaRef) -> Vec<u8> {
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": field_sql_name(f)}))
        .collect();
    let mut out = br#"{"columns":"#.to_vec();
    out.extend(serde_json::to_vec(&columns).unwrap_or_default());
    out.extend(br#","rows":["#);
    out
}

/// A batch's rows as JSON arrays, comma-separated (and after a comma unless they are the first):
/// numbers and booleans as JSON values, decimals, dates and times as strings (exact, as MySQL
/// clients show them). Written straight from the Arrow columns, without a JSON value per cell.
fn json_rows(batch: &RecordBatch, first_row: &mut bool) -> Result<Vec<u8>, ServiceError> {
    let cells = batch
        .columns()
        .iter()
        .map(Cells::of)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(batch.num_rows() * 16 * cells.len().max(1));
    for row in 0..batch.num_rows() {
        if !std::mem::take(first_row) {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &Row(&cells, row))
            .map_err(|e| ServiceError::Internal(format!("encoding the result: {e}")))?;
    }
    Ok(out)
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

    use super::{Format, respond};
    use datafusion::error::DataFusionError;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use tarn_engine::QueryStream;

    /// The whole body `respond` streams for `batches` (then `error`, if any).
    async fn body(
        format: Format,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
        error: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let mut items: Vec<datafusion::error::Result<RecordBatch>> =
            batches.into_iter().map(Ok).collect();
        if let Some(e) = error {
            items.push(Err(DataFusionError::Execution(e.to_string())));
        }
        let stream = RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(items));
        let answer = QueryStream {
            schema,
            stream: Box::pin(stream),
            ordered: false,
        };
        let resp = respond(answer, format).await.map_err(|e| e.0.to_string())?;
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn every_column_type_is_written_as_its_json_value() {
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
        let batches = vec![
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
        ];
        let bytes = body(Format::Json, schema.clone(), batches, None)
            .await
            .unwrap();
        let got: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
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

    #[tokio::test]
    async fn every_format_streams_its_batches_and_an_error_after_the_first_ends_the_answer() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |lo: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(lo..lo + 3))],
            )
            .unwrap()
        };
        let batches = vec![batch(0), batch(3)];

        let csv = body(Format::Csv, schema.clone(), batches.clone(), None)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "n\n0\n1\n2\n3\n4\n5\n");
        let empty = body(Format::Csv, schema.clone(), vec![], None)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), "n\n");
        let nd = body(Format::Ndjson, schema.clone(), vec![batch(0)], None)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(nd).unwrap(),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        let ipc = body(Format::Arrow, schema.clone(), batches.clone(), None)
            .await
            .unwrap();
        let read: Vec<RecordBatch> =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(read, batches);
        let none = body(Format::Json, schema.clone(), vec![], None)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&none).unwrap(),
            json!({"columns": [{"name": "n", "type": "BIGINT"}], "rows": []})
        );

        // Failing before the first batch: an error answer, not a body.
        let e = body(Format::Json, schema.clone(), vec![], Some("boom"))
            .await
            .unwrap_err();
        assert!(e.contains("boom"), "{e}");
        // Failing after it: JSON says so after the rows it sent ...
        let json_body = body(
            Format::Json,
            schema.clone(),
            batches.clone(),
            Some("late boom"),
        )
        .await
        .unwrap();
        let got: serde_json::Value = serde_json::from_slice(&json_body).unwrap();
        assert_eq!(got["rows"], json!([[0], [1], [2], [3], [4], [5]]));
        assert_eq!(got["error"]["code"], json!("query_failed"));
        assert!(
            got["error"]["message"]
                .as_str()
                .unwrap()
                .contains("late boom")
        );
        // ... and the other formats end without their end marker.
        for format in [Format::Arrow, Format::Csv, Format::Ndjson] {
            let e = body(format, schema.clone(), batches.clone(), Some("late boom"))
                .await
                .unwrap_err();
            assert!(e.contains("late boom"), "{format:?}: {e}");
        }
    }

    mod properties {
        use axum::http::{HeaderMap, HeaderValue, header};
        use proptest::prelude::*;

        use super::super::statement;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
            ))]

            /// Any body, as text or as JSON, gives a statement or a 400 naming what is wrong.
            #[test]
            fn any_request_body_is_a_statement_or_a_bad_request(
                body in prop::collection::vec(any::<u8>(), 0..300),
                json in any::<bool>(),
            ) {
                let mut headers = HeaderMap::new();
                if json {
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                match statement(&headers, &body) {
                    Ok(sql) => prop_assert!(!sql.trim().is_empty()),
                    Err(e) => prop_assert_eq!(e.code().as_str(), "bad_request"),
                }
            }

            #[test]
            fn any_json_shape_is_a_statement_or_a_bad_request(
                sql in proptest::option::of(".{0,50}"),
                extra in "[a-z]{0,5}",
            ) {
                let extra = format!("x{extra}");
                let body = match &sql {
                    Some(s) => serde_json::json!({"sql": s, extra: 1}).to_string(),
                    None => serde_json::json!({extra: "x"}).to_string(),
                };
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let got = statement(&headers, body.as_bytes());
                match sql {
                    Some(s) if !s.trim().is_empty() => prop_assert_eq!(got.unwrap(), s),
                    _ => prop_assert!(got.is_err()),
                }
            }
        }
    }
}
