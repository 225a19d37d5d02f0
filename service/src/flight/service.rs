//! The Flight SQL calls: statements, prepared statements, and the catalog's metadata.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    Ticket,
};
use datafusion::common::ScalarValue;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tarn_engine::QueryStream;
use tonic::{Request, Response, Status, Streaming};

use super::doget::Wire;
use super::{authenticate, status};
use crate::access::Caller;
use crate::access::tokens::Tokens;
use crate::session::text::{bind, literal};
use crate::session::{Lifetime, Sessions, TABLE_KINDS};

/// How long a statement's answer waits for its ticket to be redeemed before it is dropped (and
/// the query with it).
const PARKED_FOR: Duration = Duration::from_secs(60);

/// Answers one token may have waiting for their tickets: each holds a query's concurrency slot,
/// so a client that asks and never fetches cannot take them all. Past it, its oldest is dropped.
const PARKED_PER_TOKEN: usize = 8;

/// Prepared statements one door keeps at most (clients close theirs; this bounds those that
/// do not).
const MAX_PREPARED: usize = 10_000;

pub(super) type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The service behind the door (see the module).
#[derive(Clone)]
pub struct FlightSql(Arc<Shared>);

struct Shared {
    sessions: Arc<Sessions>,
    tokens: Arc<Tokens>,
    /// Answers of statements that ran, waiting for their tickets.
    parked: Mutex<Parking>,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    info: SqlInfoData,
    /// Endpoints an unordered answer is handed out in (one a core).
    endpoints: usize,
}

/// An answer waiting for its tickets: its parts, each taken once.
struct Parked {
    owner: String,
    parts: Vec<Option<QueryStream>>,
    since: Instant,
}

/// The answers waiting for their tickets, by handle.
#[derive(Default)]
struct Parking(HashMap<Vec<u8>, Parked>);

impl Parking {
    /// Parks `parts` of an answer for `owner` under `handle`; the owner's oldest goes when it has
    /// too many.
    fn park(&mut self, handle: Vec<u8>, owner: String, parts: Vec<QueryStream>) {
        let mine: Vec<(Vec<u8>, Instant)> = self
            .0
            .iter()
            .filter(|(_, p)| p.owner == owner)
            .map(|(h, p)| (h.clone(), p.since))
            .collect();
        if mine.len() >= PARKED_PER_TOKEN
            && let Some((oldest, _)) = mine.into_iter().min_by_key(|(_, since)| *since)
        {
            self.0.remove(&oldest);
        }
        self.0.insert(
            handle,
            Parked {
                owner,
                parts: parts.into_iter().map(Some).collect(),
                since: Instant::now(),
            },
        );
    }

    /// Part `part` of the answer parked under `handle`, if `owner` parked it (taken: a ticket is
    /// redeemed once; the answer goes when its last part is taken).
    fn take(&mut self, handle: &[u8], part: usize, owner: &str) -> Option<QueryStream> {
        let parked = self.0.get_mut(handle).filter(|p| p.owner == owner)?;
        let taken = parked.parts.get_mut(part)?.take();
        if parked.parts.iter().all(Option::is_none) {
            self.0.remove(handle);
        }
        taken
    }

    /// Drops what waited longer than `limit`.
    fn sweep(&mut self, limit: Duration) {
        self.0.retain(|_, p| p.since.elapsed() < limit);
    }
}

/// A prepared statement: its text, how many `?` it takes, and the values bound last.
#[derive(Clone)]
struct Prepared {
    owner: String,
    sql: String,
    params: usize,
    values: Vec<Vec<String>>,
    since: Instant,
}

