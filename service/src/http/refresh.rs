//! `POST /v1/tables/{db}/{table}/refresh` (refresh one table now and answer its report) and
//! `POST /v1/refresh` (every loaded table, one report or error each).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tarn_catalog::TableKey;

use super::ApiError;
use crate::load::{LoadReport, refresh_table};
use crate::state::AppState;

pub async fn one(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
) -> Result<Json<LoadReport>, ApiError> {
    let key = TableKey::new(db, table);
    state
        .catalog
        .get(&key)
        .map_err(crate::error::ServiceError::from)?;
    Ok(Json(refresh_table(&state, &key).await?))
}

pub async fn all(State(state): State<AppState>) -> Json<Value> {
    let mut out = Vec::new();
    for entry in state.memory.entries() {
        if entry.current().is_none() {
            continue;
        }
        let item = match refresh_table(&state, &entry.key).await {
            Ok(r) => json!({"table": entry.key.to_string(), "report": r}),
            Err(e) => {
                json!({"table": entry.key.to_string(), "error": {"code": e.code(), "message": e.to_string()}})
            }
        };
        out.push(item);
    }
    Json(json!({ "tables": out }))
}
