//! Restart from snapshots: loaded tables come back from Tarn's own columnar snapshots (not from
//! their sources), answer exactly what they answered before, catch up with changes made while
//! the service was down, and fall back to a full load (with the reason) when a snapshot cannot be
//! used.

use serde_json::Value;

use crate::support::*;

const DELAY: &str = "TARN_TEST_SNAPSHOT_DELAY_MS";

fn csv(rows: std::ops::Range<u32>) -> String {
    let mut s = String::from("id,name,amount\n");
    for i in rows {
        s.push_str(&format!("{i},n{},{}.5\n", i % 7, i));
    }
    s
}

const DDL_COLS: &str = "(id BIGINT, name VARCHAR(10), amount DOUBLE)";
const CSV_FORMAT: &str = "FORMAT csv HEADER ON FIELDS TERMINATED BY ','";
const ALL: &str = "SELECT id, name, amount FROM s.t ORDER BY id";

async fn csv_table(data: &std::path::Path, server: &TestServer, name: &str) {
    server
        .create_and_load(
            &format!("s.{name}"),
            &format!(
                "{DDL_COLS} FILE_FORMAT = ({CSV_FORMAT}) FILES = (URI 'file://{}/{name}/')",
                data.display()
            ),
        )
        .await;
}

/// Waits until the table's newest version is persisted.
async fn wait_snapshot(server: &TestServer, table: &str) {
    wait_until(
        || async {
            let st = server.get(&format!("/v1/tables/s/{table}")).await;
            let version = &st["status"]["version"];
            !version.is_null() && st["status"]["status"]["snapshot_version"] == *version
        },
        "the snapshot to be written",
    )
    .await;
}

async fn size_bytes(server: &TestServer) -> u64 {
    server.get("/v1/tables/s/t").await["status"]["size_bytes"]
        .as_u64()
        .unwrap()
}

async fn recovery_row(server: &TestServer, table: &str) -> Vec<Value> {
    server
        .rows(&format!(
            "SELECT r.load_status, r.recovery_source, r.recovery_end_timestamp IS NOT NULL FROM performance_schema.rpd_tables r \
             JOIN performance_schema.rpd_table_id i ON r.id = i.id WHERE i.table_name = '{table}'"
        ))
        .await
        .remove(0)
}

#[tokio::test]
async fn restarts_after_load_and_after_refresh_answer_the_same_from_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    std::fs::write(data.join("t/a.csv"), csv(0..100)).unwrap();
    std::fs::write(data.join("t/b.csv"), csv(100..250)).unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    csv_table(&data, &server, "t").await;
    let before = server.rows(ALL).await;
    let loaded_size = size_bytes(&server).await;
    wait_snapshot(&server, "t").await;

    // After a load: back from the snapshot, the same rows; the catch-up refresh reads nothing.
    let server = server.kill_and_restart().await;
    server.wait_ready().await;
    assert_eq!(server.rows(ALL).await, before);
    // Memory is counted once per snapshot file the batches point into.
    let recovered_size = size_bytes(&server).await;
    assert!(
        recovered_size > 0 && recovered_size < 2 * loaded_size,
        "{recovered_size} bytes recovered for {loaded_size} loaded"
    );
    assert_eq!(
        recovery_row(&server, "t").await,
        vec![
            Value::from("AVAIL_RPDGSTABSTATE"),
            "Snapshot".into(),
            true.into()
        ]
    );
    wait_until(
        || async {
            server.get("/v1/tables/s/t/refreshes").await["history"][0]["kind"] == "refresh"
        },
        "the refresh after recovery",
    )
    .await;
    let h = server.get("/v1/tables/s/t/refreshes").await;
    assert_eq!(h["history"][0]["report"]["bytes_read"], 0, "{h}");
    assert_eq!(
        h["history"].as_array().unwrap().len(),
        1,
        "no load ran: {h}"
    );

    // After a refresh: the refreshed version comes back, numbered on from before.
    std::fs::write(data.join("t/c.csv"), csv(250..300)).unwrap();
    let (_, report) = server.post("/v1/tables/s/t/refresh").await;
    assert_eq!(report["files_added"], 1, "{report}");
    let before = server.rows(ALL).await;
    assert_eq!(before.len(), 300);
    wait_snapshot(&server, "t").await;
    let version = server.get("/v1/tables/s/t").await["status"]["version"].clone();
    let server = server.kill_and_restart().await;
    server.wait_ready().await;
    assert_eq!(server.rows(ALL).await, before);
    assert_eq!(
        server.get("/v1/tables/s/t").await["status"]["version"],
        version
    );
    // Only the segment files of the newest snapshot are kept, each with its statistics.
    let segments = segment_files(&tmp.path().join("tarn/snapshots/s/t/segments"));
    assert_eq!(segments.len(), 3, "{segments:?}");
    let all = walk(&tmp.path().join("tarn/snapshots/s/t/segments"));
    assert_eq!(all.len(), 6, "{all:?}");
}

