//! The application: built from a [`Config`] (binding its listener, so tests can use port 0 and ask
//! for the address), then served until a shutdown signal.
//!
//! This is where the components meet: each is built with the few others it uses, the store's
//! listeners are subscribed (in the order they are told of a publish: kept plans, freed memory,
//! snapshots, placement), and the background tasks start.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use tarn_catalog::{CatalogStore, Statement, parse_statement};
use tarn_connectors::StoreRegistry;
use tarn_engine::store::{MemoryStore, StoreEvent, StoreListener};
use tarn_engine::{Engine, QueryStream};
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::access::Caller;
use crate::access::tokens::Tokens;
use crate::audit::Audit;
use crate::config::Config;
use crate::error::{Result, ServiceError};
use crate::http::{self, HttpState};
use crate::load::{Loader, scheduler};
use crate::placement::Placement;
use crate::regions::{Regions, monitor};
use crate::session::{Lifetime, Sessions};
use crate::snapshot::Snapshots;
use crate::snapshot::recovery::Recovery;
use crate::snapshot::writer::{self, SnapshotWriter};

pub struct Application {
    listener: TcpListener,
    /// The MySQL protocol door, when `mysql_listen` is set.
    mysql: Option<crate::mysql::Door>,
    /// The Arrow Flight SQL door, when `flight_listen` is set.
    flight: Option<crate::flight::Door>,
    /// The certificate HTTPS (and later the other doors' TLS) serves; none: plain text.
    certificates: Option<Arc<crate::tls::Certificates>>,
    config: Arc<Config>,
    http: HttpState,
}

/// Hands freed memory back to the system soon after a version is published or unloaded (see
/// [`crate::allocator`]).
struct ReturnMemory;

impl StoreListener for ReturnMemory {
    fn on_change(
        &self,
        _memory: &Arc<MemoryStore>,
        event: &StoreEvent<'_>,
    ) -> Option<BoxFuture<'static, ()>> {
        if matches!(
            event,
            StoreEvent::Published { .. } | StoreEvent::Unloaded { .. }
        ) {
            crate::allocator::return_unused_soon();
        }
        None
    }
}

