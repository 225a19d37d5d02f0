//! Errors of the catalog: DDL that does not parse or does not make sense, and catalog state conflicts.

use std::path::PathBuf;

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The statement does not parse; the message says where and what was expected.
    #[error("syntax error: {message}")]
    Syntax { message: String },

    /// The statement parses but says something Tarn cannot do (an unknown option, a bad value).
    #[error("invalid definition: {message}")]
    Invalid { message: String },

    /// A statement Tarn does not run (a view, a table made from a query).
    #[error(
        "{what} is not supported: Tarn declares external tables over files (CREATE EXTERNAL TABLE ... FILES = (...)) and runs queries over them"
    )]
    Unsupported { what: String },

    #[error("unsupported column type {sql_type} for column {column}")]
    UnsupportedType { column: String, sql_type: String },

    #[error("unknown database '{database}'")]
    DatabaseNotFound { database: String },

    #[error("database '{database}' already exists")]
    DatabaseExists { database: String },

    #[error("unknown table '{database}.{table}'")]
    TableNotFound { database: String, table: String },

    #[error("table '{database}.{table}' already exists")]
    TableExists { database: String, table: String },

    #[error("no database selected: name the table as database.table")]
    NoDatabaseSelected,

    #[error("catalog file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("catalog file {path} is not a valid catalog: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl CatalogError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    /// True for errors caused by what the caller wrote (as opposed to faults of the store).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::Corrupt { .. })
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for CatalogError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        use datafusion::sql::sqlparser::parser::ParserError;
        let message = match e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => "statement nested too deeply".to_string(),
        };
        Self::Syntax { message }
    }
}
