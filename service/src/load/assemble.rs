//! Building a table's next version: find its files (a listing, or a Delta table's log), settle its
//! columns, diff the files against what is loaded ([`super::diff`]), read what changed
//! ([`super::read`]) and lay the result out in shards.
//!
//! Delta tables diff the same way: their files are the `add` actions of the latest version
//! (reached by replaying only the commits since the loaded one), so a commit's added files are
//! read, its removed ones dropped, and a file whose deletion vector changed is read again.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use tarn_catalog::{FormatKind, TableDef, TableKey, types::schema_of};
use tarn_connectors::StoreRegistry;
use tarn_connectors::listing::{FileEntry, Manifest};
use tarn_connectors::read::{self, DeltaSnapshot, ReadOptions};
use tarn_engine::store::{LoadReport, MemoryStore, Reservation, Segment, TableEntry, TableVersion};
use tracing::{info, warn};

use super::TableLoads;
use super::diff::{self, FileDiff, Loaded};
use super::read::{read_delta, read_listed};
use super::source::{self, CopyState, Listed};
use crate::error::{Result, ServiceError};
use crate::regions::{Regions, Route};

/// What one load or refresh of a table works with.
pub(super) struct Build<'a> {
    pub object_stores: &'a StoreRegistry,
    pub regions: &'a Regions,
    pub memory: &'a Arc<MemoryStore>,
    pub def: &'a TableDef,
    pub entry: &'a TableEntry,
    pub loads: &'a TableLoads,
    /// The loaded version a refresh starts from; none for a load.
    pub previous: Option<&'a TableVersion>,
    /// Where files already read by others may be found.
    pub elsewhere: Option<&'a dyn super::ReadElsewhere>,
}

/// Where a version's files come from.
enum Files {
    Listing(Vec<Listed>),
    Delta(Box<DeltaSnapshot>),
}

impl Files {
    fn entries(&self) -> Vec<&FileEntry> {
        match self {
            Self::Listing(f) => f.iter().map(|f| &f.1).collect(),
            Self::Delta(s) => s.manifest.files.iter().collect(),
        }
    }

    /// The files as the next version's manifest (moved, not copied: 10,000 of them are many
    /// strings).
    fn into_manifest(self) -> Manifest {
        match self {
            Self::Listing(f) => Manifest {
                files: f.into_iter().map(|f| f.1).collect(),
                ..Default::default()
            },
            Self::Delta(s) => s.manifest,
        }
    }
}

