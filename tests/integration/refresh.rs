//! Incremental refresh: only added and changed files are read, removed ones dropped, unchanged
//! ones kept as loaded; the answers equal a fresh full load; a failed refresh keeps serving.

use serde_json::Value;

use crate::support::*;

async fn refresh(server: &TestServer, table: &str) -> Result<Value, (u16, Value)> {
    let (status, v) = server.post(&format!("/v1/tables/s/{table}/refresh")).await;
    if status == 200 {
        Ok(v)
    } else {
        Err((status, v))
    }
}

/// A server reading `data`, with the Delta table at `table` (below `data`) loaded as `s.d`.
async fn delta_server(
    tmp: &std::path::Path,
    data: &std::path::Path,
    table: &std::path::Path,
) -> TestServer {
    let server = TestServer::spawn(&tmp.join("tarn"), data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .create_and_load(
            "s.d",
            &format!(
                "FILE_FORMAT = (FORMAT delta) FILES = (URI 'file://{}/')",
                table.display()
            ),
        )
        .await;
    server
}

fn csv(rows: std::ops::Range<u32>) -> String {
    let mut s = String::from(
        "order_id,customer,product,quantity,amount,weight,express,order_date,shipped_at\n",
    );
    for i in rows {
        s.push_str(&format!(
            "{i},c{},p,{},{}.25,1.5,false,2024-01-02,\n",
            i % 3,
            i % 7,
            i
        ));
    }
    s
}

#[tokio::test]
async fn refresh_reads_only_what_changed_and_answers_like_a_full_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.csv"), csv(0..100)).unwrap();
    std::fs::write(data.join("b.csv"), csv(100..200)).unwrap();
    std::fs::write(data.join("c.csv"), csv(200..300)).unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    let ddl = |t: &str| {
        format!(
            "CREATE EXTERNAL TABLE s.{t} {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/')",
            data.display()
        )
    };
    server.ok(&ddl("t")).await;
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;

    // Nothing changed: nothing read, the version stays.
    let r = refresh(&server, "t").await.unwrap();
    assert_eq!(
        (r["version_before"].clone(), r["version"].clone()),
        (Value::from(1), Value::from(1))
    );
    assert_eq!(
        (r["files_reused"].as_u64(), r["bytes_read"].as_u64()),
        (Some(3), Some(0))
    );

    // One file added, one changed, one removed.
    std::fs::remove_file(data.join("a.csv")).unwrap();
    std::fs::write(data.join("b.csv"), csv(100..150)).unwrap();
    std::fs::write(data.join("d.csv"), csv(300..420)).unwrap();
    let r = refresh(&server, "t").await.unwrap();
    assert_eq!(r["kind"], "refresh");
    assert_eq!(
        (
            r["files_added"].as_u64(),
            r["files_changed"].as_u64(),
            r["files_removed"].as_u64(),
            r["files_reused"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    let changed_bytes = std::fs::metadata(data.join("b.csv")).unwrap().len()
        + std::fs::metadata(data.join("d.csv")).unwrap().len();
    assert_eq!(r["bytes_read"].as_u64(), Some(changed_bytes));
    assert_eq!(
        (r["rows_added"].as_u64(), r["rows_removed"].as_u64()),
        (Some(50 + 120), Some(100 + 100))
    );
    assert_eq!(
        (
            r["version_before"].as_u64(),
            r["version"].as_u64(),
            r["rows"].as_u64()
        ),
        (Some(1), Some(2), Some(270))
    );

    // The refreshed table answers exactly what a fresh full load of the same files answers.
    server.ok(&ddl("fresh")).await;
    server.ok("ALTER TABLE s.fresh SECONDARY_LOAD").await;
    let q = |t: &str| format!("SELECT {SELECT_ALL} FROM s.{t} ORDER BY order_id");
    assert_eq!(server.rows(&q("t")).await, server.rows(&q("fresh")).await);

    // A refresh that fails keeps the version serving and marks the table stale; the next good one clears it.
    std::fs::write(data.join("e.csv"), "h\n1,too,few\n").unwrap();
    let (status, e) = refresh(&server, "t").await.unwrap_err();
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("e.csv, line 2"),
        "{e}"
    );
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.t").await[0][0], 270);
    server.assert_stale("s", "t", "e.csv, line 2").await;
    std::fs::remove_file(data.join("e.csv")).unwrap();
    let r = refresh(&server, "t").await.unwrap();
    assert_eq!(r["bytes_read"].as_u64(), Some(0), "{r}");
    let st = server.get("/v1/tables/s/t").await;
    assert_eq!(st["status"]["status"]["load_status"], "AVAIL_RPDGSTABSTATE");
    assert_eq!(st["status"]["status"]["last_error"], Value::Null);

    // The history remembers every load and refresh, newest first over HTTP, in order in SQL.
    let h = server.get("/v1/tables/s/t/refreshes").await;
    let kinds: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refresh", "refresh", "refresh", "refresh", "load"]);
    assert!(
        h["history"][1]["error"].as_str().unwrap().contains("e.csv"),
        "{h}"
    );
    assert_eq!(h["history"][2]["report"]["files_added"], 1);
    let rows = server
        .rows("SELECT kind, version, files_added, files_changed, files_removed, bytes_read, error IS NULL FROM performance_schema.tarn_refresh_history WHERE table_name = 't' ORDER BY finished_at")
        .await;
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[2],
        vec![
            Value::from("refresh"),
            2.into(),
            1.into(),
            1.into(),
            1.into(),
            changed_bytes.into(),
            true.into()
        ]
    );
    assert_eq!(rows[3][6], false);
}

#[tokio::test]
async fn refresh_of_parquet_reads_just_the_new_file_and_refresh_all_covers_loaded_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet/orders-0.parquet", &data.join("p/a.parquet"));
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.p FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/p/')",
            data.display()
        ))
        .await;
    server.ok(&format!("CREATE EXTERNAL TABLE s.unloaded FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/p/')", data.display())).await;
    server.ok("ALTER TABLE s.p SECONDARY_LOAD").await;
    copy_sample("parquet/orders-1.parquet", &data.join("p/b.parquet"));
    let v: Value = client()
        .post(server.url("/v1/refresh"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "only loaded tables refresh: {v}");
    let r = &tables[0]["report"];
    assert_eq!(
        r["bytes_read"].as_u64(),
        Some(std::fs::metadata(data.join("p/b.parquet")).unwrap().len())
    );
    assert_eq!(
        (
            r["files_added"].as_u64(),
            r["files_reused"].as_u64(),
            r["rows"].as_u64()
        ),
        (Some(1), Some(1), Some(200))
    );
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.p").await[0][0], 200);

    let (status, e) = refresh(&server, "unloaded").await.unwrap_err();
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("table_not_loaded"))
    );
}

