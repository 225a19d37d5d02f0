//! Regions, replicas and failover.
//!
//! A table is defined once, by a location. `[[replicas]]` says which buckets in which regions
//! hold copies of which; the copies of one primary form a group. A table whose location lies in
//! a group is read from the copy in this instance's home region (else the primary, else the other
//! copies in the order configured), skipping regions that are failed over.
//!
//! Each region's store health is what its gate saw (every request, and a probe every
//! `probe_interval`). After `failure_threshold` failures in a row the region is failed over: the
//! requests in flight to it are aborted and every table reading it is refreshed from the next
//! copy. Once the region has answered every probe for `failback_after`, it is failed back and its
//! tables are refreshed from it again. Loaded data keeps answering throughout; only refreshes
//! change what is served, and a refresh never moves a table backwards (see `load.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tarn_catalog::TableKey;
use tarn_connectors::Location;
use tracing::{info, warn};

use crate::error::{Result, ServiceError};
use crate::state::AppState;

/// One copy: a location (a prefix ending in `/`) in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub region: String,
    pub location: String,
}

/// The `[failover]` settings.
#[derive(Debug, Clone)]
pub struct FailoverSettings {
    pub probe_interval: Duration,
    pub failure_threshold: u32,
    pub failback_after: Duration,
    /// How long a file loaded from one copy and not (or not alike) on the copy now read is taken
    /// to be on its way there, and kept.
    pub max_replication_lag: Duration,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            failure_threshold: 3,
            failback_after: Duration::from_secs(30),
            max_replication_lag: Duration::from_secs(600),
        }
    }
}

/// The regions as configured: the home region, the groups of copies, the failover settings.
#[derive(Debug, Clone, Default)]
pub struct RegionsConfig {
    pub home_region: Option<String>,
    /// Each group lists its primary first.
    pub groups: Vec<Vec<Copy>>,
    pub settings: FailoverSettings,
}

impl RegionsConfig {
    /// Groups `primary -> replica` pairs by primary. Locations must parse and regions must be
    /// known (configured, or the home region).
    pub fn new(
        home_region: Option<String>,
        pairs: Vec<(Copy, Copy)>,
        known_regions: &[String],
        settings: FailoverSettings,
    ) -> Result<Self> {
        let mut groups: Vec<Vec<Copy>> = Vec::new();
        for (i, (primary, replica)) in pairs.into_iter().enumerate() {
            let fix = |c: Copy, what: &str| -> Result<Copy> {
                let bad =
                    |why: String| ServiceError::Config(format!("replicas[{i}].{what}: {why}"));
                if !known_regions.contains(&c.region) && home_region.as_ref() != Some(&c.region) {
                    return Err(bad(format!(
                        "region '{}' is not configured: add [regions.{}] or set home_region",
                        c.region, c.region
                    )));
                }
                let loc = Location::parse(&c.location).map_err(|e| bad(e.to_string()))?;
                if matches!(loc, Location::Http { .. }) {
                    return Err(bad(format!(
                        "'{}': replicas are buckets (s3://, oci://) or file:// directories",
                        c.location
                    )));
                }
                let mut location = c.location.clone();
                if !location.ends_with('/') {
                    location.push('/');
                }
                Ok(Copy {
                    region: c.region,
                    location,
                })
            };
            let (primary, replica) = (fix(primary, "primary")?, fix(replica, "replica")?);
            if primary.location == replica.location && primary.region == replica.region {
                return Err(ServiceError::Config(format!(
                    "replicas[{i}]: the replica is the primary itself"
                )));
            }
            match groups.iter_mut().find(|g| g[0] == primary) {
                Some(g) if !g.contains(&replica) => g.push(replica),
                Some(_) => {}
                None => groups.push(vec![primary, replica]),
            }
        }
        Ok(Self {
            home_region,
            groups,
            settings,
        })
    }
}

/// Where a table's files are read from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The location to read (the table's own, or the same path in another copy).
    pub uri: String,
    pub region: Option<String>,
    /// The copy's prefix as the table names it, and the prefix of the copy read: files are
    /// known by the first (so copies compare by path, ETag and size), read through the second.
    pub logical_prefix: String,
    pub read_prefix: String,
    /// The table's location lies in a group of copies.
    pub replicated: bool,
}

impl Route {
    /// The name a file read through this route is known by.
    pub fn logical(&self, uri: &str) -> String {
        match uri.strip_prefix(&self.read_prefix) {
            Some(rest) if self.replicated => format!("{}{rest}", self.logical_prefix),
            _ => uri.to_string(),
        }
    }
}

