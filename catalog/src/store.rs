//! The durable catalog: every database and table definition, kept in one JSON file in the data dir.
//!
//! Each change writes the whole catalog to a temporary file, fsyncs it, renames it over the old one
//! and fsyncs the directory, so a crash at any moment leaves either the old or the new catalog, never
//! a torn one. A change is acknowledged only after that, so acknowledged DDL survives `kill -9`.
//!
//! Locations that carry a credential (the token of an OCI pre-authenticated request) are kept out
//! of `catalog.json`: it holds them redacted, and `secrets.json` (readable by the owner only)
//! holds the full URIs, written first so the catalog never refers to a secret not yet on disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::model::{FileSpec, TableDef, TableKey, redact_uri};

const FILE_NAME: &str = "catalog.json";
const SECRETS_FILE_NAME: &str = "secrets.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CatalogFile {
    format_version: u32,
    /// Bumped on every change.
    generation: u64,
    /// Table ids are never reused, so status views can name a table across drops and re-creates.
    next_table_id: u64,
    databases: BTreeMap<String, BTreeMap<String, StoredTable>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTable {
    id: u64,
    def: TableDef,
}

/// What a change to the catalog did: changed it (and is written), or left it as it was.
enum Change<T> {
    Changed(T),
    Unchanged(T),
}

/// The catalog as persisted in `<data_dir>/catalog.json`.
#[derive(Debug)]
pub struct CatalogStore {
    path: PathBuf,
    secrets_path: PathBuf,
    state: Mutex<CatalogFile>,
}