#[tokio::test]
async fn refresh_of_delta_follows_new_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("delta/orders", &data.join("orders"));
    let server = delta_server(tmp.path(), &data, &data.join("orders")).await;
    let r = refresh(&server, "d").await.unwrap();
    assert_eq!(
        (
            r["delta_version_before"].as_u64(),
            r["delta_version"].as_u64(),
            r["bytes_read"].as_u64()
        ),
        (Some(3), Some(3), Some(0))
    );
    // A writer other than Tarn commits a delete.
    let out = std::process::Command::new(python())
        .args(["-c", "import sys; from deltalake import DeltaTable; DeltaTable(sys.argv[1]).delete('order_id < 20'); import os; os._exit(0)"])
        .arg(data.join("orders"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = refresh(&server, "d").await.unwrap();
    assert_eq!(
        (
            r["delta_version_before"].as_u64(),
            r["delta_version"].as_u64()
        ),
        (Some(3), Some(4))
    );
    let want = reference_rows("delta", &data.join("orders"));
    let got = server
        .rows(&format!("SELECT {SELECT_ALL} FROM s.d ORDER BY order_id"))
        .await;
    assert_same_rows("delta after refresh", &got, &want);
}

#[tokio::test]
async fn scheduled_refreshes_pick_up_new_files_and_back_off_after_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.csv"), csv(0..10)).unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .create_and_load(
            "s.t",
            &format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/') REFRESH_INTERVAL = '200ms'",
                data.display()
            ),
        )
        .await;
    std::fs::write(data.join("b.csv"), csv(10..25)).unwrap();
    let count = "SELECT COUNT(*) FROM s.t";
    wait_until(
        || {
            let s = &server;
            async move { s.rows(count).await[0][0] == 25 }
        },
        "the scheduled refresh to add b.csv",
    )
    .await;
    let st = server.get("/v1/tables/s/t").await;
    assert!(st["status"]["status"]["next_refresh"].is_string(), "{st}");
    assert!(st["status"]["status"]["last_success"].is_string(), "{st}");

    // A bad file: scheduled refreshes fail, back off, keep serving; fixing it recovers.
    std::fs::write(data.join("c.csv"), "h\nnot,enough\n").unwrap();
    wait_until(
        || {
            let s = &server;
            async move { s.table_status("s", "t").await["refresh_failures"].as_u64() >= Some(2) }
        },
        "two failed scheduled refreshes",
    )
    .await;
    server.assert_stale("s", "t", "c.csv").await;
    assert_eq!(server.rows(count).await[0][0], 25);
    std::fs::remove_file(data.join("c.csv")).unwrap();
    wait_until(
        || {
            let s = &server;
            async move { s.table_status("s", "t").await["load_status"] == "AVAIL_RPDGSTABSTATE" }
        },
        "recovery after the bad file is gone",
    )
    .await;
}