impl FlightSql {
    pub fn new(sessions: Arc<Sessions>, tokens: Arc<Tokens>) -> Self {
        Self(Arc::new(Shared {
            sessions,
            tokens,
            parked: Mutex::new(Parking::default()),
            prepared: Mutex::new(HashMap::new()),
            info: sql_info(),
            endpoints: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8),
        }))
    }

    /// Drops the answers whose tickets were not redeemed in time (and their queries, which frees
    /// the concurrency slots they hold).
    pub fn sweep(&self) {
        self.0
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sweep(PARKED_FOR);
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        authenticate(&self.0.tokens, request.metadata())
            .map(|(c, _)| c)
            .map_err(status)
    }

    /// Runs `sql` for `caller` in a session of its own and parks its answer: the `FlightInfo`
    /// carries the answer's schema and the ticket that streams it.
    async fn run(
        &self,
        caller: Caller,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let owner = caller.name.clone();
        let mut session = self.0.sessions.open(caller, Lifetime::Statement);
        let answer = session.execute(sql).await.map_err(status)?;
        let schema = answer.schema.clone();
        let ordered = answer.ordered;
        let parts = split(answer, self.0.endpoints);
        let handle = handle();
        let tickets: Vec<Ticket> = (0..parts.len())
            .map(|part| {
                let mut h = handle.clone();
                h.push(part as u8);
                let ticket = TicketStatementQuery {
                    statement_handle: h.into(),
                };
                Ticket::new(ticket.as_any().encode_to_vec())
            })
            .collect();
        self.0
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .park(handle, owner, parts);
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("the answer's schema: {e}")))
            .map(|mut i| {
                for t in tickets {
                    i = i.with_endpoint(FlightEndpoint::new().with_ticket(t));
                }
                i.with_descriptor(descriptor)
                    .with_ordered(ordered)
                    .with_total_records(-1)
                    .with_total_bytes(-1)
            })
    }

    /// The parked answer (or part of one) a statement's ticket names, taken by its owner.
    pub(super) fn redeem<T>(
        &self,
        ticket: TicketStatementQuery,
        request: &Request<T>,
    ) -> Result<QueryStream, Status> {
        let caller = self.caller(request)?;
        let (handle, part) = match ticket.statement_handle.split_last() {
            Some((part, handle)) => (handle, *part as usize),
            None => (&[][..], 0),
        };
        let parked = self
            .0
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(handle, part, &caller.name);
        parked.ok_or_else(|| {
            Status::not_found(
                "no such answer: a ticket is redeemed once, by the token that ran its statement, within a minute",
            )
        })
    }

    /// A statement that answers no rows (DDL, a load): run to its end; answers the rows it
    /// reports affected, or 0.
    async fn run_update(&self, caller: Caller, sql: &str) -> Result<i64, Status> {
        let mut session = self.0.sessions.open(caller, Lifetime::Statement);
        let answer = session.execute(sql).await.map_err(status)?;
        answer.collect().await.map_err(|e| status(e.into()))?;
        Ok(0)
    }

    /// The prepared statement `handle`, if it is the caller's.
    fn prepared(&self, caller: &Caller, handle: &[u8]) -> Result<Prepared, Status> {
        let prepared = self.0.prepared.lock().unwrap_or_else(|e| e.into_inner());
        match prepared.get(handle) {
            Some(p) if p.owner == caller.name => Ok(p.clone()),
            _ => Err(Status::not_found(
                "no such prepared statement (closed, or never made by this token)",
            )),
        }
    }

    /// The metadata answer of `command`: the `FlightInfo` whose ticket is the command itself.
    fn metadata_info(
        &self,
        command: impl ProstMessageExt,
        schema: &arrow::datatypes::Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(command.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }
}

/// `answer` as `parts` streams that share its batches, each taking the next one when it is
/// ready for it: a client that reads the endpoints of an answer at once decodes it in parallel
/// (and the door encodes it in parallel); one that reads them one after another reads it all
/// from the first, and the others end empty. An answer in an order the statement asked for stays
/// whole.
fn split(answer: QueryStream, parts: usize) -> Vec<QueryStream> {
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt;
    if parts <= 1 || answer.ordered {
        return vec![answer];
    }
    let schema = answer.schema.clone();
    let shared = Arc::new(tokio::sync::Mutex::new(answer.stream));
    (0..parts)
        .map(|_| {
            let batches = futures::stream::unfold(shared.clone(), |shared| async move {
                let next = shared.lock().await.next().await;
                next.map(|b| (b, shared))
            });
            QueryStream {
                stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), batches)),
                schema: schema.clone(),
                ordered: false,
            }
        })
        .collect()
}

/// A fresh handle for a parked answer or a prepared statement: 16 random bytes.
fn handle() -> Vec<u8> {
    let mut bytes = vec![0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness, a clock-derived handle; the owner check still applies.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = now.to_le_bytes().to_vec();
    }
    bytes
}

/// One batch as a stream of Flight data.
fn one_batch(
    batch: Result<RecordBatch, impl std::fmt::Display>,
) -> Result<Response<Stream_<arrow_flight::FlightData>>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("metadata: {e}")))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

