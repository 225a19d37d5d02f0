//! Errors of the connectors. Every variant names the location or file at fault; none carries
//! credentials (locations are kept as the user wrote them, and stores' messages hold no secrets).

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid location '{uri}': {reason}")]
    InvalidLocation { uri: String, reason: String },

    #[error("location '{uri}' is not allowed by the configuration (allowed_locations)")]
    LocationNotAllowed { uri: String },

    #[error("no files match '{uri}' (set ALLOW_MISSING_FILES = 1 to load a table without them)")]
    NoFiles { uri: String },

    #[error("invalid PATTERN '{pattern}': {message}")]
    InvalidPattern { pattern: String, message: String },

    #[error("object store error at '{location}': {message}")]
    Store { location: String, message: String },

    /// Bad data: a row that does not convert, a corrupt or truncated file.
    #[error("{file}{}{}: {message}", .line.map(|l| format!(", line {l}")).unwrap_or_default(), .column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
    Data {
        file: String,
        line: Option<u64>,
        column: Option<String>,
        message: String,
    },

    #[error("Delta table at '{location}': {message}")]
    Delta { location: String, message: String },
}

impl ConnectorError {
    pub fn store(location: impl Into<String>, e: object_store::Error) -> Self {
        let message = match &e {
            object_store::Error::NotFound { .. } => "not found".to_string(),
            other => other.to_string(),
        };
        Self::Store {
            location: location.into(),
            message,
        }
    }

    pub fn data(file: impl Into<String>, message: impl ToString) -> Self {
        Self::Data {
            file: file.into(),
            line: None,
            column: None,
            message: message.to_string(),
        }
    }

    /// True when the caller's definition or data is at fault rather than a store being unavailable.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Store { .. })
    }
}
