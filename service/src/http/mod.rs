//! The HTTP API: one module per resource, wired by [`router`]; one [`ApiError`] for every failure.

mod error;
mod health;
mod metrics;
mod refresh;
mod regions;
mod sql;
mod tables;

use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;

/// `Accept` values `POST /v1/sql` answers to.
pub mod sql_accept {
    pub const JSON: &str = "application/json";
    pub const CSV: &str = "text/csv";
    pub const NDJSON: &str = "application/x-ndjson";
    pub const ARROW: &str = "application/vnd.apache.arrow.stream";
}

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
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
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .fallback(error::not_found)
        .with_state(state)
}