#[tokio::test]
async fn queries_refresh_tables_older_than_their_max_staleness_first() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("fresh")).unwrap();
    std::fs::create_dir_all(data.join("lazy")).unwrap();
    for d in ["fresh", "lazy"] {
        std::fs::write(data.join(d).join("a.csv"), csv(0..10)).unwrap();
    }
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    for (t, staleness) in [("fresh", "100ms"), ("lazy", "1h")] {
        server
            .create_and_load(
                &format!("s.{t}"),
                &format!(
                    "{COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/{t}/') MAX_STALENESS = '{staleness}'",
                    data.display()
                ),
            )
            .await;
        std::fs::write(data.join(t).join("b.csv"), csv(10..25)).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    // The first query after the staleness bound sees the new file; the lazy table is within its bound.
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.fresh").await[0][0], 25);
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.lazy").await[0][0], 10);

    // A refresh on read that fails answers from the loaded version and marks the table stale.
    std::fs::write(data.join("fresh").join("c.csv"), "h\nbad,row\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.fresh").await[0][0], 25);
    server.assert_stale("s", "fresh", "c.csv").await;

    // The same text again, now answered from its kept plan: the table is still refreshed first.
    std::fs::write(data.join("fresh").join("c.csv"), csv(25..26)).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.fresh").await[0][0], 26);
}

#[tokio::test]
async fn heatwave_load_call_loads_and_refreshes_listed_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for t in ["a", "b"] {
        std::fs::create_dir_all(data.join(t)).unwrap();
        std::fs::write(data.join(t).join("1.csv"), csv(0..10)).unwrap();
    }
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    for t in ["a", "b"] {
        server
            .ok(&format!(
                "CREATE EXTERNAL TABLE s.{t} {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/{t}/')",
                data.display()
            ))
            .await;
    }
    // Without options: every table of the database that is not loaded gets loaded.
    let r = server
        .rows(r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "s"}]' AS JSON), NULL)"#)
        .await;
    assert_eq!(
        r.iter()
            .map(|row| (row[0].clone(), row[1].clone(), row[3].clone()))
            .collect::<Vec<_>>(),
        vec![
            ("s.a".into(), "load".into(), 10.into()),
            ("s.b".into(), "load".into(), 10.into()),
        ]
    );
    std::fs::write(data.join("a").join("2.csv"), csv(10..15)).unwrap();
    let call = r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "s", "tables": [{"table_name": "a"}]}]' AS JSON), JSON_OBJECT('refresh_external_tables', TRUE))"#;
    let r = server.rows(call).await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0][1].as_str(), r[0][2].as_u64(), r[0][3].as_u64()),
        (Some("refresh"), Some(2), Some(15))
    );
    assert_eq!(
        r[0][4].as_u64(),
        Some(
            std::fs::metadata(data.join("a").join("2.csv"))
                .unwrap()
                .len()
        )
    );
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.a").await[0][0], 15);
    let e = server
        .err(r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "nope"}]' AS JSON), NULL)"#)
        .await;
    assert_eq!(e.code, "not_found");
}