#[tokio::test]
async fn a_change_made_while_the_service_was_down_is_visible_after_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    std::fs::write(data.join("t/a.csv"), csv(0..100)).unwrap();
    std::fs::write(data.join("t/b.csv"), csv(100..200)).unwrap();
    let mut server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    csv_table(&data, &server, "t").await;
    wait_snapshot(&server, "t").await;
    server.kill();
    std::fs::remove_file(data.join("t/a.csv")).unwrap();
    std::fs::write(data.join("t/c.csv"), csv(200..230)).unwrap();
    let server = server.kill_and_restart().await;
    server.wait_ready().await;
    wait_until(
        || async {
            server.rows("SELECT COUNT(*), MIN(id) FROM s.t").await[0]
                == vec![Value::from(130), 100.into()]
        },
        "the change made while down",
    )
    .await;
    assert_eq!(recovery_row(&server, "t").await[1], "Snapshot");
    let h = server.get("/v1/tables/s/t/refreshes").await;
    let r = &h["history"][0]["report"];
    assert_eq!(
        (
            r["files_added"].as_u64(),
            r["files_removed"].as_u64(),
            r["files_reused"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{h}"
    );
}

#[tokio::test]
async fn sigkill_in_the_middle_of_a_snapshot_write_recovers_the_previous_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    std::fs::write(data.join("t/a.csv"), csv(0..100)).unwrap();
    let allowed = format!("file://{}/", data.display());
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &["--allowed-locations", &allowed],
        &[(DELAY, "1500")],
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    csv_table(&data, &server, "t").await;
    wait_snapshot(&server, "t").await;
    let meta = tmp.path().join("tarn/snapshots/s/t/snapshot.json");
    let first = std::fs::read(&meta).unwrap();

    // A refresh publishes version 2; its snapshot is being written (its segment is out, its
    // metadata not yet) when the process is killed.
    std::fs::write(data.join("t/b.csv"), csv(100..140)).unwrap();
    server.post("/v1/tables/s/t/refresh").await;
    let before = server.rows(ALL).await;
    wait_until(
        || async { segment_files(&tmp.path().join("tarn/snapshots/s/t/segments")).len() == 2 },
        "the new segment file",
    )
    .await;
    let server = server.kill_and_restart().await;
    assert_eq!(
        std::fs::read(&meta).unwrap(),
        first,
        "the torn write never replaced the snapshot"
    );
    server.wait_ready().await;
    assert_eq!(recovery_row(&server, "t").await[1], "Snapshot");
    // Back at version 1 from the snapshot, then the catch-up refresh reads b.csv again.
    wait_until(
        || async { server.rows(ALL).await == before },
        "the same answer as before the kill",
    )
    .await;
}

#[tokio::test]
async fn unusable_snapshots_fall_back_to_a_full_load_with_the_reason_and_failures_stay_contained() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for t in ["t", "gone", "nometa", "fmt", "def", "ok"] {
        std::fs::create_dir_all(data.join(t)).unwrap();
        std::fs::write(data.join(t).join("a.csv"), csv(0..50)).unwrap();
    }
    let mut server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    for t in ["t", "gone", "nometa", "fmt", "def", "ok"] {
        csv_table(&data, &server, t).await;
        wait_snapshot(&server, t).await;
    }
    let before = server.rows(ALL).await;
    server.kill();
    let snaps = tmp.path().join("tarn/snapshots/s");
    // t: a segment corrupted; gone: corrupted and its source removed; nometa: metadata lost.
    for t in ["t", "gone"] {
        let seg = segment_files(&snaps.join(t).join("segments")).remove(0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
    }
    std::fs::remove_dir_all(data.join("gone")).unwrap();
    std::fs::remove_file(snaps.join("nometa/snapshot.json")).unwrap();
    // fmt: written by an incompatible format version; def: built from another definition of
    // the table (by another instance sharing the snapshot location, say).
    let rewrite = |t: &str, f: &dyn Fn(&mut Value)| {
        let path = snaps.join(t).join("snapshot.json");
        let mut meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f(&mut meta);
        std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    };
    rewrite("fmt", &|m| m["format"] = 99.into());
    rewrite("def", &|m| m["definition"] = 7.into());

    // Recovery reads slowly here: queries meanwhile are told the table is recovering.
    let server = server.kill_and_restart_with(&[(DELAY, "1500")]).await;
    let resp = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let e = server.err("SELECT COUNT(*) FROM s.ok").await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (503, "table_recovering"),
        "{}",
        e.message
    );
    server.wait_ready().await;

    assert_eq!(server.rows(ALL).await, before);
    let st = server.table_status("s", "t").await;
    assert_eq!(st["recovery_source"], "Source", "{st}");
    assert!(
        st["recovery_error"].as_str().unwrap().contains("corrupt"),
        "{st}"
    );
    let st = server.table_status("s", "nometa").await;
    assert_eq!(st["recovery_source"], "Source", "{st}");
    assert!(
        st["recovery_error"]
            .as_str()
            .unwrap()
            .contains("no snapshot"),
        "{st}"
    );
    for (t, reason) in [("fmt", "format 99"), ("def", "different table definition")] {
        let st = server.table_status("s", t).await;
        assert_eq!(st["recovery_source"], "Source", "{st}");
        assert!(
            st["recovery_error"].as_str().unwrap().contains(reason),
            "{st}"
        );
    }
    let st = server.table_status("s", "gone").await;
    assert_eq!(st["load_status"], "RECOVERYFAILED_RPDGSTABSTATE", "{st}");
    assert!(
        st["recovery_error"].as_str().unwrap().contains("corrupt"),
        "{st}"
    );
    assert_eq!(recovery_row(&server, "ok").await[1], "Snapshot");
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.ok").await[0][0], 50);
}

