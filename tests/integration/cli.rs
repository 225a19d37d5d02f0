//! `tarn sql`: the client prints answers as a table, runs scripts, and reports errors.

use std::process::Command;

use crate::support::*;

fn tarn_sql(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
        .args(["sql", "--url", &server.url("")])
        .env("TARN_TOKEN", ADMIN_TOKEN)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn sql_client_runs_scripts_and_prints_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet", &data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    let script = tmp.path().join("s.sql");
    std::fs::write(
        &script,
        format!(
            "-- a comment\nCREATE DATABASE s;\nCREATE EXTERNAL TABLE s.p\n  FILE_FORMAT = (FORMAT parquet)\n  FILES = (URI 'file://{}/');\nALTER TABLE s.p SECONDARY_LOAD;\n",
            data.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = tarn_sql(&server, &["-f", script.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("OK\nOK\n"), "{out}");
    assert!(out.contains("| s.p   | 1       | 2     | 200  |"), "{out}");

    let (ok, out, _) = tarn_sql(
        &server,
        &[
            "-e",
            "SELECT customer, COUNT(*) AS n FROM s.p WHERE customer = 'acme' GROUP BY customer",
        ],
    );
    assert!(ok);
    assert_eq!(
        out,
        "+----------+----+\n| customer | n  |\n+----------+----+\n| acme     | 33 |\n+----------+----+\n1 row in set\n"
    );

    let (ok, out, _) = tarn_sql(
        &server,
        &[
            "--output",
            "csv",
            "-e",
            "SELECT order_id FROM s.p WHERE order_id < 3 ORDER BY 1",
        ],
    );
    assert!(ok);
    assert_eq!(out, "order_id\n1\n2\n\n");

    let (ok, _, err) = tarn_sql(&server, &["-e", "SELECT * FROM s.missing"]);
    assert!(!ok);
    assert!(
        err.contains("ERROR (query_error)") && err.contains("s.missing"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_snapshot_location_it_cannot_use() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path())
        .args(["--snapshot-location", "ftp://example.com/snapshots/"])
        .env_remove("TARN_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ftp://example.com/snapshots/"), "{err}");
}

#[test]
fn bench_parquet_runs_queries_over_files_and_prints_times_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let queries = tmp.path().join("q.json");
    std::fs::write(
        &queries,
        r#"{"count": "SELECT COUNT(*), SUM(order_id) FROM orders", "bad": "SELECT nothing FROM orders"}"#,
    )
    .unwrap();
    let file = samples().join("parquet/orders-0.parquet");
    let run = |q: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
            .args(["bench", "parquet", "--runs", "2", "--table"])
            .arg(format!("orders={}", file.display()))
            .arg("--queries")
            .arg(q)
            .output()
            .unwrap()
    };
    let out = run(&queries);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("query bad") && err.contains("nothing"),
        "{err}"
    );
    std::fs::write(
        &queries,
        r#"{"count": "SELECT COUNT(*), SUM(order_id) FROM orders"}"#,
    )
    .unwrap();
    let out = run(&queries);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = reference_rows("parquet", &file);
    let ids: i64 = want.iter().map(|r| r[0].as_i64().unwrap()).sum();
    assert_eq!(
        v["count"]["rows"],
        serde_json::json!([[want.len(), ids]]),
        "{v}"
    );
    assert_eq!(v["count"]["seconds"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn a_drill_against_an_instance_that_does_not_answer_fails_naming_it() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
        .args(["drill", "failover", "--region", "a", "--instance", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{url}/v1/regions")), "{err}");
    // The cause is named, not only reqwest's "error sending request".
    assert!(err.to_lowercase().contains("connect"), "{err}");
}

#[test]
fn a_drill_given_two_instances_in_one_flag_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
        .args([
            "drill",
            "failover",
            "--region",
            "a",
            "--instance",
            "http://a:1,http://b:2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--instance 'http://a:1,http://b:2' is not a service URL: give one URL per flag"
        ),
        "{err}"
    );
}
