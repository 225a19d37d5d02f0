//! HeatWave Lakehouse's validation and `sys.HEATWAVE_LOAD` options, on CSV files Python's csv
//! module wrote: `ALTER TABLE ... SECONDARY_LOAD VALIDATE ONLY` and `mode: validation` report the
//! rows a load would reject (file, line, column, problem) and load nothing; an option Tarn does
//! not take is refused, named; `output` shapes the answer.

use std::process::Command;

use serde_json::json;

use crate::support::*;

/// `good.csv` (3 rows) and `bad.csv` (4 rows: line 2 has a non-number id, line 4 a non-date day),
/// written by Python's csv module.
fn write_files(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("all")).unwrap();
    std::fs::create_dir_all(dir.join("good")).unwrap();
    let made = Command::new(python())
        .arg("-c")
        .arg(
            r#"import csv, sys
rows = {"good.csv": [[1, "2024-01-01", "a"], [2, "2024-01-02", "b"], [3, "2024-01-03", "c"]],
        "bad.csv": [[4, "2024-01-04", "d"], ["four", "2024-01-05", "e"], [6, "2024-01-06", "f"],
                    [7, "yesterday", "g"]]}
for d in sys.argv[1:]:
    for name, data in rows.items():
        if d.endswith("good") and name == "bad.csv":
            continue
        with open(f"{d}/{name}", "w", newline="") as f:
            csv.writer(f).writerows(data)
"#,
        )
        .arg(dir.join("all"))
        .arg(dir.join("good"))
        .status()
        .unwrap();
    assert!(made.success());
}

#[tokio::test]
async fn validation_reports_the_rows_a_load_would_reject_and_loads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_files(&data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE v").await;
    for (t, dir) in [("t", "all"), ("g", "good")] {
        server
            .ok(&format!(
                "CREATE EXTERNAL TABLE v.{t} (id INT NOT NULL, day DATE, name VARCHAR(10)) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/')",
                data.join(dir).display()
            ))
            .await;
    }
    let bad = format!("file://{}", data.join("all/bad.csv").display());
    let check = |rows: Vec<Vec<serde_json::Value>>| {
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (&rows[0][0], &rows[0][1], &rows[0][2], &rows[0][3]),
            (&json!("v.t"), &json!(bad), &json!(2), &json!("id")),
            "{rows:?}"
        );
        assert!(rows[0][4].as_str().unwrap().contains("four"), "{rows:?}");
        assert_eq!(
            (&rows[1][2], &rows[1][3]),
            (&json!(4), &json!("day")),
            "{rows:?}"
        );
        assert!(
            rows[1][4].as_str().unwrap().contains("yesterday"),
            "{rows:?}"
        );
    };
    let answer = server
        .ok("ALTER TABLE v.t SECONDARY_LOAD VALIDATE ONLY")
        .await;
    let columns: Vec<_> = answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(columns, ["table", "file", "line", "column", "problem"]);
    check(
        server
            .rows("ALTER TABLE v.t SECONDARY_LOAD VALIDATE ONLY")
            .await,
    );
    check(
        server
            .rows(r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "v", "tables": [{"table_name": "t"}]}]' AS JSON), JSON_OBJECT('mode', 'validation'))"#)
            .await,
    );
    // A clean table says so, with what was read.
    assert_eq!(
        server
            .rows("ALTER TABLE v.g SECONDARY_LOAD VALIDATE ONLY")
            .await,
        vec![vec![
            json!("v.g"),
            json!(null),
            json!(null),
            json!(null),
            json!("valid: 1 file(s), 3 row(s), none rejected")
        ]]
    );
    // Nothing was loaded, and nothing stays reserved.
    for t in ["t", "g"] {
        assert_eq!(
            server.table_status("v", t).await["load_status"],
            "NOLOAD_RPDGSTABSTATE"
        );
    }
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains("tarn_memory_reserved_bytes 0"),
        "{metrics}"
    );
    // The strict load itself fails on the first bad row, naming it.
    let e = server.err("ALTER TABLE v.t SECONDARY_LOAD").await;
    assert!(e.message.contains("bad.csv"), "{e:?}");

    // Options Tarn does not take are refused, named; dryrun is refused as not supported yet.
    let call = |options: &str| {
        format!(
            r#"CALL sys.HEATWAVE_LOAD(CAST('[{{"db_name": "v", "tables": [{{"table_name": "g"}}]}}]' AS JSON), {options})"#
        )
    };
    let e = server
        .err(&call("JSON_OBJECT('mode', 'validation', 'sampling', TRUE)"))
        .await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (400, "invalid_definition"),
        "{e:?}"
    );
    assert!(e.message.contains("'sampling'"), "{e:?}");
    let e = server.err(&call("JSON_OBJECT('mode', 'dryrun')")).await;
    assert_eq!((e.status, e.code.as_str()), (501, "not_supported"), "{e:?}");
    assert!(e.message.contains("dryrun"), "{e:?}");
    assert_eq!(
        server.table_status("v", "g").await["load_status"],
        "NOLOAD_RPDGSTABSTATE",
        "a refused call loads nothing"
    );
    // output: silent answers nothing (and loads); compact answers table, action and error.
    let silent = server
        .ok(&call("JSON_OBJECT('mode', 'normal', 'output', 'silent')"))
        .await;
    assert_eq!(silent["columns"], json!([]), "{silent}");
    assert_eq!(
        server.table_status("v", "g").await["load_status"],
        "AVAIL_RPDGSTABSTATE"
    );
    let compact = server
        .ok(&call(
            "JSON_OBJECT('refresh_external_tables', TRUE, 'output', 'compact')",
        ))
        .await;
    assert_eq!(
        compact["rows"],
        json!([["v.g", "refresh", null]]),
        "{compact}"
    );
    // An @options never set is NULL, as in MySQL: the defaults (the table is already loaded).
    let rows = server.rows(&call("@options")).await;
    assert_eq!(rows[0][1], "skipped: already loaded", "{rows:?}");
}

