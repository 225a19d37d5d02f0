//! `GET /v1/regions`: region health, failovers and the copy each table reads; and the drill
//! switches `POST /v1/regions/{region}/cut` and `.../restore`, which cut this instance off from a
//! region's stores (every request to them fails at once) and reconnect it.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};

use super::{ApiError, HttpState};
use crate::access::{Caller, Role};
use crate::regions::{self, RegionsReport, ReplicatedTables};

pub async fn list(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<RegionsReport>, ApiError> {
    caller.require(Role::Reader, "reading the regions")?;
    let mut tables = state.loader.tables();
    tables.retain(|t| caller.sees(&t.key.database));
    Ok(Json(state.regions.report(&state.object_stores, tables)))
}

pub async fn cut(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let done = caller
        .require(Role::Admin, "cutting a region off")
        .and_then(|_| regions::set_cut(&state.object_stores, &region, true));
    state.audit.record(&caller, "cut_region", &region, &done);
    done?;
    Ok(Json(json!({ "region": region, "cut": true })))
}

pub async fn restore(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let done = caller
        .require(Role::Admin, "restoring a region")
        .and_then(|_| regions::set_cut(&state.object_stores, &region, false));
    state
        .audit
        .record(&caller, "restore_region", &region, &done);
    done?;
    Ok(Json(json!({ "region": region, "cut": false })))
}
