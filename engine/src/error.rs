//! The engine's errors: a table that cannot be read yet, a load that does not fit the memory
//! limit, a query the engine refused or failed.

use datafusion::error::DataFusionError;
use tarn_catalog::TableKey;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
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

    /// A statement the engine does not run (one that writes files, changes engine settings,
    /// reads a file by its path).
    #[error("{0}")]
    Unsupported(String),

    /// What DataFusion refused (a plan error, say) or failed at while running a query.
    #[error("{0}")]
    Query(DataFusionError),

    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DataFusionError> for EngineError {
    fn from(e: DataFusionError) -> Self {
        // Errors the engine raised inside DataFusion (a table not loaded) come back as themselves.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<EngineError>() {
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
