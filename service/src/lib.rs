//! Tarn's service: loading and refresh ([`load`]), snapshots and recovery ([`snapshot`]), regions
//! and failover ([`regions`]), placement ([`placement`]), the session API every front door uses
//! ([`session`]), the HTTP API ([`http`]), configuration ([`config`]), and the application that
//! wires them ([`app`]). The memory store and the query engine are `tarn-engine`'s; the
//! command-line clients are `tarn-cli`'s.

pub mod access;
pub mod allocator;
pub mod app;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod export;
pub mod flight;
pub mod http;
pub mod load;
pub mod mysql;
pub mod placement;
pub mod regions;
pub mod session;
pub mod snapshot;
pub mod tls;

pub use app::Application;
pub use config::Config;
pub use error::{Result, ServiceError};
