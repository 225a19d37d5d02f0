//! Tarn's connectors: where table files live and how they become Arrow.
//!
//! - [`location`]: a table URI (`file://`, `s3://`, `oci://`, `https://`) parsed and checked
//!   against the locations the config allows, before any request is sent.
//! - [`store`]: the object store for a location (one per bucket, cached).
//! - [`gate`]: a region's gate: reachability as requests see it, operator cuts, aborts on
//!   failover.
//! - [`listing`]: a `FILES = (...)` entry expanded to the objects it selects (prefix, glob, regex),
//!   recorded as a [`manifest::Manifest`] (path, size, ETag, last-modified; Delta version).
//! - [`read`]: format readers (CSV, Parquet, JSON, Avro, Delta) producing record batches in the
//!   table's schema, with bad rows either rejected (and recorded) or failing the read.
//!
//! Nothing here keeps loaded data or knows about tables' status; the service does.

pub mod credentials;
pub mod error;
pub mod gate;
pub mod listing;
pub mod location;
pub mod manifest;
pub mod oci;
pub mod read;
pub mod store;

pub use error::{ConnectorError, Result};
pub use location::Location;
pub use manifest::{FileEntry, Manifest};
pub use read::{FileBatches, RejectedRow};
pub use store::{StoreConfig, StoreRegistry};
