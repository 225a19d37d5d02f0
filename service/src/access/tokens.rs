//! Access tokens.
//!
//! The admin token, named `admin`, is `admin_token` / `TARN_ADMIN_TOKEN` when configured; else it
//! is generated at first start and written to `<data_dir>/admin.token` (owner-only, 0600), where
//! `tarn sql` and `tarn drill` on the same machine find it. An admin creates the other tokens
//! (`POST /v1/tokens`); they are kept in `<data_dir>/tokens.json` as SHA-256 hashes only, written
//! atomically, and a presented token is compared with every known hash in constant time. A token
//! is shown once, when it is created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, Role};
use crate::error::{Result, ServiceError};

/// The admin token's name.
pub const ADMIN: &str = "admin";
/// Where a generated admin token is written, under the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
const TOKENS_FILE: &str = "tokens.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    name: String,
    role: Role,
    databases: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    /// SHA-256 of the token, hex.
    sha256: String,
    /// SHA1(SHA1(token)), hex: what MySQL's `mysql_native_password` checks a login against (the
    /// token itself is never kept). Tokens made before the MySQL door have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mysql_native: Option<String>,
}

impl Stored {
    /// Who presents this token, unless it has expired.
    fn caller(&self) -> Result<Caller> {
        if self.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(unauthorized(&format!(
                "the token '{}' expired; ask an admin for a new one",
                self.name
            )));
        }
        Ok(Caller {
            name: self.name.clone(),
            role: self.role,
            databases: self
                .databases
                .as_ref()
                .map(|d| Arc::new(d.iter().cloned().collect::<BTreeSet<_>>())),
        })
    }
}

/// A token as it is listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub databases: Option<Vec<String>>,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What `POST /v1/tokens` asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// How long the token is valid, e.g. `30d` (humantime); none: until deleted.
    #[serde(default)]
    pub expires_in: Option<String>,
}

pub struct Tokens {
    path: PathBuf,
    admin: [u8; 32],
    /// The admin token's SHA1(SHA1(token)), for MySQL logins.
    admin_native: [u8; 20],
    users: RwLock<BTreeMap<String, Stored>>,
    /// Held while the file is written, so two changes never interleave.
    write: Mutex<()>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("path", &self.path).finish()
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// SHA1(SHA1(token)): MySQL's stored form of a `mysql_native_password` password.
fn double_sha1(token: &str) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::digest(Sha1::digest(token.as_bytes())).into()
}

/// Whether `response` is the `mysql_native_password` answer to `scramble` for the password whose
/// SHA1(SHA1()) is `stored`: the client sends SHA1(p) XOR SHA1(scramble + SHA1(SHA1(p))), so
/// XOR-ing that back out gives SHA1(p), whose SHA1 must be `stored` (compared in constant time).
fn native_password_matches(stored: &[u8; 20], scramble: &[u8], response: &[u8]) -> bool {
    use sha1::{Digest, Sha1};
    if response.len() != 20 {
        return false;
    }
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stored);
    let mask: [u8; 20] = h.finalize().into();
    let stage1: Vec<u8> = response.iter().zip(mask).map(|(r, m)| r ^ m).collect();
    let check: [u8; 20] = Sha1::digest(&stage1).into();
    bool::from(check.ct_eq(stored))
}

fn unauthorized(why: &str) -> ServiceError {
    ServiceError::Unauthorized(why.to_string())
}

/// A new random token: `tarn_` and 64 hex digits (256 bits).
fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Internal(format!("no randomness for a token: {e}")))?;
    Ok(format!("tarn_{}", hex::encode(bytes)))
}

