//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: tables that were loaded
//! before a restart are back, or the configured `ready_tables` are).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use crate::state::AppState;
use crate::store::LoadState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let recovering: Vec<String> = state
        .memory
        .entries()
        .into_iter()
        .filter(|e| e.status().load_status == LoadState::InRecovery)
        .filter(|e| {
            state
                .config
                .ready_tables
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&e.key))
        })
        .map(|e| e.key.to_string())
        .collect();
    let listed = state.snapshots.listed.load(Ordering::SeqCst);
    let ready = listed
        && recovering.is_empty()
        && (state.config.ready_tables.is_some()
            || state.snapshots.recovering.load(Ordering::SeqCst) == 0);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "recovering": recovering})),
    )
}