impl Build<'_> {
    fn key(&self) -> &TableKey {
        &self.def.key
    }

    /// Builds the next version; with a previous one, reuses the segments of files that did not
    /// change. `None` for the version means nothing changed.
    pub async fn run(&self) -> Result<(Option<TableVersion>, LoadReport)> {
        let declared = self.def.columns.as_deref().map(schema_of).transpose()?;
        let reservation = Arc::new(self.memory.reserve(self.key(), 0)?);
        let mut report = LoadReport::default();
        // The copy each FILES entry is read from now, and what changed since the last read.
        let routes = source::routes(self.regions, self.def);
        let (mut copy, moved) =
            source::next_copy(self.regions, self.loads.copy(), &routes, self.previous);
        if moved {
            info!(table = %self.key(), to = %tarn_connectors::location::redact(&routes[0].uri), "reading another copy");
            self.loads.set_delta(None);
        }
        report.source_region = copy.region.clone();
        let result = self
            .build(&routes, &mut copy, &mut report, &declared, &reservation)
            .await;
        match &result {
            Ok(_) => {
                copy.waiting = report.replica_behind.clone();
                self.set_copy(copy);
            }
            Err(ServiceError::ReplicaBehind { detail, .. }) => {
                copy.waiting = Some(detail.clone());
                self.set_copy(copy);
            }
            Err(_) => {}
        }
        result.map(|v| (v, report))
    }

    fn set_copy(&self, copy: CopyState) {
        let (region, uri) = (copy.region.clone(), copy.uri.clone());
        self.loads.set_copy(copy);
        self.entry.update_status(|s| {
            s.source_region = region;
            s.source_location = Some(tarn_connectors::location::redact(&uri));
        });
    }

    async fn build(
        &self,
        routes: &[Route],
        copy: &mut CopyState,
        report: &mut LoadReport,
        declared: &Option<SchemaRef>,
        reservation: &Arc<Reservation>,
    ) -> Result<Option<TableVersion>> {
        let key = self.key();
        let Some(files) = self.files(routes, copy, report).await? else {
            return Ok(None);
        };
        let (schema, reusable) = self.columns(declared, &files).await?;
        // A placement key must name columns of the table (checked before anything is read).
        crate::placement::key_columns(key, &schema, &self.def.options.placement_key)?;

        let entries = files.entries();
        let segments: Vec<(&str, u64)> = self
            .previous
            .map(|p| {
                p.segments
                    .iter()
                    .map(|s| (s.file.as_str(), s.rows))
                    .collect()
            })
            .unwrap_or_default();
        let loaded = self.previous.map(|p| Loaded {
            files: &p.manifest.files,
            segments: &segments,
            reusable,
        });
        let d: FileDiff = diff::diff(&entries, loaded);
        report.files_added = d.files_added;
        report.files_changed = d.files_changed;
        report.files_removed = d.files_removed;
        report.files_reused = d.files_reused;
        report.rows_removed = d.rows_removed;
        report.bytes_read = d.bytes_to_read;
        if d.unchanged {
            return Ok(None);
        }
        let mut segments: Vec<Option<Arc<Segment>>> = d
            .plan
            .iter()
            .map(|p| {
                p.map(|i| {
                    self.previous
                        .expect("kept from a previous version")
                        .segments[i]
                        .clone()
                })
            })
            .collect();
        let mut to_read = d.to_read();
        let schema = self
            .new_columns(declared, &files, &to_read, schema, &mut segments, report)
            .await?;
        self.take_from_elsewhere(
            &entries,
            &schema,
            &mut to_read,
            &mut segments,
            report,
            reservation,
        )
        .await?;

        let opts = ReadOptions::new(
            self.def.format.clone(),
            schema.clone(),
            self.def.options.strict_load,
        )
        .with_progress(self.entry.progress.clone());
        self.entry.start_progress(2 * report.bytes_read.max(1));
        info!(
            files = entries.len(),
            reading = to_read.len(),
            bytes = report.bytes_read,
            "reading"
        );
        let read = match &files {
            Files::Listing(listed) => {
                read_listed(key, listed, &to_read, &opts, &routes[0], reservation).await?
            }
            Files::Delta(snap) => {
                read_delta(key, snap, &to_read, &opts, &routes[0], reservation).await?
            }
        };
        for (i, seg) in read {
            report.rows_added += seg.rows;
            segments[i] = Some(Arc::new(seg));
        }
        let manifest = files.into_manifest();
        let mut segments: Vec<Arc<Segment>> = segments
            .into_iter()
            .map(|s| s.expect("every file read or reused"))
            .collect();
        let o = &self.def.options;
        if o.verify_keys && !o.keys.is_empty() {
            let left_out = super::keys::check(key, &schema, &o.keys, &mut segments, o.strict_load)?;
            report.rows_added = report.rows_added.saturating_sub(left_out);
        }
        Ok(Some(TableVersion::build_on(
            self.previous,
            self.entry.next_version(),
            schema,
            segments,
            manifest,
            self.memory.shards,
        )))
    }

    /// Takes the files of `to_read` found elsewhere (another worker's snapshot) from there: their
    /// segments are held against the memory limit like read ones, and they are no longer read.
    async fn take_from_elsewhere(
        &self,
        entries: &[&FileEntry],
        schema: &SchemaRef,
        to_read: &mut Vec<usize>,
        segments: &mut [Option<Arc<Segment>>],
        report: &mut LoadReport,
        reservation: &Reservation,
    ) -> Result<()> {
        let o = &self.def.options;
        // Rows a key check left out depend on the other files of the part: read those again.
        let Some(elsewhere) = self
            .elsewhere
            .filter(|_| !o.verify_keys || o.keys.is_empty())
        else {
            return Ok(());
        };
        if to_read.is_empty() {
            return Ok(());
        }
        let wanted: Vec<(usize, &FileEntry)> = to_read.iter().map(|&i| (i, entries[i])).collect();
        let found = elsewhere.segments(self.def, schema, &wanted).await;
        if found.is_empty() {
            return Ok(());
        }
        for (i, seg) in found {
            // Only a file still to read (its segment not yet there) is taken.
            if segments[i].is_some() {
                continue;
            }
            reservation.grow(seg.bytes)?;
            report.files_from_snapshots += 1;
            report.rows_added += seg.rows;
            report.bytes_read = report.bytes_read.saturating_sub(entries[i].size);
            segments[i] = Some(Arc::new(seg));
        }
        to_read.retain(|&i| segments[i].is_none());
        info!(table = %self.key(), files = report.files_from_snapshots, "taken from other workers' snapshots");
        Ok(())
    }

    /// The table's files: its Delta log's active files, or the listing of its FILES entries.
    /// `None` when a Delta table's log has not moved past the loaded version.
    async fn files(
        &self,
        routes: &[Route],
        copy: &mut CopyState,
        report: &mut LoadReport,
    ) -> Result<Option<Files>> {
        if self.def.format.kind != FormatKind::Delta {
            let mut listed = source::list_files(self.object_stores, self.def, routes).await?;
            if let Some(p) = self.previous
                && !copy.pending.is_empty()
            {
                report.files_awaiting_replication =
                    source::await_replication(&mut listed, p, &mut copy.pending);
            }
            return Ok(Some(Files::Listing(listed)));
        }
        let key = self.key();
        let route = &routes[0];
        let mut snap =
            source::delta_snapshot(self.object_stores, self.def, route, self.loads.delta()).await?;
        if let Some(part) = &self.def.options.part_files {
            snap.keep_only(part);
        }
        self.loads.set_delta(Some(snap.table.clone()));
        report.delta_fallback = snap.fallback.clone();
        // A cluster's worker given other files of the same Delta version reads them (a copy
        // behind the loaded version is never read, whoever reads it).
        let same_files = |prev: &TableVersion| {
            prev.manifest.files.len() == snap.manifest.files.len()
                && prev
                    .manifest
                    .files
                    .iter()
                    .zip(&snap.manifest.files)
                    .all(|(a, b)| a.uri == b.uri)
        };
        if let Some(prev) = self.previous
            && let Some(loaded) = prev.manifest.delta_version
            && (snap.version < loaded
                || (snap.version == loaded
                    && (self.def.options.part_files.is_none() || same_files(prev))))
        {
            if snap.version < loaded {
                // Versions only go forward: the copy has not caught up with what was loaded.
                let why = format!(
                    "{} in region '{}' is at Delta version {} and the loaded version is {loaded}",
                    tarn_connectors::location::redact(&route.uri),
                    route.region.as_deref().unwrap_or("-"),
                    snap.version
                );
                warn!(table = %key, "{why}; keeping the loaded version");
                report.replica_behind = Some(why);
            }
            report.files_reused = prev.manifest.files.len();
            return Ok(None);
        }
        Ok(Some(Files::Delta(Box::new(snap))))
    }

    /// The columns of the next version, and whether the loaded data can be kept under them.
    async fn columns(
        &self,
        declared: &Option<SchemaRef>,
        files: &Files,
    ) -> Result<(SchemaRef, bool)> {
        let key = self.key();
        Ok(match (declared, self.previous, files) {
            (Some(s), _, _) => (s.clone(), true),
            (None, None, Files::Listing(listed)) => {
                (source::infer_columns(self.def, listed).await?, true)
            }
            (None, None, Files::Delta(snap)) => (snap.schema.clone(), true),
            (None, Some(p), Files::Listing(_)) => (p.schema.clone(), true),
            (None, Some(p), Files::Delta(snap)) => {
                if p.manifest.delta_layout == snap.manifest.delta_layout {
                    (p.schema.clone(), true)
                } else {
                    // The schema, partitioning or protocol changed: files written under the old
                    // layout are read again under the new one, if the change is additive.
                    let schema = evolve(&p.schema, &snap.schema, true)
                        .map_err(|why| schema_changed(key, &self.def.files[0].uri, &why))?
                        .unwrap_or_else(|| snap.schema.clone());
                    (schema, false)
                }
            }
        })
    }

    /// Parquet tables whose columns were inferred take new columns from new files (additive
    /// evolution): the footer says which, and data already loaded gets NULLs in them. Delta
    /// tables count the columns their log added.
    async fn new_columns(
        &self,
        declared: &Option<SchemaRef>,
        files: &Files,
        to_read: &[usize],
        mut schema: SchemaRef,
        segments: &mut [Option<Arc<Segment>>],
        report: &mut LoadReport,
    ) -> Result<SchemaRef> {
        let key = self.key();
        if let (None, Some(p), Files::Listing(listed)) = (declared, self.previous, files)
            && self.def.format.kind == FormatKind::Parquet
        {
            for &i in to_read {
                let (store, f) = &listed[i];
                let found = read::infer_schema(store.clone(), f, &self.def.format).await?;
                if let Some(wider) = evolve(&schema, &found, false)
                    .map_err(|why| schema_changed(key, &f.uri, &why))?
                {
                    info!(table = %key, file = %f.uri, columns = wider.fields().len(), "new columns");
                    schema = wider;
                }
            }
            if p.schema.fields().len() != schema.fields().len() {
                report.columns_added = schema.fields().len() - p.schema.fields().len();
                for seg in segments.iter_mut().flatten() {
                    *seg = Arc::new(seg.widen(&schema));
                }
            }
        }
        if let (Some(p), Files::Delta(_)) = (self.previous, files) {
            report.columns_added = schema
                .fields()
                .len()
                .saturating_sub(p.schema.fields().len());
        }
        Ok(schema)
    }
}