#[tokio::test]
async fn triggers_during_a_load_coalesce_into_one_refresh_that_async_callers_poll() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Big enough that the load is still running while the triggers arrive.
    std::fs::write(data.join("a.csv"), csv(0..400_000)).unwrap();
    let server = std::sync::Arc::new(TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await);
    server.ok("CREATE DATABASE s").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.t {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/')",
            data.display()
        ))
        .await;
    let load = {
        let s = server.clone();
        tokio::spawn(async move { s.ok("ALTER TABLE s.t SECONDARY_LOAD").await })
    };
    wait_until(
        || {
            let s = &server;
            async move { s.table_status("s", "t").await["load_status"] == "LOADING_RPDGSTABSTATE" }
        },
        "the load to start",
    )
    .await;
    std::fs::write(data.join("b.csv"), csv(400_000..400_010)).unwrap();
    let http = client();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let resp = http
            .post(server.url("/v1/tables/s/t/refresh?async=true"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["id"].as_u64().unwrap());
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "five triggers during the load share one refresh: {ids:?}"
    );
    load.await.unwrap();
    let poll = format!("/v1/refreshes/{}", ids[0]);
    wait_until(
        || {
            let s = &server;
            let p = poll.clone();
            async move { s.get(&p).await["state"] != "running" }
        },
        "the refresh to finish",
    )
    .await;
    let done = server.get(&poll).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["files_added"], 1, "{done}");
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.t").await[0][0], 400_010);
    let kinds: Vec<Value> = server.get("/v1/tables/s/t/refreshes").await["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        ["refresh", "load"],
        "one refresh ran for five triggers"
    );
    assert!(
        server
            .text("/metrics")
            .await
            .contains("tarn_refresh_triggers_coalesced_total 4")
    );
    let resp = http
        .get(server.url("/v1/refreshes/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // Malformed requests get the API's error body; the table keeps its data.
    let bad_id = http
        .get(server.url("/v1/refreshes/abc"))
        .send()
        .await
        .unwrap();
    let bad_id = (bad_id.status().as_u16(), bad_id.json().await.unwrap());
    let bad_flag = server.post("/v1/tables/s/t/refresh?async=maybe").await;
    for ((status, body), named) in [(bad_flag, "async"), (bad_id, "refresh id")] {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(named), "{msg}");
    }
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.t").await[0][0], 400_010);
}

#[tokio::test]
async fn new_columns_in_new_parquet_files_are_added_and_other_formats_keep_their_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_files("parquet", &data.join("p"), &["a.parquet:0:100"]);
    write_files("json", &data.join("j"), &["a.json:0:100"]);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    for (t, fmt) in [("p", "parquet"), ("j", "json")] {
        server
            .create_and_load(
                &format!("s.{t}"),
                &format!(
                    "FILE_FORMAT = (FORMAT {fmt}) FILES = (URI 'file://{}/{t}/')",
                    data.display()
                ),
            )
            .await;
    }
    write_files("parquet", &data.join("p"), &["b.parquet:100:150:note"]);
    write_files("json", &data.join("j"), &["b.json:100:150:note"]);

    // Parquet (columns inferred): the new column joins the table; rows loaded before read NULL.
    let r = refresh(&server, "p").await.unwrap();
    assert_eq!(
        (r["columns_added"].as_u64(), r["files_reused"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        server
            .rows("SELECT COUNT(*), COUNT(note), MIN(note) FROM s.p")
            .await[0],
        vec![Value::from(150), 50.into(), "note 100".into()]
    );
    // JSON keeps the columns it was loaded with; the new file's rows are read into them.
    let r = refresh(&server, "j").await.unwrap();
    assert_eq!(r["columns_added"], 0, "{r}");
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.j").await[0][0], 150);
    let e = server.err("SELECT note FROM s.j").await;
    assert!(e.message.contains("note"), "{}", e.message);
}

/// An inline deletion vector (Delta's RoaringBitmapArray, z85-encoded) deleting the rows at
/// indexes 3, 4, 7, 11, 18 and 29 of a file.
const INLINE_DV: &str = "^Bg9^0rr910000000000iXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L";

#[tokio::test]
async fn delta_deletion_vectors_and_protocol_upgrades_are_followed_reading_only_what_they_touch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let table = data.join("dv");
    let first = delta_op(&table, &["create", "0", "100", "1"]);
    delta_op(&table, &["append", "100", "200"]);
    let file_a = first["files"][0].as_str().unwrap().to_string();
    let size_a = std::fs::metadata(table.join(&file_a)).unwrap().len();
    let server = delta_server(tmp.path(), &data, &table).await;
    let log = table.join("_delta_log");
    let now = chrono::Utc::now().timestamp_millis();

    // Version 2 enables deletion vectors: a protocol change, so the table is read again.
    std::fs::write(
        log.join("00000000000000000002.json"),
        r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}}