/// Which copy a table read last, and what it carried over from the one before.
#[derive(Debug, Clone)]
pub struct SourceState {
    pub region: Option<String>,
    pub uri: String,
    pub read_prefix: String,
    /// When the table switched to this copy.
    pub since: Instant,
    /// Files (by logical URI) loaded from the previous copy that this copy has not shown yet
    /// with the same ETag and size. They are kept as loaded until it does, or until
    /// `max_replication_lag` has passed since the switch.
    pub pending: HashSet<String>,
    /// The copy read is behind (a Delta commit whose data files have not arrived): the monitor
    /// retries the refresh every probe until it succeeds.
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Health {
    failed_over: bool,
    #[serde(skip)]
    healthy_since: Option<Instant>,
    failovers: u64,
    failbacks: u64,
    last_failover: Option<DateTime<Utc>>,
    last_failback: Option<DateTime<Utc>>,
    last_probe: Option<DateTime<Utc>>,
    last_probe_ok: Option<bool>,
}

/// Region health and the failover decisions, shared by the whole service.
#[derive(Debug)]
pub struct Regions {
    config: RegionsConfig,
    health: Mutex<BTreeMap<String, Health>>,
}

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
        let plain = Route {
            uri: uri.to_string(),
            region: region
                .map(str::to_string)
                .or_else(|| self.config.home_region.clone()),
            logical_prefix: String::new(),
            read_prefix: String::new(),
            replicated: false,
        };
        // The copy the location lies in (the longest prefix, should copies nest).
        let Some((group, named)) = self
            .config
            .groups
            .iter()
            .flat_map(|g| g.iter().map(move |c| (g, c)))
            .filter(|(_, c)| uri.starts_with(&c.location))
            .filter(|(_, c)| region.is_none_or(|r| r == c.region))
            .max_by_key(|(_, c)| c.location.len())
        else {
            return plain;
        };
        let home = self.config.home_region.as_deref();
        let mut order: Vec<&Copy> = group
            .iter()
            .filter(|c| Some(c.region.as_str()) == home)
            .collect();
        order.extend(group.iter().filter(|c| Some(c.region.as_str()) != home));
        let chosen = order
            .iter()
            .find(|c| !self.is_failed_over(&c.region))
            .unwrap_or(&order[0]);
        Route {
            uri: format!("{}{}", chosen.location, &uri[named.location.len()..]),
            region: Some(chosen.region.clone()),
            logical_prefix: named.location.clone(),
            read_prefix: chosen.location.clone(),
            replicated: true,
        }
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

