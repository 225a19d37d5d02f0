//! Incremental refresh against a real S3 server, through a proxy that logs every request: after
//! each kind of change only the changed objects are read (by the report and by the request log),
//! the answers equal a fresh full load, and queries running without pause while files change
//! and Delta commits land always see exactly one published state.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::proxy::Proxy;
use crate::s3::{S3, unique_prefix};
use crate::support::*;

/// A server reading the bucket through `proxy`.
async fn server_via(s3: &S3, proxy: &Proxy, tmp: &Path) -> TestServer {
    s3.server_via(
        tmp,
        &proxy.endpoint,
        &s3.secret_key,
        &[format!("s3://{}/", s3.bucket)],
    )
    .await
}

async fn refresh(server: &TestServer, table: &str) -> Value {
    let (status, v) = server.post(&format!("/v1/tables/s/{table}/refresh")).await;
    assert_eq!(status, 200, "refresh of {table}: {v}");
    v
}

/// Names of the objects under `prefix/` that requests in `log` read (GET or HEAD), listings aside.
fn objects_read(log: &[String], bucket: &str, prefix: &str) -> BTreeSet<String> {
    let below = format!("/{bucket}/{prefix}/");
    log.iter()
        .filter_map(|r| {
            let (method, target) = r.split_once(' ')?;
            let path = target.split('?').next()?;
            let name = path.strip_prefix(&below)?;
            (matches!(method, "GET" | "HEAD") && !name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn counts(r: &Value) -> [u64; 4] {
    [
        "files_added",
        "files_changed",
        "files_removed",
        "files_reused",
    ]
    .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}")))
}

const COLS: &str = "(id BIGINT, name VARCHAR(20), amount DOUBLE)";
const ALL: &str = "SELECT id, name, amount FROM";

#[tokio::test]
async fn refresh_on_s3_reads_only_the_changed_objects_in_every_format() {
    let Some(s3) = S3::from_env() else { return };
    let proxy = Proxy::start(&s3.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let server = server_via(&s3, &proxy, tmp.path()).await;
    let b = &s3.bucket;
    for (fmt, ext, options) in [
        (
            "csv",
            "csv",
            "FORMAT csv HEADER ON FIELDS TERMINATED BY ','",
        ),
        ("parquet", "parquet", "FORMAT parquet"),
        ("json", "json", "FORMAT json"),
        ("avro", "avro", "FORMAT avro"),
    ] {
        let prefix = unique_prefix(&format!("refresh-{fmt}"));
        let local = tmp.path().join(fmt);
        let name = |n: &str| format!("{n}.{ext}");
        let spec = |n: &str, a: u32, z: u32| format!("{}:{a}:{z}", name(n));
        let (a, bb, c, d) = (name("a"), name("b"), name("c"), name("d"));
        write_files(
            fmt,
            &local,
            &[
                &spec("a", 0, 100),
                &spec("b", 100, 200),
                &spec("c", 200, 300),
            ],
        );
        s3.upload_dir(&local, &prefix).await;
        let ddl = |t: &str| {
            format!(
                "CREATE EXTERNAL TABLE s.{t} {COLS} FILE_FORMAT = ({options}) FILES = (URI 's3://{b}/{prefix}/')"
            )
        };
        let t = format!("t_{fmt}");
        server.ok(&ddl(&t)).await;
        server
            .ok(&format!("ALTER TABLE s.{t} SECONDARY_LOAD"))
            .await;
        assert_eq!(
            objects_read(&proxy.faults.take_requests(), b, &prefix),
            set(&[&a, &bb, &c]),
            "{fmt}: the load reads every file"
        );

        // Nothing changed: a listing, no object read, no new version.
        let r = refresh(&server, &t).await;
        assert_eq!(counts(&r), [0, 0, 0, 3], "{fmt}: {r}");
        assert_eq!(r["version"], r["version_before"]);
        assert!(objects_read(&proxy.faults.take_requests(), b, &prefix).is_empty());

        // One object added, one replaced, one deleted.
        write_files(fmt, &local, &[&spec("b", 100, 150), &spec("d", 300, 420)]);
        std::fs::remove_file(local.join(&a)).unwrap();
        s3.put_file(&local.join(&bb), &format!("{prefix}/{bb}"))
            .await;
        s3.put_file(&local.join(&d), &format!("{prefix}/{d}")).await;
        s3.delete(&format!("{prefix}/{a}")).await;
        let r = refresh(&server, &t).await;
        assert_eq!(counts(&r), [1, 1, 1, 1], "{fmt}: {r}");
        let size = |n: &str| std::fs::metadata(local.join(n)).unwrap().len();
        assert_eq!(
            r["bytes_read"].as_u64(),
            Some(size(&bb) + size(&d)),
            "{fmt}"
        );
        assert_eq!(
            (r["rows_added"].as_u64(), r["rows_removed"].as_u64()),
            (Some(50 + 120), Some(100 + 100)),
            "{fmt}"
        );
        assert_eq!(
            objects_read(&proxy.faults.take_requests(), b, &prefix),
            set(&[&bb, &d]),
            "{fmt}: only the changed objects are read"
        );

        // The refreshed table answers what a fresh full load of the same objects answers.
        let f = format!("f_{fmt}");
        server.ok(&ddl(&f)).await;
        server
            .ok(&format!("ALTER TABLE s.{f} SECONDARY_LOAD"))
            .await;
        let got = server.rows(&format!("{ALL} s.{t} ORDER BY id")).await;
        assert_eq!(got.len(), 270, "{fmt}");
        assert_eq!(
            got,
            server.rows(&format!("{ALL} s.{f} ORDER BY id")).await,
            "{fmt}"
        );
        proxy.faults.take_requests();
    }
}

#[tokio::test]
async fn delta_refresh_on_s3_reads_only_the_files_each_commit_adds() {
    let Some(s3) = S3::from_env() else { return };
    let proxy = Proxy::start(&s3.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let server = server_via(&s3, &proxy, tmp.path()).await;
    let b = &s3.bucket;
    let prefix = unique_prefix("refresh-delta");
    let local = tmp.path().join("delta");
    let mut sent = HashSet::new();
    let files_of = |v: &Value| -> BTreeSet<String> { delta_files(v).into_iter().collect() };
    let mut state = delta_op(&local, &["create", "0", "300", "3"]);
    s3.sync_delta(&local, &prefix, &mut sent).await;
    server
        .create_and_load(
            "s.d",
            &format!("FILE_FORMAT = (FORMAT delta) FILES = (URI 's3://{b}/{prefix}/')"),
        )
        .await;
    server.ok(&format!("CREATE EXTERNAL TABLE s.full FILE_FORMAT = (FORMAT delta) FILES = (URI 's3://{b}/{prefix}/')")).await;
    proxy.faults.take_requests();

    // Each commit: the refresh reads the files it added and nothing else, and answers what
    // deltalake reads.
    for op in [
        &["append", "300", "360"][..],
        &["delete", "id < 40"],
        &["optimize"],
        &["overwrite", "1000", "1100"],
    ] {
        let before = files_of(&state);
        state = delta_op(&local, op);
        s3.sync_delta(&local, &prefix, &mut sent).await;
        let after = files_of(&state);
        let r = refresh(&server, "d").await;
        let added: BTreeSet<String> = after.difference(&before).cloned().collect();
        let removed = before.difference(&after).count() as u64;
        assert_eq!(
            (
                r["delta_version"].as_u64(),
                r["files_added"].as_u64(),
                r["files_removed"].as_u64()
            ),
            (
                state["version"].as_u64(),
                Some(added.len() as u64),
                Some(removed)
            ),
            "{op:?}: {r}"
        );
        let data_read: BTreeSet<String> = objects_read(&proxy.faults.take_requests(), b, &prefix)
            .into_iter()
            .filter(|n| !n.starts_with("_delta_log"))
            .collect();
        assert_eq!(
            data_read, added,
            "{op:?}: only the added data files are read"
        );
        let got = server.rows("SELECT COUNT(*), SUM(id) FROM s.d").await;
        assert_eq!(
            (got[0][0].as_u64(), got[0][1].as_u64()),
            (state["count"].as_u64(), state["sum_id"].as_u64()),
            "{op:?}"
        );
        // ... and exactly what a fresh full load of the same version answers.
        server.ok("ALTER TABLE s.full SECONDARY_LOAD").await;
        proxy.faults.take_requests();
        assert_eq!(
            server.rows(&format!("{ALL} s.d ORDER BY id")).await,
            server.rows(&format!("{ALL} s.full ORDER BY id")).await,
            "{op:?}"
        );
    }

    // An added column (additive schema change) is taken: every file is read again under the
    // new schema, the rows written before it read NULL.
    state = delta_op(&local, &["addcolumn", "1100", "1110"]);
    s3.sync_delta(&local, &prefix, &mut sent).await;
    let r = refresh(&server, "d").await;
    assert_eq!(r["columns_added"], 1, "{r}");
    assert_eq!(
        server
            .rows("SELECT COUNT(*), COUNT(note), SUM(id) FROM s.d")
            .await[0],
        vec![
            state["count"].clone(),
            Value::from(10),
            state["sum_id"].clone()
        ]
    );

    // A dropped column is refused: the refresh fails naming it, the loaded version keeps serving.
    delta_op(&local, &["overwrite", "0", "5"]);
    s3.sync_delta(&local, &prefix, &mut sent).await;
    let (status, e) = server.post("/v1/tables/s/d/refresh").await;
    assert_eq!(status, 400);
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("column 'note' was dropped") && msg.contains("SECONDARY_LOAD"),
        "{msg}"
    );
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM s.d").await[0][0],
        state["count"]
    );
    server.assert_stale("s", "d", "note").await;
    // A full load takes the new schema.
    server.ok("ALTER TABLE s.d SECONDARY_LOAD").await;
    assert_eq!(server.rows("SELECT SUM(id) FROM s.d").await[0][0], 10);
}

/// The states a table goes through, as (count, sum of ids): every answer must be one of them.
type Checksum = (u64, u64);

fn range_sum(a: u64, z: u64) -> Checksum {
    (z - a, (a..z).sum())
}

#[tokio::test]
async fn queries_without_pause_during_refreshes_on_s3_always_see_one_published_state() {
    let Some(s3) = S3::from_env() else { return };
    let proxy = Proxy::start(&s3.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let server = Arc::new(server_via(&s3, &proxy, tmp.path()).await);
    let b = &s3.bucket;
    let prefix = unique_prefix("consistency");
    let local = tmp.path().join("files");

    // Plain Parquet files, refreshed by a 200 ms schedule and by explicit triggers, while the
    // test adds, replaces and deletes objects one at a time.
    write_files(
        "parquet",
        &local,
        &["a.parquet:0:1000", "b.parquet:1000:2000"],
    );
    s3.upload_dir(&local, &format!("{prefix}/p")).await;
    server.create_and_load("s.p", &format!("{COLS} FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://{b}/{prefix}/p/') REFRESH_INTERVAL = '200ms'")).await;
    // A Delta table taking appends, deletes and an overwrite.
    let delta = tmp.path().join("delta");
    let mut sent = HashSet::new();
    let first = delta_op(&delta, &["create", "0", "1000", "2"]);
    s3.sync_delta(&delta, &format!("{prefix}/d"), &mut sent)
        .await;
    server.create_and_load("s.d", &format!("FILE_FORMAT = (FORMAT delta) FILES = (URI 's3://{b}/{prefix}/d/') REFRESH_INTERVAL = '200ms'")).await;

    let sum = |parts: &[Checksum]| -> Checksum {
        parts
            .iter()
            .fold((0, 0), |acc, p| (acc.0 + p.0, acc.1 + p.1))
    };
    let mut p_states = vec![sum(&[range_sum(0, 1000), range_sum(1000, 2000)])];
    let mut d_states = vec![(
        first["count"].as_u64().unwrap(),
        first["sum_id"].as_u64().unwrap(),
    )];

    let stop = Arc::new(AtomicBool::new(false));
    let query = |table: &'static str| {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: Vec<Result<Checksum, String>> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let r = server
                    .sql(&format!("SELECT COUNT(*), SUM(id) FROM s.{table}"))
                    .await;
                seen.push(match r {
                    Ok(v) => {
                        let row = &v["rows"][0];
                        Ok((row[0].as_u64().unwrap_or(0), row[1].as_u64().unwrap_or(0)))
                    }
                    Err(e) => Err(format!("{}: {}", e.code, e.message)),
                });
            }
            seen
        })
    };
    let (qp, qd) = (query("p"), query("d"));

    // The file changes, one object at a time: each leaves a state the table may show.
    let put = |name: &str, a: u64, z: u64| {
        write_files("parquet", &local, &[&format!("{name}.parquet:{a}:{z}")]);
    };
    put("c", 2000, 2500);
    s3.put_file(&local.join("c.parquet"), &format!("{prefix}/p/c.parquet"))
        .await;
    p_states.push(sum(&[
        range_sum(0, 1000),
        range_sum(1000, 2000),
        range_sum(2000, 2500),
    ]));
    refresh(&server, "p").await;
    put("b", 1000, 1200);
    s3.put_file(&local.join("b.parquet"), &format!("{prefix}/p/b.parquet"))
        .await;
    p_states.push(sum(&[
        range_sum(0, 1000),
        range_sum(1000, 1200),
        range_sum(2000, 2500),
    ]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s3.delete(&format!("{prefix}/p/a.parquet")).await;
    p_states.push(sum(&[range_sum(1000, 1200), range_sum(2000, 2500)]));
    refresh(&server, "p").await;

    for op in [
        &["append", "1000", "1500"][..],
        &["delete", "id % 3 = 0"],
        &["append", "5000", "5100"],
        &["overwrite", "7000", "7300"],
    ] {
        let st = delta_op(&delta, op);
        s3.sync_delta(&delta, &format!("{prefix}/d"), &mut sent)
            .await;
        d_states.push((
            st["count"].as_u64().unwrap(),
            st["sum_id"].as_u64().unwrap(),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    refresh(&server, "d").await;
    // Both tables reach their last state while the queries go on.
    for (t, want) in [
        ("p", *p_states.last().unwrap()),
        ("d", *d_states.last().unwrap()),
    ] {
        wait_until(
            || {
                let s = &server;
                async move {
                    let r = s
                        .rows(&format!("SELECT COUNT(*), SUM(id) FROM s.{t}"))
                        .await;
                    (r[0][0].as_u64(), r[0][1].as_u64()) == (Some(want.0), Some(want.1))
                }
            },
            "the last state",
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for (t, handle, states) in [("p", qp, &p_states), ("d", qd, &d_states)] {
        let seen = handle.await.unwrap();
        assert!(seen.len() > 20, "{t}: only {} queries ran", seen.len());
        let mut distinct = BTreeSet::new();
        for r in &seen {
            let c = r
                .as_ref()
                .unwrap_or_else(|e| panic!("{t}: a query failed: {e}"));
            assert!(
                states.contains(c),
                "{t}: {c:?} is not one of the published states {states:?}"
            );
            distinct.insert(*c);
        }
        assert!(
            distinct.len() >= 2,
            "{t}: the queries saw {distinct:?} only"
        );
    }
}

#[tokio::test]
async fn scheduled_refreshes_through_a_store_outage_keep_serving_back_off_and_recover() {
    let Some(s3) = S3::from_env() else { return };
    let proxy = Proxy::start(&s3.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let server = server_via(&s3, &proxy, tmp.path()).await;
    let b = &s3.bucket;
    let prefix = unique_prefix("outage");
    let local = tmp.path().join("files");
    write_files("parquet", &local, &["a.parquet:0:100", "b.parquet:100:150"]);
    s3.put_file(&local.join("a.parquet"), &format!("{prefix}/a.parquet"))
        .await;
    server.create_and_load("s.t", &format!("{COLS} FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://{b}/{prefix}/') REFRESH_INTERVAL = '200ms'")).await;

    // The store goes away and a file lands meanwhile: refreshes fail, the table goes stale with
    // the cause, the loaded data keeps answering every query, and the next try backs off.
    // Queries run all the while, until two scheduled refreshes have failed (how long one failure
    // takes depends on how fast the store's refusal comes back, so the count of queries is not
    // the measure: every one of them answering is).
    proxy.faults.set_down(true).await;
    s3.put_file(&local.join("b.parquet"), &format!("{prefix}/b.parquet"))
        .await;
    let started = std::time::Instant::now();
    let mut failures_seen = std::collections::BTreeSet::new();
    loop {
        assert_eq!(server.rows("SELECT COUNT(*) FROM s.t").await[0][0], 100);
        let st = server.table_status("s", "t").await;
        let failures = st["refresh_failures"].as_u64().unwrap_or(0);
        failures_seen.insert(failures);
        if failures >= 2 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no second failed refresh: {st}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        failures_seen.contains(&1),
        "a query answered between the first and the second failed refresh: {failures_seen:?}"
    );
    server
        .assert_stale("s", "t", &format!("s3://{b}/{prefix}/"))
        .await;
    let st = server.table_status("s", "t").await;
    let next: chrono::DateTime<chrono::Utc> = st["next_refresh"].as_str().unwrap().parse().unwrap();
    let last_end: chrono::DateTime<chrono::Utc> = st["load_end"].as_str().unwrap().parse().unwrap();
    assert!(
        next - last_end >= chrono::Duration::milliseconds(300),
        "after a failure the next try backs off beyond the 200 ms interval: {st}"
    );

    // The store comes back: a scheduled refresh picks up the file and clears the error.
    proxy.faults.set_down(false).await;
    wait_until(
        || {
            let s = &server;
            async move { s.rows("SELECT COUNT(*) FROM s.t").await[0][0] == 150 }
        },
        "the refresh after the outage",
    )
    .await;
    let st = server.table_status("s", "t").await;
    assert_eq!(st["load_status"], "AVAIL_RPDGSTABSTATE", "{st}");
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["refresh_failures"], 0, "{st}");
}
