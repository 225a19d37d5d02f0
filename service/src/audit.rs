//! The audit log: one JSON line per change a caller asked for (DDL, loads and unloads, refreshes,
//! token changes, region cuts and restores): when, who, what, on what, and how it ended. Queries
//! are not logged. Lines carry names, never secrets: no statement text (a location may carry a
//! pre-authenticated token), no token.
//!
//! The file is `data_dir/audit.log` unless `audit_log` names another ("" turns it off); lines are
//! appended and flushed one at a time, so a crash loses at most the line being written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use serde_json::json;

use crate::access::Caller;
use crate::error::{Result, ServiceError};

pub struct Audit {
    file: Option<Mutex<std::fs::File>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("path", &self.path).finish()
    }
}

impl Audit {
    /// The log at `path` (appended to, created owner-only); none writes nothing.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self {
                file: None,
                path: None,
            });
        };
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ServiceError::Config(format!("audit_log {}: {e}", path.display())))?;
        Ok(Self {
            file: Some(Mutex::new(file)),
            path: Some(path.to_path_buf()),
        })
    }

    /// Records that `caller` did `action` on `target`, with `outcome`.
    pub fn record<T>(&self, caller: &Caller, action: &str, target: &str, outcome: &Result<T>) {
        let Some(file) = &self.file else {
            return;
        };
        let mut line = json!({
            "at": Utc::now(),
            "who": caller.name,
            "role": caller.role.as_str(),
            "action": action,
            "target": target,
            "outcome": if outcome.is_ok() { "ok" } else { "error" },
        });
        if let Err(e) = outcome {
            line["error"] = json!({"code": e.code().as_str(), "message": e.to_string()});
        }
        let mut text = line.to_string();
        text.push('\n');
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.flush()) {
            tracing::warn!(error = %e, "audit log not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;

    #[test]
    fn lines_say_who_did_what_and_how_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(Some(&path)).unwrap();
        let caller = Caller {
            name: "ops".into(),
            role: Role::Loader,
            databases: None,
        };
        audit.record(&caller, "secondary_load", "s.t", &Ok(()));
        audit.record::<()>(
            &caller,
            "refresh",
            "s.u",
            &Err(ServiceError::NotFound("no table s.u".into())),
        );
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (
                &lines[0]["who"],
                &lines[0]["action"],
                &lines[0]["target"],
                &lines[0]["outcome"]
            ),
            (
                &json!("ops"),
                &json!("secondary_load"),
                &json!("s.t"),
                &json!("ok")
            )
        );
        assert_eq!(lines[1]["error"]["code"], "not_found");
        assert!(lines[0]["at"].is_string());
        // Appended across restarts.
        Audit::open(Some(&path))
            .unwrap()
            .record(&caller, "unload", "s.t", &Ok(()));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        // Off: nothing written.
        Audit::open(None)
            .unwrap()
            .record(&caller, "unload", "s.t", &Ok(()));
    }
}
