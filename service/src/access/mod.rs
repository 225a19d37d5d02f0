//! Access: who is asking ([`Caller`]) and what their role lets them do.
//!
//! Roles are ordered: a `reader` queries (SQL, SHOW, DESCRIBE, status views, every GET endpoint,
//! `/metrics`); a `loader` also loads, unloads and refreshes (`SECONDARY_LOAD`/`UNLOAD`,
//! `CALL sys.HEATWAVE_LOAD`, the refresh endpoints); an `admin` does everything (DDL, tokens,
//! region cut/restore). Reader and loader tokens may be limited to some databases: the rest is
//! invisible to them (SHOW, status views and table lists leave it out) and refused by name.
//!
//! Every door asks the same questions here: the HTTP API per endpoint, the session per statement.
//! The tokens themselves are [`tokens`].

pub mod tokens;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServiceError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Loader,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Loader => "loader",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "reader" => Some(Self::Reader),
            "loader" => Some(Self::Loader),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// Who is asking: a token's name and role, and the databases it is limited to (none: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub databases: Option<Arc<BTreeSet<String>>>,
}

impl Caller {
    /// The service itself (the config's declared tables, recovery): an admin.
    pub fn service() -> Self {
        Self {
            name: "tarn".into(),
            role: Role::Admin,
            databases: None,
        }
    }

    /// Refuses unless the caller's role is at least `role`; `what` names the action.
    pub fn require(&self, role: Role, what: &str) -> Result<()> {
        if self.role >= role {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "{what} needs the {} role; the token '{}' is a {}",
            role.as_str(),
            self.name,
            self.role.as_str()
        )))
    }

    /// Whether the caller may see database `db` at all.
    pub fn sees(&self, db: &str) -> bool {
        self.databases
            .as_ref()
            .is_none_or(|dbs| dbs.contains(&db.to_lowercase()))
    }

    /// Refuses `db` unless the caller's token covers it.
    pub fn require_database(&self, db: &str) -> Result<()> {
        if self.sees(db) {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "the token '{}' is limited to the database(s) {}; '{db}' is not one of them",
            self.name,
            self.databases
                .as_ref()
                .map(|d| d.iter().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )))
    }

    /// Refuses unless the role is at least `role` and the token covers `db`.
    pub fn require_in(&self, role: Role, db: &str, what: &str) -> Result<()> {
        self.require(role, what)?;
        self.require_database(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_scopes_limit_databases() {
        let reader = Caller {
            name: "r".into(),
            role: Role::Reader,
            databases: Some(Arc::new(["sales".to_string()].into())),
        };
        assert!(reader.require(Role::Reader, "a query").is_ok());
        let e = reader.require(Role::Loader, "SECONDARY_LOAD").unwrap_err();
        assert_eq!(e.code().as_str(), "forbidden");
        assert_eq!(
            e.to_string(),
            "SECONDARY_LOAD needs the loader role; the token 'r' is a reader"
        );
        assert!(reader.sees("Sales") && !reader.sees("hr"));
        let e = reader.require_database("hr").unwrap_err().to_string();
        assert!(e.contains("limited to the database(s) sales; 'hr'"), "{e}");
        assert!(Caller::service().require(Role::Admin, "DDL").is_ok());
        assert_eq!(Role::parse("LOADER"), Some(Role::Loader));
        assert_eq!(Role::parse("root"), None);
    }
}
