//! The service's one error type, and the stable code each kind carries. Which HTTP status a code
//! answers is the HTTP layer's business (`http::error`), and the other front doors map the same
//! codes their own way.

use datafusion::error::DataFusionError;
use tarn_catalog::{CatalogError, TableKey};
use tarn_connectors::ConnectorError;
use tarn_engine::EngineError;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),

    #[error(transparent)]
    Connector(#[from] ConnectorError),

    #[error(transparent)]
    Engine(#[from] EngineError),

    #[error("load of '{table}' failed: {source}")]
    LoadFailed {
        table: TableKey,
        #[source]
        source: Box<ServiceError>,
    },

    /// A copy in another region does not hold yet what its log or the loaded version names.
    #[error(
        "the copy of '{table}' in region '{region}' is behind: {detail}; the table stays at its loaded version and the refresh is retried"
    )]
    ReplicaBehind {
        table: TableKey,
        region: String,
        detail: String,
    },

    #[error("{0}")]
    BadRequest(String),

    /// No token, or one that is not known or has expired.
    #[error("{0}")]
    Unauthorized(String),

    /// The token does not allow this.
    #[error("{0}")]
    Forbidden(String),

    #[error("{0}")]
    AlreadyExists(String),

    #[error("the query ran longer than limits.query_timeout ({limit:?}) and was stopped")]
    QueryTimeout { limit: std::time::Duration },

    #[error(
        "{max} queries are running (limits.max_concurrent_queries) and this one waited {waited:?} for its turn; try again shortly"
    )]
    TooManyQueries {
        max: usize,
        waited: std::time::Duration,
    },

    #[error(
        "the answer is larger than limits.max_result_bytes ({limit} bytes of Arrow data): narrow the query or add LIMIT"
    )]
    ResultTooLarge { limit: u64 },

    #[error("{0}")]
    NotFound(String),

    /// A feature Tarn does not offer (yet), named with what to use instead.
    #[error("{0}")]
    NotSupported(String),

    #[error("configuration: {0}")]
    Config(String),

    /// A cluster's worker could not be reached, or failed what it was asked (`detail` says which).
    #[error("worker {worker}: {detail}")]
    Worker {
        worker: String,
        detail: String,
        /// Whether the worker answered (and refused) rather than could not be reached.
        answered: bool,
    },

    #[error("internal error: {0}")]
    Internal(String),

    /// One outcome answered to several callers (a refresh that coalesced their triggers).
    #[error(transparent)]
    Shared(std::sync::Arc<ServiceError>),
}

impl From<DataFusionError> for ServiceError {
    fn from(e: DataFusionError) -> Self {
        // A limit the session applied to a running answer comes back as itself.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<ServiceError>() {
                Ok(s) => *s,
                Err(other) => Self::Engine(EngineError::from(DataFusionError::External(other))),
            },
            other => Self::Engine(EngineError::from(other)),
        }
    }
}

impl ServiceError {
    /// Whether the engine could not plan a statement because a table or column it names does
    /// not exist (the planner says so only in its message: `table '...' not found`, `... not
    /// found`). Every door maps this to its own "no such table"; one rule for all of them.
    pub fn is_unknown_name(&self) -> bool {
        self.code() == ErrorCode::QueryError && self.to_string().contains("' not found")
    }

    /// A table that is not loaded.
    pub fn not_loaded(table: &TableKey) -> Self {
        Self::Engine(EngineError::NotLoaded {
            table: table.clone(),
        })
    }

