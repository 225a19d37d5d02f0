//! `[[replicas]]` and `[failover]` as configured: the groups of copies (each group lists its
//! primary first) and how region health is judged. Checked when the config is read.

use std::time::Duration;

use serde::Serialize;
use tarn_connectors::Location;

use crate::error::{Result, ServiceError};

/// One copy of a group of replicated buckets: a location (a prefix ending in `/`) in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
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
    pub groups: Vec<Vec<Replica>>,
    pub settings: FailoverSettings,
}

impl RegionsConfig {
    /// Groups `primary -> replica` pairs by primary. Locations must parse and regions must be
    /// known (configured, or the home region).
    pub fn new(
        home_region: Option<String>,
        pairs: Vec<(Replica, Replica)>,
        known_regions: &[String],
        settings: FailoverSettings,
    ) -> Result<Self> {
        let mut groups: Vec<Vec<Replica>> = Vec::new();
        for (i, (primary, replica)) in pairs.into_iter().enumerate() {
            let fix = |c: Replica, what: &str| -> Result<Replica> {
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
                Ok(Replica {
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
