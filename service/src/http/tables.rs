//! `GET /v1/tables` and `GET /v1/tables/{db}/{table}`: definitions, status and manifests.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};
use tarn_catalog::TableKey;
use tarn_engine::query::system::table_rows;

use super::{ApiError, HttpState};
use crate::access::{Caller, Role};

pub async fn list(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Reader, "listing tables")?;
    let mut rows = table_rows(&state.catalog, state.engine.store());
    rows.retain(|r| caller.sees(&r.schema_name));
    Ok(Json(json!({ "tables": rows })))
}

pub async fn one(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path((db, table)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = TableKey::new(db, table);
    caller.require_in(Role::Reader, &key.database, "reading a table's status")?;
    let mut def = state
        .catalog
        .get(&key)
        .map_err(crate::error::ServiceError::from)?;
    // Pre-authenticated request URLs carry their access token: show them redacted.
    for f in &mut def.files {
        f.uri = tarn_connectors::location::redact(&f.uri);
    }
    let row = table_rows(&state.catalog, state.engine.store())
        .into_iter()
        .find(|r| r.schema_name == key.database && r.table_name == key.table);
    let current = state.engine.store().get(&key).and_then(|e| e.current());
    let manifest = current.as_ref().map(|v| {
        json!({
            "files": v.manifest.files.len(),
            "bytes": v.manifest.total_bytes(),
            "delta_version": v.manifest.delta_version,
            "shards": v.shards.len(),
            "batches": v.shards.iter().map(|s| s.batches.len()).sum::<usize>(),
        })
    });
    Ok(Json(
        json!({ "definition": def, "status": row, "manifest": manifest }),
    ))
}

/// `GET /v1/tables/{db}/{table}/refreshes`: the table's last loads and refreshes, newest first.
pub async fn refreshes(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path((db, table)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = TableKey::new(db, table);
    caller.require_in(Role::Reader, &key.database, "reading a table's refreshes")?;
    state
        .catalog
        .get(&key)
        .map_err(crate::error::ServiceError::from)?;
    let mut history = state
        .engine
        .store()
        .get(&key)
        .map(|e| e.history())
        .unwrap_or_default();
    history.reverse();
    Ok(Json(
        json!({ "table": key.to_string(), "history": history }),
    ))
}
