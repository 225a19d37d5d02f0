//! The Arrow Flight SQL door: BI tools and dataframe libraries (ADBC, JDBC, Polars and pandas
//! through ADBC) read Tarn's tables as Arrow, with no conversion on either side.
//!
//! The protocol is arrow-flight's (gRPC on tonic); this module adapts it to the session API, as
//! the MySQL door does. Every call carries a token: `Authorization: Bearer <token>`, or basic auth
//! with the token's name and the token (the handshake accepts either and answers the Bearer header
//! the client sends from then on). Each statement runs in a session of its own, so roles, database
//! scopes, limits and the closed SQL surface are the HTTP API's. A statement runs when its
//! `FlightInfo` is asked for (its errors come back there, and its schema is the real one); the
//! ticket then streams its batches as they come ([`service`]).

mod connection;
mod doget;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tonic::Status;
use tracing::{info, warn};

use crate::access::Caller;
use crate::access::tokens::Tokens;
use crate::error::{ErrorCode, Result, ServiceError};
use crate::session::Sessions;

use connection::Connection;
pub use service::FlightSql;

/// Largest message the door accepts from a client (bound parameters, a big statement).
const MAX_REQUEST: usize = 64 << 20;

/// The Flight SQL door, bound and ready to serve.
pub struct Door {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: FlightSql,
}

impl Door {
    /// Binds `addr` (port 0 for any free port); with `tls`, connections must use it.
    pub async fn bind(
        addr: SocketAddr,
        sessions: Arc<Sessions>,
        tokens: Arc<Tokens>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            ServiceError::Config(format!(
                "cannot listen on {addr} for Arrow Flight SQL (flight_listen): {e}"
            ))
        })?;
        Ok(Self {
            listener,
            tls,
            service: FlightSql::new(sessions, tokens),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves calls until the task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let addr = self.local_addr();
        let scheme = if self.tls.is_some() {
            "grpc+tls"
        } else {
            "grpc"
        };
        info!("Arrow Flight SQL listening on {scheme}://{addr}");
        let sweeper = self.service.clone();
        let sweep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                sweeper.sweep();
            }
        });
        let service = doget::WithDirectDoGet::new(self.service);
        let server = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(service);
        tokio::spawn(async move {
            let served = match self.tls {
                None => {
                    let incoming = futures::stream::unfold(self.listener, |l| async move {
                        let accepted = l.accept().await.map(|(s, _)| {
                            let _ = s.set_nodelay(true);
                            Connection::new(s)
                        });
                        Some((accepted, l))
                    });
                    server.serve_with_incoming(incoming).await
                }
                Some(config) => {
                    let listener = match crate::tls::TlsListener::new(self.listener, config) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(error = %e, "Arrow Flight SQL: TLS listener failed");
                            return;
                        }
                    };
                    let incoming = futures::stream::unfold(listener, |mut l| async move {
                        let (io, _) = axum::serve::Listener::accept(&mut l).await;
                        Some((Ok::<_, std::io::Error>(Connection::new(io)), l))
                    })
                    .boxed();
                    server.serve_with_incoming(incoming).await
                }
            };
            sweep.abort();
            if let Err(e) = served {
                warn!(error = %e, "Arrow Flight SQL door stopped");
            }
        })
    }
}

/// Who makes a call, from its `authorization` header: `Bearer <token>`, or `Basic` with the
/// token's name and the token. Answers the caller and the token.
fn authenticate(
    tokens: &Tokens,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<(Caller, String)> {
    use base64::Engine;
    let unauthorized = |m: &str| ServiceError::Unauthorized(m.to_string());
    let header = metadata
        .get("authorization")
        .ok_or_else(|| {
            unauthorized(
                "a token is needed: send `authorization: Bearer <token>`, or basic auth with the token's name and the token",
            )
        })?
        .to_str()
        .map_err(|_| unauthorized("the authorization header is not text"))?;
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = value.trim();
        return Ok((tokens.authenticate(token)?, token.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        // With or without padding: clients differ.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = engine
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("basic auth that is not base64 of name:token"))?;
        let (name, token) = decoded
            .split_once(':')
            .ok_or_else(|| unauthorized("basic auth that is not base64 of name:token"))?;
        let caller = tokens.authenticate(token)?;
        if caller.name != name {
            return Err(unauthorized(&format!(
                "access denied for '{name}': the token does not match"
            )));
        }
        return Ok((caller, token.to_string()));
    }
    Err(unauthorized(
        "the authorization header must be `Bearer <token>` or `Basic <base64 of name:token>`",
    ))
}

/// The gRPC status for a service error: the code clients branch on, Tarn's message, and Tarn's
/// own error code in the `x-tarn-error-code` trailer.
fn status(e: ServiceError) -> Status {
    use ErrorCode as C;
    use tonic::Code;
    let code = e.code();
    let grpc = match code {
        C::Unauthorized => Code::Unauthenticated,
        C::Forbidden | C::LocationNotAllowed => Code::PermissionDenied,
        C::NotFound => Code::NotFound,
        C::QueryError if e.is_unknown_name() => Code::NotFound,
        C::AlreadyExists => Code::AlreadyExists,
        C::QueryTimeout => Code::DeadlineExceeded,
        C::TooManyQueries | C::MemoryLimit | C::QueryMemoryExceeded | C::ResultTooLarge => {
            Code::ResourceExhausted
        }
        C::TableNotLoaded | C::TableRecovering | C::ReplicaBehind => Code::FailedPrecondition,
        C::StoreUnavailable | C::WorkerUnavailable => Code::Unavailable,
        C::NotSupported | C::UnsupportedStatement => Code::Unimplemented,
        C::CatalogUnavailable | C::Internal | C::WorkerFailed => Code::Internal,
        C::SyntaxError
        | C::InvalidDefinition
        | C::NoDatabaseSelected
        | C::InvalidLocation
        | C::NoFiles
        | C::BadData
        | C::BadRequest
        | C::Config
        | C::QueryError
        | C::QueryFailed => Code::InvalidArgument,
    };
    if grpc == Code::Internal {
        tracing::error!(error = %e, code = %code, "Flight SQL call failed");
    }
    let mut status = Status::new(grpc, e.to_string());
    if let Ok(v) = code.as_str().parse() {
        status.metadata_mut().insert("x-tarn-error-code", v);
    }
    status
}