#[tokio::test]
async fn a_new_instance_starts_from_another_instances_snapshot_in_a_bucket() {
    let Some(s3) = crate::s3::S3::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let b = &s3.bucket;
    let prefix = crate::s3::unique_prefix("snapshots");
    let local = tmp.path().join("files");
    write_files("parquet", &local, &["a.parquet:0:100", "b.parquet:100:130"]);
    s3.upload_dir(&local, &format!("{prefix}/src")).await;
    // One configuration for both instances: the table is declared in it, snapshots go to the bucket.
    let base = s3.config(tmp.path(), &[format!("s3://{b}/")]);
    let config = format!(
        "snapshot_location = \"s3://{b}/{prefix}/snapshots/\"\n{}\n[[tables]]\nddl = \"CREATE DATABASE s\"\n[[tables]]\nddl = \"CREATE EXTERNAL TABLE s.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://{b}/{prefix}/src/')\"\n",
        std::fs::read_to_string(&base).unwrap()
    );
    std::fs::write(&base, config).unwrap();
    let args = ["--config", base.to_str().unwrap()];
    let first = TestServer::spawn_with_env(&tmp.path().join("a"), &args, &s3.credentials()).await;
    first.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let q = "SELECT id, name, amount FROM s.t ORDER BY id";
    let want = first.rows(q).await;
    wait_snapshot(&first, "t").await;

    // A second instance with an empty data dir recovers the table from the first's snapshot.
    let second = TestServer::spawn_with_env(&tmp.path().join("b"), &args, &s3.credentials()).await;
    second.wait_ready().await;
    assert_eq!(second.rows(q).await, want);
    assert_eq!(recovery_row(&second, "t").await[1], "Snapshot");
    let listed: Vec<_> = {
        use futures::StreamExt;
        use object_store::ObjectStore;
        s3.store()
            .list(Some(&object_store::path::Path::from(format!(
                "{prefix}/snapshots/s/t"
            ))))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await
    };
    assert!(
        listed.iter().any(|p| p.ends_with("/snapshot.json")),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_snapshot_larger_than_the_memory_limit_is_refused_and_the_service_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    std::fs::write(data.join("t/a.csv"), csv(0..2000)).unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    csv_table(&data, &server, "t").await;
    wait_snapshot(&server, "t").await;
    let server = server
        .kill_and_restart_with(&[("TARN_MEMORY_LIMIT", "1KiB")])
        .await;
    server.wait_ready().await;
    let st = server.table_status("s", "t").await;
    assert_eq!(st["load_status"], "RECOVERYFAILED_RPDGSTABSTATE", "{st}");
    let why = st["recovery_error"].as_str().unwrap();
    assert!(
        why.contains("does not fit") && why.contains("memory limit"),
        "{st}"
    );
    assert_eq!(server.rows("SELECT 1").await[0][0], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_snapshots_off_nothing_is_written_and_a_restart_starts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    std::fs::write(data.join("t/a.csv"), csv(0..10)).unwrap();
    let server =
        TestServer::spawn(&tmp.path().join("tarn"), &data, &["--snapshots", "false"]).await;
    server.ok("CREATE DATABASE s").await;
    csv_table(&data, &server, "t").await;
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.t").await[0][0], 10);
    let status = server.table_status("s", "t").await;
    assert!(status["snapshot_version"].is_null(), "{status}");
    let snapshots = walk(&tmp.path().join("tarn").join("snapshots"));
    assert!(snapshots.is_empty(), "{snapshots:?}");
    let server = server.kill_and_restart().await;
    server.wait_ready().await;
    let e = server.err("SELECT COUNT(*) FROM s.t").await;
    assert_eq!(e.code, "table_not_loaded", "{}", e.message);
}

/// The segment files (rows) of a snapshot's `segments` directory, without their statistics.
fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
        .collect()
}