/// The admin token: `configured`, or the one in `<data_dir>/admin.token`, generated there (0600)
/// when there is none yet.
fn admin_token(data_dir: &Path, configured: Option<&str>) -> Result<String> {
    if let Some(t) = configured {
        if t.trim().len() < 16 {
            return Err(ServiceError::Config(
                "admin_token must be at least 16 characters long".into(),
            ));
        }
        return Ok(t.trim().to_string());
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let io = |e: std::io::Error| {
        ServiceError::Config(format!("admin token file {}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let token = generate()?;
    tarn_catalog::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
    tracing::info!(file = %path.display(), "generated the admin token");
    Ok(token)
}

impl Tokens {
    /// The tokens of `data_dir`, with the admin token `admin_token` (or the one generated there).
    pub fn open(data_dir: &Path, admin_token_configured: Option<&str>) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ServiceError::Config(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let admin_plain = admin_token(data_dir, admin_token_configured)?;
        let admin = sha256(&admin_plain);
        let admin_native = double_sha1(&admin_plain);
        let path = data_dir.join(TOKENS_FILE);
        let users = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Stored>>(&bytes)
                .map_err(|e| ServiceError::Config(format!("{}: {e}", path.display())))?
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(ServiceError::Config(format!("{}: {e}", path.display()))),
        };
        Ok(Self {
            path,
            admin,
            admin_native,
            users: RwLock::new(users),
            write: Mutex::new(()),
        })
    }

    /// Who presents `token`. Every known hash is compared, each in constant time.
    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        let hash = sha256(token);
        let mut found = None;
        if bool::from(hash.ct_eq(&self.admin)) {
            found = Some(Caller {
                name: ADMIN.into(),
                role: Role::Admin,
                databases: None,
            });
        }
        let hex = hex::encode(hash);
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        for s in users.values() {
            if bool::from(s.sha256.as_bytes().ct_eq(hex.as_bytes())) {
                found = Some(s.caller()?);
            }
        }
        found.ok_or_else(|| unauthorized("the token is not known"))
    }

    /// Who logs in over the MySQL protocol as `name` with `response`, the client's
    /// `mysql_native_password` answer to `scramble` for the token.
    pub fn authenticate_native(
        &self,
        name: &str,
        scramble: &[u8],
        response: &[u8],
    ) -> Result<Caller> {
        let denied = || {
            unauthorized(&format!(
                "access denied for '{name}': the token does not match"
            ))
        };
        if name == ADMIN {
            return if native_password_matches(&self.admin_native, scramble, response) {
                Ok(Caller {
                    name: ADMIN.into(),
                    role: Role::Admin,
                    databases: None,
                })
            } else {
                Err(denied())
            };
        }
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let s = users.get(name).ok_or_else(denied)?;
        let stored: [u8; 20] = s
            .mysql_native
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                unauthorized(&format!(
                    "the token '{name}' was made before the MySQL door: create it again to log in with it"
                ))
            })?;
        if !native_password_matches(&stored, scramble, response) {
            return Err(denied());
        }
        s.caller()
    }

    /// Creates a token; answers it (shown this once) and its listing.
    pub fn create(&self, new: NewToken) -> Result<(String, TokenInfo)> {
        let name = new.name.trim().to_string();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(ServiceError::BadRequest(format!(
                "token name '{name}': use 1 to 64 letters, digits, '_', '.' or '-'"
            )));
        }
        if name == ADMIN {
            return Err(ServiceError::BadRequest(
                "the name 'admin' is the admin token's (set by admin_token / TARN_ADMIN_TOKEN)"
                    .into(),
            ));
        }
        let expires_in: Option<Duration> = new
            .expires_in
            .as_deref()
            .map(|s| {
                humantime::parse_duration(s)
                    .map_err(|e| ServiceError::BadRequest(format!("expires_in = '{s}': {e}")))
            })
            .transpose()?;
        let databases = new.databases.map(|d| {
            d.iter()
                .map(|d| d.trim().to_lowercase())
                .collect::<Vec<_>>()
        });
        if databases.as_ref().is_some_and(|d| d.is_empty()) {
            return Err(ServiceError::BadRequest(
                "databases: name at least one, or leave it out for all".into(),
            ));
        }
        let token = generate()?;
        let now = Utc::now();
        let stored = Stored {
            name: name.clone(),
            role: new.role,
            databases,
            created_at: now,
            expires_at: expires_in
                .and_then(|d| chrono::Duration::from_std(d).ok().map(|d| now + d)),
            sha256: hex::encode(sha256(&token)),
            mysql_native: Some(hex::encode(double_sha1(&token))),
        };
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.users.read().unwrap_or_else(|e| e.into_inner()).clone();
        if next.contains_key(&name) {
            return Err(ServiceError::AlreadyExists(format!(
                "a token named '{name}' exists; delete it first to replace it"
            )));
        }
        next.insert(name.clone(), stored.clone());
        self.persist(&next)?;
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok((token, info(&stored)))
    }

    /// Every token but the secrets, the admin token first.
    pub fn list(&self) -> Vec<TokenInfo> {
        let admin = TokenInfo {
            name: ADMIN.into(),
            role: Role::Admin,
            databases: None,
            created_at: None,
            expires_at: None,
        };
        std::iter::once(admin)
            .chain(
                self.users
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .map(info),
            )
            .collect()
    }

    /// Deletes the token `name`: it is refused from now on.
    pub fn delete(&self, name: &str) -> Result<()> {
        if name == ADMIN {
            return Err(ServiceError::BadRequest(
                "the admin token is set by admin_token / TARN_ADMIN_TOKEN and cannot be deleted"
                    .into(),
            ));
        }
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.users.read().unwrap_or_else(|e| e.into_inner()).clone();
        if next.remove(name).is_none() {
            return Err(ServiceError::NotFound(format!("no token named '{name}'")));
        }
        self.persist(&next)?;
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn persist(&self, users: &BTreeMap<String, Stored>) -> Result<()> {
        let list: Vec<&Stored> = users.values().collect();
        let bytes = serde_json::to_vec_pretty(&list)
            .map_err(|e| ServiceError::Internal(format!("tokens: {e}")))?;
        tarn_catalog::write_atomic(&self.path, &bytes, 0o600)?;
        Ok(())
    }
}

