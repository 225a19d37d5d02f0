//! The MySQL protocol door: HeatWave's users connect with the `mysql` client and the MySQL
//! drivers they already have.
//!
//! The wire format is opensrv-mysql's; this module only adapts it to the session API. A login is
//! a token: the user is the token's name (`admin` for the admin token) and the password the token,
//! checked with `mysql_native_password` against what [`Tokens`] keeps. Each connection holds one
//! [`Session`] for its whole life (`USE`, `SET @var`), and every statement goes through it, so the
//! access rules, limits and the closed SQL surface are the same as on HTTP. What drivers send on
//! connect is answered by [`federated`]; results are written as they arrive ([`encode`]).

mod encode;
mod federated;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter,
    OkResponse, ParamParser, QueryResultWriter, StatementMetaWriter,
};
use tarn_engine::QueryStream;
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::access::Caller;
use crate::access::tokens::Tokens;
use crate::error::{ErrorCode, Result, ServiceError};
use crate::session::{Lifetime, Session, Sessions};

/// What every connection of the door shares.
pub struct Door {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    /// TLS, when the service has a certificate: then every connection must use it.
    tls: Option<Arc<rustls022::ServerConfig>>,
    sessions: Arc<Sessions>,
    tokens: Arc<Tokens>,
    variables: Vec<(&'static str, datafusion::common::ScalarValue)>,
    next_id: AtomicU32,
    /// Every open connection, for `KILL QUERY`.
    connections: std::sync::Mutex<HashMap<u32, Running>>,
}

/// An open connection as `KILL QUERY` sees it.
struct Running {
    /// Who logged in (empty until then).
    user: String,
    /// Bumped to stop the statement the connection is running.
    kill: tokio::sync::watch::Sender<u64>,
    /// The statement it runs now (its start of text) and since when, for `SHOW PROCESSLIST`.
    statement: Option<(String, std::time::Instant)>,
    database: Option<String>,
}

impl Door {
    /// Binds `addr` (port 0 for any free port); with `tls`, connections must use it.
    pub async fn bind(
        addr: SocketAddr,
        sessions: Arc<Sessions>,
        tokens: Arc<Tokens>,
        hostname: &str,
        tls: Option<Arc<rustls022::ServerConfig>>,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            ServiceError::Config(format!(
                "cannot listen on {addr} for the MySQL protocol (mysql_listen): {e}"
            ))
        })?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                tls,
                sessions,
                tokens,
                variables: tarn_engine::query::system_variables(hostname),
                next_id: AtomicU32::new(1),
                connections: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves connections until the task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        info!("MySQL protocol listening on {}", self.local_addr());
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match self.listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "MySQL accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                let shim = Connection::new(self.shared.clone(), id);
                tokio::spawn(async move {
                    if let Err(e) = serve(shim, stream).await {
                        debug!(%peer, connection = id, error = %e, "MySQL connection ended");
                    }
                });
            }
        })
    }
}

/// Bytes of answer gathered before they are written to the connection.
const WRITE_BUFFER: usize = 64 << 10;

/// Runs one connection: the handshake, TLS if the client asks for it (and the service has a
/// certificate), then its commands until it closes.
async fn serve(mut shim: Connection, stream: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    let (r, w) = stream.into_split();
    let r = FirstPacket::new(r);
    // Every row is a packet written on its own; buffered, a result goes out in large writes (the
    // protocol library flushes after each command). Unbuffered, each row was a system call.
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, w);
    let tls = shim.shared.tls.clone();
    let (secure, init) = AsyncMysqlIntermediary::<
        Connection,
        FirstPacket<OwnedReadHalf>,
        tokio::io::BufWriter<OwnedWriteHalf>,
    >::init_before_ssl(&mut shim, r, &mut w, &tls)
    .await?;
    shim.secure = secure;
    let options = opensrv_mysql::IntermediaryOptions::default();
    match tls {
        Some(config) if secure => {
            opensrv_mysql::secure_run_with_options(shim, w, options, config, init).await
        }
        _ => opensrv_mysql::plain_run_with_options(shim, w, options, init).await,
    }
}

