//! A cluster: this process coordinates workers (`tarn worker`) that hold the tables' rows.
//!
//! The coordinator keeps the catalog, the doors, refresh scheduling and the status; for each
//! load or refresh it lists the table's files, settles its columns, gives each worker its files
//! ([`assign`]: balanced by bytes, stable across refreshes) and has every worker load or refresh
//! its part at once (the worker's own loader, so it reads only what changed in its files). Only
//! when every worker has its part is the cluster's version published: a version of a table on the
//! coordinator that names each worker's part and its version ([`RemotePart`]). A query reads
//! exactly those parts (workers keep the version they replaced until the next one, see
//! `MemoryStore::keep_replaced_versions`), so it never mixes versions.
//!
//! [`worker`] is the other side: what a worker answers its coordinator.

pub mod assign;
pub mod monitor;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tarn_catalog::types::{columns_of, schema_of};
use tarn_catalog::{FileSpec, FormatKind, TableDef, TableKey};
use tarn_connectors::StoreRegistry;
use tarn_connectors::listing::Manifest;
use tarn_engine::query::cluster::ClusterSettings;
use tarn_engine::store::{
    ColumnBounds, LoadReport, RemotePart, TableEntry, TableVersion, merge_bounds,
};
use tracing::info;

use crate::error::{Result, ServiceError};
use crate::load::{Workers, source};
use crate::regions::Regions;

/// What the coordinator asks of a worker for one table.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartRequest {
    /// The table as the worker holds it: the table's columns, and its files only.
    pub def: TableDef,
    /// Read every file again (a load), rather than only what changed (a refresh).
    pub load: bool,
}

/// What a worker answers: the version of its part, and what it read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartLoaded {
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub shards: usize,
    pub files_added: usize,
    pub files_changed: usize,
    pub files_removed: usize,
    pub files_reused: usize,
    /// Files taken from another worker's snapshot rather than read from the source.
    #[serde(default)]
    pub files_from_snapshots: usize,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub bytes_read: u64,
    pub rejected_rows: usize,
    /// For a Delta table, the log's version the part was read at.
    #[serde(default)]
    pub delta_version: Option<u64>,
    /// Per column, its bounds over the part (for the coordinator's planner).
    #[serde(default)]
    pub bounds: Vec<ColumnBounds>,
}

/// A worker as `GET /v1/worker` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub memory_used: u64,
    pub memory_limit: Option<u64>,
    pub shards: usize,
    pub tables: Vec<WorkerTable>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerTable {
    pub table: String,
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub shards: usize,
    /// The part's files (what a restarted coordinator takes its assignment back from); only
    /// when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest: Vec<tarn_connectors::listing::FileEntry>,
    /// The columns the part was read with; only when its files are asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<tarn_catalog::ColumnDef>>,
    /// Per column, its bounds over the part; only when its files are asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<ColumnBounds>,
}

/// The coordinator's side of a cluster.
pub struct Cluster {
    settings: ClusterSettings,
    object_stores: Arc<StoreRegistry>,
    regions: Arc<Regions>,
    http: reqwest::Client,
    /// Per table, which worker holds each file (by URI).
    assignments: Mutex<HashMap<TableKey, BTreeMap<String, String>>>,
    /// Tables whose next build spreads their files again (a worker joined or came back).
    rebalance: Mutex<std::collections::HashSet<TableKey>>,
    /// What each worker answered to the monitor's last probe (for `/metrics`).
    last_probe: Mutex<Vec<(String, Option<WorkerInfo>)>>,
    /// Per Delta table, its log as the last build read it.
    delta_logs: Mutex<HashMap<TableKey, tarn_connectors::read::DeltaTable>>,
}

