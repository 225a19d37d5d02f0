//! The refresh scheduler: refreshes each loaded table whose definition (`REFRESH_INTERVAL`) or the
//! config (`refresh_interval`) gives an interval, with a little jitter so tables do not all fire at
//! once, and with exponential backoff after failures (up to 5 minutes). A refresh that is due
//! while the table is being loaded or refreshed waits for the next tick instead of queueing.

use std::time::Duration;

use chrono::Utc;
use tracing::debug;

use std::sync::Arc;

use super::Loader;

const TICK: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Up to a tenth of the interval, fixed per table, so tables spread out but stay predictable.
fn jitter(key: &str, interval: Duration) -> Duration {
    let h = key.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    interval.mul_f64((h % 1000) as f64 / 10_000.0)
}

/// The wait before the next refresh: the interval, doubled per failure in a row.
fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        interval
    } else {
        interval
            .saturating_mul(1u32 << failures.min(16))
            .min(MAX_BACKOFF.max(interval))
    }
}

/// Starts the scheduler; `default_interval` is the config's `refresh_interval`.
pub fn spawn(
    loader: Arc<Loader>,
    default_interval: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            for (_, def) in loader.catalog.all_tables() {
                let Some(interval) = def.options.refresh_interval.or(default_interval) else {
                    continue;
                };
                let Some(entry) = loader.memory.get(&def.key) else {
                    continue;
                };
                if entry.current().is_none() {
                    continue;
                }
                let now = Utc::now();
                let status = entry.status();
                let Some(next) = status.next_refresh else {
                    let first = interval + jitter(&def.key.to_string(), interval);
                    entry.update_status(|s| s.next_refresh = Some(now + first));
                    continue;
                };
                if now < next || entry.writer.try_lock().is_err() {
                    continue;
                }
                // Claim this run before it starts, so the next tick does not start it again.
                entry.update_status(|s| s.next_refresh = Some(now + interval));
                let (loader, key) = (loader.clone(), def.key.clone());
                tokio::spawn(async move {
                    let result = loader.refresh(&key).await;
                    let Some(entry) = loader.memory.get(&key) else {
                        return;
                    };
                    entry.update_status(|s| {
                        s.refresh_failures = if result.is_ok() {
                            0
                        } else {
                            s.refresh_failures + 1
                        };
                        let wait = next_delay(interval, s.refresh_failures)
                            + jitter(&key.to_string(), interval);
                        s.next_refresh = Some(Utc::now() + wait);
                    });
                    if let Err(e) = result {
                        debug!(table = %key, error = %e, "scheduled refresh failed");
                    }
                });
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes_and_jitter_stays_small() {
        let i = Duration::from_secs(1);
        assert_eq!(next_delay(i, 0), i);
        assert_eq!(next_delay(i, 1), Duration::from_secs(2));
        assert_eq!(next_delay(i, 3), Duration::from_secs(8));
        assert_eq!(next_delay(i, 30), MAX_BACKOFF);
        assert_eq!(
            next_delay(Duration::from_secs(600), 2),
            Duration::from_secs(600),
            "never shorter than the interval"
        );
        let j = jitter("db.t", i);
        assert!(j < i / 10 && j == jitter("db.t", i));
    }
}
