//! Refresh jobs: a refresh asked for runs whether or not anyone waits for it, and triggers that
//! arrive while it waits to start join it (coalescing). The recent ones are kept by id for
//! `?async=true` callers to poll.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, Shared};
use tarn_catalog::TableKey;
use tarn_engine::store::LoadReport;

use crate::error::{Result, ServiceError};

pub(super) type SharedResult = Shared<BoxFuture<'static, Result<LoadReport, Arc<ServiceError>>>>;

/// A refresh that was asked for. It runs whether or not anyone waits for it.
#[derive(Clone)]
pub struct RefreshJob {
    pub id: u64,
    pub table: TableKey,
    pub requested_at: DateTime<Utc>,
    pub(super) result: SharedResult,
}

impl std::fmt::Debug for RefreshJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshJob")
            .field("id", &self.id)
            .field("table", &self.table)
            .field("done", &self.result.peek().is_some())
            .finish()
    }
}

impl RefreshJob {
    /// Waits for the refresh to finish.
    pub async fn wait(&self) -> Result<LoadReport> {
        self.result.clone().await.map_err(ServiceError::Shared)
    }

    /// The outcome, once there is one.
    pub fn outcome(&self) -> Option<Result<LoadReport, Arc<ServiceError>>> {
        self.result.peek().cloned()
    }
}

/// The refreshes asked for lately, by id, for `?async=true` callers to poll.
#[derive(Debug, Default)]
pub struct RefreshJobs {
    next: AtomicU64,
    recent: Mutex<VecDeque<RefreshJob>>,
}

/// How many refresh requests are remembered for polling.
pub const JOBS_KEPT: usize = 1000;

impl RefreshJobs {
    pub(super) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn remember(&self, job: RefreshJob) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == JOBS_KEPT {
            r.pop_front();
        }
        r.push_back(job);
    }

    pub fn get(&self, id: u64) -> Option<RefreshJob> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().find(|j| j.id == id).cloned()
    }
}
