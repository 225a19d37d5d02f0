//! Errors of the connectors. Every variant names the location or file at fault; none carries
//! credentials (locations are kept as the user wrote them, and stores' messages hold no secrets).

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid location '{uri}': {reason}")]
    InvalidLocation { uri: String, reason: String },

    #[error("location '{uri}' is not allowed by the configuration (allowed_locations)")]
    LocationNotAllowed { uri: String },

    /// A location the configuration may not open to tables: Tarn's own files, a path that
    /// leads out of the allowed directories, a private address not named in the allow-list.
    #[error("location '{uri}' is not allowed: {reason}")]
    LocationRefused { uri: String, reason: String },

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

    /// A read that would pass the memory limit, stopped before it took the memory.
    #[error(
        "reading '{file}' needs {} more (it holds {} already) but only {} of memory_limit ({}) are free; \
         the load was refused and loaded tables are unchanged",
        bytesize::ByteSize(*.needed), bytesize::ByteSize(*.held), bytesize::ByteSize(*.available), bytesize::ByteSize(*.limit)
    )]
    MemoryLimit {
        file: String,
        held: u64,
        needed: u64,
        available: u64,
        limit: u64,
    },
}

impl ConnectorError {
    /// A store failure, described without the store's response body (which may echo request
    /// details) and without credentials (which never appear in object_store's messages).
    pub fn store(location: impl Into<String>, e: object_store::Error) -> Self {
        const DENIED: &str =
            "access denied (403): check the credentials and permissions for this location";
        const UNAUTHENTICATED: &str =
            "not authenticated (401): check the credentials for this location";
        const NOT_FOUND: &str = "not found (no such bucket or object)";
        // List requests wrap the status in a generic error: look at its text too.
        let text = e.to_string();
        let message = match &e {
            object_store::Error::NotFound { .. } => NOT_FOUND.to_string(),
            object_store::Error::PermissionDenied { .. } => DENIED.to_string(),
            object_store::Error::Unauthenticated { .. } => UNAUTHENTICATED.to_string(),
            _ if text.contains("status code: 403") => DENIED.to_string(),
            _ if text.contains("status code: 401") => UNAUTHENTICATED.to_string(),
            _ if text.contains("status code: 404") => NOT_FOUND.to_string(),
            other => {
                let text = other.to_string();
                // Drop any XML or JSON body the server sent back.
                let cut = text.find(['<', '{']).unwrap_or(text.len());
                let mut msg = text[..cut].trim_end_matches([':', ' ']).to_string();
                if msg.len() > 400 {
                    msg.truncate(400);
                    msg.push_str("...");
                }
                msg
            }
        };
        Self::Store {
            location: tarn_catalog::model::redact_text(&location.into()),
            // A store's message may quote the request's URL, token and all.
            message: tarn_catalog::model::redact_text(&message),
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

    /// True when the store answered that an object (or bucket) is not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Store { message, .. } => message.starts_with("not found"),
            Self::Delta { message, .. } | Self::Data { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("not found") || m.contains("notfound") || m.contains("no such")
            }
            _ => false,
        }
    }

    /// True when the caller's definition or data is at fault rather than a store being unavailable.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Store { .. })
    }
}
