//! Tarn's engine: the sharded memory store ([`store`]) and the query side ([`query`]).
//!
//! Architecture invariant: nothing here knows of HTTP, loading, snapshots or regions. The
//! service publishes versions into the store and reads status out of it; what must react to a
//! publish subscribes to the store ([`store::StoreListener`]).

pub mod error;
pub mod query;
pub mod store;

pub use error::{EngineError, Result};
pub use query::{Engine, Prepared, QueryContext, QueryStream};
pub use store::MemoryStore;