"#,
    )
    .unwrap();
    let r = refresh(&server, "d").await.unwrap();
    assert_eq!(
        (r["delta_version"].as_u64(), r["files_changed"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(
        server.rows("SELECT COUNT(*), SUM(id) FROM s.d").await[0],
        vec![Value::from(200), 19900.into()]
    );

    // Version 3 deletes six rows of the first file with a deletion vector: only that file is
    // read again, and its deleted rows are gone.
    std::fs::write(
        log.join("00000000000000000003.json"),
        format!(
            "{}\n{}\n",
            serde_json::json!({"remove": {"path": file_a, "deletionTimestamp": now, "dataChange": true,
                "extendedFileMetadata": true, "partitionValues": {}, "size": size_a}}),
            serde_json::json!({"add": {"path": file_a, "partitionValues": {}, "size": size_a,
                "modificationTime": now, "dataChange": true,
                "deletionVector": {"storageType": "i", "pathOrInlineDv": INLINE_DV, "sizeInBytes": 44, "cardinality": 6}}}),
        ),
    )
    .unwrap();
    let r = refresh(&server, "d").await.unwrap();
    assert_eq!(
        (
            r["delta_version"].as_u64(),
            r["files_changed"].as_u64(),
            r["files_reused"].as_u64(),
            r["bytes_read"].as_u64()
        ),
        (Some(3), Some(1), Some(1), Some(size_a)),
        "{r}"
    );
    let deleted: u64 = [3, 4, 7, 11, 18, 29].iter().sum();
    assert_eq!(
        server.rows("SELECT COUNT(*), SUM(id) FROM s.d").await[0],
        vec![Value::from(194), (19900 - deleted).into()]
    );
    assert_eq!(
        server
            .rows("SELECT COUNT(*) FROM s.d WHERE id IN (3, 4, 7, 11, 18, 29)")
            .await[0][0],
        0
    );
}

#[tokio::test]
async fn delta_refresh_after_the_log_was_cleaned_up_reads_only_the_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let table = data.join("t");
    let loaded = delta_op(&table, &["create", "0", "100", "2"]);
    let server = delta_server(tmp.path(), &data, &table).await;
    // Two appends, a checkpoint, and the commits up to the checkpoint removed, as a log cleanup
    // does: the commit right after the loaded version is gone.
    delta_op(&table, &["append", "100", "150"]);
    delta_op(&table, &["append", "150", "170"]);
    let now = delta_op(&table, &["checkpoint"]);
    assert_eq!(now["version"], 3);
    let log = table.join("_delta_log");
    for v in 0..3 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let old = delta_files(&loaded);
    let new_bytes: u64 = delta_files(&now)
        .iter()
        .filter(|f| !old.contains(f))
        .map(|f| std::fs::metadata(table.join(f)).unwrap().len())
        .sum();
    let r = refresh(&server, "d").await.unwrap();
    assert_eq!(
        (
            r["delta_version"].as_u64(),
            r["files_added"].as_u64(),
            r["files_reused"].as_u64(),
            r["bytes_read"].as_u64()
        ),
        (Some(3), Some(2), Some(2), Some(new_bytes)),
        "{r}"
    );
    assert_eq!(
        server.rows("SELECT COUNT(*), SUM(id) FROM s.d").await[0],
        vec![now["count"].clone(), now["sum_id"].clone()]
    );
}
