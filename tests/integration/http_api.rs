//! The HTTP API: answer encodings, status views, errors, table endpoints, pruning.

use serde_json::Value;

use crate::support::*;

async fn parquet_server(tmp: &std::path::Path) -> TestServer {
    let data = tmp.join("data");
    copy_sample("parquet", &data);
    let server = TestServer::spawn(&tmp.join("tarn"), &data, &["--shards", "2"]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.p FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')",
            data.display()
        ))
        .await;
    server
}

#[tokio::test]
async fn answers_in_every_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(tmp.path()).await;
    server.ok("ALTER TABLE s.p SECONDARY_LOAD").await;
    let q = "SELECT order_id, product, amount, express FROM s.p WHERE order_id IN (3, 5) ORDER BY order_id";

    let json = server.ok(q).await;
    assert_eq!(
        json["columns"][0],
        serde_json::json!({"name": "order_id", "type": "INT"})
    );
    assert_eq!(json["columns"][2]["type"], "DECIMAL(10,2)");
    assert_eq!(
        json["rows"],
        serde_json::json!([
            [3, "the \"best\" gizmo", "6199.69", false],
            [5, "größe", "8008.98", false]
        ])
    );

    let csv = server.post_sql(q, "text/csv").await.text().await.unwrap();
    assert_eq!(
        csv,
        "order_id,product,amount,express\n3,\"the \"\"best\"\" gizmo\",6199.69,false\n5,größe,8008.98,false\n"
    );

    let nd = server
        .post_sql(q, "application/x-ndjson")
        .await
        .text()
        .await
        .unwrap();
    let first: Value = serde_json::from_str(nd.lines().next().unwrap()).unwrap();
    assert_eq!(first["order_id"], 3);

    let resp = server
        .post_sql(q, "application/vnd.apache.arrow.stream")
        .await;
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = resp.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let ids = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(ids.num_rows(), 2);
    assert_eq!(
        arrow::util::display::array_value_to_string(ids.column(1), 1).unwrap(),
        "größe"
    );

    // JSON request bodies work too.
    let v: Value = client()
        .post(server.url("/v1/sql"))
        .json(&serde_json::json!({"sql": "SELECT @@hostname"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["rows"], serde_json::json!([["tarn-test"]]));
}

#[tokio::test]
async fn status_views_follow_the_life_of_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(tmp.path()).await;
    let status_sql = "SELECT i.name, t.load_status, t.nrows, t.load_progress FROM performance_schema.rpd_tables t \
                      JOIN performance_schema.rpd_table_id i ON t.id = i.id";
    assert_eq!(
        server.rows(status_sql).await,
        vec![vec![
            Value::from("s.p"),
            "NOLOAD_RPDGSTABSTATE".into(),
            0.into(),
            0.0.into()
        ]]
    );

    let e = server.err("SELECT COUNT(*) FROM s.p").await;
    assert_eq!((e.status, e.code.as_str()), (409, "table_not_loaded"));
    assert_eq!(
        e.message,
        "table 's.p' is not loaded: run ALTER TABLE s.p SECONDARY_LOAD"
    );

    server.ok("ALTER TABLE s.p SECONDARY_LOAD").await;
    assert_eq!(
        server.rows(status_sql).await,
        vec![vec![
            Value::from("s.p"),
            "AVAIL_RPDGSTABSTATE".into(),
            200.into(),
            100.0.into()
        ]]
    );
    let sizes = server.rows("SELECT size_bytes, load_start_timestamp <= load_end_timestamp FROM performance_schema.rpd_tables").await;
    assert!(sizes[0][0].as_u64().unwrap() > 10_000, "{sizes:?}");
    assert_eq!(sizes[0][1], true);

    let tables = server.get("/v1/tables").await;
    assert_eq!(tables["tables"][0]["nrows"], 200);
    assert_eq!(
        tables["tables"][0]["status"]["load_status"],
        "AVAIL_RPDGSTABSTATE"
    );
    let one = server.get("/v1/tables/s/p").await;
    assert_eq!(one["definition"]["format"]["kind"], "parquet");
    assert_eq!(one["manifest"]["files"], 2);
    assert_eq!(one["manifest"]["shards"], 2);

    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains("tarn_table_rows{database=\"s\",table=\"p\"} 200\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "tarn_table_status{database=\"s\",table=\"p\",status=\"AVAIL_RPDGSTABSTATE\"} 1\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("tarn_loads_total{result=\"ok\"} 1\n"),
        "{metrics}"
    );

    let describe = server.rows("DESCRIBE s.p").await;
    assert_eq!(
        describe[4][0..2],
        [Value::from("amount"), Value::from("DECIMAL(10,2)")]
    );

    server.ok("ALTER TABLE s.p SECONDARY_UNLOAD").await;
    assert_eq!(
        server.err("SELECT COUNT(*) FROM s.p").await.code,
        "table_not_loaded"
    );
    assert_eq!(server.rows(status_sql).await[0][1], "NOLOAD_RPDGSTABSTATE");

    server.ok("DROP TABLE s.p").await;
    assert_eq!(
        server.err("SELECT COUNT(*) FROM s.p").await.code,
        "query_error"
    );
    assert!(server.rows("SHOW TABLES FROM s").await.is_empty());
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
}

fn batches_scanned(plan: &[Vec<Value>]) -> usize {
    let text: String = plan
        .iter()
        .map(|r| r[1].as_str().unwrap_or_default().to_string())
        .collect();
    let i = text.find("batches=[").expect("loaded scan in plan") + "batches=[".len();
    let j = i + text[i..].find(']').unwrap();
    text[i..j]
        .split(',')
        .map(|s| s.trim().parse::<usize>().unwrap())
        .sum()
}

#[tokio::test]
async fn filters_prune_whole_batches_by_min_max() {
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(tmp.path()).await;
    server.ok("ALTER TABLE s.p SECONDARY_LOAD").await;
    let all = server.rows("EXPLAIN SELECT * FROM s.p").await;
    let one = server
        .rows("EXPLAIN SELECT * FROM s.p WHERE order_id = 150")
        .await;
    let none = server
        .rows("EXPLAIN SELECT * FROM s.p WHERE order_id > 1000")
        .await;
    assert!(batches_scanned(&all) >= 2, "{all:?}");
    assert_eq!(batches_scanned(&one), 1, "{one:?}");
    assert_eq!(batches_scanned(&none), 0, "{none:?}");
    assert_eq!(
        server
            .rows("SELECT product FROM s.p WHERE order_id = 150")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn errors_are_json_with_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(tmp.path()).await;
    let e = server.err("SELECT * FROM s.nope").await;
    assert_eq!((e.status, e.code.as_str()), (400, "query_error"));
    assert!(e.message.contains("s.nope"), "{}", e.message);
    let e = server.err("CREATE DATABASE s").await;
    assert_eq!((e.status, e.code.as_str()), (409, "already_exists"));
    let e = server.err("").await;
    assert_eq!((e.status, e.code.as_str()), (400, "bad_request"));
    let e = server.err("ALTER TABLE nope.t SECONDARY_LOAD").await;
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));
    let resp = client()
        .get(server.url("/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn answers_stream_and_a_query_failing_after_its_first_rows_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(tmp.path()).await;
    // 100,001 rows in batches of 8,192: only the last batch divides by zero.
    let q = "SELECT value, 10 / (value - 99000) AS q FROM generate_series(0, 100000)";
    let resp = server.post_sql(q, "application/json").await;
    assert_eq!(
        resp.status(),
        200,
        "the first rows went out before the failure"
    );
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let v: Value = resp.json().await.unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(
        !rows.is_empty() && rows.len() < 100_001,
        "{} rows",
        rows.len()
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("divide by zero"),
        "{}",
        v["error"]
    );
    // An Arrow stream is cut short: the client sees an incomplete body, not a clean end.
    let resp = server
        .post_sql(q, "application/vnd.apache.arrow.stream")
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await;
    let complete = body.is_ok_and(|b| {
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(b), None)
            .is_ok_and(|r| r.into_iter().all(|b| b.is_ok()))
    });
    assert!(!complete, "a failed query's stream must not look complete");
    // Failing before any row: the error answer with its status, as always.
    let e = server
        .err("SELECT 10 / (value - 0) FROM generate_series(0, 10)")
        .await;
    assert!(
        e.message.to_lowercase().contains("divide by zero"),
        "{}",
        e.message
    );
}

/// Writes `rows` CSV rows `id,day,amount` with `day` scrambled against `id`, starting at `first`.
fn scrambled_csv(path: &std::path::Path, first: i64, rows: i64) -> (i64, i64) {
    let mut text = String::from("id,day,amount\n");
    let (mut count, mut sum) = (0, 0);
    for id in first..first + rows {
        let day = (id * 7919) % 3650;
        let amount = id % 1000;
        text.push_str(&format!("{id},{day},{amount}\n"));
        if (1000..1100).contains(&day) {
            count += 1;
            sum += amount;
        }
    }
    std::fs::write(path, text).unwrap();
    (count, sum)
}

#[tokio::test]
async fn a_placement_key_orders_rows_after_the_load_so_ranges_on_it_read_few_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (c1, s1) = scrambled_csv(&data.join("a.csv"), 0, 100_000);
    let owned = TestServer::spawn(&tmp.path().join("tarn"), &data, &["--shards", "2"]).await;
    let server = &owned;
    server.ok("CREATE DATABASE s").await;
    let def = |key: &str| {
        format!(
            "(id BIGINT, day INT, amount BIGINT) FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') \
             FILES = (URI 'file://{}/') {key}",
            data.display()
        )
    };
    server.create_and_load("s.plain", &def("")).await;
    server
        .create_and_load("s.placed", &def("DATA_PLACEMENT_KEY = (day)"))
        .await;
    let placed =
        || async move { server.table_status("s", "placed").await["placement"] == "placed" };
    wait_until(placed, "rows placed by the key").await;
    assert!(server.table_status("s", "plain").await["placement"].is_null());

    let range = "FROM s.{t} WHERE day BETWEEN 1000 AND 1099";
    let scanned = |t: &'static str| {
        let q = format!("EXPLAIN SELECT * {}", range.replace("{t}", t));
        async move { batches_scanned(&server.rows(&q).await) }
    };
    let answer = |t: &'static str| {
        let q = format!("SELECT count(*), sum(amount) {}", range.replace("{t}", t));
        async move { serde_json::Value::from(server.rows(&q).await[0].clone()) }
    };
    // 100,000 rows are 13 batches; in file order every batch spans all days.
    assert_eq!(scanned("plain").await, 13);
    assert!(scanned("placed").await <= 2, "{}", scanned("placed").await);
    assert_eq!(answer("placed").await, answer("plain").await);
    assert_eq!(answer("placed").await, serde_json::json!([c1, s1]));

    // A refresh adds a file: its rows are placed in turn, and the answer takes them.
    let (c2, s2) = scrambled_csv(&data.join("b.csv"), 100_000, 50_000);
    let (status, _) = server.post("/v1/tables/s/placed/refresh").await;
    assert_eq!(status, 200);
    wait_until(placed, "the new file's rows placed").await;
    assert!(scanned("placed").await <= 4, "{}", scanned("placed").await);
    assert_eq!(
        answer("placed").await,
        serde_json::json!([c1 + c2, s1 + s2])
    );

    // A key that names no column of the table fails the load, naming it; nothing is loaded
    // and the other tables keep answering.
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.bad FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') \
             FILES = (URI 'file://{}/a.csv') DATA_PLACEMENT_KEY = (nope)",
            data.display()
        ))
        .await;
    let e = server.err("ALTER TABLE s.bad SECONDARY_LOAD").await;
    assert_eq!(e.code, "bad_request", "{e:?}");
    assert!(
        e.message
            .contains("DATA_PLACEMENT_KEY of 's.bad' names 'nope'"),
        "{}",
        e.message
    );
    assert_eq!(
        server.err("SELECT count(*) FROM s.bad").await.code,
        "table_not_loaded"
    );
    assert_eq!(
        answer("placed").await,
        serde_json::json!([c1 + c2, s1 + s2])
    );
}

