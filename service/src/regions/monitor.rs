//! The monitor task: probes every region with copies each `probe_interval`, fails regions over and
//! back, and asks for a refresh of every table whose copy should change (or that waits for a
//! replica to catch up). Which tables those are is a pure decision ([`tables_to_move`]); the
//! tables themselves are the loader's, reached through [`ReplicatedTables`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tarn_catalog::TableKey;
use tarn_connectors::{Location, StoreRegistry};
use tracing::{info, warn};

use super::Regions;
use super::health::ProbeOutcome;
use crate::error::Result;

/// What the regions need to know of a table: where its definition points and which copy it read
/// last.
#[derive(Debug, Clone)]
pub struct TableCopies {
    pub key: TableKey,
    /// The table's first FILES entry, and the region the definition names, if any.
    pub uri: String,
    pub region: Option<String>,
    /// A version is loaded, and it is not being recovered.
    pub loaded: bool,
    pub recovering: bool,
    pub version: Option<u64>,
    pub last_success: Option<DateTime<Utc>>,
    /// The copy the last load or refresh read.
    pub copy: Option<CopySummary>,
}

#[derive(Debug, Clone)]
pub struct CopySummary {
    pub region: Option<String>,
    pub uri: String,
    pub read_prefix: String,
    /// Files kept from the previous copy until this one shows them.
    pub pending: usize,
    /// Why the copy read is behind, while it is.
    pub waiting: Option<String>,
}

/// The tables, as the monitor sees them (the loader answers).
pub trait ReplicatedTables: Send + Sync {
    fn tables(&self) -> Vec<TableCopies>;
    /// Asks for a refresh of `key` (joining one already asked for).
    fn request_refresh(&self, key: &TableKey) -> Result<()>;
}

/// Starts the monitor.
pub fn spawn(
    regions: Arc<Regions>,
    object_stores: Arc<StoreRegistry>,
    tables: Arc<dyn ReplicatedTables>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let settings = regions.config.settings.clone();
        let targets = regions.probe_targets();
        let mut tick = tokio::time::interval(settings.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the monitor last asked each table to move to a copy, so a failing move is not
        // asked for again at every probe.
        let mut asked: HashMap<TableKey, (String, Instant)> = HashMap::new();
        let again_after = (settings.probe_interval * 3).max(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let probes = targets.iter().map(|(region, location)| {
                let object_stores = object_stores.clone();
                async move {
                    let answered = probe(&object_stores, region, location).await;
                    (region.clone(), answered)
                }
            });
            let outcomes = futures::future::join_all(probes)
                .await
                .into_iter()
                .map(|(region, answered)| {
                    let failures = object_stores
                        .gate(&region)
                        .map_or(0, |g| g.consecutive_failures());
                    (region, ProbeOutcome { failures, answered })
                })
                .collect();
            let (over, back) = regions.decide(&outcomes, Instant::now());
            for region in &over {
                warn!(
                    region,
                    "region failed over: its tables are read from their replicas"
                );
                if let Some(g) = object_stores.gate(region) {
                    g.abort_in_flight();
                }
            }
            for region in &back {
                info!(
                    region,
                    "region failed back: its tables are read from it again"
                );
            }
            let moves = tables_to_move(&regions, &tables.tables(), &mut asked, again_after);
            for (key, to, waiting) in moves {
                info!(table = %key, to = %tarn_connectors::location::redact(&to), waiting, "refreshing from another copy");
                if let Err(e) = tables.request_refresh(&key) {
                    warn!(table = %key, error = %e, "refresh not started");
                }
            }
        }
    })
}