fn info(s: &Stored) -> TokenInfo {
    TokenInfo {
        name: s.name.clone(),
        role: s.role,
        databases: s.databases.clone(),
        created_at: Some(s.created_at),
        expires_at: s.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// What a MySQL client sends for `password` and `scramble` (mysql_native_password).
    fn client_answer(password: &str, scramble: &[u8]) -> Vec<u8> {
        use sha1::{Digest, Sha1};
        let stage1: [u8; 20] = Sha1::digest(password.as_bytes()).into();
        let stage2: [u8; 20] = Sha1::digest(stage1).into();
        let mut h = Sha1::new();
        h.update(scramble);
        h.update(stage2);
        let mask: [u8; 20] = h.finalize().into();
        stage1.iter().zip(mask).map(|(a, b)| a ^ b).collect()
    }

    #[test]
    fn mysql_logins_check_the_token_by_name_without_keeping_it() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::open(dir.path(), Some("the-admin-token-0123")).unwrap();
        let scramble = b"01234567890123456789";
        let ok = tokens
            .authenticate_native(
                "admin",
                scramble,
                &client_answer("the-admin-token-0123", scramble),
            )
            .unwrap();
        assert_eq!(ok.role, Role::Admin);
        let (secret, _) = tokens
            .create(NewToken {
                name: "bi".into(),
                role: Role::Reader,
                databases: None,
                expires_in: None,
            })
            .unwrap();
        let bi = tokens
            .authenticate_native("bi", scramble, &client_answer(&secret, scramble))
            .unwrap();
        assert_eq!((bi.name.as_str(), bi.role), ("bi", Role::Reader));
        // The wrong token, another user's token, another scramble, an unknown name: refused.
        for (name, password, s) in [
            ("bi", "tarn_wrong", &scramble[..]),
            ("bi", "the-admin-token-0123", &scramble[..]),
            ("admin", secret.as_str(), &scramble[..]),
            ("nobody", secret.as_str(), &scramble[..]),
        ] {
            let e = tokens
                .authenticate_native(name, s, &client_answer(password, s))
                .unwrap_err();
            assert_eq!(e.code().as_str(), "unauthorized", "{name}");
        }
        let other = b"98765432109876543210";
        assert!(
            tokens
                .authenticate_native("bi", other, &client_answer(&secret, scramble))
                .is_err()
        );
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&secret));
    }

    #[test]
    fn tokens_are_generated_hashed_scoped_expired_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::open(dir.path(), None).unwrap();
        let file = dir.path().join(ADMIN_TOKEN_FILE);
        let admin = std::fs::read_to_string(&file).unwrap().trim().to_string();
        assert!(admin.starts_with("tarn_") && admin.len() == 69, "{admin}");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(tokens.authenticate(&admin).unwrap().role, Role::Admin);
        // The same file is used again after a restart.
        let again = Tokens::open(dir.path(), None).unwrap();
        assert!(again.authenticate(&admin).is_ok());

        let (secret, listed) = tokens
            .create(NewToken {
                name: "bi".into(),
                role: Role::Reader,
                databases: Some(vec!["Sales".into()]),
                expires_in: None,
            })
            .unwrap();
        assert_eq!(listed.databases, Some(vec!["sales".to_string()]));
        let caller = tokens.authenticate(&secret).unwrap();
        assert_eq!((caller.name.as_str(), caller.role), ("bi", Role::Reader));
        assert!(caller.sees("sales") && !caller.sees("hr"));
        // Only the hash is stored, owner-only.
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&secret) && stored.contains(&hex::encode(sha256(&secret))));
        assert_eq!(
            std::fs::metadata(dir.path().join(TOKENS_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // It survives a restart; a wrong token does not pass.
        let again = Tokens::open(dir.path(), None).unwrap();
        assert_eq!(again.authenticate(&secret).unwrap().name, "bi");
        let e = again.authenticate("tarn_0000").unwrap_err();
        assert_eq!(e.code().as_str(), "unauthorized");

        let dup = NewToken {
            name: "bi".into(),
            role: Role::Admin,
            databases: None,
            expires_in: None,
        };
        assert_eq!(
            tokens.create(dup).unwrap_err().code().as_str(),
            "already_exists"
        );
        let bad = |name: &str, expires: Option<&str>| {
            tokens
                .create(NewToken {
                    name: name.into(),
                    role: Role::Reader,
                    databases: None,
                    expires_in: expires.map(str::to_string),
                })
                .unwrap_err()
                .to_string()
        };
        assert!(bad("a b", None).contains("token name 'a b'"));
        assert!(bad("admin", None).contains("the admin token's"));
        assert!(bad("x", Some("soon")).contains("expires_in = 'soon'"));

        let (short, _) = tokens
            .create(NewToken {
                name: "short".into(),
                role: Role::Loader,
                databases: None,
                expires_in: Some("1ms".into()),
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let e = tokens.authenticate(&short).unwrap_err().to_string();
        assert!(e.contains("the token 'short' expired"), "{e}");

        assert_eq!(
            tokens
                .list()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["admin", "bi", "short"]
        );
        tokens.delete("bi").unwrap();
        assert!(tokens.authenticate(&secret).is_err());
        assert_eq!(
            tokens.delete("bi").unwrap_err().code().as_str(),
            "not_found"
        );
        assert!(tokens.delete(ADMIN).is_err());

        // A configured admin token replaces the file's.
        let configured = Tokens::open(dir.path(), Some("a-configured-admin-token")).unwrap();
        assert!(configured.authenticate("a-configured-admin-token").is_ok());
        assert!(configured.authenticate(&admin).is_err());
        assert!(Tokens::open(dir.path(), Some("short")).is_err());
    }
}
