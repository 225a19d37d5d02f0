//! Regions, replicas and failover.
//!
//! A table is defined once, by a location. `[[replicas]]` says which buckets in which regions
//! hold copies of which; the copies of one primary form a group ([`config`]). A table whose
//! location lies in a group is read from the copy in this instance's home region (else the
//! primary, else the other copies in the order configured), skipping regions that are failed
//! over ([`routing`]).
//!
//! Each region's store health is what its gate saw (every request, and a probe every
//! `probe_interval`). After `failure_threshold` failures in a row the region is failed over
//! ([`health`]): the requests in flight to it are aborted and every table reading it is refreshed
//! from the next copy ([`monitor`]). Once the region has answered every probe for
//! `failback_after`, it is failed back and its tables are refreshed from it again. Loaded data
//! keeps answering throughout; only refreshes change what is served, and a refresh never moves a
//! table backwards (see `load::source`).
//!
//! This module decides; it does not load. The monitor asks for refreshes through
//! [`ReplicatedTables`], which the loader implements.

pub mod config;
pub mod health;
pub mod monitor;
pub mod routing;

pub use config::{FailoverSettings, RegionsConfig, Replica};
pub use monitor::{CopySummary, ReplicatedTables, TableCopies};
pub use routing::Route;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tarn_connectors::StoreRegistry;
use tracing::warn;

use crate::error::{Result, ServiceError};
use health::{Health, ProbeOutcome};

/// Region health and the failover decisions, shared by the whole service.
#[derive(Debug)]
pub struct Regions {
    config: RegionsConfig,
    health: Mutex<BTreeMap<String, Health>>,
    /// The last failovers and failbacks, oldest first (the status page's timeline).
    events: Mutex<std::collections::VecDeque<RegionEvent>>,
}

/// A failover or failback, for the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct RegionEvent {
    pub at: DateTime<Utc>,
    pub region: String,
    /// `failover` or `failback`.
    pub kind: &'static str,
}

/// Events [`Regions`] keeps.
const EVENTS_KEPT: usize = 100;

impl Regions {
    pub fn new(config: RegionsConfig, regions: impl IntoIterator<Item = String>) -> Self {
        let health = regions
            .into_iter()
            .chain(config.home_region.clone())
            .chain(config.groups.iter().flatten().map(|c| c.region.clone()))
            .map(|r| (r, Health::default()))
            .collect();
        Self {
            config,
            events: Mutex::new(Default::default()),
            health: Mutex::new(health),
        }
    }

    pub fn config(&self) -> &RegionsConfig {
        &self.config
    }

