//! DoGet with an answer's Arrow buffers written straight into its gRPC messages.
//!
//! arrow-flight encodes a batch by copying every buffer into one growing vector
//! (`FlightData::data_body`), and tonic's protobuf codec then copies that vector again into the
//! outgoing message: two copies of the whole answer and the vector's regrowth. Here a statement's
//! answer is encoded by arrow-ipc's [`StreamEncoder`], which hands back the batch's own buffers,
//! and [`WireCodec`] writes each message's protobuf framing around them as it puts them into the
//! outgoing message: one copy. The messages are the ones arrow-flight sends (the schema first,
//! then a message per batch of at most [`MAX_MESSAGE`] bytes, dictionaries sent as their values),
//! so clients see no difference. Every other ticket (metadata, prepared statements) goes to the
//! Flight SQL service as before.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamEncoder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::{Any, TicketStatementQuery};
use arrow_flight::{FlightData, Ticket};
use bytes::{Buf, BufMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tarn_engine::QueryStream;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::{Request, Response, Status};

use super::MAX_REQUEST;
use super::service::{FlightSql, Stream_};

/// A batch is sent in messages of about this many bytes at most, as arrow-flight sends them
/// (gRPC clients refuse messages above 4 MiB unless told otherwise).
pub const MAX_MESSAGE: usize = 2 << 20;

const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

/// `FlightData`'s protobuf field numbers.
const DATA_HEADER: u32 = 2;
const DATA_BODY: u32 = 1000;

/// The Flight service with its DoGet answered here (see the module).
#[derive(Clone)]
pub struct WithDirectDoGet {
    flight: FlightSql,
    inner: FlightServiceServer<FlightSql>,
}

impl WithDirectDoGet {
    pub fn new(flight: FlightSql) -> Self {
        let inner = FlightServiceServer::new(flight.clone())
            .max_decoding_message_size(MAX_REQUEST)
            .max_encoding_message_size(usize::MAX);
        Self { flight, inner }
    }
}

impl NamedService for WithDirectDoGet {
    const NAME: &'static str = <FlightServiceServer<FlightSql> as NamedService>::NAME;
}

impl tonic::codegen::Service<http::Request<Body>> for WithDirectDoGet {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != DO_GET {
            return self.inner.call(request);
        }
        let method = DoGet(self.flight.clone());
        Box::pin(async move {
            let mut grpc =
                Grpc::new(WireCodec).apply_max_message_size_config(Some(MAX_REQUEST), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

/// One message of a DoGet answer.
pub enum Wire {
    /// A message as arrow-flight builds it (metadata answers).
    Message(FlightData),
    /// An Arrow IPC message: its flatbuffer header and the buffers of its body, in order.
    Ipc { header: Buffer, body: Vec<Buffer> },
}

impl Wire {
    /// The same message as arrow-flight's type (its body gathered into one buffer).
    pub fn into_flight_data(self) -> FlightData {
        match self {
            Wire::Message(m) => m,
            Wire::Ipc { header, body } => FlightData {
                data_header: header.to_vec().into(),
                data_body: concat(&body).into(),
                ..Default::default()
            },
        }
    }
}

struct DoGet(FlightSql);

impl ServerStreamingService<Ticket> for DoGet {
    type Response = Wire;
    type ResponseStream = Stream_<Wire>;
    type Future = BoxFuture<'static, Result<Response<Stream_<Wire>>, Status>>;

    fn call(&mut self, request: Request<Ticket>) -> Self::Future {
        let flight = self.0.clone();
        Box::pin(async move {
            let any = Any::decode(&*request.get_ref().ticket)
                .map_err(|e| Status::invalid_argument(format!("ticket: {e}")))?;
            if let Some(ticket) = any
                .unpack::<TicketStatementQuery>()
                .map_err(|e| Status::invalid_argument(format!("ticket: {e}")))?
            {
                let answer = flight.redeem(ticket, &request)?;
                return Ok(Response::new(answer_messages(answer)));
            }
            let answer = FlightService::do_get(&flight, request).await?;
            Ok(answer.map(|s| Box::pin(s.map(|m| m.map(Wire::Message))) as Stream_<Wire>))
        })
    }
}

/// An answer as the messages of a DoGet: the schema, then each batch's.
pub fn answer_messages(answer: QueryStream) -> Stream_<Wire> {
    struct State {
        batches: datafusion::physical_plan::SendableRecordBatchStream,
        encoder: Option<StreamEncoder>,
        schema: SchemaRef,
        ready: VecDeque<Wire>,
    }
    let schema = flat_schema(&answer.schema);
    let encoder = match StreamEncoder::try_new(&schema) {
        Ok(e) => e,
        Err(e) => {
            let e = Status::internal(format!("the answer cannot be sent as Arrow: {e}"));
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
    };
    let state = State {
        encoder: Some(encoder),
        batches: answer.stream,
        schema,
        ready: VecDeque::new(),
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(m) = s.ready.pop_front() {
                return Some((Ok(m), s));
            }
            let encoder = s.encoder.as_mut()?;
            let buffers = match s.batches.next().await {
                Some(Ok(batch)) => flat_batch(batch, &s.schema).and_then(|batch| {
                    let mut buffers = Vec::new();
                    for part in split(&batch) {
                        buffers.extend(encoder.encode(&part)?);
                    }
                    Ok(buffers)
                }),
                Some(Err(e)) => {
                    s.encoder = None;
                    return Some((Err(super::status(e.into())), s));
                }
                // The end: the schema if no batch came, and the end-of-stream marker (no message).
                None => s.encoder.take().map_or(Ok(Vec::new()), |e| e.finish()),
            };
            match buffers.and_then(messages) {
                Ok(m) => s.ready.extend(m),
                Err(e) => {
                    s.encoder = None;
                    return Some((
                        Err(Status::internal(format!("encoding the answer: {e}"))),
                        s,
                    ));
                }
            }
        }
    }))
}

/// The schema as sent: dictionary columns as their values (as arrow-flight sends them).
fn flat_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, values) => {
                f.as_ref().clone().with_data_type((**values).clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn flat_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if !batch
        .columns()
        .iter()
        .any(|c| matches!(c.data_type(), DataType::Dictionary(..)))
    {
        return batch.with_schema(schema.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// `batch` in row ranges of about [`MAX_MESSAGE`] bytes each.
fn split(batch: &RecordBatch) -> Vec<RecordBatch> {
    let size: usize = batch
        .columns()
        .iter()
        .map(|c| c.get_buffer_memory_size())
        .sum();
    let parts = size.div_ceil(MAX_MESSAGE).max(1);
    let rows = batch.num_rows();
    let per_part = rows.div_ceil(parts).max(1);
    (0..rows)
        .step_by(per_part)
        .map(|offset| batch.slice(offset, per_part.min(rows - offset)))
        .collect()
}

/// The IPC messages in an encoder's output (each: the continuation marker and the header's
/// length, the header, the body of the length its header gives); the end-of-stream marker ends
/// them.
fn messages(buffers: Vec<Buffer>) -> Result<Vec<Wire>, ArrowError> {
    let mut input = Chunks(buffers.into());
    let mut out = Vec::new();
    while input.remaining() > 0 {
        let prefix = gather(input.take(8)?);
        if prefix[..4] != [0xff; 4] {
            return Err(ArrowError::IpcError("no continuation marker".into()));
        }
        let header_len = i32::from_le_bytes(prefix[4..8].try_into().expect("four bytes")) as usize;
        if header_len == 0 {
            break;
        }
        let header = gather(input.take(header_len)?);
        let message = arrow::ipc::root_as_message(&header)
            .map_err(|e| ArrowError::IpcError(format!("header: {e}")))?;
        let body = input.take(message.bodyLength() as usize)?;
        out.push(Wire::Ipc { header, body });
    }
    Ok(out)
}

/// Buffers read as one run of bytes, taken from the front without copying.
struct Chunks(VecDeque<Buffer>);

impl Chunks {
    fn remaining(&self) -> usize {
        self.0.iter().map(|b| b.len()).sum()
    }

    fn take(&mut self, mut n: usize) -> Result<Vec<Buffer>, ArrowError> {
        let mut out = Vec::new();
        while n > 0 {
            let Some(front) = self.0.pop_front() else {
                return Err(ArrowError::IpcError("message cut short".into()));
            };
            if front.len() > n {
                out.push(front.slice_with_length(0, n));
                self.0.push_front(front.slice(n));
                n = 0;
            } else {
                n -= front.len();
                out.push(front);
            }
        }
        Ok(out)
    }
}

/// One buffer holding `parts` (no copy when there is one).
fn gather(mut parts: Vec<Buffer>) -> Buffer {
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    Buffer::from(concat(&parts))
}

/// `parts`' bytes, one after another, in one vector.
fn concat(parts: &[Buffer]) -> Vec<u8> {
    let mut all = Vec::with_capacity(Wire::body_len(parts));
    for p in parts {
        all.extend_from_slice(p);
    }
    all
}

/// DoGet's codec: tickets in as protobuf, [`Wire`] messages out.
struct WireCodec;

impl Codec for WireCodec {
    type Encode = Wire;
    type Decode = Ticket;
    type Encoder = WireEncoder;
    type Decoder = TicketDecoder;

    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }

    fn decoder(&mut self) -> TicketDecoder {
        TicketDecoder
    }
}

struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = Wire;
    type Error = Status;

    fn encode(&mut self, item: Wire, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.put(dst);
        Ok(())
    }
}

impl Wire {
    fn body_len(body: &[Buffer]) -> usize {
        body.iter().map(|b| b.len()).sum()
    }

    /// The length of the message as protobuf.
    fn encoded_len(&self) -> usize {
        match self {
            Wire::Message(m) => m.encoded_len(),
            Wire::Ipc { header, body } => {
                let body_len = Self::body_len(body);
                let body_field = if body_len > 0 {
                    key_len(DATA_BODY) + encoded_len_varint(body_len as u64) + body_len
                } else {
                    0
                };
                key_len(DATA_HEADER)
                    + encoded_len_varint(header.len() as u64)
                    + header.len()
                    + body_field
            }
        }
    }

    /// Puts the message as protobuf (a `FlightData`) into `dst`.
    fn put(self, dst: &mut impl BufMut) {
        match self {
            // Room for the message was made first, so protobuf's only error cannot happen.
            Wire::Message(m) => m.encode_raw(dst),
            Wire::Ipc { header, body } => {
                encode_key(DATA_HEADER, WireType::LengthDelimited, dst);
                encode_varint(header.len() as u64, dst);
                dst.put_slice(&header);
                let body_len = Self::body_len(&body);
                if body_len > 0 {
                    encode_key(DATA_BODY, WireType::LengthDelimited, dst);
                    encode_varint(body_len as u64, dst);
                    for b in &body {
                        dst.put_slice(b);
                    }
                }
            }
        }
    }
}

struct TicketDecoder;

impl Decoder for TicketDecoder {
    type Item = Ticket;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Ticket>, Status> {
        let ticket = Ticket::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::invalid_argument(format!("ticket: {e}")))?;
        Ok(Some(ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, ArrayRef, DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::Int32Type;
    use arrow_flight::decode::FlightRecordBatchStream;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::TryStreamExt;

    fn answer(batches: Vec<RecordBatch>, schema: SchemaRef) -> QueryStream {
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        QueryStream {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), stream)),
            schema,
            ordered: false,
        }
    }

    /// What a client reads from the messages, each put on the wire and read back as protobuf.
    async fn read_back(messages: Stream_<Wire>) -> Vec<RecordBatch> {
        let data = messages.map_ok(|m| {
            let mut wire = bytes::BytesMut::new();
            let len = m.encoded_len();
            m.put(&mut wire);
            assert_eq!(wire.len(), len);
            FlightData::decode(wire.freeze()).unwrap()
        });
        FlightRecordBatchStream::new_from_flight_data(data.map_err(|e| e.into()))
            .try_collect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_reads_back_as_its_rows_with_large_batches_split_and_dictionaries_as_values()
    {
        let dict: DictionaryArray<Int32Type> = ["a", "b", "a"].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", dict.data_type().clone(), true),
        ]));
        let small = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
                Arc::new(StringArray::from(vec![Some("x"), Some("yy"), None])),
                Arc::new(dict),
            ],
        )
        .unwrap();
        // 600,000 rows of 8-byte numbers and short strings: more than two messages' worth.
        let rows = 600_000;
        let big = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("row{i}")),
                )),
                Arc::new(
                    (0..rows)
                        .map(|i| if i % 2 == 0 { "even" } else { "odd" })
                        .collect::<DictionaryArray<Int32Type>>(),
                ),
            ],
        )
        .unwrap();
        let messages = answer_messages(answer(vec![small, big.slice(1, rows - 1)], schema));
        let batches = read_back(messages).await;
        assert!(
            batches.len() > 3,
            "the large batch is sent in parts: {}",
            batches.len()
        );
        let got = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(got.num_rows(), 3 + rows - 1);
        assert_eq!(got.schema().field(2).data_type(), &DataType::Utf8);
        let text = |c: usize, r: usize| {
            arrow::util::display::array_value_to_string(got.column(c), r).unwrap()
        };
        assert_eq!(
            (0..3)
                .map(|r| (text(0, r), text(1, r), text(2, r)))
                .collect::<Vec<_>>(),
            [
                ("1".into(), "x".into(), "a".into()),
                ("".into(), "yy".into(), "b".into()),
                ("3".into(), "".into(), "a".into())
            ]
        );
        assert!(got.column(0).is_null(1) && got.column(1).is_null(2));
        assert_eq!(
            (text(0, 3), text(1, 3), text(2, 3)),
            ("1".into(), "row1".into(), "odd".into())
        );
        let last = got.num_rows() - 1;
        assert_eq!(text(0, last), (rows - 1).to_string());
        assert_eq!(text(1, last), format!("row{}", rows - 1));
    }

    #[tokio::test]
    async fn an_empty_answer_still_sends_its_schema_and_an_error_ends_the_messages() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let messages = answer_messages(answer(vec![], schema.clone()));
        let mut data = messages.try_collect::<Vec<_>>().await.unwrap();
        assert_eq!(data.len(), 1, "the schema alone");
        let header = data.pop().unwrap().into_flight_data().data_header;
        let message = arrow::ipc::root_as_message(&header).unwrap();
        assert_eq!(message.header_type(), arrow::ipc::MessageHeader::Schema);

        let failing = futures::stream::iter(vec![Err(
            datafusion::error::DataFusionError::Execution("disk on fire".into()),
        )]);
        let answer = QueryStream {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), failing)),
            schema,
            ordered: false,
        };
        let out: Vec<_> = answer_messages(answer).collect().await;
        assert_eq!(out.len(), 1);
        let Err(status) = &out[0] else {
            panic!("an error")
        };
        assert!(status.message().contains("disk on fire"), "{status:?}");
    }
}