    fn root(&self) -> &ServiceError {
        match self {
            Self::LoadFailed { source, .. } => source.root(),
            Self::Shared(inner) => inner.root(),
            other => other,
        }
    }

    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self.root() {
            Self::Catalog(CatalogError::Syntax { .. }) => C::SyntaxError,
            Self::Catalog(CatalogError::Unsupported { .. }) => C::UnsupportedStatement,
            Self::Catalog(CatalogError::Invalid { .. } | CatalogError::UnsupportedType { .. }) => {
                C::InvalidDefinition
            }
            Self::Catalog(
                CatalogError::DatabaseNotFound { .. } | CatalogError::TableNotFound { .. },
            ) => C::NotFound,
            Self::Catalog(
                CatalogError::DatabaseExists { .. } | CatalogError::TableExists { .. },
            ) => C::AlreadyExists,
            Self::Catalog(CatalogError::NoDatabaseSelected) => C::NoDatabaseSelected,
            Self::Catalog(_) => C::CatalogUnavailable,
            Self::Connector(
                ConnectorError::LocationNotAllowed { .. } | ConnectorError::LocationRefused { .. },
            ) => C::LocationNotAllowed,
            Self::Connector(
                ConnectorError::InvalidLocation { .. } | ConnectorError::InvalidPattern { .. },
            ) => C::InvalidLocation,
            Self::Connector(ConnectorError::NoFiles { .. }) => C::NoFiles,
            Self::Connector(ConnectorError::Data { .. } | ConnectorError::Delta { .. }) => {
                C::BadData
            }
            Self::Connector(ConnectorError::Store { .. }) => C::StoreUnavailable,
            Self::Engine(EngineError::NotLoaded { .. }) => C::TableNotLoaded,
            Self::Engine(EngineError::Recovering { .. }) => C::TableRecovering,
            Self::Engine(EngineError::MemoryLimit { .. })
            | Self::Connector(ConnectorError::MemoryLimit { .. }) => C::MemoryLimit,
            Self::Engine(EngineError::Unsupported(_)) => C::UnsupportedStatement,
            // A part of a table read in the query is on a worker that does not answer: the table
            // is whole again once the worker is back or its part has moved to the others.
            Self::Engine(EngineError::Query(e)) if worker_unreachable(e) => C::TableRecovering,
            Self::Engine(EngineError::Query(e)) => match e.find_root() {
                // sqlparser could not read the text.
                DataFusionError::SQL(..) => C::SyntaxError,
                DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => C::QueryError,
                DataFusionError::NotImplemented(_) => C::NotSupported,
                DataFusionError::ResourcesExhausted(_) => C::QueryMemoryExceeded,
                // What the data made of the query while it ran: a division by zero, a value
                // that does not cast, an overflow.
                DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => C::QueryFailed,
                _ => C::Internal,
            },
            Self::QueryTimeout { .. } => C::QueryTimeout,
            Self::TooManyQueries { .. } => C::TooManyQueries,
            Self::ResultTooLarge { .. } => C::ResultTooLarge,
            Self::ReplicaBehind { .. } => C::ReplicaBehind,
            Self::BadRequest(_) => C::BadRequest,
            Self::Unauthorized(_) => C::Unauthorized,
            Self::Forbidden(_) => C::Forbidden,
            Self::AlreadyExists(_) => C::AlreadyExists,
            Self::NotFound(_) => C::NotFound,
            Self::NotSupported(_) => C::NotSupported,
            Self::Config(_) => C::Config,
            Self::Worker { answered: true, .. } => C::WorkerFailed,
            Self::Worker {
                answered: false, ..
            } => C::WorkerUnavailable,
            Self::Engine(EngineError::Internal(_))
            | Self::Internal(_)
            | Self::LoadFailed { .. }
            | Self::Shared(_) => C::Internal,
        }
    }
}

/// Whether a query failed because a cluster's worker could not be reached (its task's gRPC
/// call answered "unavailable", here or on the worker that read from it).
fn worker_unreachable(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::External(inner) => match inner.downcast_ref::<tonic::Status>() {
            Some(status) => status.code() == tonic::Code::Unavailable,
            None => inner
                .to_string()
                .contains("code: 'The service is currently unavailable'"),
        },
        // A new connection to the worker was refused.
        DataFusionError::Execution(m) => {
            m.starts_with("Error connecting to Distributed DataFusion worker")
        }
        _ => false,
    }
}

/// The codes errors carry (`error.code` in the HTTP API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SyntaxError,
    InvalidDefinition,
    NotFound,
    AlreadyExists,
    NoDatabaseSelected,
    CatalogUnavailable,
    LocationNotAllowed,
    InvalidLocation,
    NoFiles,
    BadData,
    StoreUnavailable,
    TableNotLoaded,
    TableRecovering,
    ReplicaBehind,
    MemoryLimit,
    BadRequest,
    Unauthorized,
    Forbidden,
    Config,
    QueryError,
    QueryFailed,
    QueryTimeout,
    QueryMemoryExceeded,
    TooManyQueries,
    ResultTooLarge,
    UnsupportedStatement,
    NotSupported,
    WorkerFailed,
    WorkerUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyntaxError => "syntax_error",
            Self::InvalidDefinition => "invalid_definition",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::NoDatabaseSelected => "no_database_selected",
            Self::CatalogUnavailable => "catalog_unavailable",
            Self::LocationNotAllowed => "location_not_allowed",
            Self::InvalidLocation => "invalid_location",
            Self::NoFiles => "no_files",
            Self::BadData => "bad_data",
            Self::StoreUnavailable => "store_unavailable",
            Self::TableNotLoaded => "table_not_loaded",
            Self::TableRecovering => "table_recovering",
            Self::ReplicaBehind => "replica_behind",
            Self::MemoryLimit => "memory_limit",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Config => "config",
            Self::QueryError => "query_error",
            Self::QueryFailed => "query_failed",
            Self::QueryTimeout => "query_timeout",
            Self::QueryMemoryExceeded => "query_memory_exceeded",
            Self::TooManyQueries => "too_many_queries",
            Self::ResultTooLarge => "result_too_large",
            Self::UnsupportedStatement => "unsupported_statement",
            Self::NotSupported => "not_supported",
            Self::WorkerFailed => "worker_failed",
            Self::WorkerUnavailable => "worker_unavailable",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
