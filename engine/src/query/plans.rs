//! Optimized query plans kept by statement text, so a query run again skips SQL planning and the
//! logical optimizer (2-3 ms of a TPC-H query, as much as the execution of the small ones).
//!
//! Only the logical plan is kept: the physical plan, with its join tables and run-time filters,
//! is made afresh every time. A plan is kept only when it can answer the same way later:
//! - it is a query (not EXPLAIN, DDL or DML) and reads loaded tables only (not
//!   `performance_schema`, whose rows change);
//! - every function in it is immutable: `now()`, `current_date` and the like are folded into
//!   constants when a plan is optimized, and `rand()` must not be;
//! - it uses no system variable or placeholder.
//!
//! A kept plan pins the table versions it was planned against. It is used again only while each
//! is still its table's current version; and every publish, unload or drop empties the cache, so
//! no old version stays in memory because of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use std::sync::Arc;
use tarn_catalog::TableKey;

use futures::future::BoxFuture;

use super::provider::LoadedTable;
use crate::store::{MemoryStore, StoreEvent, StoreListener, TableVersion};

/// Plans kept when the configuration names no number.
pub const DEFAULT_ENTRIES: usize = 256;

#[derive(Debug)]
struct Kept {
    plan: LogicalPlan,
    pins: Vec<(TableKey, Arc<TableVersion>)>,
}

#[derive(Debug, Default)]
struct Inner {
    plans: HashMap<String, Kept>,
    /// Goes up at every clear; a plan made across a clear is not kept.
    generation: u64,
}

#[derive(Debug)]
pub struct PlanCache {
    inner: Mutex<Inner>,
    capacity: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl PlanCache {
    /// A cache of up to `entries` plans; 0 keeps none.
    pub fn new(entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: entries,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation to hand to [`PlanCache::keep`]; read before the tables are resolved.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Forgets every plan (a table version was published, unloaded or dropped).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.plans.clear();
        inner.generation += 1;
    }

    /// How many plans are kept.
    pub fn kept(&self) -> usize {
        self.lock().plans.len()
    }

    /// The plan kept for `sql` and the tables it reads, if every table version it pins is still
    /// current in `memory`.
    pub fn get(&self, sql: &str, memory: &MemoryStore) -> Option<(LogicalPlan, Vec<TableKey>)> {
        if !self.enabled() {
            return None;
        }
        let mut inner = self.lock();
        if let Some(kept) = inner.plans.get(sql) {
            let current = kept.pins.iter().all(|(key, pinned)| {
                memory
                    .get(key)
                    .and_then(|e| e.current())
                    .is_some_and(|v| Arc::ptr_eq(&v, pinned))
            });
            if current {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let tables = kept.pins.iter().map(|(key, _)| key.clone()).collect();
                return Some((kept.plan.clone(), tables));
            }
            inner.plans.remove(sql);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Whether plans are kept at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Keeps `optimized` for `sql`, pinning the versions [`reusable`] found in it before
    /// optimization, unless a clear happened since `generation` was read.
    pub fn keep(
        &self,
        sql: &str,
        generation: u64,
        pins: Vec<(TableKey, Arc<TableVersion>)>,
        optimized: &LogicalPlan,
    ) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.plans.len() >= self.capacity && !inner.plans.contains_key(sql) {
            // Full: make room by forgetting one plan (any; the cache is small and plans cheap
            // to make again).
            if let Some(k) = inner.plans.keys().next().cloned() {
                inner.plans.remove(&k);
            }
        }
        inner.plans.insert(
            sql.to_string(),
            Kept {
                plan: optimized.clone(),
                pins,
            },
        );
    }
}

/// Every publish, unload or drop empties the cache: a kept plan pinning the version replaced
/// would keep it in memory.
impl StoreListener for PlanCache {
    fn on_change(
        &self,
        _store: &Arc<MemoryStore>,
        _event: &StoreEvent<'_>,
    ) -> Option<BoxFuture<'static, ()>> {
        self.clear();
        None
    }
}

/// The table versions `plan` (as planned, before optimization) reads, if it may be used again
/// (see the module's description).
pub fn reusable(plan: &LogicalPlan) -> Option<Vec<(TableKey, Arc<TableVersion>)>> {
    if matches!(
        plan,
        LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_)
    ) {
        return None;
    }
    let mut pins: Vec<(TableKey, Arc<TableVersion>)> = Vec::new();
    let mut ok = true;
    let walk = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let pinned = source_as_provider(&scan.source)
                .ok()
                .and_then(|p| p.downcast_ref::<LoadedTable>().and_then(LoadedTable::pin));
            match pinned {
                Some(pin) => pins.push(pin),
                None => ok = false,
            }
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                if !immutable(e) {
                    ok = false;
                }
                Ok(if ok {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    (walk.is_ok() && ok).then_some(pins)
}

/// Whether `e` (this node, not its children) gives the same value whenever it is planned.
fn immutable(e: &Expr) -> bool {
    match e {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::AggregateFunction(f) => f.func.signature().volatility != Volatility::Volatile,
        Expr::WindowFunction(w) => w.fun.signature().volatility != Volatility::Volatile,
        Expr::ScalarVariable(..) | Expr::Placeholder(_) => false,
        _ => true,
    }
}
