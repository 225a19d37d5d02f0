//! Tarn's catalog: what a table is (its definition), how DDL describes it (the dialect), how MySQL
//! column types map to Arrow (and JSON documents as MySQL has them), and where definitions are kept (the durable store).
//!
//! This crate does no network I/O and knows nothing of loading; connectors and the service build on it.

pub mod dialect;
pub mod error;
pub mod export;
pub mod json;
pub mod model;
pub mod sql_dialect;
pub mod store;
mod tokens;
pub mod types;

pub use dialect::{LoadMode, LoadOutput, Statement, TableRef, parse_statement};
pub use error::{CatalogError, Result};
pub use model::{
    ColumnDef, ColumnFormats, Compression, FileFormat, FileSpec, FormatKind, KeyDef, MatchColumns,
    TableDef, TableKey, TableOptions,
};
pub use sql_dialect::TarnDialect;
pub use store::{CatalogStore, write_atomic};