/// The schema-change policy. `found` (a new file's or a new Delta version's columns) may add
/// columns to `table`: the answer is the wider schema (`None` when nothing was added). With
/// `complete` (`found` is the whole table's schema, as a Delta log gives it), a column of
/// `table` that `found` drops or retypes is refused; a single file may lack columns (they read
/// as NULL) and differ in type (values are converted, or fail the load naming the value).
fn evolve(table: &Schema, found: &Schema, complete: bool) -> Result<Option<SchemaRef>, String> {
    if complete {
        for f in table.fields() {
            match found.field_with_name(f.name()) {
                Err(_) => return Err(format!("column '{}' was dropped", f.name())),
                Ok(n) if n.data_type() != f.data_type() => {
                    return Err(format!(
                        "column '{}' changed type from {} to {}",
                        f.name(),
                        f.data_type(),
                        n.data_type()
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    let added: Vec<_> = found
        .fields()
        .iter()
        .filter(|f| table.field_with_name(f.name()).is_err())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if added.is_empty() {
        return Ok(None);
    }
    let mut fields: Vec<_> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(added);
    Ok(Some(Arc::new(Schema::new(fields))))
}

fn schema_changed(key: &TableKey, uri: &str, why: &str) -> ServiceError {
    ServiceError::BadRequest(format!(
        "the schema of '{key}' changed at {}: {why}; the loaded version keeps serving; \
         run ALTER TABLE {key} SECONDARY_LOAD to load the table with its new columns",
        tarn_connectors::location::redact(uri)
    ))
}
