//! The coordinator's watch over its workers: every second it asks each for its status. A worker
//! that has not answered three times in a row is taken out of the cluster: queries stop going
//! to it, and every table with a part on it is refreshed over the workers that answer (its files
//! are given to them; they take them from its snapshots when the workers share a
//! `snapshot_location`, see `crate::snapshot::shared`, else read them from the source), until
//! which the table answers
//! `table_recovering`. A worker that answers again is taken back, and the tables are spread over
//! it again on their next refresh, which is asked for at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tarn_catalog::CatalogStore;
use tarn_engine::MemoryStore;
use tarn_engine::store::{LoadState, PublishCause};
use tracing::{info, warn};

use super::Cluster;
use crate::load::Loader;

const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Probes missed in a row before a worker is taken out.
const DOWN_AFTER: u32 = 3;

/// What the monitor decides from one round of probes: which workers it takes out and back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub lost: Vec<String>,
    pub back: Vec<String>,
}

/// The monitor's memory of each worker: probes missed in a row, and whether it is in.
#[derive(Debug, Default)]
pub struct Health {
    missed: BTreeMap<String, u32>,
    out: std::collections::BTreeSet<String>,
}

impl Health {
    /// Takes one round of probes (worker, answered) and answers what changes.
    pub fn record(&mut self, probes: &[(String, bool)]) -> Changes {
        let mut changes = Changes::default();
        for (worker, answered) in probes {
            let missed = self.missed.entry(worker.clone()).or_default();
            if *answered {
                *missed = 0;
                if self.out.remove(worker) {
                    changes.back.push(worker.clone());
                }
            } else {
                *missed += 1;
                if *missed >= DOWN_AFTER && self.out.insert(worker.clone()) {
                    changes.lost.push(worker.clone());
                }
            }
        }
        changes
    }

    pub fn is_out(&self, worker: &str) -> bool {
        self.out.contains(worker)
    }
}

/// Starts the monitor.
pub fn spawn(
    cluster: Arc<Cluster>,
    loader: Arc<Loader>,
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut health = Health::default();
        let mut adopted = false;
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let answers = probe(&cluster, false).await;
            let probes: Vec<(String, bool)> = answers
                .iter()
                .map(|(w, info)| (w.clone(), info.is_some()))
                .collect();
            cluster.set_last_probe(answers.clone());
            let changes = health.record(&probes);
            if !adopted && probes.iter().all(|(_, up)| *up) {
                // Once, when every worker answers: their parts with their files.
                let with_files = probe(&cluster, true).await;
                if with_files.iter().all(|(_, info)| info.is_some()) {
                    adopted = true;
                    adopt(&cluster, &catalog, &memory, &with_files).await;
                }
            }
            if changes == Changes::default() {
                continue;
            }
            let live: Vec<String> = probes
                .iter()
                .map(|(w, _)| w.clone())
                .filter(|w| !health.is_out(w))
                .collect();
            cluster.set_live(&live);
            for w in &changes.lost {
                warn!(worker = %w, "a worker stopped answering: its parts go to the others");
            }
            for w in &changes.back {
                info!(worker = %w, "a worker answers again: the tables spread over it");
            }
            for entry in memory.entries() {
                let Some(version) = entry.current() else {
                    continue;
                };
                let Some(parts) = &version.remote else {
                    continue;
                };
                let lost_part = parts
                    .iter()
                    .any(|p| p.rows > 0 && changes.lost.contains(&p.worker));
                if !changes.back.is_empty() {
                    cluster.rebalance(&entry.key);
                }
                if (lost_part || !changes.back.is_empty())
                    && let Err(e) = loader.request_refresh(&entry.key)
                {
                    warn!(table = %entry.key, error = %e, "cannot refresh the table over the workers that answer");
                }
            }
        }
    })
}

/// Every worker's answer to a probe (with `files`, its parts' files and columns too); `None`
/// for a worker that gave none.
async fn probe(cluster: &Cluster, files: bool) -> Vec<(String, Option<super::WorkerInfo>)> {
    cluster
        .status(files)
        .await
        .into_iter()
        .map(|(w, info)| (w, info.ok()))
        .collect()
}

/// After a restart: every table the workers hold parts of, and this coordinator has not loaded,
/// is published from those parts (as they are; nothing is read).
async fn adopt(
    cluster: &Cluster,
    catalog: &CatalogStore,
    memory: &Arc<MemoryStore>,
    answers: &[(String, Option<super::WorkerInfo>)],
) {
    for (_, def) in catalog.all_tables() {
        let entry = memory.entry(&def.key);
        let _writer = entry.writer.lock().await;
        if entry.current().is_some() {
            continue;
        }
        match cluster.adopt(&def, answers, &entry) {
            Ok(Some(version)) => {
                let (rows, parts) = (version.rows, version.remote.as_ref().map_or(0, Vec::len));
                memory
                    .publish(&entry, Arc::new(version), PublishCause::Recovery)
                    .await;
                entry.update_status(|s| {
                    s.load_status = LoadState::Avail;
                    s.load_progress = 100.0;
                    s.load_end = Some(Utc::now());
                    s.last_success = s.load_end;
                });
                info!(table = %def.key, rows, parts, "taken back from the workers' parts");
            }
            Ok(None) => {}
            Err(e) => warn!(table = %def.key, error = %e, "cannot take the workers' parts back"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_out_after_three_missed_probes_and_back_at_its_first_answer() {
        let mut h = Health::default();
        let round = |h: &mut Health, a: bool, b: bool| {
            h.record(&[("a".to_string(), a), ("b".to_string(), b)])
        };
        assert_eq!(round(&mut h, true, false), Changes::default());
        assert_eq!(round(&mut h, true, false), Changes::default());
        assert_eq!(
            round(&mut h, true, false),
            Changes {
                lost: vec!["b".into()],
                back: vec![]
            }
        );
        assert!(h.is_out("b") && !h.is_out("a"));
        // Still out: no second change.
        assert_eq!(round(&mut h, true, false), Changes::default());
        assert_eq!(
            round(&mut h, true, true),
            Changes {
                lost: vec![],
                back: vec!["b".into()]
            }
        );
        // One missed probe between answers is not enough.
        assert_eq!(round(&mut h, false, true), Changes::default());
        assert_eq!(round(&mut h, true, true), Changes::default());
        assert!(!h.is_out("a"));
    }
}
