//! Region health and the failover decision: after `failure_threshold` failures in a row a region
//! is failed over; once it has answered every probe for `failback_after`, it is failed back.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::FailoverSettings;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub failed_over: bool,
    #[serde(skip)]
    pub healthy_since: Option<Instant>,
    pub failovers: u64,
    pub failbacks: u64,
    pub last_failover: Option<DateTime<Utc>>,
    pub last_failback: Option<DateTime<Utc>>,
    pub last_probe: Option<DateTime<Utc>>,
    pub last_probe_ok: Option<bool>,
}

/// What one probe round saw of a region: failures in a row (as its gate counts requests and
/// probes), and whether this round's probe answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub failures: u32,
    pub answered: bool,
}

/// Takes one probe round's outcomes into `health` and decides. Returns the regions failed over
/// and failed back by it.
pub fn decide(
    health: &mut BTreeMap<String, Health>,
    outcomes: &BTreeMap<String, ProbeOutcome>,
    settings: &FailoverSettings,
    now: Instant,
) -> (Vec<String>, Vec<String>) {
    let (mut over, mut back) = (Vec::new(), Vec::new());
    for (region, outcome) in outcomes {
        let h = health.entry(region.clone()).or_default();
        h.last_probe = Some(Utc::now());
        h.last_probe_ok = Some(outcome.answered);
        if !h.failed_over {
            if outcome.failures >= settings.failure_threshold {
                h.failed_over = true;
                h.healthy_since = None;
                h.failovers += 1;
                h.last_failover = Some(Utc::now());
                over.push(region.clone());
            }
        } else if outcome.failures == 0 && outcome.answered {
            let since = *h.healthy_since.get_or_insert(now);
            if now.duration_since(since) >= settings.failback_after {
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
