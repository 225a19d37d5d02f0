//! Memory for queries: each query's operators (hash tables, aggregations, sorts) reserve what
//! they hold from a pool of its own, limited by `query_memory`, and every query's reservations
//! count in the store against `memory_limit`, beside the loaded data and the loads in progress.
//! A query that asks for more fails (or spills, where DataFusion's operator can) with a
//! resources-exhausted error; the service and the other queries go on.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};

use crate::store::MemoryStore;

/// One query's pool.
#[derive(Debug)]
pub struct QueryPool {
    store: Arc<MemoryStore>,
    limit: Option<usize>,
    used: AtomicUsize,
}

impl QueryPool {
    pub fn new(store: Arc<MemoryStore>, limit: Option<usize>) -> Self {
        Self {
            store,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query pool (used {} bytes, limit {:?})",
            self.used.load(Ordering::Relaxed),
            self.limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "tarn-query"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.store.grow_queries(additional as u64);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.store.shrink_queries(shrink as u64);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let used = self.used.load(Ordering::Relaxed);
        if let Some(limit) = self.limit
            && used + additional > limit
        {
            return Err(resources_datafusion_err!(
                "the query needs more than its {limit} bytes (limits.query_memory): {} asked for {additional} more with {used} held",
                reservation.consumer().name()
            ));
        }
        if !self.store.try_grow_queries(additional as u64) {
            return Err(resources_datafusion_err!(
                "the query needs {additional} bytes more and the memory limit ({} bytes) is taken by loaded tables and other queries",
                self.store.limit().unwrap_or_default()
            ));
        }
        self.used.fetch_add(additional, Ordering::Relaxed);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match self.limit {
            Some(l) => MemoryLimit::Finite(l),
            None => MemoryLimit::Infinite,
        }
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // Whatever an operator did not give back is the store's again.
        let left = self.used.load(Ordering::Relaxed);
        if left > 0 {
            self.store.shrink_queries(left as u64);
        }
    }
}
