//! Who is asking: `Authorization: Bearer <token>` on every request but `GET /healthz`,
//! `GET /readyz` and the status page's assets (which hold no data). A missing, unknown or expired token answers 401 `unauthorized` before any
//! handler runs; the caller goes on to the handler as a request extension.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, HttpState};
use crate::error::ServiceError;

/// The paths a load balancer or an orchestrator probes without a token.
const OPEN: [&str; 2] = ["/healthz", "/readyz"];

pub async fn authenticate(
    State(state): State<HttpState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if OPEN.contains(&path) || super::page::is_asset(path) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return ApiError(ServiceError::Unauthorized(
            "send a token: Authorization: Bearer <token> (the admin token is in <data_dir>/admin.token unless admin_token is set)".into(),
        ))
        .into_response();
    };
    match state.tokens.authenticate(token) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}