/// The client's side of a connection, read no further than the end of its first packet until
/// that packet is whole. The protocol library reads packets through a buffer and, when the client
/// switches to TLS, hands what it buffered past the SSL request to the TLS handshake from the wrong
/// offset; a client that sends its TLS hello right behind the request (most do) then fails. Reading
/// the first packet exactly leaves nothing buffered at the switch.
struct FirstPacket<R> {
    inner: R,
    header: [u8; 4],
    /// Header bytes read so far.
    got: usize,
    /// Payload bytes of the first packet still to read, once its header is in.
    left: Option<usize>,
    done: bool,
}

impl<R> FirstPacket<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            header: [0; 4],
            got: 0,
            left: None,
            done: false,
        }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstPacket<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if self.done {
            return std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let want = match self.left {
            None => 4 - self.got,
            Some(n) => n,
        }
        .min(buf.remaining())
        .min(4096);
        let mut tmp = [0u8; 4096];
        let mut part = tokio::io::ReadBuf::new(&mut tmp[..want]);
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut part) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let read = part.filled();
        let n = read.len();
        buf.put_slice(read);
        let this = &mut *self;
        match this.left {
            None => {
                this.header[this.got..this.got + n].copy_from_slice(&tmp[..n]);
                this.got += n;
                if this.got == 4 {
                    let len =
                        u32::from_le_bytes([this.header[0], this.header[1], this.header[2], 0]);
                    this.left = Some(len as usize);
                    this.done = len == 0;
                }
            }
            Some(left) => {
                this.left = Some(left - n);
                this.done = left == n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// One client connection.
struct Connection {
    /// Whether the client switched to TLS.
    secure: bool,
    /// Its entry's kill switch (see [`Running`]).
    kill: tokio::sync::watch::Sender<u64>,
    shared: Arc<Shared>,
    id: u32,
    salt: [u8; 20],
    /// Who logged in (set by `authenticate`, which only gets `&self`).
    caller: std::sync::Mutex<Option<Caller>>,
    session: Option<Session>,
    /// Prepared statements (COM_STMT_PREPARE): their text and how many parameters they take.
    statements: HashMap<u32, (String, usize)>,
    next_statement: u32,
}

impl Connection {
    fn new(shared: Arc<Shared>, id: u32) -> Self {
        let (kill, _) = tokio::sync::watch::channel(0);
        shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Running {
                    user: String::new(),
                    kill: kill.clone(),
                    statement: None,
                    database: None,
                },
            );
        Self {
            secure: false,
            kill,
            shared,
            id,
            salt: salt(),
            caller: std::sync::Mutex::new(None),
            session: None,
            statements: HashMap::new(),
            next_statement: 1,
        }
    }

    /// The connection's session, opened at its first statement.
    fn session(&mut self) -> std::result::Result<&mut Session, ServiceError> {
        if self.session.is_none() {
            let caller = self
                .caller
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or_else(|| ServiceError::Unauthorized("not logged in".into()))?;
            self.session = Some(self.shared.sessions.open(caller, Lifetime::Connection));
        }
        Ok(self.session.as_mut().expect("opened above"))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// A random scramble for `mysql_native_password`: 20 printable bytes, none of them `\0` or `$`.
fn salt() -> [u8; 20] {
    let mut bytes = [0u8; 20];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: refuse every login rather than use a known scramble.
        return [b'!'; 20];
    }
    bytes.map(|b| b'%' + b % 90)
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Connection {
    type Error = std::io::Error;

    fn version(&self) -> String {
        tarn_engine::query::server_version()
    }

    fn connect_id(&self) -> u32 {
        self.id
    }

    fn salt(&self) -> [u8; 20] {
        self.salt
    }

    async fn authenticate(
        &self,
        _plugin: &str,
        username: &[u8],
        salt: &[u8],
        auth_data: &[u8],
    ) -> bool {
        if self.salt == [b'!'; 20] {
            return false;
        }
        if self.shared.tls.is_some() && !self.secure {
            info!(
                connection = self.id,
                "MySQL login refused: the service serves TLS and this client did not ask for it"
            );
            return false;
        }
        let name = String::from_utf8_lossy(username);
        match self
            .shared
            .tokens
            .authenticate_native(&name, salt, auth_data)
        {
            Ok(caller) => {
                self.running(|r| r.user = caller.name.clone());
                *self.caller.lock().unwrap_or_else(|e| e.into_inner()) = Some(caller);
                true
            }
            Err(e) => {
                info!(connection = self.id, user = %name, error = %e, "MySQL login refused");
                false
            }
        }
    }

    /// A prepared statement is kept as text; its `?` are filled in with the values each
    /// execution brings, and it runs like any statement of the session.
    async fn on_prepare<'a>(
        &'a mut self,
        query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> std::io::Result<()> {
        let (_, params) = crate::session::text::bind(query, &[]);
        let id = self.next_statement;
        self.next_statement += 1;
        self.statements.insert(id, (query.to_string(), params));
        let columns: Vec<Column> = (0..params)
            .map(|i| Column {
                table: String::new(),
                column: format!("?{i}"),
                coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
                colflags: ColumnFlags::empty(),
            })
            .collect();
        info.reply(id, &columns, &[]).await
    }

    async fn on_execute<'a>(
        &'a mut self,
        id: u32,
        params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> std::io::Result<()> {
        let Some((sql, count)) = self.statements.get(&id).cloned() else {
            return results
                .error(
                    ErrorKind::ER_UNKNOWN_STMT_HANDLER,
                    format!("Unknown prepared statement handler ({id}) given to EXECUTE")
                        .as_bytes(),
                )
                .await;
        };
        let values: Vec<String> = params.into_iter().map(|p| literal(p.value)).collect();
        if values.len() != count {
            return results
                .error(
                    ErrorKind::ER_WRONG_ARGUMENTS,
                    format!(
                        "the statement takes {count} parameters, {} given",
                        values.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        let (sql, _) = crate::session::text::bind(&sql, &values);
        self.respond(&sql, results, true).await
    }

    async fn on_close<'a>(&'a mut self, stmt: u32)
    where
        W: 'async_trait,
    {
        self.statements.remove(&stmt);
    }

    async fn on_init<'a>(
        &'a mut self,
        database: &'a str,
        writer: InitWriter<'a, W>,
    ) -> std::io::Result<()> {
        let sql = format!("USE `{}`", database.replace('`', "``"));
        let done = match self.session() {
            Ok(s) => s.execute(&sql).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => writer.ok().await,
            Err(e) => {
                let (kind, msg) = mysql_error(&e);
                writer.error(kind, msg.as_bytes()).await
            }
        }
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> std::io::Result<()> {
        self.respond(query, results, false).await
    }
}

impl Connection {
    /// Runs `query` and writes its answer (in the binary protocol for a prepared statement).
    async fn respond<W: AsyncWrite + Send + Unpin>(
        &mut self,
        query: &str,
        results: QueryResultWriter<'_, W>,
        binary: bool,
    ) -> std::io::Result<()> {
        let shown: String = query.chars().take(PROCESSLIST_INFO).collect();
        self.running(|r| r.statement = Some((shown, std::time::Instant::now())));
        let done = self.respond_to(query, results, binary).await;
        let database = self
            .session
            .as_ref()
            .and_then(|s| s.database().map(str::to_string));
        self.running(|r| {
            r.statement = None;
            r.database = database;
        });
        done
    }

    async fn respond_to<W: AsyncWrite + Send + Unpin>(
        &mut self,
        query: &str,
        results: QueryResultWriter<'_, W>,
        binary: bool,
    ) -> std::io::Result<()> {
        let answer = match self.answer(query).await {
            Ok(a) => a,
            Err(e) => {
                let (kind, msg) = mysql_error(&e);
                return results.error(kind, msg.as_bytes()).await;
            }
        };
        let stream = match answer {
            federated::Answer::Ok => return results.completed(OkResponse::default()).await,
            federated::Answer::Rows(stream) => stream,
        };
        let mut killed = self.kill.subscribe();
        killed.mark_unchanged();
        write_stream(stream, results, killed, binary).await
    }

    /// Changes this connection's entry in the list `SHOW PROCESSLIST` and `KILL` read.
    fn running(&self, change: impl FnOnce(&mut Running)) {
        if let Some(r) = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.id)
        {
            change(r);
        }
    }

    /// Runs `query`: answered here if it is a driver's setup statement, else by the session.
    async fn answer(&mut self, query: &str) -> Result<federated::Answer> {
        let id = self.id;
        let shared = self.shared.clone();
        let session = self.session()?;
        let names = federated::Names {
            database: session.database(),
            connection_id: id,
            user: &session.caller.name,
            variables: &shared.variables,
        };
        if let Some(a) = federated::answer(query, &names) {
            return Ok(a);
        }
        if federated::is_processlist(query) {
            return Ok(processlist(&shared, &session.caller));
        }
        if let Some(target) = federated::kill(query) {
            let caller = session.caller.clone();
            kill(&shared, &caller, target)?;
            return Ok(federated::Answer::Ok);
        }
        let sql = federated::substitute(query, &names);
        let stream = session.execute(&sql).await?;
        // Statements without columns (DDL, USE, SET @x) answer OK, as MySQL does.
        Ok(if stream.schema.fields().is_empty() {
            federated::Answer::Ok
        } else {
            federated::Answer::Rows(stream)
        })
    }
}

/// How much of a statement's text `SHOW PROCESSLIST` shows (MySQL's is 100 characters).
const PROCESSLIST_INFO: usize = 100;

/// `SHOW PROCESSLIST`: the open connections (an admin's sees all; others see their own user's),
/// with the statement each runs and for how long, as MySQL lists them.
fn processlist(shared: &Shared, caller: &Caller) -> federated::Answer {
    let connections = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
    let mut ids: Vec<&u32> = connections.keys().collect();
    ids.sort();
    let rows = ids
        .into_iter()
        .filter_map(|id| {
            let r = &connections[id];
            (caller.role == crate::access::Role::Admin || r.user == caller.name).then(|| {
                let (command, time, info) = match &r.statement {
                    Some((text, since)) => ("Query", since.elapsed().as_secs(), text.clone()),
                    None => ("Sleep", 0, String::new()),
                };
                vec![
                    id.to_string(),
                    r.user.clone(),
                    "127.0.0.1".to_string(),
                    r.database.clone().unwrap_or_default(),
                    command.to_string(),
                    time.to_string(),
                    String::new(),
                    info,
                ]
            })
        })
        .collect();
    federated::Answer::Rows(federated::table(
        &[
            "Id", "User", "Host", "db", "Command", "Time", "State", "Info",
        ],
        rows,
    ))
}

/// `KILL QUERY n`: stops what connection `n` is running. A caller may stop its own statements;
/// an admin anyone's.
fn kill(shared: &Shared, caller: &Caller, target: u32) -> Result<()> {
    let connections = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
    let running = connections
        .get(&target)
        .ok_or_else(|| ServiceError::NotFound(format!("Unknown thread id: {target}")))?;
    if running.user != caller.name && caller.role != crate::access::Role::Admin {
        return Err(ServiceError::Forbidden(format!(
            "You are not owner of thread {target}: only its own user or an admin may stop it"
        )));
    }
    running.kill.send_modify(|k| *k += 1);
    info!(connection = target, by = %caller.name, "KILL QUERY");
    Ok(())
}

/// Writes a result set as its batches arrive; an error part way ends it with that error, and a
/// `KILL QUERY` (a change on `killed`) ends it as MySQL does. Dropping the stream stops the query.
async fn write_stream<W: AsyncWrite + Send + Unpin>(
    mut stream: QueryStream,
    results: QueryResultWriter<'_, W>,
    mut killed: tokio::sync::watch::Receiver<u64>,
    binary: bool,
) -> std::io::Result<()> {
    let columns = encode::columns(&stream.schema);
    let mut rows = results.start(&columns).await?;
    loop {
        let batch = tokio::select! {
            b = stream.stream.next() => b,
            _ = killed.changed() => {
                drop(stream);
                return rows
                    .finish_error(
                        ErrorKind::ER_QUERY_INTERRUPTED,
                        &b"Query execution was interrupted (KILL QUERY)".to_vec(),
                    )
                    .await;
            }
        };
        let Some(batch) = batch else { break };
        match batch {
            Ok(b) => encode::write_batch(&mut rows, &b, binary).await?,
            Err(e) => {
                let e = ServiceError::from(e);
                let (kind, msg) = mysql_error(&e);
                return rows.finish_error(kind, &msg.into_bytes()).await;
            }
        }
    }
    rows.finish().await
}

/// A parameter's value as an SQL literal.
fn literal(v: opensrv_mysql::Value<'_>) -> String {
    use opensrv_mysql::ValueInner as V;
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    match v.into_inner() {
        V::NULL => "NULL".into(),
        V::Int(i) => i.to_string(),
        V::UInt(u) => u.to_string(),
        V::Double(f) => format!("{f:?}"),
        V::Bytes(b) => quote(&String::from_utf8_lossy(b)),
        V::Date(_) => {
            let d: chrono::NaiveDate = v.into();
            format!("DATE '{d}'")
        }
        V::Datetime(_) => match opensrv_mysql::to_naive_datetime(v) {
            Ok(t) => format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")),
            Err(_) => "NULL".into(),
        },
        V::Time(_) => {
            let d: std::time::Duration = v.into();
            let s = d.as_secs();
            format!("'{:02}:{:02}:{:02}'", s / 3600, s / 60 % 60, s % 60)
        }
    }
}

/// The MySQL error for a service error: the code drivers and tools look for, Tarn's message.
fn mysql_error(e: &ServiceError) -> (ErrorKind, String) {
    use tarn_catalog::CatalogError as Cat;
    let kind = match (e.code(), e) {
        (_, ServiceError::Catalog(Cat::DatabaseNotFound { .. })) => ErrorKind::ER_BAD_DB_ERROR,
        (_, ServiceError::NotFound(m)) if m.starts_with("Unknown thread id") => {
            ErrorKind::ER_NO_SUCH_THREAD
        }
        (_, ServiceError::Forbidden(m)) if m.starts_with("You are not owner of thread") => {
            ErrorKind::ER_KILL_DENIED_ERROR
        }
        (_, ServiceError::Catalog(Cat::TableNotFound { .. })) => ErrorKind::ER_NO_SUCH_TABLE,
        (ErrorCode::Unauthorized, _) => ErrorKind::ER_ACCESS_DENIED_ERROR,
        (ErrorCode::Forbidden, _) => ErrorKind::ER_TABLEACCESS_DENIED_ERROR,
        (ErrorCode::NoDatabaseSelected, _) => ErrorKind::ER_NO_DB_ERROR,
        (ErrorCode::SyntaxError, _) => ErrorKind::ER_PARSE_ERROR,
        (ErrorCode::QueryError, _) if e.is_unknown_name() => ErrorKind::ER_NO_SUCH_TABLE,
        (ErrorCode::UnsupportedStatement | ErrorCode::NotSupported, _) => {
            ErrorKind::ER_NOT_SUPPORTED_YET
        }
        (ErrorCode::QueryTimeout, _) => ErrorKind::ER_QUERY_TIMEOUT,
        (ErrorCode::TooManyQueries, _) => ErrorKind::ER_TOO_MANY_USER_CONNECTIONS,
        (ErrorCode::MemoryLimit | ErrorCode::QueryMemoryExceeded, _) => {
            ErrorKind::ER_OUT_OF_RESOURCES
        }
        (ErrorCode::AlreadyExists, _) => match e {
            ServiceError::Catalog(Cat::DatabaseExists { .. }) => ErrorKind::ER_DB_CREATE_EXISTS,
            _ => ErrorKind::ER_TABLE_EXISTS_ERROR,
        },
        _ => ErrorKind::ER_UNKNOWN_ERROR,
    };
    (kind, e.to_string())
}
