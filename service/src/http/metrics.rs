//! `GET /metrics`: Prometheus text exposition of table and memory figures and load counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::IntoResponse;

use tarn_engine::query::system::{TableRow, table_rows};

use super::{ApiError, HttpState};
use crate::access::{Caller, Role};
use crate::regions::{RegionReport, ReplicatedTables};

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One of a region's counts.
type RegionCount = fn(&RegionReport) -> u64;

fn write_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    values: &mut dyn Iterator<Item = (String, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in values {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

pub async fn metrics(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader, "reading metrics")?;
    let mut out = String::new();
    table_metrics(&mut out, &state, &caller);
    engine_metrics(&mut out, &state);
    region_metrics(&mut out, &state, &caller);
    cluster_metrics(&mut out, &state);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

fn table_label(r: &TableRow) -> String {
    format!(
        "database=\"{}\",table=\"{}\"",
        label(&r.schema_name),
        label(&r.table_name)
    )
}

/// Per table: rows, memory, load progress and status.
fn table_metrics(out: &mut String, state: &HttpState, caller: &Caller) {
    let mut rows = table_rows(&state.catalog, state.engine.store());
    rows.retain(|r| caller.sees(&r.schema_name));
    let mut gauge = |name: &str, help: &str, values: &mut dyn Iterator<Item = (String, f64)>| {
        write_gauge(out, name, help, values)
    };
    let table = table_label;
    gauge(
        "tarn_table_rows",
        "Rows in the table's published version.",
        &mut rows
            .iter()
            .map(|r| (format!("{{{}}}", table(r)), r.nrows as f64)),
    );
    gauge(
        "tarn_table_bytes",
        "Memory held by the table's published version.",
        &mut rows
            .iter()
            .map(|r| (format!("{{{}}}", table(r)), r.size_bytes as f64)),
    );
    gauge(
        "tarn_table_load_progress",
        "Progress of the table's current load, 0 to 100.",
        &mut rows
            .iter()
            .map(|r| (format!("{{{}}}", table(r)), r.status.load_progress)),
    );
    gauge(
        "tarn_table_status",
        "1 for the table's LOAD_STATUS.",
        &mut rows.iter().map(|r| {
            (
                format!(
                    "{{{},status=\"{}\"}}",
                    table(r),
                    r.status.load_status.as_str()
                ),
                1.0,
            )
        }),
    );
}

/// Memory, load counters and kept plans.
fn engine_metrics(out: &mut String, state: &HttpState) {
    let mut gauge = |name: &str, help: &str, values: &mut dyn Iterator<Item = (String, f64)>| {
        write_gauge(out, name, help, values)
    };
    gauge(
        "tarn_memory_used_bytes",
        "Memory held by all published table versions.",
        &mut std::iter::once((String::new(), state.engine.store().used_bytes() as f64)),
    );
    gauge(
        "tarn_memory_reserved_bytes",
        "Memory held by loads and refreshes in progress (files being read).",
        &mut std::iter::once((String::new(), state.engine.store().reserved_bytes() as f64)),
    );
    gauge(
        "tarn_memory_query_bytes",
        "Memory held by running queries' operators.",
        &mut std::iter::once((String::new(), state.engine.store().query_bytes() as f64)),
    );
    if let Some(limit) = state.engine.store().limit() {
        gauge(
            "tarn_memory_limit_bytes",
            "The configured memory limit.",
            &mut std::iter::once((String::new(), limit as f64)),
        );
    }
    let _ = writeln!(
        *out,
        "# HELP tarn_loads_total Loads finished, by result.\n# TYPE tarn_loads_total counter"
    );
    let _ = writeln!(
        *out,
        "tarn_loads_total{{result=\"ok\"}} {}",
        state.loader.counters.loads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        *out,
        "tarn_loads_total{{result=\"error\"}} {}",
        state.loader.counters.loads_failed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        *out,
        "# HELP tarn_refresh_triggers_coalesced_total Refresh triggers answered by a refresh already asked for.\n# TYPE tarn_refresh_triggers_coalesced_total counter\ntarn_refresh_triggers_coalesced_total {}",
        state
            .loader
            .counters
            .refreshes_coalesced
            .load(Ordering::Relaxed)
    );
    let plans = state.engine.plans();
    let _ = writeln!(
        *out,
        "# HELP tarn_plan_cache_lookups_total Queries that looked for a kept plan, by result.\n# TYPE tarn_plan_cache_lookups_total counter\ntarn_plan_cache_lookups_total{{result=\"hit\"}} {}\ntarn_plan_cache_lookups_total{{result=\"miss\"}} {}",
        plans.hits.load(Ordering::Relaxed),
        plans.misses.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        *out,
        "# HELP tarn_plan_cache_plans Query plans kept.\n# TYPE tarn_plan_cache_plans gauge\ntarn_plan_cache_plans {}",
        plans.kept()
    );
}

/// Region health, failovers and the region each table reads.
/// Per worker of the cluster this process coordinates, as the last probe found it.
fn cluster_metrics(out: &mut String, state: &HttpState) {
    let Some(cluster) = &state.cluster else {
        return;
    };
    let probe = cluster.last_probe();
    let worker = |w: &str| format!("{{worker=\"{}\"}}", label(w));
    write_gauge(
        out,
        "tarn_worker_up",
        "1 while the worker answers the coordinator's probes, 0 when its last probe failed.",
        &mut probe
            .iter()
            .map(|(w, info)| (worker(w), f64::from(u8::from(info.is_some())))),
    );
    write_gauge(
        out,
        "tarn_worker_memory_used_bytes",
        "Memory the worker's loaded parts hold.",
        &mut probe
            .iter()
            .filter_map(|(w, info)| Some((worker(w), info.as_ref()?.memory_used as f64))),
    );
    write_gauge(
        out,
        "tarn_worker_tables",
        "Tables the worker holds a part of.",
        &mut probe
            .iter()
            .filter_map(|(w, info)| Some((worker(w), info.as_ref()?.tables.len() as f64))),
    );
}

fn region_metrics(out: &mut String, state: &HttpState, caller: &Caller) {
    let mut tables = state.loader.tables();
    tables.retain(|t| caller.sees(&t.key.database));
    let report = state.regions.report(&state.object_stores, tables);
    let mut gauge = |name: &str, help: &str, values: &mut dyn Iterator<Item = (String, f64)>| {
        write_gauge(out, name, help, values)
    };
    gauge(
        "tarn_region_healthy",
        "1 while the region is in use, 0 while it is failed over or cut off.",
        &mut report.regions.iter().map(|r| {
            (
                format!("{{region=\"{}\"}}", label(&r.name)),
                f64::from(u8::from(r.state == "healthy")),
            )
        }),
    );
    gauge(
        "tarn_region_consecutive_failures",
        "Requests and probes to the region's stores that failed since the last one that answered.",
        &mut report.regions.iter().map(|r| {
            (
                format!("{{region=\"{}\"}}", label(&r.name)),
                f64::from(r.consecutive_failures),
            )
        }),
    );
    gauge(
        "tarn_table_source_region",
        "1 for the region of the copy the table was last read from.",
        &mut report.tables.iter().filter_map(|t| {
            let (db, table) = t.table.split_once('.')?;
            Some((
                format!(
                    "{{database=\"{}\",table=\"{}\",region=\"{}\"}}",
                    label(db),
                    label(table),
                    label(t.source_region.as_deref()?)
                ),
                1.0,
            ))
        }),
    );
    let counters: [(&str, &str, RegionCount); 2] = [
        ("tarn_region_failovers_total", "Regions failed over.", |r| {
            r.health.failovers
        }),
        ("tarn_region_failbacks_total", "Regions failed back.", |r| {
            r.health.failbacks
        }),
    ];
    for (name, help, count) in counters {
        let _ = writeln!(*out, "# HELP {name} {help}\n# TYPE {name} counter");
        for r in &report.regions {
            let _ = writeln!(*out, "{name}{{region=\"{}\"}} {}", label(&r.name), count(r));
        }
    }
}