impl Application {
    /// Builds the application; queries run on `queries` (a runtime of their own, apart from
    /// this one's API, loads and refreshes).
    pub async fn build(config: Config, queries: tokio::runtime::Handle) -> Result<Self> {
        let catalog = Arc::new(CatalogStore::open(&config.data_dir)?);
        let tokens = Arc::new(Tokens::open(
            &config.data_dir,
            config.admin_token.as_deref(),
        )?);
        let memory = Arc::new(MemoryStore::new(config.memory_limit, config.shards));
        if config.worker {
            // Queries its coordinator planned before publishing the next version still read
            // the one they planned against.
            memory.keep_replaced_versions();
        }
        let engine = Arc::new(
            Engine::with_cluster(
                catalog.clone(),
                memory.clone(),
                config.plan_cache,
                config.instance_name.clone(),
                queries,
                config.cluster.as_ref(),
            )
            .map_err(|e| ServiceError::Config(format!("the cluster: {e}")))?,
        );

        memory.subscribe(Arc::new(ReturnMemory));
        let object_stores = Arc::new(StoreRegistry::new(config.store.clone())?);
        let certificates = config
            .tls
            .clone()
            .map(crate::tls::Certificates::load)
            .transpose()?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            ServiceError::Config(format!("cannot listen on {}: {e}", config.listen))
        })?;
        let snapshots = Arc::new(
            Snapshots::open(
                &config.data_dir,
                config.snapshot_location.as_deref(),
                &object_stores,
                config.store.home_region.as_deref(),
            )
            .await?,
        );
        let writer = SnapshotWriter::new(snapshots.clone(), catalog.clone(), config.snapshots);
        memory.subscribe(Arc::new(writer::Listener(writer)));
        memory.subscribe(Arc::new(Placement::new(catalog.clone())));
        let regions = Arc::new(Regions::new(
            config.regions.clone(),
            config.store.regions.keys().cloned(),
        ));
        let cluster = config
            .cluster
            .clone()
            .map(|c| crate::cluster::Cluster::new(c, object_stores.clone(), regions.clone()))
            .transpose()?
            .map(Arc::new);
        // A worker takes a lost worker's files from its snapshots when they are shared.
        let elsewhere = match &config.shared_snapshots {
            Some((location, own)) => Some(Arc::new(
                crate::snapshot::shared::SharedSnapshots::open(
                    location,
                    own,
                    &object_stores,
                    config.store.home_region.as_deref(),
                )
                .await?,
            ) as Arc<dyn crate::load::ReadElsewhere>),
            None => None,
        };
        let loader = Arc::new(
            Loader::new(
                catalog.clone(),
                memory.clone(),
                object_stores.clone(),
                regions.clone(),
            )
            .with_workers(cluster.clone().map(|c| c as Arc<dyn crate::load::Workers>))
            .with_read_elsewhere(elsewhere),
        );
        let recovery = Arc::new(Recovery::new(
            snapshots,
            catalog.clone(),
            memory.clone(),
            loader.clone(),
            config.ready_tables.clone(),
        ));
        let audit = Arc::new(Audit::open(config.audit_log.as_deref())?);
        let sessions = Sessions::new(
            catalog.clone(),
            engine.clone(),
            loader.clone(),
            object_stores.clone(),
            config.limits.clone(),
            audit.clone(),
        );
        let mysql = match config.mysql_listen {
            Some(addr) => Some(
                crate::mysql::Door::bind(
                    addr,
                    sessions.clone(),
                    tokens.clone(),
                    &config.instance_name,
                    certificates
                        .as_ref()
                        .map(crate::tls::Certificates::mysql_config),
                )
                .await?,
            ),
            None => None,
        };
        let flight = match config.flight_listen {
            Some(addr) => Some(
                crate::flight::Door::bind(
                    addr,
                    sessions.clone(),
                    tokens.clone(),
                    certificates
                        .as_ref()
                        .map(crate::tls::Certificates::server_config),
                )
                .await?,
            ),
            None => None,
        };
        let http = HttpState {
            audit,
            sessions,
            tokens,
            catalog,
            engine,
            loader,
            regions,
            object_stores,
            recovery,
            cluster,
            instance: config.instance_name.as_str().into(),
        };
        let app = Self {
            listener,
            mysql,
            flight,
            certificates,
            config: Arc::new(config),
            http,
        };
        app.apply_declared_tables().await;
        Ok(app)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the MySQL protocol door listens, if it is on.
    pub fn mysql_addr(&self) -> Option<SocketAddr> {
        self.mysql.as_ref().map(crate::mysql::Door::local_addr)
    }

    /// Where the Arrow Flight SQL door listens, if it is on.
    pub fn flight_addr(&self) -> Option<SocketAddr> {
        self.flight.as_ref().map(crate::flight::Door::local_addr)
    }

    pub async fn run_until_stopped(mut self) -> Result<()> {
        let addr = self.local_addr();
        let scheme = if self.certificates.is_some() {
            "https"
        } else {
            "http"
        };
        info!(instance = %self.config.instance_name, data_dir = %self.config.data_dir.display(),
              "listening on {scheme}://{addr}");
        let s = &self.http;
        let scheduler = scheduler::spawn(s.loader.clone(), self.config.refresh_interval);
        let recovery = tokio::spawn(s.recovery.clone().recover_all());
        let monitor = monitor::spawn(
            s.regions.clone(),
            s.object_stores.clone(),
            Arc::new(s.loader.clone()),
        );
        let workers = s.cluster.clone().map(|c| {
            crate::cluster::monitor::spawn(
                c,
                s.loader.clone(),
                s.catalog.clone(),
                s.engine.store().clone(),
            )
        });
        let mysql = self.mysql.take().map(crate::mysql::Door::spawn);
        let flight = self.flight.take().map(crate::flight::Door::spawn);
        let worker_token = self
            .config
            .worker
            .then_some(self.config.admin_token.as_deref())
            .flatten();
        let router = http::router(self.http, worker_token)?;
        let served = match &self.certificates {
            None => {
                use axum::serve::ListenerExt;
                // Small writes go out at once: without it a worker's gRPC answers (several small
                // frames) waited for the peer's delayed acknowledgement, 40 ms a query.
                let listener = self.listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }
            Some(certificates) => {
                let reload = certificates.spawn_reload();
                let listener =
                    crate::tls::TlsListener::new(self.listener, certificates.server_config())
                        .map_err(|e| ServiceError::Internal(format!("TLS listener: {e}")))?;
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown_signal())
                    .await;
                reload.abort();
                served
            }
        }
        .map_err(|e| ServiceError::Internal(format!("server: {e}")));
        for door in mysql.into_iter().chain(flight) {
            door.abort();
        }
        scheduler.abort();
        recovery.abort();
        if let Some(w) = workers {
            w.abort();
        }
        monitor.abort();
        served
    }

    /// `[[tables]]` from the config: created if missing, and loaded in the background when asked.
    async fn apply_declared_tables(&self) {
        for t in &self.config.tables {
            let key = match parse_statement(&t.ddl) {
                Ok(Statement::CreateTable { table, .. }) => Some(table.key.clone()),
                Ok(_) => None,
                Err(e) => {
                    error!(ddl = %t.ddl, error = %e, "declared table does not parse");
                    continue;
                }
            };
            let mut session = self
                .http
                .sessions
                .open(Caller::service(), Lifetime::Statement);
            let applied: Result<QueryStream> = session.execute(&t.ddl).await;
            if let Err(e) = applied
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
                let loader = self.http.loader.clone();
                tokio::spawn(async move {
                    let _ = loader.load(&key).await;
                });
            }
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
