//! Where a load or refresh reads from: each FILES entry's route (the copy in this region, or the
//! next one after a failover), the copy the table read last and what it carries over when it
//! moves to another one, and the listing of the files themselves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use tarn_catalog::TableDef;
use tarn_connectors::listing::{self, FileEntry};
use tarn_connectors::{ConnectorError, Location, StoreRegistry};

use crate::error::Result;
use crate::regions::{CopySummary, Regions, Route};
use tarn_engine::store::TableVersion;

/// Which copy a table read last, and what it carried over from the one before.
#[derive(Debug, Clone)]
pub struct CopyState {
    pub region: Option<String>,
    pub uri: String,
    pub read_prefix: String,
    /// When the table switched to this copy.
    pub since: Instant,
    /// Files (by logical URI) loaded from the previous copy that this copy has not shown yet
    /// with the same ETag and size. They are kept as loaded until it does, or until
    /// `max_replication_lag` has passed since the switch.
    pub pending: HashSet<String>,
    /// The copy read is behind (a Delta commit whose data files have not arrived): the monitor
    /// retries the refresh every probe until it succeeds.
    pub waiting: Option<String>,
}

impl CopyState {
    pub fn summary(&self) -> CopySummary {
        CopySummary {
            region: self.region.clone(),
            uri: self.uri.clone(),
            read_prefix: self.read_prefix.clone(),
            pending: self.pending.len(),
            waiting: self.waiting.clone(),
        }
    }
}

/// The routes of every FILES entry of `def`.
pub fn routes(regions: &Regions, def: &TableDef) -> Vec<Route> {
    def.files
        .iter()
        .map(|f| regions.route(&f.uri, f.region.as_deref()))
        .collect()
}

/// The route of a table's first FILES entry, if it lies in a group of copies.
pub fn first_route(regions: &Regions, def: &TableDef) -> Option<Route> {
    def.files
        .first()
        .map(|f| regions.route(&f.uri, f.region.as_deref()))
        .filter(|r| r.replicated)
}