/// The value of the metric line starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn amounts_csv(path: &std::path::Path, ids: std::ops::Range<i64>) -> (i64, i64) {
    let mut text = String::from("id,amount\n");
    let (mut count, mut sum) = (0, 0);
    for id in ids {
        text.push_str(&format!("{id},{}\n", id * 3));
        if id * 3 > 10 {
            count += 1;
            sum += id * 3;
        }
    }
    std::fs::write(path, text).unwrap();
    (count, sum)
}

#[tokio::test]
async fn kept_query_plans_answer_from_the_current_version_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("one")).unwrap();
    std::fs::create_dir_all(data.join("two")).unwrap();
    let (c1, s1) = amounts_csv(&data.join("one/a.csv"), 0..100);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &["--shards", "2"]).await;
    server.ok("CREATE DATABASE s").await;
    let def = |dir: &str| {
        format!(
            "(id BIGINT, amount BIGINT) FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') \
             FILES = (URI 'file://{}/{dir}/')",
            data.display()
        )
    };
    server.create_and_load("s.t", &def("one")).await;
    let q = "SELECT count(*), sum(amount) FROM s.t WHERE amount > 10";
    let answer = || async { Value::from(server.rows(q).await[0].clone()) };
    let cache = || async {
        let m = server.text("/metrics").await;
        (
            metric(&m, "tarn_plan_cache_lookups_total{result=\"hit\"}"),
            metric(&m, "tarn_plan_cache_plans"),
        )
    };

    // Run again, the same text reuses its plan and answers the same.
    assert_eq!(answer().await, serde_json::json!([c1, s1]));
    let (hits, kept) = cache().await;
    assert_eq!(kept, 1.0);
    assert_eq!(answer().await, serde_json::json!([c1, s1]));
    assert_eq!(cache().await, (hits + 1.0, 1.0));

    // A refresh publishes a new version: the kept plan is dropped, the answer takes the new rows.
    let (c2, s2) = amounts_csv(&data.join("one/b.csv"), 100..150);
    let (status, _) = server.post("/v1/tables/s/t/refresh").await;
    assert_eq!(status, 200);
    assert_eq!(cache().await.1, 0.0);
    assert_eq!(answer().await, serde_json::json!([c1 + c2, s1 + s2]));

    // Unloaded, the table does not answer from a kept plan.
    server.ok("ALTER TABLE s.t SECONDARY_UNLOAD").await;
    assert_eq!(cache().await.1, 0.0);
    assert_eq!(server.err(q).await.code, "table_not_loaded");

    // Dropped and declared again over other files, the same name answers from them.
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    assert_eq!(answer().await, serde_json::json!([c1 + c2, s1 + s2]));
    server.ok("DROP TABLE s.t").await;
    let (c3, s3) = amounts_csv(&data.join("two/c.csv"), 1000..1010);
    server.create_and_load("s.t", &def("two")).await;
    assert_eq!(answer().await, serde_json::json!([c3, s3]));

    // Plans whose answer may change without a new version are never kept: functions folded into
    // constants when planned (now()), random values, status views.
    let kept = cache().await.1;
    for q in [
        "SELECT count(*) FROM s.t WHERE now() > TIMESTAMP '2000-01-01 00:00:00'",
        "SELECT count(*) FROM s.t WHERE random() < 2",
        "SELECT count(*) FROM performance_schema.rpd_tables",
        "EXPLAIN SELECT count(*) FROM s.t",
    ] {
        server.ok(q).await;
        server.ok(q).await;
        assert_eq!(cache().await.1, kept, "{q}");
    }

    // --plan-cache 0 keeps none.
    drop(server);
    let server = TestServer::spawn(
        &tmp.path().join("tarn"),
        &data,
        &["--shards", "2", "--plan-cache", "0"],
    )
    .await;
    server.wait_ready().await;
    for _ in 0..2 {
        assert_eq!(
            Value::from(server.rows(q).await[0].clone()),
            serde_json::json!([c3, s3])
        );
    }
    let m = server.text("/metrics").await;
    assert_eq!(metric(&m, "tarn_plan_cache_plans"), 0.0);
    assert_eq!(
        metric(&m, "tarn_plan_cache_lookups_total{result=\"hit\"}"),
        0.0
    );
}