#[tokio::test]
async fn an_input_list_defines_tables_by_their_files_and_loads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_files(&data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    let good = format!("file://{}/", data.join("good").display());
    // HeatWave's documented form: the table (and its database) created from the files, then
    // loaded, in one call; columns inferred.
    let call = format!(
        r#"CALL sys.HEATWAVE_LOAD(CAST('[{{"db_name": "bank", "tables": [{{"table_name": "train", "engine_attribute": {{"dialect": {{"format": "csv", "field_delimiter": ","}}, "file": [{{"uri": "{good}"}}]}}}}]}}]' AS JSON), NULL)"#
    );
    let rows = server.rows(&call).await;
    assert_eq!(rows[0][0], "bank.train", "{rows:?}");
    assert_eq!(rows[0][1], "load", "{rows:?}");
    assert_eq!(rows[0][3], 3, "{rows:?}");
    assert_eq!(
        server.rows("SELECT count(*) FROM bank.train").await,
        vec![vec![json!(3)]]
    );
    let ddl = server.rows("SHOW CREATE TABLE bank.train").await;
    assert!(ddl[0][1].as_str().unwrap().contains(&good), "{ddl:?}");
    // Again: the table exists, keeps its definition, and is already loaded.
    let rows = server.rows(&call).await;
    assert_eq!(rows[0][1], "skipped: already loaded", "{rows:?}");
    // Creating is DDL: a loader may load defined tables, not define new ones.
    let r = client()
        .post(server.url("/v1/tokens"))
        .json(&json!({"name": "loader", "role": "loader"}))
        .send()
        .await
        .unwrap();
    let loader: serde_json::Value = r.json().await.unwrap();
    let as_loader = client_with(loader["token"].as_str().unwrap());
    let other = call.replace("\"train\"", "\"other\"");
    let r = as_loader
        .post(server.url("/v1/sql"))
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bank.other"),
        "{body}"
    );
    let e = server.err("SELECT * FROM bank.other").await;
    assert!(e.message.contains("other"), "{e:?}");
}
