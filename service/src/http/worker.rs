//! A cluster's endpoints. On a worker (`tarn worker`), what its coordinator asks:
//! `PUT /v1/worker/tables/{db}/{table}` (take this part of a table and load or refresh it),
//! `DELETE` of the same (forget it), `GET /v1/worker` (what it holds), and the query tasks
//! (datafusion-distributed's gRPC worker service, on the same port). On a coordinator,
//! `GET /v1/cluster`: each worker's state, memory and tables.

use axum::extract::{Extension, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Value, json};
use tarn_catalog::TableKey;

use super::{ApiError, HttpState};
use crate::access::{Caller, Role};
use crate::cluster::{PartLoaded, PartRequest, worker};
use crate::error::ServiceError;

pub async fn put_part(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path((db, table)): Path<(String, String)>,
    Json(request): Json<PartRequest>,
) -> Result<Json<PartLoaded>, ApiError> {
    caller.require(Role::Admin, "loading a part of a table on a worker")?;
    if request.def.key != TableKey::new(&db, &table) {
        return Err(ServiceError::BadRequest(format!(
            "the definition is of {}, not {db}.{table}",
            request.def.key
        ))
        .into());
    }
    let loaded =
        worker::put_part(&state.catalog, &state.loader, state.engine.store(), request).await?;
    Ok(Json(loaded))
}

pub async fn drop_part(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path((db, table)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin, "dropping a part of a table on a worker")?;
    let key = TableKey::new(&db, &table);
    worker::drop_part(&state.catalog, &state.loader, &key).await?;
    Ok(Json(json!({"dropped": key.to_string()})))
}

#[derive(Debug, serde::Deserialize)]
pub struct InfoParams {
    /// Each part's files and columns too.
    #[serde(default)]
    files: bool,
}

pub async fn info(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<InfoParams>,
) -> Result<Json<crate::cluster::WorkerInfo>, ApiError> {
    caller.require(Role::Admin, "a worker's status")?;
    Ok(Json(worker::info(
        &state.catalog,
        state.engine.store(),
        params.files,
    )))
}

/// `GET /v1/cluster`: every worker, up or not.
pub async fn cluster(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Reader, "the cluster's status")?;
    let Some(cluster) = &state.cluster else {
        return Ok(Json(json!({"workers": []})));
    };
    let workers: Vec<Value> = cluster
        .status(false)
        .await
        .into_iter()
        .map(|(url, info)| match info {
            Ok(i) => json!({
                "url": url,
                "state": "up",
                "memory_used": i.memory_used,
                "memory_limit": i.memory_limit,
                "shards": i.shards,
                "tables": i.tables,
                "last_error": Value::Null,
            }),
            Err(e) => json!({
                "url": url,
                "state": "down",
                "last_error": e.to_string(),
            }),
        })
        .collect();
    Ok(Json(json!({"workers": workers})))
}

/// The query tasks a coordinator sends, for the admin (the cluster token, `token`) only.
pub fn tasks(state: &HttpState, token: &str) -> crate::Result<Router<HttpState>> {
    let service = tarn_engine::query::cluster::worker(state.engine.store().clone(), token)
        .map_err(|e| ServiceError::Config(format!("cluster_token: {e}")))?
        .into_worker_server();
    Ok(tonic::service::Routes::new(service)
        .into_axum_router()
        .layer(axum::middleware::from_fn(admin_only))
        .with_state::<HttpState>(()))
}

async fn admin_only(request: Request, next: Next) -> Response {
    let admin = request
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.role == Role::Admin);
    if !admin {
        return ApiError(ServiceError::Forbidden(
            "a worker runs tasks for its coordinator only (the cluster token)".into(),
        ))
        .into_response();
    }
    next.run(request).await
}
