//! What a table's status shows: HeatWave's load states, the figures of `rpd_tables` and
//! `GET /v1/tables`, and the history of loads and refreshes. Plain data: the service fills it in,
//! the status views and the HTTP API read it.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// LOAD_STATUS values, named as HeatWave's `performance_schema.rpd_tables` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LoadState {
    #[serde(rename = "NOLOAD_RPDGSTABSTATE")]
    NoLoad,
    #[serde(rename = "LOADING_RPDGSTABSTATE")]
    Loading,
    #[serde(rename = "AVAIL_RPDGSTABSTATE")]
    Avail,
    #[serde(rename = "STALE_RPDGSTABSTATE")]
    Stale,
    #[serde(rename = "UNLOADING_RPDGSTABSTATE")]
    Unloading,
    #[serde(rename = "INRECOVERY_RPDGSTABSTATE")]
    InRecovery,
    #[serde(rename = "RECOVERYFAILED_RPDGSTABSTATE")]
    RecoveryFailed,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoLoad => "NOLOAD_RPDGSTABSTATE",
            Self::Loading => "LOADING_RPDGSTABSTATE",
            Self::Avail => "AVAIL_RPDGSTABSTATE",
            Self::Stale => "STALE_RPDGSTABSTATE",
            Self::Unloading => "UNLOADING_RPDGSTABSTATE",
            Self::InRecovery => "INRECOVERY_RPDGSTABSTATE",
            Self::RecoveryFailed => "RECOVERYFAILED_RPDGSTABSTATE",
        }
    }
}

/// What `rpd_tables` and `GET /v1/tables` show of a table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub load_status: LoadState,
    /// 0 to 100.
    pub load_progress: f64,
    pub load_start: Option<DateTime<Utc>>,
    pub load_end: Option<DateTime<Utc>>,
    /// Why the last load failed, if it did (the published version, if any, still serves).
    pub last_error: Option<String>,
    /// When a load or refresh last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When the scheduler will refresh the table next (tables with a refresh interval).
    pub next_refresh: Option<DateTime<Utc>>,
    /// Scheduled refreshes failed in a row (each one waits longer).
    pub refresh_failures: u32,
    /// After a restart: where the table came back from, when, and why its snapshot was not used.
    pub recovery_source: Option<RecoverySource>,
    pub recovery_start: Option<DateTime<Utc>>,
    pub recovery_end: Option<DateTime<Utc>>,
    pub recovery_error: Option<String>,
    /// The newest version persisted as a snapshot, when, what writing it cost, or why it failed.
    pub snapshot_version: Option<u64>,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub snapshot_bytes_written: u64,
    pub snapshot_seconds: f64,
    pub snapshot_error: Option<String>,
    /// The region and location of the copy the last load or refresh read (see `[[replicas]]`).
    pub source_region: Option<String>,
    pub source_location: Option<String>,
    /// Tables with a placement key: `pending` while rows wait to be ordered by it, `placed`
    /// once every file's rows are, or why it could not be done.
    pub placement: Option<String>,
}

impl TableStatus {
    /// Coming back after a restart: from its snapshot, or by the full load that replaces it.
    pub fn recovering(&self) -> bool {
        self.recovery_start.is_some() && self.recovery_end.is_none()
    }
}

impl Default for TableStatus {
    fn default() -> Self {
        Self {
            load_status: LoadState::NoLoad,
            load_progress: 0.0,
            load_start: None,
            load_end: None,
            last_error: None,
            last_success: None,
            next_refresh: None,
            recovery_source: None,
            recovery_start: None,
            recovery_end: None,
            recovery_error: None,
            snapshot_version: None,
            snapshot_at: None,
            snapshot_bytes_written: 0,
            snapshot_seconds: 0.0,
            snapshot_error: None,
            refresh_failures: 0,
            source_region: None,
            source_location: None,
            placement: None,
        }
    }
}

/// How many loads and refreshes each table remembers.
pub const HISTORY_LEN: usize = 100;

/// One finished load or refresh: its report, or why it failed.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub finished_at: DateTime<Utc>,
    pub kind: &'static str,
    pub report: Option<LoadReport>,
    pub error: Option<String>,
}

/// What a load or a refresh did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub table: String,
    /// `load` or `refresh`.
    pub kind: &'static str,
    /// The published version before and after (equal when a refresh found nothing to do).
    pub version_before: Option<u64>,
    pub version: u64,
    /// For Delta tables, the table version before and after.
    pub delta_version_before: Option<u64>,
    pub delta_version: Option<u64>,
    pub files: usize,
    pub files_added: usize,
    pub files_changed: usize,
    pub files_removed: usize,
    /// Files whose loaded data was kept as it was (not read again).
    pub files_reused: usize,
    /// Files whose rows were taken from a snapshot another worker of the cluster wrote of them
    /// (a lost worker's part), not read from the source.
    pub files_from_snapshots: usize,
    pub rows: u64,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub bytes: u64,
    /// Bytes of source files read.
    pub bytes_read: u64,
    pub rejected_rows: usize,
    /// Columns the refresh added to the table (additive schema evolution).
    pub columns_added: usize,
    /// For Delta, why the log was read from its latest checkpoint instead of from the loaded
    /// version (the commits since it were cleaned up, for one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_fallback: Option<String>,
    /// The region of the copy read (tables under `[[replicas]]`, or with a region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    /// The region that failed while this load or refresh read it; it was run again from the
    /// next copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_over_from: Option<String>,
    /// Why the copy read was not taken as it is: it is behind the loaded version, so the table
    /// stayed where it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_behind: Option<String>,
    /// Files kept as loaded because the copy read does not show them (yet) alike.
    pub files_awaiting_replication: usize,
    pub seconds: f64,
}

/// Where a recovered table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecoverySource {
    /// Tarn's snapshot.
    Snapshot,
    /// A full load from the table's files (no usable snapshot).
    Source,
}

impl RecoverySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "Snapshot",
            Self::Source => "Source",
        }
    }
}