impl Cluster {
    pub fn new(
        settings: ClusterSettings,
        object_stores: Arc<StoreRegistry>,
        regions: Arc<Regions>,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| ServiceError::Internal(format!("the workers' HTTP client: {e}")))?;
        Ok(Self {
            settings,
            object_stores,
            regions,
            http,
            assignments: Mutex::new(HashMap::new()),
            rebalance: Mutex::new(Default::default()),
            last_probe: Mutex::new(Vec::new()),
            delta_logs: Mutex::new(HashMap::new()),
        })
    }

    fn name(url: &url::Url) -> String {
        url.as_str().trim_end_matches('/').to_string()
    }

    /// The workers' URLs, as the parts name them.
    pub fn workers(&self) -> Vec<String> {
        self.settings.workers.iter().map(Self::name).collect()
    }

    /// The workers that answer (parts go to these, and queries run on them).
    pub fn live_workers(&self) -> Vec<String> {
        self.settings.live.get().iter().map(Self::name).collect()
    }

    /// Marks which workers answer (the monitor's finding).
    pub fn set_live(&self, live: &[String]) {
        let urls = self
            .settings
            .workers
            .iter()
            .filter(|u| live.contains(&Self::name(u)))
            .cloned()
            .collect();
        self.settings.live.set(urls);
    }

    /// After this coordinator restarted: the parts the workers that answer hold of `def` (each
    /// worker's current version), as the cluster's version to publish, and the assignment taken
    /// back from their files. `None` when no worker holds any, or one that should does not answer.
    pub fn adopt(
        &self,
        def: &TableDef,
        answers: &[(String, Option<WorkerInfo>)],
        entry: &TableEntry,
    ) -> Result<Option<TableVersion>> {
        let name = def.key.to_string();
        let mut parts = Vec::new();
        let mut assignment = BTreeMap::new();
        let mut files = Vec::new();
        let mut columns = def.columns.clone();
        let mut bounds = Vec::new();
        for w in self.live_workers() {
            let Some((_, Some(info))) = answers.iter().find(|(x, _)| *x == w) else {
                return Ok(None);
            };
            match info.tables.iter().find(|t| t.table == name) {
                Some(t) => {
                    parts.push(RemotePart {
                        worker: w.clone(),
                        version: t.version,
                        rows: t.rows,
                        bytes: t.bytes,
                        files: t.files,
                        shards: t.shards,
                    });
                    for f in &t.manifest {
                        assignment.insert(f.uri.clone(), w.clone());
                    }
                    files.extend(t.manifest.iter().cloned());
                    columns = columns.or_else(|| t.columns.clone());
                    if t.rows > 0 {
                        bounds.push(t.bounds.as_slice());
                    }
                }
                None => parts.push(RemotePart {
                    worker: w.clone(),
                    version: 0,
                    rows: 0,
                    bytes: 0,
                    files: 0,
                    shards: 1,
                }),
            }
        }
        let Some(columns) = columns.filter(|_| !assignment.is_empty()) else {
            return Ok(None);
        };
        files.sort_by(|a, b| a.uri.cmp(&b.uri));
        self.assignments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(def.key.clone(), assignment);
        let schema = schema_of(&columns)?;
        let statistics = merge_bounds(&bounds, schema.fields().len());
        Ok(Some(TableVersion::remote(
            entry.next_version(),
            schema,
            Manifest {
                files,
                ..Default::default()
            },
            Vec::new(),
            parts,
            statistics,
        )))
    }

    /// Keeps what the workers answered the monitor's last probe.
    pub fn set_last_probe(&self, probe: Vec<(String, Option<WorkerInfo>)>) {
        *self.last_probe.lock().unwrap_or_else(|e| e.into_inner()) = probe;
    }

    /// What each worker answered the monitor's last probe (`None`: it did not answer).
    pub fn last_probe(&self) -> Vec<(String, Option<WorkerInfo>)> {
        self.last_probe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The next build of `key` spreads its files over the workers again.
    pub fn rebalance(&self, key: &TableKey) {
        self.rebalance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
    }

    fn url(&self, worker: &str, path: &str) -> String {
        format!("{worker}{path}")
    }

    fn table_path(key: &TableKey) -> String {
        format!("/v1/worker/tables/{}/{}", key.database, key.table)
    }

    /// Sends `request` to `worker` and reads its JSON answer; the worker's own error message
    /// when it refused.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        worker: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let unreachable = |e: reqwest::Error| ServiceError::Worker {
            worker: worker.to_string(),
            detail: format!("cannot be reached: {e}"),
            answered: false,
        };
        let response = request
            .bearer_auth(&self.settings.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ServiceError::Worker {
                worker: worker.to_string(),
                detail: message,
                answered: true,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ServiceError::Worker {
            worker: worker.to_string(),
            detail: format!("an answer that does not read: {e}"),
            answered: true,
        })
    }

    async fn drop_part(&self, worker: &str, key: &TableKey) -> Result<()> {
        self.call::<serde_json::Value>(
            worker,
            self.http.delete(self.url(worker, &Self::table_path(key))),
        )
        .await
        .map(|_| ())
    }

    /// Each worker: its URL and what it answers of itself, or why it does not (within 2 s);
    /// with `files`, also each part's files and columns (what a restarted coordinator takes back).
    pub async fn status(&self, files: bool) -> Vec<(String, Result<WorkerInfo>)> {
        let workers = self.workers();
        let path = if files {
            "/v1/worker?files=true"
        } else {
            "/v1/worker"
        };
        let asks = workers.iter().map(|w| async move {
            let info = self
                .call::<WorkerInfo>(
                    w,
                    self.http
                        .get(self.url(w, path))
                        .timeout(std::time::Duration::from_secs(2)),
                )
                .await;
            (w.clone(), info)
        });
        futures::future::join_all(asks).await
    }
}

