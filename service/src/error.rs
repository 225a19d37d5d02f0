//! The service's one error type, and how each kind maps to an HTTP status and a stable code.

use axum::http::StatusCode;
use datafusion::error::DataFusionError;
use tarn_catalog::{CatalogError, TableKey};
use tarn_connectors::ConnectorError;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),

    #[error(transparent)]
    Connector(#[from] ConnectorError),

    #[error("table '{table}' is not loaded: run ALTER TABLE {table} SECONDARY_LOAD")]
    NotLoaded { table: TableKey },

    #[error("table '{table}' is being recovered after a restart; try again shortly")]
    Recovering { table: TableKey },

    #[error(
        "loading '{table}' needs {needed} bytes but only {available} of the {limit}-byte memory limit are free; \
         the load was refused and loaded tables are unchanged"
    )]
    MemoryLimit {
        table: TableKey,
        needed: u64,
        available: u64,
        limit: u64,
    },

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

    #[error("{0}")]
    NotFound(String),

    #[error("configuration: {0}")]
    Config(String),

    #[error("{0}")]
    Query(DataFusionError),

    #[error("internal error: {0}")]
    Internal(String),

    /// One outcome answered to several callers (a refresh that coalesced their triggers).
    #[error(transparent)]
    Shared(std::sync::Arc<ServiceError>),
}

impl From<DataFusionError> for ServiceError {
    fn from(e: DataFusionError) -> Self {
        // Errors Tarn raised inside the engine (a table not loaded) come back as themselves.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<ServiceError>() {
                Ok(s) => *s,
                Err(other) => Self::Query(DataFusionError::External(other)),
            },
            DataFusionError::Context(ctx, inner) => match Self::from(*inner) {
                Self::Query(q) => Self::Query(DataFusionError::Context(ctx, Box::new(q))),
                other => other,
            },
            other => Self::Query(other),
        }
    }
}

impl ServiceError {
    fn root(&self) -> &ServiceError {
        match self {
            Self::LoadFailed { source, .. } => source.root(),
            Self::Shared(inner) => inner.root(),
            other => other,
        }
    }

    /// A stable, machine-readable code for the `error.code` field.
    pub fn code(&self) -> &'static str {
        match self.root() {
            Self::Catalog(CatalogError::Syntax { .. }) => "syntax_error",
            Self::Catalog(CatalogError::Invalid { .. } | CatalogError::UnsupportedType { .. }) => {
                "invalid_definition"
            }
            Self::Catalog(
                CatalogError::DatabaseNotFound { .. } | CatalogError::TableNotFound { .. },
            ) => "not_found",
            Self::Catalog(
                CatalogError::DatabaseExists { .. } | CatalogError::TableExists { .. },
            ) => "already_exists",
            Self::Catalog(CatalogError::NoDatabaseSelected) => "no_database_selected",
            Self::Catalog(_) => "catalog_unavailable",
            Self::Connector(ConnectorError::LocationNotAllowed { .. }) => "location_not_allowed",
            Self::Connector(
                ConnectorError::InvalidLocation { .. } | ConnectorError::InvalidPattern { .. },
            ) => "invalid_location",
            Self::Connector(ConnectorError::NoFiles { .. }) => "no_files",
            Self::Connector(ConnectorError::Data { .. } | ConnectorError::Delta { .. }) => {
                "bad_data"
            }
            Self::Connector(ConnectorError::Store { .. }) => "store_unavailable",
            Self::NotLoaded { .. } => "table_not_loaded",
            Self::Recovering { .. } => "table_recovering",
            Self::ReplicaBehind { .. } => "replica_behind",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Config(_) => "config",
            Self::Query(e) => match e.find_root() {
                DataFusionError::Plan(_)
                | DataFusionError::SQL(..)
                | DataFusionError::SchemaError(..) => "query_error",
                DataFusionError::NotImplemented(_) => "not_supported",
                DataFusionError::ResourcesExhausted(_) => "resources_exhausted",
                _ => "internal",
            },
            Self::Internal(_) | Self::LoadFailed { .. } | Self::Shared(_) => "internal",
        }
    }

    /// 4xx for what the caller got wrong, 5xx for faults of the service or its stores.
    pub fn status(&self) -> StatusCode {
        match self.code() {
            "not_found" => StatusCode::NOT_FOUND,
            "already_exists" | "table_not_loaded" => StatusCode::CONFLICT,
            "location_not_allowed" => StatusCode::FORBIDDEN,
            "memory_limit" | "resources_exhausted" => StatusCode::INSUFFICIENT_STORAGE,
            "store_unavailable" => StatusCode::BAD_GATEWAY,
            "table_recovering" | "replica_behind" => StatusCode::SERVICE_UNAVAILABLE,
            "catalog_unavailable" | "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            "not_supported" => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