/// One probe of `region`'s store at `location`: true when it answered.
async fn probe(object_stores: &StoreRegistry, region: &str, location: &str) -> bool {
    let Ok(loc) = Location::parse(location) else {
        return false;
    };
    let store = match object_stores.probe_store_for(&loc, Some(region)).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(g) = object_stores.gate(region) {
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

/// The loaded tables whose route moved off the copy they read, and those waiting for their copy
/// to catch up: each with the location it will read now and whether it waits. A move asked for
/// less than `again_after` ago (`asked`) is not asked for again, unless the table waits.
fn tables_to_move(
    regions: &Regions,
    tables: &[TableCopies],
    asked: &mut HashMap<TableKey, (String, Instant)>,
    again_after: Duration,
) -> Vec<(TableKey, String, bool)> {
    let mut moves = Vec::new();
    for t in tables {
        if !t.loaded || t.recovering {
            continue;
        }
        let route = regions.route(&t.uri, t.region.as_deref());
        if !route.replicated {
            continue;
        }
        let moved = t
            .copy
            .as_ref()
            .is_some_and(|s| s.read_prefix != route.read_prefix);
        let waiting = t.copy.as_ref().is_some_and(|s| s.waiting.is_some());
        if !moved && !waiting {
            asked.remove(&t.key);
            continue;
        }
        let recently = asked.get(&t.key).is_some_and(|(to, at)| {
            *to == route.read_prefix && at.elapsed() < again_after && !waiting
        });
        if recently {
            continue;
        }
        asked.insert(t.key.clone(), (route.read_prefix.clone(), Instant::now()));
        moves.push((t.key.clone(), route.uri, waiting));
    }
    moves
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::regions::{FailoverSettings, RegionsConfig, Replica};

    #[test]
    fn tables_move_once_their_region_fails_over_and_are_not_asked_twice() {
        let copy = |region: &str, location: &str| Replica {
            region: region.into(),
            location: location.into(),
        };
        let config = RegionsConfig::new(
            Some("ash".into()),
            vec![(copy("ash", "s3://a/"), copy("chi", "s3://b/"))],
            &["ash".into(), "chi".into()],
            FailoverSettings {
                failure_threshold: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let regions = Regions::new(config, ["ash".to_string(), "chi".to_string()]);
        let table = |name: &str, read_prefix: &str, waiting: Option<&str>| TableCopies {
            key: TableKey::new("d", name),
            uri: "s3://a/t/".into(),
            region: None,
            loaded: true,
            recovering: false,
            version: Some(1),
            last_success: None,
            copy: Some(CopySummary {
                region: None,
                uri: format!("{read_prefix}t/"),
                read_prefix: read_prefix.into(),
                pending: 0,
                waiting: waiting.map(str::to_string),
            }),
        };
        let unloaded = TableCopies {
            loaded: false,
            ..table("gone", "s3://a/", None)
        };
        let tables = vec![table("t", "s3://a/", None), unloaded];
        let mut asked = HashMap::new();
        let wait = Duration::from_secs(60);
        assert!(tables_to_move(&regions, &tables, &mut asked, wait).is_empty());
        let down = BTreeMap::from([(
            "ash".to_string(),
            ProbeOutcome {
                failures: 1,
                answered: false,
            },
        )]);
        regions.decide(&down, Instant::now());
        let moves = tables_to_move(&regions, &tables, &mut asked, wait);
        assert_eq!(
            moves,
            vec![(TableKey::new("d", "t"), "s3://b/t/".to_string(), false)]
        );
        // Asked already, and the table still reads the old copy: not asked again yet.
        assert!(tables_to_move(&regions, &tables, &mut asked, wait).is_empty());
        // Once it reads the new copy, nothing more; a table waiting for its copy is asked every
        // round.
        let moved = vec![table("t", "s3://b/", None)];
        assert!(tables_to_move(&regions, &moved, &mut asked, wait).is_empty());
        let waiting = vec![table("t", "s3://b/", Some("behind"))];
        assert_eq!(
            tables_to_move(&regions, &waiting, &mut asked, wait).len(),
            1
        );
        assert_eq!(
            tables_to_move(&regions, &waiting, &mut asked, wait).len(),
            1
        );
    }
}