#[async_trait::async_trait]
impl Workers for Cluster {
    /// Builds the cluster's next version of `def`: every worker loads (or, with `previous`,
    /// refreshes) its files. `None` when nothing changed on any worker.
    async fn build(
        &self,
        def: &TableDef,
        previous: Option<&TableVersion>,
        entry: &TableEntry,
        report: &mut LoadReport,
    ) -> Result<Option<TableVersion>> {
        let (object_stores, regions) = (&*self.object_stores, &*self.regions);
        let key = &def.key;
        let delta = def.format.kind == FormatKind::Delta;
        let routes = source::routes(regions, def);
        // The files, with the version of the Delta log they are of; and the columns.
        let (listed, delta_version, schema) = if delta {
            let route = routes.first().ok_or_else(|| {
                ServiceError::BadRequest(format!("{key} names no Delta table location"))
            })?;
            // The log as the last build left it: only the commits since are replayed.
            let log = self
                .delta_logs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned();
            let snap = source::delta_snapshot(object_stores, def, route, log).await?;
            self.delta_logs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), snap.table.clone());
            let schema = match &def.columns {
                Some(c) => schema_of(c)?,
                None => snap.schema.clone(),
            };
            (snap.manifest.files, Some(snap.version), schema)
        } else {
            let listed = source::list_files(object_stores, def, &routes).await?;
            let schema = match (&def.columns, previous) {
                (Some(c), _) => schema_of(c)?,
                (None, Some(p)) => p.schema.clone(),
                (None, None) => source::infer_columns(def, &listed).await?,
            };
            (listed.into_iter().map(|(_, f)| f).collect(), None, schema)
        };
        let columns = columns_of(&schema);
        let files: Vec<(String, u64)> = listed.iter().map(|f| (f.uri.clone(), f.size)).collect();
        let workers = self.live_workers();
        if workers.is_empty() {
            return Err(ServiceError::Worker {
                worker: "(none)".into(),
                detail: "no worker of the cluster answers: GET /v1/cluster shows why".into(),
                answered: false,
            });
        }
        let rebalance = self
            .rebalance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let before = self
            .assignments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default();
        let given = assign::assign(&files, &before, &workers, rebalance);
        let had = |w: &str| {
            previous
                .and_then(|p| p.remote.as_ref())
                .and_then(|parts| parts.iter().find(|p| p.worker == w))
                .filter(|p| p.version > 0)
                .cloned()
        };
        let region = def.files.first().and_then(|f| f.region.clone());
        let asks = workers.iter().zip(&given).map(|(w, files)| {
            let mut part_def = def.clone();
            if delta {
                // The worker reads the same log and keeps its files of it; its columns are the
                // log's (as the coordinator's are), or the declared ones.
                part_def.options.part_files = Some(files.clone());
            } else {
                part_def.columns = Some(columns.clone());
                part_def.files = files
                    .iter()
                    .map(|uri| FileSpec {
                        uri: uri.clone(),
                        pattern: None,
                        region: region.clone(),
                    })
                    .collect();
            }
            // The coordinator schedules refreshes; a worker refreshes when asked.
            part_def.options.refresh_interval = None;
            let load = had(w).is_none();
            async move {
                if files.is_empty() {
                    // Whatever the worker has of the table (a part recovered from its snapshot
                    // after its files moved elsewhere) goes.
                    self.drop_part(w, key).await?;
                    return Ok::<_, ServiceError>(PartLoaded {
                        shards: 1,
                        ..Default::default()
                    });
                }
                self.call::<PartLoaded>(
                    w,
                    self.http
                        .put(self.url(w, &Self::table_path(key)))
                        .json(&PartRequest {
                            def: part_def,
                            load,
                        }),
                )
                .await
            }
        });
        let loaded = futures::future::join_all(asks)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        // Every part must be of the Delta version the files were assigned from: one read at a
        // later version (a commit landed meanwhile) fails this build (the table keeps its
        // version; the next refresh reads it). A part none of whose files changed keeps the
        // version it was last read at, which is the same data.
        let moved_on = |p: &PartLoaded| {
            let changed = p.files_added + p.files_changed + p.files_removed > 0;
            p.delta_version
                .is_some_and(|pv| pv > delta_version.unwrap_or(pv))
                || (changed && p.delta_version != delta_version)
        };
        if let Some(v) = delta_version
            && let Some((w, p)) = workers
                .iter()
                .zip(&loaded)
                .find(|(_, p)| p.files > 0 && moved_on(p))
        {
            return Err(ServiceError::Worker {
                worker: w.clone(),
                detail: format!(
                    "read Delta version {:?} of {key} where the cluster assigned files of version {v}: \
                     a commit landed during the refresh; the table stays at its version and the next refresh reads it",
                    p.delta_version
                ),
                answered: true,
            });
        }
        let parts: Vec<RemotePart> = workers
            .iter()
            .zip(&loaded)
            .map(|(w, p)| RemotePart {
                worker: w.clone(),
                version: p.version,
                rows: p.rows,
                bytes: p.bytes,
                files: p.files,
                shards: p.shards,
            })
            .collect();
        for p in &loaded {
            report.files_added += p.files_added;
            report.files_changed += p.files_changed;
            report.files_removed += p.files_removed;
            report.files_reused += p.files_reused;
            report.files_from_snapshots += p.files_from_snapshots;
            report.rows_added += p.rows_added;
            report.rows_removed += p.rows_removed;
            report.bytes_read += p.bytes_read;
        }
        let now: BTreeMap<String, String> = workers
            .iter()
            .zip(&given)
            .flat_map(|(w, files)| files.iter().map(move |f| (f.clone(), w.clone())))
            .collect();
        let moved = now != before;
        self.assignments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), now);
        let unchanged = previous
            .and_then(|p| p.remote.as_ref())
            .is_some_and(|old| old == &parts)
            && !moved;
        if unchanged {
            return Ok(None);
        }
        info!(table = %key, workers = parts.len(), rows = parts.iter().map(|p| p.rows).sum::<u64>(), "parts loaded on the workers");
        let manifest = Manifest {
            files: listed,
            delta_version,
            ..Default::default()
        };
        let bounds: Vec<&[ColumnBounds]> = loaded
            .iter()
            .filter(|p| p.rows > 0)
            .map(|p| p.bounds.as_slice())
            .collect();
        let statistics = merge_bounds(&bounds, schema.fields().len());
        Ok(Some(TableVersion::remote(
            entry.next_version(),
            schema,
            manifest,
            Vec::new(),
            parts,
            statistics,
        )))
    }

    /// Frees the table's parts on every worker (`SECONDARY_UNLOAD`, `DROP TABLE`); a worker that
    /// cannot be reached is named.
    async fn drop_table(&self, key: &TableKey) -> Result<()> {
        self.assignments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.delta_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let workers = self.workers();
        let results =
            futures::future::join_all(workers.iter().map(|w| self.drop_part(w, key))).await;
        results.into_iter().collect::<Result<Vec<_>>>().map(|_| ())
    }
}