    fn health(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Health>> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_failed_over(&self, region: &str) -> bool {
        self.health().get(region).is_some_and(|h| h.failed_over)
    }

    /// Where `uri` (a table's location; `region` the definition's own, if it names one) is read
    /// now.
    pub fn route(&self, uri: &str, region: Option<&str>) -> Route {
        let health = self.health();
        routing::route(&self.config, uri, region, |r| {
            health.get(r).is_some_and(|h| h.failed_over)
        })
    }

    /// Where each region's health is asked: the first copy in it, if any.
    fn probe_targets(&self) -> BTreeMap<String, String> {
        let mut t = BTreeMap::new();
        for c in self.config.groups.iter().flatten() {
            t.entry(c.region.clone())
                .or_insert_with(|| c.location.clone());
        }
        t
    }

    /// Takes one probe round's outcomes and decides (see [`health::decide`]).
    fn decide(
        &self,
        outcomes: &BTreeMap<String, ProbeOutcome>,
        now: Instant,
    ) -> (Vec<String>, Vec<String>) {
        let (over, back) = health::decide(&mut self.health(), outcomes, &self.config.settings, now);
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        for (regions, kind) in [(&over, "failover"), (&back, "failback")] {
            for region in regions {
                events.push_back(RegionEvent {
                    at: Utc::now(),
                    region: region.clone(),
                    kind,
                });
            }
        }
        while events.len() > EVENTS_KEPT {
            events.pop_front();
        }
        (over, back)
    }

    /// What `GET /v1/regions` answers: each region's health as this instance sees it (its
    /// gate's counts from `object_stores`), and the copy each of `tables` reads.
    pub fn report(&self, object_stores: &StoreRegistry, tables: Vec<TableCopies>) -> RegionsReport {
        let health = self.health().clone();
        let region_reports = health
            .iter()
            .map(|(name, h)| {
                let gate = object_stores.gate(name);
                let cut = gate.is_some_and(|g| g.is_cut());
                RegionReport {
                    name: name.clone(),
                    state: if cut {
                        "cut"
                    } else if h.failed_over {
                        "failed_over"
                    } else {
                        "healthy"
                    },
                    cut,
                    consecutive_failures: gate.map_or(0, |g| g.consecutive_failures()),
                    requests_ok: gate.map_or(0, |g| g.requests_ok()),
                    requests_failed: gate.map_or(0, |g| g.requests_failed()),
                    last_error: gate.and_then(|g| g.last_error()),
                    health: h.clone(),
                }
            })
            .collect();
        let tables = tables
            .into_iter()
            .map(|t| {
                let route = self.route(&t.uri, t.region.as_deref());
                let source = t.copy;
                TableRoute {
                    table: t.key.to_string(),
                    location: tarn_connectors::location::redact(&t.uri),
                    source_region: source.as_ref().and_then(|s| s.region.clone()),
                    source_location: source
                        .as_ref()
                        .map(|s| tarn_connectors::location::redact(&s.uri)),
                    route_region: route.region,
                    version: t.version,
                    last_success: t.last_success,
                    files_awaiting_replication: source.as_ref().map_or(0, |s| s.pending),
                    waiting_for_replica: source.and_then(|s| s.waiting),
                }
            })
            .collect();
        RegionsReport {
            home_region: self.config.home_region.clone(),
            failover_count: health.values().map(|h| h.failovers).sum(),
            failback_count: health.values().map(|h| h.failbacks).sum(),
            last_failover: health.values().filter_map(|h| h.last_failover).max(),
            last_failback: health.values().filter_map(|h| h.last_failback).max(),
            regions: region_reports,
            events: self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
            replicas: self.config.groups.clone(),
            tables,
        }
    }
}

/// What `GET /v1/regions` answers.
#[derive(Debug, Serialize)]
pub struct RegionsReport {
    pub home_region: Option<String>,
    pub failover_count: u64,
    pub failback_count: u64,
    pub last_failover: Option<DateTime<Utc>>,
    pub last_failback: Option<DateTime<Utc>>,
    pub regions: Vec<RegionReport>,
    /// The last failovers and failbacks, oldest first.
    pub events: Vec<RegionEvent>,
    pub replicas: Vec<Vec<Replica>>,
    pub tables: Vec<TableRoute>,
}

#[derive(Debug, Serialize)]
pub struct RegionReport {
    pub name: String,
    /// `healthy`, `failed_over` or `cut` (an operator cut this instance off from it).
    pub state: &'static str,
    pub cut: bool,
    pub consecutive_failures: u32,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub last_error: Option<String>,
    /// Failovers and failbacks, their last times, and the last probe's outcome.
    #[serde(flatten)]
    pub health: Health,
}

#[derive(Debug, Serialize)]
pub struct TableRoute {
    pub table: String,
    pub location: String,
    /// The region and location of the copy the table was last read from.
    pub source_region: Option<String>,
    pub source_location: Option<String>,
    /// Where the next refresh will read.
    pub route_region: Option<String>,
    pub version: Option<u64>,
    pub last_success: Option<DateTime<Utc>>,
    /// Files kept from the previous copy until this one shows them.
    pub files_awaiting_replication: usize,
    pub waiting_for_replica: Option<String>,
}

/// Cuts this instance off from `region` (every request to it fails at once, as if its store were
/// down) or reconnects it. For failover drills.
pub fn set_cut(object_stores: &StoreRegistry, region: &str, cut: bool) -> Result<()> {
    let gate = object_stores
        .gate(region)
        .ok_or_else(|| ServiceError::NotFound(format!("no region '{region}' is configured")))?;
    gate.set_cut(cut);
    warn!(region, cut, "region cut by an operator");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn copy(region: &str, location: &str) -> Replica {
        Replica {
            region: region.into(),
            location: location.into(),
        }
    }

    fn regions(home: &str) -> Regions {
        let config = RegionsConfig::new(
            Some(home.into()),
            vec![(
                copy("ash", "oci://orders@ns"),
                copy("chi", "oci://orders-dr@ns/"),
            )],
            &["ash".into(), "chi".into()],
            FailoverSettings {
                failure_threshold: 2,
                failback_after: Duration::from_secs(10),
                ..Default::default()
            },
        )
        .unwrap();
        Regions::new(config, ["ash".to_string(), "chi".to_string()])
    }

    #[test]
    fn tables_read_the_copy_in_their_home_region_and_fail_over_to_the_next() {
        let ash = regions("ash");
        let r = ash.route("oci://orders@ns/sales/", None);
        assert_eq!(r.uri, "oci://orders@ns/sales/");
        assert_eq!(r.region.as_deref(), Some("ash"));
        let chi = regions("chi");
        let r = chi.route("oci://orders@ns/sales/", None);
        assert_eq!(r.uri, "oci://orders-dr@ns/sales/");
        assert_eq!(
            r.logical("oci://orders-dr@ns/sales/a.parquet"),
            "oci://orders@ns/sales/a.parquet",
            "files are known by the table's own location"
        );
        // A table named by the replica's location reads it too, and is known by it.
        let r = chi.route("oci://orders-dr@ns/sales/", None);
        assert_eq!(
            r.logical("oci://orders-dr@ns/sales/a"),
            "oci://orders-dr@ns/sales/a"
        );

        let t0 = Instant::now();
        let fail = |n| {
            BTreeMap::from([(
                "ash".to_string(),
                ProbeOutcome {
                    failures: n,
                    answered: n == 0,
                },
            )])
        };
        assert_eq!(ash.decide(&fail(1), t0), (vec![], vec![]));
        assert_eq!(ash.decide(&fail(2), t0), (vec!["ash".to_string()], vec![]));
        let r = ash.route("oci://orders@ns/sales/", None);
        assert_eq!(r.uri, "oci://orders-dr@ns/sales/");
        assert_eq!(r.region.as_deref(), Some("chi"));
        // Back only after `failback_after` of healthy probes, counted from the first.
        assert_eq!(ash.decide(&fail(0), t0), (vec![], vec![]));
        assert_eq!(
            ash.decide(&fail(0), t0 + Duration::from_secs(9)),
            (vec![], vec![])
        );
        assert_eq!(
            ash.decide(&fail(1), t0 + Duration::from_secs(10)),
            (vec![], vec![])
        );
        assert_eq!(
            ash.decide(&fail(0), t0 + Duration::from_secs(11)),
            (vec![], vec![])
        );
        assert_eq!(
            ash.decide(&fail(0), t0 + Duration::from_secs(21)),
            (vec![], vec!["ash".to_string()])
        );
        assert_eq!(
            ash.route("oci://orders@ns/sales/", None).region.as_deref(),
            Some("ash")
        );
        let h = ash.health()["ash"].clone();
        assert_eq!((h.failovers, h.failbacks), (1, 1));
        // Locations outside every group are read as they are.
        let r = ash.route("s3://other/x/", None);
        assert!(!r.replicated);
        assert_eq!(r.logical("s3://other/x/a"), "s3://other/x/a");
    }

    #[test]
    fn replica_mappings_are_checked() {
        let bad = |pairs, known: &[String]| {
            RegionsConfig::new(
                Some("ash".into()),
                pairs,
                known,
                FailoverSettings::default(),
            )
            .unwrap_err()
            .to_string()
        };
        let e = bad(
            vec![(copy("ash", "s3://a/"), copy("mars", "s3://b/"))],
            &["ash".into()],
        );
        assert!(
            e.contains("replicas[0].replica: region 'mars' is not configured"),
            "{e}"
        );
        let e = bad(
            vec![(copy("ash", "s3://a/"), copy("ash", "bucket-b"))],
            &["ash".into()],
        );
        assert!(
            e.contains("replicas[0].replica") && e.contains("bucket-b"),
            "{e}"
        );
        let e = bad(
            vec![(copy("ash", "s3://a/"), copy("ash", "s3://a"))],
            &["ash".into()],
        );
        assert!(e.contains("the replica is the primary itself"), "{e}");
    }
}
