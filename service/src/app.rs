//! The application: built from a [`Config`] (binding its listener, so tests can use port 0 and ask
//! for the address), then served until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tarn_catalog::{CatalogStore, Statement, parse_statement};
use tarn_connectors::StoreRegistry;
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::config::Config;
use crate::error::{Result, ServiceError};
use crate::state::AppState;
use crate::store::MemoryStore;
use crate::{http, load, sql};

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self> {
        let catalog = Arc::new(CatalogStore::open(&config.data_dir)?);
        let memory = Arc::new(
            MemoryStore::new(config.memory_limit, config.shards).with_plan_cache(config.plan_cache),
        );
        let stores = Arc::new(StoreRegistry::new(config.store.clone())?);
        let ctx = sql::new_context(
            catalog.clone(),
            memory.clone(),
            config.instance_name.clone(),
        );
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            ServiceError::Config(format!("cannot listen on {}: {e}", config.listen))
        })?;
        let snapshots = Arc::new(
            crate::snapshot::Snapshots::open(
                &config.data_dir,
                config.snapshot_location.as_deref(),
                &stores,
                config.store.home_region.as_deref(),
            )
            .await?,
        );
        let regions = Arc::new(crate::regions::Regions::new(
            config.regions.clone(),
            config.store.regions.keys().cloned(),
        ));
        let state = AppState {
            regions,
            config: Arc::new(config),
            catalog,
            memory,
            stores,
            snapshots,
            ctx,
        };
        apply_declared_tables(&state).await;
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub async fn run_until_stopped(self) -> Result<()> {
        let addr = self.local_addr();
        info!(instance = %self.state.config.instance_name, data_dir = %self.state.config.data_dir.display(),
              "listening on http://{addr}");
        let scheduler = crate::schedule::spawn(self.state.clone());
        let recovery = tokio::spawn(crate::snapshot::recover_all(self.state.clone()));
        let monitor = crate::regions::spawn_monitor(self.state.clone());
        let served = axum::serve(self.listener, http::router(self.state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| ServiceError::Internal(format!("server: {e}")));
        scheduler.abort();
        recovery.abort();
        monitor.abort();
        served
    }
}

/// `[[tables]]` from the config: created if missing, and loaded in the background when asked.
async fn apply_declared_tables(state: &AppState) {
    for t in &state.config.tables {
        let stmt = match parse_statement(&t.ddl) {
            Ok(s) => s,
            Err(e) => {
                error!(ddl = %t.ddl, error = %e, "declared table does not parse");
                continue;
            }
        };
        let key = match &stmt {
            Statement::CreateTable { table, .. } => Some(table.key.clone()),
            _ => None,
        };
        if let Err(e) = sql::execute(state, &t.ddl).await
            && !matches!(
                &e,
                ServiceError::Catalog(
                    tarn_catalog::CatalogError::TableExists { .. }
                        | tarn_catalog::CatalogError::DatabaseExists { .. }
                )
            )
        {
            error!(ddl = %t.ddl, error = %e, "declared table not applied");
            continue;
        }
        if let (true, Some(key)) = (t.load, key) {
            let state = state.clone();
            tokio::spawn(async move {
                let _ = load::load_table(&state, &key).await;
            });
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down");
}
