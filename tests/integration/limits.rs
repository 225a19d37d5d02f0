//! `[limits]`: a query that runs too long, holds too much memory, answers too much or comes when
//! too many run is stopped with its own code, and the service keeps answering; a query whose
//! client went away stops; errors the data causes at run time are the caller's (4xx).

use std::time::{Duration, Instant};

use crate::support::*;

async fn server_with(tmp: &std::path::Path, limits: &str) -> TestServer {
    let config = tmp.join("tarn.toml");
    std::fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
    let allowed = format!("file://{}/", tmp.display());
    TestServer::spawn_with_env(
        &tmp.join("tarn"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--allowed-locations",
            &allowed,
        ],
        &[],
    )
    .await
}

/// A query that runs for minutes: a hundred million rows counted through a cross join.
const HEAVY: &str = "SELECT COUNT(*) FROM generate_series(1, 20000) a, generate_series(1, 20000) b, generate_series(1, 20000) c";

#[tokio::test]
async fn a_query_past_its_time_is_stopped_and_the_service_answers_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with(tmp.path(), "query_timeout = \"1s\"").await;
    let started = Instant::now();
    let e = server.err(HEAVY).await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (408, "query_timeout"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("limits.query_timeout (1s)"),
        "{}",
        e.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // It does not go on in the background (once its tasks reach their next yield).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = server.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        server.cpu_seconds() - cpu < 0.5,
        "CPU still spent after the timeout"
    );
    assert_eq!(
        server.rows("SELECT 1 + 1").await,
        vec![vec![serde_json::json!(2)]]
    );
    // Over the MySQL protocol the same stop is MySQL's 3024, and the connection answers after.
    let out = server
        .pymysql_json(
            r#"cur = connect().cursor()
try:
    cur.execute(os.environ["HEAVY"])
    out = {"error": None}
except pymysql.err.MySQLError as e:
    out = {"error": e.args[0], "message": e.args[1]}
cur.execute("SELECT 1 + 1")
out["after"] = cur.fetchone()[0]
print(json.dumps(out))
"#,
            &[("HEAVY", HEAVY)],
        )
        .await;
    assert_eq!(out["error"], 3024, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("limits.query_timeout (1s)"),
        "{out}"
    );
    assert_eq!(out["after"], 2, "{out}");
}

#[tokio::test]
async fn too_many_queries_wait_their_turn_then_are_told() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with(
        tmp.path(),
        "max_concurrent_queries = 1\nqueue_timeout = \"300ms\"\nquery_timeout = \"3s\"",
    )
    .await;
    let heavy = {
        let url = server.url("/v1/sql");
        tokio::spawn(async move {
            client()
                .post(url)
                .body(HEAVY)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = server.err("SELECT 1").await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (429, "too_many_queries"),
        "{}",
        e.message
    );
    assert_eq!(heavy.await.unwrap(), 408);
    // The turn came back with the timeout.
    server.ok("SELECT 1").await;
}

#[tokio::test]
async fn answers_and_memory_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with(
        tmp.path(),
        "max_result_bytes = \"10KiB\"\nquery_memory = \"1MiB\"",
    )
    .await;
    let e = server
        .err("SELECT * FROM generate_series(1, 1000000)")
        .await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (413, "result_too_large"),
        "{}",
        e.message
    );
    let e = server
        .err(
            "SELECT COUNT(*) FROM generate_series(1, 300000) a JOIN generate_series(1, 300000) b \
             ON a.value = b.value",
        )
        .await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (422, "query_memory_exceeded"),
        "{}",
        e.message
    );
    assert!(e.message.contains("limits.query_memory"), "{}", e.message);
    assert_eq!(
        server
            .rows("SELECT COUNT(*) FROM generate_series(1, 1000)")
            .await,
        vec![vec![serde_json::json!(1000)]]
    );
}

#[tokio::test]
async fn errors_the_data_causes_while_a_query_runs_are_the_callers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with(tmp.path(), "").await;
    for sql in [
        "SELECT 10 / (value - 5) FROM generate_series(1, 10)",
        "SELECT CAST(CONCAT('x', CAST(value AS VARCHAR)) AS INT) FROM generate_series(1, 3)",
    ] {
        let e = server.err(sql).await;
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "query_failed"),
            "{sql}: {}",
            e.message
        );
    }
}

#[tokio::test]
async fn a_query_whose_client_left_stops_and_a_heavy_query_does_not_starve_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with(tmp.path(), "").await;
    // The client gives up after half a second.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let gone = tokio::spawn({
        let url = server.url("/v1/sql");
        async move { impatient.post(url).body(HEAVY).send().await.is_err() }
    });
    // While it runs, small queries, status views and health answer within a second.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for sql in [
        "SELECT 1",
        "SELECT COUNT(*) FROM performance_schema.rpd_tables",
    ] {
        let t = Instant::now();
        server.ok(sql).await;
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{sql}: {:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    server.text("/healthz").await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "/healthz: {:?}",
        t.elapsed()
    );
    assert!(gone.await.unwrap(), "the client gave up");
    // Once the client has gone, the query stops burning CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = server.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = server.cpu_seconds() - cpu;
    assert!(
        spent < 0.5,
        "{spent} s of CPU in the second after the client left"
    );
}