/// What GetSqlInfo answers.
fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Tarn");
    b.append(
        SqlInfo::FlightSqlServerVersion,
        tarn_engine::query::server_version().as_str(),
    );
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    // 0: no transactions.
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "`");
    b.build()
        .expect("the SqlInfo values have their declared types")
}

/// The rows of bound parameters as SQL literals, one list per row.
fn parameter_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Status> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|c: &ArrayRef| ScalarValue::try_from_array(c, row).map(|v| literal(&v)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::invalid_argument(format!("a bound parameter: {e}")))?;
            rows.push(values);
        }
    }
    Ok(rows)
}

/// The parameter rows a DoPut sends, as SQL literals.
async fn bound_rows(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<Vec<String>>, Status> {
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
        request.into_inner().map_err(FlightError::from),
    )
    .try_collect()
    .await
    .map_err(Status::from)?;
    parameter_rows(&batches)
}

/// The statement with one row of parameters filled in, after checking their number.
fn bound(p: &Prepared, values: &[String]) -> Result<String, Status> {
    if values.len() != p.params {
        return Err(Status::invalid_argument(format!(
            "the statement takes {} parameters, {} bound",
            p.params,
            values.len()
        )));
    }
    Ok(bind(&p.sql, values).0)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Checks the call's credentials (Bearer or basic) and answers the Bearer header to send
    /// from now on.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Stream_<HandshakeResponse>>, Status> {
        let (caller, token) = authenticate(&self.0.tokens, request.metadata()).map_err(status)?;
        tracing::debug!(user = %caller.name, "Flight SQL handshake");
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<Stream_<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::once(async { Ok(answer) })));
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the token is not a header value"))?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        self.run(caller, &query.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        let p = self.prepared(&caller, &query.prepared_statement_handle)?;
        let values = match p.values.as_slice() {
            [] => Vec::new(),
            [one] => one.clone(),
            more => {
                return Err(Status::invalid_argument(format!(
                    "a query runs with one row of parameters; {} are bound",
                    more.len()
                )));
            }
        };
        let sql = bound(&p, &values)?;
        self.run(caller, &sql, request.into_inner())
            .await
            .map(Response::new)
    }

    /// Served by [`super::doget`], which writes the batches' buffers into the messages itself;
    /// this answers the same messages, should anything call the service directly.
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let answer = self.redeem(ticket, &request)?;
        let stream = super::doget::answer_messages(answer).map_ok(Wire::into_flight_data);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request)?;
        self.run_update(caller, &command.query).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        let (_, params) = bind(&query.query, &[]);
        let id = handle();
        {
            let mut prepared = self.0.prepared.lock().unwrap_or_else(|e| e.into_inner());
            if prepared.len() >= MAX_PREPARED {
                // The oldest goes: a client that never closes its statements cannot fill memory.
                if let Some(oldest) = prepared
                    .iter()
                    .min_by_key(|(_, p)| p.since)
                    .map(|(k, _)| k.clone())
                {
                    prepared.remove(&oldest);
                }
            }
            prepared.insert(
                id.clone(),
                Prepared {
                    owner: caller.name.clone(),
                    sql: query.query,
                    params,
                    values: Vec::new(),
                    since: Instant::now(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: id.into(),
            // Known when it runs: the answer's FlightInfo carries its schema.
            dataset_schema: Default::default(),
            parameter_schema: Default::default(),
        })
    }

    /// Binds parameters: the rows sent are kept with the statement for its next execution.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        self.prepared(&caller, &query.prepared_statement_handle)?;
        let rows = bound_rows(request).await?;
        let mut prepared = self.0.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = prepared.get_mut(query.prepared_statement_handle.as_ref()) {
            p.values = rows;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    /// Runs a prepared statement that answers no rows, once per row of parameters sent.
    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request)?;
        let p = self.prepared(&caller, &query.prepared_statement_handle)?;
        let mut rows = bound_rows(request).await?;
        if rows.is_empty() {
            rows.push(Vec::new());
        }
        let mut affected = 0;
        for values in rows {
            affected += self
                .run_update(caller.clone(), &bound(&p, &values)?)
                .await?;
        }
        Ok(affected)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request)?;
        self.prepared(&caller, &query.prepared_statement_handle)?;
        self.0
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        caller
            .require(crate::access::Role::Reader, "listing catalogs")
            .map_err(status)?;
        let mut builder = query.into_builder();
        builder.append(tarn_engine::query::CATALOG);
        one_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let session = self.0.sessions.open(caller, Lifetime::Statement);
        let mut builder = query.into_builder();
        for db in session.databases().map_err(status)? {
            builder.append(tarn_engine::query::CATALOG, db);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let session = self.0.sessions.open(caller, Lifetime::Statement);
        let mut builder = query.into_builder();
        for t in session.tables().await.map_err(status)? {
            builder
                .append(
                    tarn_engine::query::CATALOG,
                    &t.database,
                    &t.name,
                    t.kind,
                    &t.schema,
                )
                .map_err(|e| Status::internal(format!("table {}.{}: {e}", t.database, t.name)))?;
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        caller
            .require(crate::access::Role::Reader, "listing table types")
            .map_err(status)?;
        let mut builder = query.into_builder();
        for kind in TABLE_KINDS {
            builder.append(kind);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder(&self.0.info).schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        one_batch(query.into_builder(&self.0.info).build())
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        Err(Status::unimplemented(format!(
            "Tarn's Flight SQL door does not answer {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_token_keeps_a_bounded_number_of_answers_and_only_its_own() {
        let answer = || vec![QueryStream::from_batches(Arc::new(Schema::empty()), vec![])];
        let mut parking = Parking::default();
        for i in 0..PARKED_PER_TOKEN + 2 {
            parking.park(vec![i as u8], "a".into(), answer());
            std::thread::sleep(Duration::from_millis(1));
        }
        parking.park(vec![100], "b".into(), answer());
        // The two oldest of a's went; b's is untouched.
        assert!(parking.take(&[0], 0, "a").is_none());
        assert!(parking.take(&[1], 0, "a").is_none());
        assert!(parking.take(&[2], 0, "a").is_some());
        assert!(
            parking.take(&[2], 0, "a").is_none(),
            "a ticket is redeemed once"
        );
        assert!(parking.take(&[100], 0, "a").is_none(), "not a's to take");
        assert!(parking.take(&[100], 1, "b").is_none(), "no such part");
        assert!(parking.take(&[100], 0, "b").is_some());
        parking.sweep(Duration::ZERO);
        assert!(parking.take(&[3], 0, "a").is_none(), "swept");
    }

    #[tokio::test]
    async fn an_unordered_answer_in_parts_hands_each_batch_to_one_part_and_an_ordered_one_stays_whole()
     {
        use futures::StreamExt;
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batches: Vec<RecordBatch> = (0..10)
            .map(|i| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(vec![i, i + 100]))],
                )
                .unwrap()
            })
            .collect();
        let parts = split(
            QueryStream::from_batches(schema.clone(), batches.clone()),
            3,
        );
        assert_eq!(parts.len(), 3);
        // Read at once: every batch arrives exactly once, in one part or another.
        let read = futures::future::join_all(parts.into_iter().map(|p| async move {
            p.stream
                .map(|b| {
                    b.unwrap()
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .value(0)
                })
                .collect::<Vec<i64>>()
                .await
        }))
        .await;
        let mut all: Vec<i64> = read.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<i64>>());
        // Read one after another: the first part has it all.
        let mut parts = split(
            QueryStream::from_batches(schema.clone(), batches.clone()),
            2,
        );
        let second = parts.pop().unwrap();
        let first: Vec<_> = parts.pop().unwrap().stream.collect().await;
        assert_eq!(first.len(), 10);
        assert_eq!(second.stream.collect::<Vec<_>>().await.len(), 0);
        let mut ordered = QueryStream::from_batches(schema, batches);
        ordered.ordered = true;
        assert_eq!(split(ordered, 4).len(), 1);
    }

    #[test]
    fn bound_parameters_become_literals_row_by_row_and_their_number_is_checked() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("o'k"), Some("x")])),
            ],
        )
        .unwrap();
        let rows = parameter_rows(&[batch]).unwrap();
        assert_eq!(rows, vec![vec!["1", "'o''k'"], vec!["NULL", "'x'"]]);
        let p = Prepared {
            owner: "r".into(),
            sql: "SELECT * FROM t WHERE a = ? AND b = ?".into(),
            params: 2,
            values: Vec::new(),
            since: Instant::now(),
        };
        assert_eq!(
            bound(&p, &rows[0]).unwrap(),
            "SELECT * FROM t WHERE a = 1 AND b = 'o''k'"
        );
        let e = bound(&p, &rows[0][..1]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("takes 2 parameters, 1 bound"), "{e}");
    }
}