/// The copy a table reads now, given the one it read last (`last`): if it moved to another copy,
/// every loaded file is awaited there (kept as loaded until the new copy shows it alike); the
/// answer's `true` says the table moved (so its Delta log must be opened afresh).
pub fn next_copy(
    regions: &Regions,
    last: Option<CopyState>,
    routes: &[Route],
    previous: Option<&TableVersion>,
) -> (CopyState, bool) {
    let read_prefix = routes
        .iter()
        .map(|r| r.read_prefix.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let fresh = |pending| CopyState {
        region: routes.first().and_then(|r| r.region.clone()),
        uri: routes.first().map(|r| r.uri.clone()).unwrap_or_default(),
        read_prefix: read_prefix.clone(),
        since: Instant::now(),
        pending,
        waiting: None,
    };
    match (last, previous) {
        (Some(mut s), Some(_)) if s.read_prefix == read_prefix => {
            if s.since.elapsed() > regions.config().settings.max_replication_lag {
                s.pending.clear();
            }
            (s, false)
        }
        (Some(_), Some(p)) => (
            fresh(p.manifest.files.iter().map(|f| f.uri.clone()).collect()),
            true,
        ),
        _ => (fresh(HashSet::new()), false),
    }
}

/// After a load or refresh of a replicated table failed reading `region`: waits (up to the
/// failure threshold's worth of probes) for the region to be failed over. True when it was and
/// the table now routes elsewhere, so the next copy should be tried.
pub async fn wait_for_failover(
    regions: &Regions,
    object_stores: &StoreRegistry,
    def: &TableDef,
    region: &str,
) -> bool {
    let failing = object_stores
        .gate(region)
        .is_some_and(|g| g.consecutive_failures() > 0 || g.is_cut());
    if !failing && !regions.is_failed_over(region) {
        return false;
    }
    let s = &regions.config().settings;
    let deadline = Instant::now() + s.probe_interval * (s.failure_threshold + 1);
    loop {
        if regions.is_failed_over(region) {
            return first_route(regions, def).is_some_and(|r| r.region.as_deref() != Some(region));
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The store to read `uri` (a FILES entry, which the allow-list must cover) through `route`
/// (the copy read, which the replica mapping vouches for).
pub async fn open_route(
    object_stores: &StoreRegistry,
    uri: &str,
    route: &Route,
) -> Result<(Location, Arc<dyn ObjectStore>)> {
    object_stores.check(uri)?;
    let loc = Location::parse(&route.uri)?;
    let store = object_stores
        .store_for(&loc, route.region.as_deref())
        .await?;
    Ok((loc, store))
}

/// A Delta table's log read through `route` (replaying only the commits after `previous`, when
/// given), its files named as the table names its location, whichever copy they are read from.
pub async fn delta_snapshot(
    object_stores: &StoreRegistry,
    def: &TableDef,
    route: &Route,
    previous: Option<tarn_connectors::read::DeltaTable>,
) -> Result<tarn_connectors::read::DeltaSnapshot> {
    let (loc, store) = open_route(object_stores, &def.files[0].uri, route).await?;
    let mut snap = tarn_connectors::read::delta_snapshot(store, &loc, previous)
        .await
        .map_err(|e| super::read::read_error(&def.key, e, route))?;
    for f in &mut snap.manifest.files {
        route.make_logical(&mut f.uri);
    }
    Ok(snap)
}

/// The columns of a table without declared ones, from the first of its `listed` files.
pub async fn infer_columns(
    def: &TableDef,
    listed: &[Listed],
) -> Result<arrow::datatypes::SchemaRef> {
    match listed.first() {
        Some((store, f)) => {
            Ok(tarn_connectors::read::infer_schema(store.clone(), f, &def.format).await?)
        }
        None => Err(crate::error::ServiceError::BadRequest(format!(
            "no files to infer the columns of '{}' from: declare its columns, or add files",
            def.key
        ))),
    }
}

/// A listed file and the store it is read through.
pub type Listed = (Arc<dyn ObjectStore>, FileEntry);

/// Lists every FILES entry of `def` through its route: nothing is read unless all of them
/// resolve. Files are named as the table names its location, whichever copy they are read from.
pub async fn list_files(
    object_stores: &StoreRegistry,
    def: &TableDef,
    routes: &[Route],
) -> Result<Vec<Listed>> {
    let mut files: Vec<Listed> = Vec::new();
    for (spec, route) in def.files.iter().zip(routes) {
        let (loc, store) = open_route(object_stores, &spec.uri, route).await?;
        let mut found = listing::list(
            object_stores.http_client(),
            &store,
            &loc,
            spec.pattern.as_deref(),
        )
        .await?;
        let checker = object_stores.checker();
        for f in &mut found {
            route.make_logical(&mut f.uri);
            // A local file is judged by where it leads (a link out of the allowed directory).
            if matches!(loc, Location::File { .. }) {
                checker.check_file(&f.key)?;
            }
        }
        if found.is_empty() && !def.options.allow_missing_files {
            return Err(ConnectorError::NoFiles {
                uri: tarn_connectors::location::redact(&spec.uri),
            }
            .into());
        }
        files.extend(found.into_iter().map(|f| (store.clone(), f)));
    }
    // One location's listing comes sorted already.
    if !files.is_sorted_by(|a, b| a.1.uri < b.1.uri) {
        files.sort_by(|a, b| a.1.uri.cmp(&b.1.uri));
        files.dedup_by(|a, b| a.1.uri == b.1.uri);
    }
    Ok(files)
}

/// The rule for plain files after a table moved to another copy: a file loaded from the
/// previous copy that this one lacks, or holds with another ETag or size, is taken to be on its
/// way (replication lag) and kept as loaded, so a refresh never moves the table backwards. A file
/// this copy shows alike is confirmed and from then on follows this copy (changes and deletions
/// apply). Files new to the table are added. Returns how many files are still awaited.
pub fn await_replication(
    listed: &mut Vec<Listed>,
    previous: &TableVersion,
    pending: &mut HashSet<String>,
) -> usize {
    let loaded: HashMap<&str, &FileEntry> = previous
        .manifest
        .files
        .iter()
        .map(|f| (f.uri.as_str(), f))
        .collect();
    let mut seen = HashSet::new();
    for (_, f) in listed.iter_mut() {
        seen.insert(f.uri.clone());
        if !pending.contains(&f.uri) {
            continue;
        }
        match loaded.get(f.uri.as_str()) {
            Some(l) if l.etag == f.etag && l.size == f.size => {
                pending.remove(&f.uri);
            }
            Some(l) => *f = (*l).clone(),
            None => {
                pending.remove(&f.uri);
            }
        }
    }
    let store = listed.first().map(|(s, _)| s.clone());
    if let Some(store) = store {
        for uri in pending.iter().filter(|u| !seen.contains(*u)) {
            if let Some(l) = loaded.get(uri.as_str()) {
                listed.push((store.clone(), (*l).clone()));
            }
        }
    }
    pending.retain(|u| loaded.contains_key(u.as_str()));
    listed.sort_by(|a, b| a.1.uri.cmp(&b.1.uri));
    pending.len()
}