impl CatalogStore {
    /// Opens (or creates) the catalog in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        fs::create_dir_all(data_dir).map_err(|source| CatalogError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let secrets_path = data_dir.join(SECRETS_FILE_NAME);
        // A leftover temporary file is a write that never committed: drop it.
        let _ = fs::remove_file(path.with_extension("json.tmp"));
        let _ = fs::remove_file(secrets_path.with_extension("json.tmp"));
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: CatalogFile =
                    serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if state.format_version != FORMAT_VERSION {
                    return Err(CatalogError::Corrupt {
                        path,
                        message: format!(
                            "format version {} is not {FORMAT_VERSION}",
                            state.format_version
                        ),
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogFile {
                format_version: FORMAT_VERSION,
                next_table_id: 1,
                ..Default::default()
            },
            Err(source) => return Err(CatalogError::Io { path, source }),
        };
        let mut state = state;
        match fs::read(&secrets_path) {
            Ok(bytes) => {
                let secrets: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
                        path: secrets_path.clone(),
                        message: e.to_string(),
                    })?;
                restore_secrets(&mut state, &secrets);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CatalogError::Io {
                    path: secrets_path,
                    source,
                });
            }
        }
        Ok(Self {
            path,
            secrets_path,
            state: Mutex::new(state),
        })
    }

    /// Applies `change` to a copy of the catalog and persists it; the copy becomes current only
    /// once it is on disk. The whole change, its checks included, runs under the catalog's lock,
    /// so two changes never both pass a check that only one of them may pass (two CREATE TABLEs of
    /// one name, a CREATE TABLE in a database being dropped). A change that changes nothing
    /// (`IF NOT EXISTS` of what exists) writes nothing.
    fn update<T>(&self, change: impl FnOnce(&mut CatalogFile) -> Result<Change<T>>) -> Result<T> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = guard.clone();
        match change(&mut next)? {
            Change::Unchanged(out) => Ok(out),
            Change::Changed(out) => {
                next.generation += 1;
                self.persist(&next)?;
                *guard = next;
                Ok(out)
            }
        }
    }

    fn persist(&self, state: &CatalogFile) -> Result<()> {
        let (public, secrets) = split_secrets(state);
        write_atomic(
            &self.secrets_path,
            &serde_json::to_vec_pretty(&secrets).expect("secrets serialize"),
            0o600,
        )?;
        write_atomic(
            &self.path,
            &serde_json::to_vec_pretty(&public).expect("catalog serializes"),
            0o644,
        )
    }

    fn read<T>(&self, f: impl FnOnce(&CatalogFile) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Returns false when it existed and `if_not_exists` was set.
    pub fn create_database(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let name = name.to_lowercase();
        self.update(|s| {
            if s.databases.contains_key(&name) {
                return match if_not_exists {
                    true => Ok(Change::Unchanged(false)),
                    false => Err(CatalogError::DatabaseExists { database: name }),
                };
            }
            s.databases.insert(name, BTreeMap::new());
            Ok(Change::Changed(true))
        })
    }

    /// Drops a database and every table in it; returns the keys of the dropped tables.
    pub fn drop_database(&self, name: &str, if_exists: bool) -> Result<Vec<TableKey>> {
        let name = name.to_lowercase();
        self.update(|s| match s.databases.remove(&name) {
            Some(tables) => Ok(Change::Changed(
                tables.into_values().map(|t| t.def.key).collect(),
            )),
            None if if_exists => Ok(Change::Unchanged(vec![])),
            None => Err(CatalogError::DatabaseNotFound { database: name }),
        })
    }

    /// Returns the new table's id, or `None` when it existed and `if_not_exists` was set.
    pub fn create_table(&self, def: TableDef, if_not_exists: bool) -> Result<Option<u64>> {
        let TableKey { database, table } = def.key.clone();
        self.update(|s| {
            let next_id = s.next_table_id.max(1);
            let Some(tables) = s.databases.get_mut(&database) else {
                return Err(CatalogError::DatabaseNotFound { database });
            };
            if tables.contains_key(&table) {
                return match if_not_exists {
                    true => Ok(Change::Unchanged(None)),
                    false => Err(CatalogError::TableExists { database, table }),
                };
            }
            tables.insert(table, StoredTable { id: next_id, def });
            s.next_table_id = next_id + 1;
            Ok(Change::Changed(Some(next_id)))
        })
    }

    /// Sets `def` as its table's definition, creating the table (and its database) or replacing
    /// what it had: how a cluster's worker takes the part of a table its coordinator gives it.
    pub fn put_table(&self, def: TableDef) -> Result<()> {
        let TableKey { database, table } = def.key.clone();
        self.update(|s| {
            let next_id = s.next_table_id.max(1);
            let tables = s.databases.entry(database).or_default();
            match tables.get_mut(&table) {
                Some(stored) if stored.def == def => return Ok(Change::Unchanged(())),
                Some(stored) => stored.def = def,
                None => {
                    tables.insert(table, StoredTable { id: next_id, def });
                    s.next_table_id = next_id + 1;
                }
            }
            Ok(Change::Changed(()))
        })
    }

    /// Gives `key` a new list of files (selective load); answers the definition it had.
    pub fn replace_files(&self, key: &TableKey, files: Vec<FileSpec>) -> Result<TableDef> {
        self.update(|s| {
            let stored = s
                .databases
                .get_mut(&key.database)
                .and_then(|t| t.get_mut(&key.table))
                .ok_or_else(|| CatalogError::TableNotFound {
                    database: key.database.clone(),
                    table: key.table.clone(),
                })?;
            let before = stored.def.clone();
            stored.def.files = files;
            Ok(Change::Changed(before))
        })
    }

    /// Returns false when it did not exist and `if_exists` was set.
    pub fn drop_table(&self, key: &TableKey, if_exists: bool) -> Result<bool> {
        self.update(|s| {
            let Some(tables) = s.databases.get_mut(&key.database) else {
                return Err(CatalogError::DatabaseNotFound {
                    database: key.database.clone(),
                });
            };
            match tables.remove(&key.table) {
                Some(_) => Ok(Change::Changed(true)),
                None if if_exists => Ok(Change::Unchanged(false)),
                None => Err(CatalogError::TableNotFound {
                    database: key.database.clone(),
                    table: key.table.clone(),
                }),
            }
        })
    }

    pub fn get(&self, key: &TableKey) -> Result<TableDef> {
        self.get_with_id(key).map(|(_, d)| d)
    }

    pub fn get_with_id(&self, key: &TableKey) -> Result<(u64, TableDef)> {
        self.read(|s| {
            let db =
                s.databases
                    .get(&key.database)
                    .ok_or_else(|| CatalogError::DatabaseNotFound {
                        database: key.database.clone(),
                    })?;
            db.get(&key.table)
                .map(|t| (t.id, t.def.clone()))
                .ok_or_else(|| CatalogError::TableNotFound {
                    database: key.database.clone(),
                    table: key.table.clone(),
                })
        })
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.read(|s| s.databases.contains_key(&name.to_lowercase()))
    }

    pub fn databases(&self) -> Vec<String> {
        self.read(|s| s.databases.keys().cloned().collect())
    }

    pub fn tables(&self, database: &str) -> Result<Vec<String>> {
        self.read(|s| {
            s.databases
                .get(&database.to_lowercase())
                .map(|t| t.keys().cloned().collect())
                .ok_or_else(|| CatalogError::DatabaseNotFound {
                    database: database.to_lowercase(),
                })
        })
    }

    /// Every table with its id, in name order.
    pub fn all_tables(&self) -> Vec<(u64, TableDef)> {
        self.read(|s| {
            s.databases
                .values()
                .flat_map(|t| t.values().map(|t| (t.id, t.def.clone())))
                .collect()
        })
    }

    pub fn generation(&self) -> u64 {
        self.read(|s| s.generation)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content, never a mix:
/// a temporary file, fsynced, renamed over, and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// The catalog with credential-bearing URIs redacted, and those URIs by `<table id>/<file index>`.
fn split_secrets(state: &CatalogFile) -> (CatalogFile, BTreeMap<String, String>) {
    let mut public = state.clone();
    let mut secrets = BTreeMap::new();
    for t in public.databases.values_mut().flat_map(|d| d.values_mut()) {
        for (i, f) in t.def.files.iter_mut().enumerate() {
            let shown = redact_uri(&f.uri);
            if shown != f.uri {
                secrets.insert(
                    format!("{}/{i}", t.id),
                    std::mem::replace(&mut f.uri, shown),
                );
            }
        }
    }
    (public, secrets)
}

fn restore_secrets(state: &mut CatalogFile, secrets: &BTreeMap<String, String>) {
    for t in state.databases.values_mut().flat_map(|d| d.values_mut()) {
        for (i, f) in t.def.files.iter_mut().enumerate() {
            if let Some(full) = secrets.get(&format!("{}/{i}", t.id)) {
                f.uri = full.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{Statement, parse_statement};

    fn def(sql: &str) -> TableDef {
        match parse_statement(sql).unwrap() {
            Statement::CreateTable { table, .. } => *table,
            _ => unreachable!(),
        }
    }

    #[test]
    fn survives_reopen_and_keeps_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        store.create_database("Sales", false).unwrap();
        let t = def(
            "CREATE EXTERNAL TABLE sales.orders (id INT) FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file:///d/')",
        );
        assert_eq!(store.create_table(t.clone(), false).unwrap(), Some(1));
        assert!(matches!(
            store.create_table(t.clone(), false),
            Err(CatalogError::TableExists { .. })
        ));
        assert_eq!(store.create_table(t.clone(), true).unwrap(), None);
        drop(store);

        let store = CatalogStore::open(dir.path()).unwrap();
        assert_eq!(store.databases(), vec!["sales".to_string()]);
        assert_eq!(store.get(&TableKey::new("sales", "orders")).unwrap(), t);
        store
            .drop_table(&TableKey::new("sales", "orders"), false)
            .unwrap();
        assert_eq!(store.create_table(t, false).unwrap(), Some(2));
    }

    #[test]
    fn par_tokens_stay_out_of_the_catalog_file_and_come_back_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        store.create_database("d", false).unwrap();
        let par = "https://objectstorage.r.oraclecloud.com/p/ToKeN-42/n/ns/b/b/o/x/";
        let t = def(&format!(
            "CREATE EXTERNAL TABLE d.t FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///a/', URI '{par}')"
        ));
        store.create_table(t.clone(), false).unwrap();
        let catalog = fs::read_to_string(dir.path().join("catalog.json")).unwrap();
        assert!(
            !catalog.contains("ToKeN-42") && catalog.contains("/p/<redacted>/n/ns/"),
            "{catalog}"
        );
        let secrets = dir.path().join("secrets.json");
        assert!(fs::read_to_string(&secrets).unwrap().contains("ToKeN-42"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(store);
        let store = CatalogStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&TableKey::new("d", "t")).unwrap(), t);
    }

    #[test]
    fn torn_temporary_file_is_ignored_and_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        store.create_database("a", false).unwrap();
        drop(store);
        fs::write(dir.path().join("catalog.json.tmp"), b"{\"half").unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        assert_eq!(store.databases(), vec!["a".to_string()]);
        drop(store);
        fs::write(dir.path().join("catalog.json"), b"{\"half").unwrap();
        let err = CatalogStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("catalog.json is not a valid catalog"), "{err}");
    }

    #[test]
    fn concurrent_changes_are_checked_and_written_under_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(CatalogStore::open(dir.path()).unwrap());
        store.create_database("d", false).unwrap();
        let def = |t: &str| {
            crate::parse_statement(&format!(
            "CREATE EXTERNAL TABLE d.{t} (a INT) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///x/')"
        ))
        .map(|s| match s {
            crate::Statement::CreateTable { table, .. } => *table,
            other => panic!("{other:?}"),
        })
        .unwrap()
        };
        // Eight creates of one table: exactly one wins, the others are told it exists.
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (store, def) = (store.clone(), def("same"));
                    scope.spawn(move || store.create_table(def, false))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            results
                .iter()
                .all(|r| r.is_ok() || matches!(r, Err(CatalogError::TableExists { .. })))
        );
        // Creates of distinct tables beside a drop of their database: each create either
        // happened before the drop (and was dropped with it) or failed; none brings the
        // database back.
        let created: Vec<bool> = std::thread::scope(|scope| {
            let creates: Vec<_> = (0..8)
                .map(|i| {
                    let (store, def) = (store.clone(), def(&format!("t{i}")));
                    scope.spawn(move || store.create_table(def, false).is_ok())
                })
                .collect();
            let dropper = {
                let store = store.clone();
                scope.spawn(move || store.drop_database("d", false).unwrap())
            };
            let created = creates.into_iter().map(|h| h.join().unwrap()).collect();
            dropper.join().unwrap();
            created
        });
        assert!(!store.database_exists("d"), "{created:?}");
        // Then, every acknowledged table survives a reopen.
        store.create_database("e", false).unwrap();
        let names: Vec<String> = (0..16).map(|i| format!("u{i}")).collect();
        std::thread::scope(|scope| {
            for n in &names {
                let store = store.clone();
                let d = def(n);
                let d = TableDef {
                    key: TableKey::new("e", n),
                    ..d
                };
                scope.spawn(move || store.create_table(d, false).unwrap());
            }
        });
        let reopened = CatalogStore::open(dir.path()).unwrap();
        let mut tables = reopened.tables("e").unwrap();
        tables.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(tables, want);
        // Nothing changed, nothing written: the generation stays.
        let g = reopened.generation();
        assert!(!reopened.create_database("e", true).unwrap());
        assert_eq!(reopened.generation(), g);
    }
}
