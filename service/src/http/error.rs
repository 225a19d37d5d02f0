//! `{"error": {"code": "...", "message": "..."}}` with a 4xx for the caller's mistakes and a 5xx
//! for faults; the detail of a fault is logged here, not hidden. The one place an error code
//! becomes an HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ErrorCode, ServiceError};

#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

/// 4xx for what the caller got wrong, 5xx for faults of the service or its stores.
pub fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::NotFound => StatusCode::NOT_FOUND,
        C::Unauthorized => StatusCode::UNAUTHORIZED,
        C::QueryTimeout => StatusCode::REQUEST_TIMEOUT,
        C::TooManyQueries => StatusCode::TOO_MANY_REQUESTS,
        C::ResultTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::QueryMemoryExceeded => StatusCode::UNPROCESSABLE_ENTITY,
        C::Forbidden => StatusCode::FORBIDDEN,
        C::AlreadyExists | C::TableNotLoaded => StatusCode::CONFLICT,
        C::LocationNotAllowed => StatusCode::FORBIDDEN,
        C::MemoryLimit => StatusCode::INSUFFICIENT_STORAGE,
        C::StoreUnavailable | C::WorkerFailed => StatusCode::BAD_GATEWAY,
        C::WorkerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::TableRecovering | C::ReplicaBehind => StatusCode::SERVICE_UNAVAILABLE,
        C::CatalogUnavailable | C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        C::NotSupported => StatusCode::NOT_IMPLEMENTED,
        C::SyntaxError
        | C::InvalidDefinition
        | C::NoDatabaseSelected
        | C::InvalidLocation
        | C::NoFiles
        | C::BadData
        | C::BadRequest
        | C::Config
        | C::QueryError
        | C::QueryFailed
        | C::UnsupportedStatement => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = status(code);
        if status.is_server_error() {
            tracing::error!(error = %self.0, code = %code, "request failed");
        }
        let body = json!({"error": {"code": code.as_str(), "message": self.0.to_string()}});
        (status, Json(body)).into_response()
    }
}

pub async fn not_found() -> Response {
    let body = json!({"error": {"code": "not_found", "message": "no such endpoint"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
