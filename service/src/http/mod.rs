//! The HTTP API: one module per resource, wired by [`router`]; one [`ApiError`] for every failure.
//! Every request but `/healthz` and `/readyz` carries a token ([`auth`]); each endpoint asks the
//! caller's role for what it does. SQL goes through the session API like every other door's; the
//! rest reads status and asks the loader and the regions for what the endpoints do.

mod auth;
mod error;
mod health;
mod metrics;
mod page;
mod refresh;
mod regions;
mod sql;
mod tables;
mod tokens;
mod worker;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use tarn_catalog::CatalogStore;
use tarn_connectors::StoreRegistry;
use tarn_engine::Engine;

pub use error::ApiError;

use crate::access::tokens::Tokens;
use crate::load::Loader;
use crate::regions::Regions;
use crate::session::Sessions;
use crate::snapshot::recovery::Recovery;

/// `Accept` values `POST /v1/sql` answers to.
pub mod sql_accept {
    pub const JSON: &str = "application/json";
    pub const CSV: &str = "text/csv";
    pub const NDJSON: &str = "application/x-ndjson";
    pub const ARROW: &str = "application/vnd.apache.arrow.stream";
}

/// What the handlers use.
#[derive(Clone)]
pub struct HttpState {
    pub audit: Arc<crate::audit::Audit>,
    pub sessions: Arc<Sessions>,
    pub tokens: Arc<Tokens>,
    pub catalog: Arc<CatalogStore>,
    pub engine: Arc<Engine>,
    pub loader: Arc<Loader>,
    pub regions: Arc<Regions>,
    pub object_stores: Arc<StoreRegistry>,
    pub recovery: Arc<Recovery>,
    /// The cluster this process coordinates, if any.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// What `SELECT @@hostname` answers; the status page shows it.
    pub instance: Arc<str>,
}

/// The API; on a cluster's worker (`worker_token`: the cluster's), also what its coordinator
/// asks of it.
pub fn router(state: HttpState, worker_token: Option<&str>) -> crate::Result<Router> {
    let mut router = Router::new();
    if let Some(token) = worker_token {
        router = router
            .route("/v1/worker", get(worker::info))
            .route(
                "/v1/worker/tables/{db}/{table}",
                axum::routing::put(worker::put_part).delete(worker::drop_part),
            )
            .merge(worker::tasks(&state, token)?);
    }
    Ok(router
        .route("/v1/cluster", get(worker::cluster))
        .route("/v1/sql", post(sql::post_sql))
        .route("/v1/tables", get(tables::list))
        .route("/v1/tables/{db}/{table}", get(tables::one))
        .route("/v1/tables/{db}/{table}/refresh", post(refresh::one))
        .route("/v1/tables/{db}/{table}/refreshes", get(tables::refreshes))
        .route("/v1/refresh", post(refresh::all))
        .route("/v1/refreshes/{id}", get(refresh::poll))
        .route("/v1/regions", get(regions::list))
        .route("/v1/regions/{region}/cut", post(regions::cut))
        .route("/v1/regions/{region}/restore", post(regions::restore))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{name}", delete(tokens::delete))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/whoami", get(page::whoami))
        .route("/", get(page::index))
        .route("/ui/app.js", get(page::script))
        .route("/ui/style.css", get(page::style))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state))
}