    /// Takes one probe round's outcome (`failures` in a row per region, as the gates count
    /// them) and decides. Returns the regions failed over and failed back by it.
    fn decide(
        &self,
        failures: &BTreeMap<String, (u32, bool)>,
        now: Instant,
    ) -> (Vec<String>, Vec<String>) {
        let s = &self.config.settings;
        let (mut over, mut back) = (Vec::new(), Vec::new());
        let mut health = self.health();
        for (region, &(failed, probed_ok)) in failures {
            let h = health.entry(region.clone()).or_default();
            h.last_probe = Some(Utc::now());
            h.last_probe_ok = Some(probed_ok);
            if !h.failed_over {
                if failed >= s.failure_threshold {
                    h.failed_over = true;
                    h.healthy_since = None;
                    h.failovers += 1;
                    h.last_failover = Some(Utc::now());
                    over.push(region.clone());
                }
            } else if failed == 0 && probed_ok {
                let since = *h.healthy_since.get_or_insert(now);
                if now.duration_since(since) >= s.failback_after {
                    h.failed_over = false;
                    h.healthy_since = None;
                    h.failbacks += 1;
                    h.last_failback = Some(Utc::now());
                    back.push(region.clone());
                }
            } else {
                h.healthy_since = None;
            }
        }
        (over, back)
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
    pub replicas: Vec<Vec<Copy>>,
    pub tables: Vec<TableSource>,
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
    pub failovers: u64,
    pub failbacks: u64,
    pub last_failover: Option<DateTime<Utc>>,
    pub last_failback: Option<DateTime<Utc>>,
    pub last_probe: Option<DateTime<Utc>>,
    pub last_probe_ok: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct TableSource {
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

pub fn report(state: &AppState) -> RegionsReport {
    let regions = &state.regions;
    let health = regions.health().clone();
    let region_reports = health
        .iter()
        .map(|(name, h)| {
            let gate = state.stores.gate(name);
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
                failovers: h.failovers,
                failbacks: h.failbacks,
                last_failover: h.last_failover,
                last_failback: h.last_failback,
                last_probe: h.last_probe,
                last_probe_ok: h.last_probe_ok,
            }
        })
        .collect();
    let mut tables = Vec::new();
    for (_, def) in state.catalog.all_tables() {
        let key = def.key.clone();
        let Some(spec) = def.files.first() else {
            continue;
        };
        let entry = state.memory.get(&key);
        let source = entry.as_ref().and_then(|e| e.source());
        let route = regions.route(&spec.uri, spec.region.as_deref());
        tables.push(TableSource {
            table: key.to_string(),
            location: tarn_connectors::location::redact(&spec.uri),
            source_region: source.as_ref().and_then(|s| s.region.clone()),
            source_location: source
                .as_ref()
                .map(|s| tarn_connectors::location::redact(&s.uri)),
            route_region: route.region,
            version: entry.as_ref().and_then(|e| e.current()).map(|v| v.version),
            last_success: entry.as_ref().and_then(|e| e.status().last_success),
            files_awaiting_replication: source.as_ref().map_or(0, |s| s.pending.len()),
            waiting_for_replica: source.and_then(|s| s.waiting),
        });
    }
    RegionsReport {
        home_region: regions.config.home_region.clone(),
        failover_count: health.values().map(|h| h.failovers).sum(),
        failback_count: health.values().map(|h| h.failbacks).sum(),
        last_failover: health.values().filter_map(|h| h.last_failover).max(),
        last_failback: health.values().filter_map(|h| h.last_failback).max(),
        regions: region_reports,
        replicas: regions.config.groups.clone(),
        tables,
    }
}

/// Cuts this instance off from `region` (every request to it fails at once, as if its store were
/// down) or reconnects it. For failover drills.
pub fn set_cut(state: &AppState, region: &str, cut: bool) -> Result<()> {
    let gate = state
        .stores
        .gate(region)
        .ok_or_else(|| ServiceError::NotFound(format!("no region '{region}' is configured")))?;
    gate.set_cut(cut);
    warn!(region, cut, "region cut by an operator");
    Ok(())
}

/// Probes every region with copies each `probe_interval`, fails regions over and back, and
/// refreshes the tables whose copy should change (or that wait for a replica to catch up).
pub fn spawn_monitor(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let settings = state.regions.config.settings.clone();
        let targets = state.regions.probe_targets();
        let mut tick = tokio::time::interval(settings.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the monitor last asked each table to move to a copy, so a failing move is not
        // asked for again at every probe.
        let mut asked: HashMap<TableKey, (String, Instant)> = HashMap::new();
        loop {
            tick.tick().await;
            let probes = targets.iter().map(|(region, location)| {
                let state = state.clone();
                async move {
                    let ok = probe(&state, region, location).await;
                    (region.clone(), ok)
                }
            });
            let outcomes = futures::future::join_all(probes).await;
            let failures = outcomes
                .into_iter()
                .map(|(region, ok)| {
                    let n = state
                        .stores
                        .gate(&region)
                        .map_or(0, |g| g.consecutive_failures());
                    (region, (n, ok))
                })
                .collect();
            let (over, back) = state.regions.decide(&failures, Instant::now());
            for region in &over {
                warn!(
                    region,
                    "region failed over: its tables are read from their replicas"
                );
                if let Some(g) = state.stores.gate(region) {
                    g.abort_in_flight();
                }
            }
            for region in &back {
                info!(
                    region,
                    "region failed back: its tables are read from it again"
                );
            }
            move_tables(&state, &mut asked, settings.probe_interval);
        }
    })
}

/// One probe of `region`'s store at `location`: true when it answered.
async fn probe(state: &AppState, region: &str, location: &str) -> bool {
    let Ok(loc) = Location::parse(location) else {
        return false;
    };
    let store = match state.stores.probe_store_for(&loc, Some(region)).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(g) = state.stores.gate(region) {
                g.failed(&e.to_string());
            }
            return false;
        }
    };
    let key = format!("{}.tarn-probe", loc.key());
    tarn_connectors::gate::probe(store.as_ref(), &key)
        .await
        .is_ok()
}

/// Asks for a refresh of every loaded table whose route moved off the copy it reads, and of
/// every table waiting for its copy to catch up.
fn move_tables(
    state: &AppState,
    asked: &mut HashMap<TableKey, (String, Instant)>,
    probe_interval: Duration,
) {
    let again_after = (probe_interval * 3).max(Duration::from_secs(2));
    for (_, def) in state.catalog.all_tables() {
        let key = def.key.clone();
        let Some(spec) = def.files.first() else {
            continue;
        };
        let Some(entry) = state.memory.get(&key) else {
            continue;
        };
        if entry.current().is_none() || entry.status().recovering() {
            continue;
        }
        let route = state.regions.route(&spec.uri, spec.region.as_deref());
        if !route.replicated {
            continue;
        }
        let source = entry.source();
        let moved = source
            .as_ref()
            .is_some_and(|s| s.read_prefix != route.read_prefix);
        let waiting = source.as_ref().is_some_and(|s| s.waiting.is_some());
        if !moved && !waiting {
            asked.remove(&key);
            continue;
        }
        let recently = asked.get(&key).is_some_and(|(to, at)| {
            *to == route.read_prefix && at.elapsed() < again_after && !waiting
        });
        if recently {
            continue;
        }
        asked.insert(key.clone(), (route.read_prefix.clone(), Instant::now()));
        info!(table = %key, to = %tarn_connectors::location::redact(&route.uri), waiting, "refreshing from another copy");
        if let Err(e) = crate::load::request_refresh(state, &key) {
            warn!(table = %key, error = %e, "refresh not started");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(region: &str, location: &str) -> Copy {
        Copy {
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
        let fail = |n| BTreeMap::from([("ash".to_string(), (n, n == 0))]);
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
