//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: tables that were loaded
//! before a restart are back, or the configured `ready_tables` are).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::HttpState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    let (ready, waiting) = state.recovery.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let waiting: Vec<String> = waiting.iter().map(|k| k.to_string()).collect();
    (status, Json(json!({"ready": ready, "recovering": waiting})))
}
