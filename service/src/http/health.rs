//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: tables that were loaded
//! before a restart are back, or the configured `ready_tables` are).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use tarn_catalog::TableKey;

use crate::state::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let recovering: Vec<TableKey> = state
        .memory
        .entries()
        .into_iter()
        .filter(|e| e.status().recovering())
        .map(|e| e.key.clone())
        .collect();
    let (ready, waiting) = readiness(
        state.snapshots.listed.load(Ordering::SeqCst),
        state.snapshots.recovering.load(Ordering::SeqCst),
        &recovering,
        state.config.ready_tables.as_deref(),
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let waiting: Vec<String> = waiting.iter().map(|k| k.to_string()).collect();
    (status, Json(json!({"ready": ready, "recovering": waiting})))
}

/// Ready once the tables to recover are known and every one of them (or of `wanted`, when the
/// configuration names some) has finished recovering; also answers the tables waited for.
fn readiness<'a>(
    listed: bool,
    unfinished: usize,
    recovering: &'a [TableKey],
    wanted: Option<&[TableKey]>,
) -> (bool, Vec<&'a TableKey>) {
    let waiting: Vec<&TableKey> = recovering
        .iter()
        .filter(|k| wanted.is_none_or(|w| w.contains(k)))
        .collect();
    let ready = listed && waiting.is_empty() && (wanted.is_some() || unfinished == 0);
    (ready, waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_recovery_is_done_or_the_wanted_tables_are_back() {
        let (a, b) = (TableKey::new("s", "a"), TableKey::new("s", "b"));
        // Before the tables to recover are listed: never ready.
        assert!(!readiness(false, 0, &[], None).0);
        // Everything recovering must finish, by default.
        assert_eq!(
            readiness(true, 2, &[a.clone(), b.clone()], None),
            (false, vec![&a, &b])
        );
        assert!(
            !readiness(true, 1, &[], None).0,
            "a fallback load still running"
        );
        assert!(readiness(true, 0, &[], None).0);
        // With ready_tables, only those are waited for.
        let wanted = [a.clone()];
        assert_eq!(
            readiness(true, 1, std::slice::from_ref(&b), Some(&wanted)),
            (true, vec![])
        );
        assert_eq!(
            readiness(true, 2, &[a.clone(), b.clone()], Some(&wanted)),
            (false, vec![&a])
        );
    }
}
