//! Tarn's service: the sharded memory store ([`store`]), loading ([`load`]), the SQL session
//! ([`sql`]), regions and failover ([`regions`]), the HTTP API ([`http`]), configuration and the command line ([`cli`]).

pub mod allocator;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod drill;
pub mod error;
pub mod http;
pub mod load;
pub mod placement;
pub mod regions;
pub mod schedule;
pub mod snapshot;
pub mod sql;
pub mod state;
pub mod store;

pub use app::Application;
pub use config::Config;
pub use error::{Result, ServiceError};
