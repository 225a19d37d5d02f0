//! HeatWave Lakehouse's validation and `sys.HEATWAVE_LOAD` options, on CSV files Python's csv
//! module wrote: `ALTER TABLE ... SECONDARY_LOAD VALIDATE ONLY` and `mode: validation` report the
//! rows a load would reject (file, line, column, problem) and load nothing; an option Tarn does
//! not take is refused, named; `output` shapes the answer.

use std::process::Command;

use serde_json::{Value, json};

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

/// `tables` of `db` were not loaded, and no memory stays reserved.
async fn assert_untouched(server: &TestServer, db: &str, tables: &[&str]) {
    for t in tables {
        assert_eq!(
            server.table_status(db, t).await["load_status"],
            "NOLOAD_RPDGSTABSTATE",
            "{db}.{t}"
        );
    }
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains("tarn_memory_reserved_bytes 0"),
        "{metrics}"
    );
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
    assert_untouched(&server, "v", &["t", "g"]).await;
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
    let e = server
        .err(&call("JSON_OBJECT('mode', 'dryrun', 'output', 'loud')"))
        .await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (400, "invalid_definition"),
        "{e:?}"
    );
    assert!(e.message.contains("loud"), "{e:?}");
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
    let loader = server
        .make_token(json!({"name": "loader", "role": "loader"}))
        .await;
    let as_loader = client_with(&loader);
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

#[tokio::test]
async fn a_dry_run_infers_columns_and_estimates_memory_within_a_fifth_of_the_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("pq")).unwrap();
    std::fs::create_dir_all(data.join("csv")).unwrap();
    // Two Parquet files of ten row groups each, and a CSV file larger than what a dry run reads.
    let made = Command::new(python())
        .arg("-c")
        .arg(
            r#"import sys, csv, pyarrow as pa, pyarrow.parquet as pq
d = sys.argv[1]
for k in range(2):
    n = 500_000
    ids = range(k * n, (k + 1) * n)
    t = pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([i % 997 for i in ids], pa.int32()),
                  "name": pa.array([f"name-{i % 101}" for i in ids])})
    pq.write_table(t, f"{d}/pq/part-{k}.parquet", row_group_size=50_000)
with open(f"{d}/csv/big.csv", "w", newline="") as f:
    w = csv.writer(f)
    for i in range(1_200_000):
        w.writerow([i, i % 997, f"name-{i % 101}", f"{i * 0.25:.2f}"])
"#,
        )
        .arg(&data)
        .status()
        .unwrap();
    assert!(made.success());
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE e").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE e.pq FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')",
            data.join("pq").display()
        ))
        .await;
    // A Delta table (deltalake writes it: four files), estimated from its log's files.
    delta_op(&data.join("delta"), &["create", "0", "400000", "4"]);
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE e.dl FILE_FORMAT = (FORMAT delta) FILES = (URI 'file://{}/')",
            data.join("delta").display()
        ))
        .await;
    let csv_uri = format!("file://{}/", data.join("csv").display());
    // Tables defined, one given only by its files (not created by a dry run).
    let rows = server
        .rows(&format!(
            r#"CALL sys.HEATWAVE_LOAD(CAST('[{{"db_name": "e", "tables": ["pq", "dl", {{"table_name": "csv", "engine_attribute": {{"dialect": {{"format": "csv", "field_delimiter": ","}}, "file": [{{"uri": "{csv_uri}"}}]}}}}]}}]' AS JSON), JSON_OBJECT('mode', 'dryrun'))"#
        ))
        .await;
    assert_eq!(rows.len(), 4, "three tables and the total: {rows:?}");
    let by_name = |n: &str| rows.iter().find(|r| r[0] == n).unwrap().clone();
    let (pq, csv, dl) = (by_name("e.pq"), by_name("e.csv"), by_name("e.dl"));
    assert_eq!(dl[3], 4, "{dl:?}");
    assert!(
        pq[5].as_str().unwrap().contains("`id` BIGINT")
            && csv[5]
                .as_str()
                .unwrap()
                .starts_with("CREATE EXTERNAL TABLE `e`.`csv` ("),
        "the DDL with the columns inferred: {rows:?}"
    );
    assert_eq!(pq[3], 2, "{pq:?}");
    let total = &rows[3];
    assert_eq!(total[0], json!(null));
    assert_eq!(
        total[1].as_u64().unwrap(),
        pq[1].as_u64().unwrap() + csv[1].as_u64().unwrap() + dl[1].as_u64().unwrap()
    );
    // Nothing was created or loaded, and the memory the samples took is given back.
    assert_untouched(&server, "e", &["pq"]).await;
    let e = server.err("SELECT * FROM e.csv").await;
    assert!(e.message.contains("csv"), "{e:?}");
    // The generated DDL defines the table; then the real loads, against the estimates.
    server.ok(csv[5].as_str().unwrap()).await;
    for (t, est) in [("pq", &pq), ("csv", &csv), ("dl", &dl)] {
        server
            .ok(&format!("ALTER TABLE e.{t} SECONDARY_LOAD"))
            .await;
        let listed = server.get("/v1/tables").await;
        let real = listed["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["table_name"] == t)
            .unwrap()
            .clone();
        let (real_bytes, real_rows) = (
            real["size_bytes"].as_f64().unwrap(),
            real["nrows"].as_f64().unwrap(),
        );
        let (est_bytes, est_rows) = (est[1].as_f64().unwrap(), est[2].as_f64().unwrap());
        eprintln!(
            "{t}: estimated {est_bytes} bytes / {est_rows} rows, loaded {real_bytes} / {real_rows}"
        );
        assert!(
            (est_bytes - real_bytes).abs() / real_bytes < 0.2,
            "{t}: estimated {est_bytes} bytes, loaded {real_bytes}"
        );
        assert!(
            (est_rows - real_rows).abs() / real_rows < 0.2,
            "{t}: estimated {est_rows} rows, loaded {real_rows}"
        );
    }
}

#[tokio::test]
async fn selective_load_changes_the_file_list_and_a_failed_refresh_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (name, ids) in [("a.csv", 1..=3), ("b.csv", 4..=5), ("c.csv", 6..=9)] {
        let text: String = ids.map(|i| format!("{i},x{i}\n")).collect();
        std::fs::write(data.join(name), text).unwrap();
    }
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE v").await;
    let uri = |f: &str| format!("URI 'file://{}'", data.join(f).display());
    server
        .create_and_load(
            "v.t",
            &format!(
                "(id INT, name VARCHAR(8)) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = ({}, {})",
                uri("a.csv"),
                uri("b.csv")
            ),
        )
        .await;
    let count = || async { server.rows("SELECT count(*), sum(id) FROM v.t").await };
    assert_eq!(count().await, vec![vec![json!(5), json!(15)]]);
    // The new list: a kept as loaded, b dropped, c read.
    let r = server
        .ok(&format!(
            "ALTER TABLE v.t FILES = ({}, {})",
            uri("a.csv"),
            uri("c.csv")
        ))
        .await;
    let names: Vec<_> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let field = |n: &str| r["rows"][0][names.iter().position(|x| x == n).unwrap()].clone();
    assert_eq!(
        (
            field("files_added"),
            field("files_removed"),
            field("files_kept"),
            field("rows")
        ),
        (json!(1), json!(1), json!(1), json!(7)),
        "{r}"
    );
    assert_eq!(count().await, vec![vec![json!(7), json!(36)]]);
    let ddl = server.rows("SHOW CREATE TABLE v.t").await;
    let ddl = ddl[0][1].as_str().unwrap();
    assert!(ddl.contains("c.csv") && !ddl.contains("b.csv"), "{ddl}");
    // A list with a file that is not there: the refresh fails, naming it; the old list and the
    // loaded rows stay.
    let e = server
        .err(&format!(
            r#"ALTER TABLE v.t ENGINE_ATTRIBUTE='{{"file": [{{"uri": "file://{}"}}]}}'"#,
            data.join("missing.csv").display()
        ))
        .await;
    assert!(e.message.contains("missing.csv"), "{e:?}");
    assert_eq!(count().await, vec![vec![json!(7), json!(36)]]);
    let ddl = server.rows("SHOW CREATE TABLE v.t").await;
    assert!(
        ddl[0][1].as_str().unwrap().contains("c.csv"),
        "the old list stays: {ddl:?}"
    );
    // Changing the file list is DDL (the admin's); validating is a loader's.
    let token = |role: &str| {
        let server = &server;
        let role = role.to_string();
        async move { client_with(&server.make_token(json!({"name": role, "role": role})).await) }
    };
    let (loader, reader) = (token("loader").await, token("reader").await);
    let sql = |c: &reqwest::Client, q: String| {
        let req = c.post(server.url("/v1/sql")).body(q);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        sql(
            &loader,
            format!("ALTER TABLE v.t FILES = ({})", uri("b.csv"))
        )
        .await,
        403
    );
    assert_eq!(
        sql(
            &reader,
            "ALTER TABLE v.t SECONDARY_LOAD VALIDATE ONLY".into()
        )
        .await,
        403
    );
    assert_eq!(
        sql(
            &loader,
            "ALTER TABLE v.t SECONDARY_LOAD VALIDATE ONLY".into()
        )
        .await,
        200
    );
    // A location outside the allowed ones is refused before anything changes.
    let e = server
        .err("ALTER TABLE v.t FILES = (URI 'file:///etc/passwd')")
        .await;
    assert_eq!(e.status, 403, "{e:?}");
    assert_eq!(count().await, vec![vec![json!(7), json!(36)]]);
}

#[tokio::test]
async fn fields_terminated_by_auto_finds_each_files_delimiter() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Two files of one table, written with different delimiters (and one with a quoted field
    // holding the other's delimiter).
    std::fs::write(data.join("a.csv"), "1;\"x|y\";2.5\n2;b;3.5\n").unwrap();
    std::fs::write(data.join("b.csv"), "3|c|4.5\r\n4|d|5.5\r\n").unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE v").await;
    server
        .create_and_load(
            "v.t",
            &format!(
                "(id INT, name VARCHAR(8), x DOUBLE) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY 'auto' LINES TERMINATED BY 'auto') FILES = (URI 'file://{}/')",
                data.display()
            ),
        )
        .await;
    assert_eq!(
        server.rows("SELECT id, name, x FROM v.t ORDER BY id").await,
        vec![
            vec![json!(1), json!("x|y"), json!(2.5)],
            vec![json!(2), json!("b"), json!(3.5)],
            vec![json!(3), json!("c"), json!(4.5)],
            vec![json!(4), json!("d"), json!(5.5)],
        ]
    );
    let ddl = server.rows("SHOW CREATE TABLE v.t").await;
    assert!(
        ddl[0][1]
            .as_str()
            .unwrap()
            .contains("FIELDS TERMINATED BY 'auto'"),
        "{ddl:?}"
    );
}

#[tokio::test]
async fn declared_keys_are_verified_at_load_and_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("r")).unwrap();
    // Python's csv module writes the files: id 2 is in both; NULL codes (\N) repeat.
    let made = Command::new(python())
        .arg("-c")
        .arg(
            r#"import csv, sys
d = sys.argv[1]
files = {"a.csv": [[1, "x", "k1"], [2, "y", "\\N"]], "b.csv": [[3, "z", "\\N"], [2, "w", "k4"]],
         "r/a.csv": [[1, "x", "k1"], [2, "y", "\\N"]]}
for name, rows in files.items():
    with open(f"{d}/{name}", "w", newline="") as f:
        csv.writer(f).writerows(rows)
"#,
        )
        .arg(&data)
        .status()
        .unwrap();
    assert!(made.success());
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE k").await;
    let ddl = |name: &str, dir: &str, extra: &str| {
        format!(
            "CREATE EXTERNAL TABLE k.{name} (id INT PRIMARY KEY, name VARCHAR(8), code VARCHAR(8), \
             UNIQUE KEY by_code (code)) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') \
             FILES = (URI 'file://{}/{dir}*.csv') {extra}",
            data.display()
        )
    };
    // Strict: the duplicate fails the load, naming the key, the value and both rows.
    server
        .ok(&ddl("strict", "", "VERIFY_KEY_CONSTRAINTS = 1"))
        .await;
    let e = server.err("ALTER TABLE k.strict SECONDARY_LOAD").await;
    assert!(
        e.message
            .contains("duplicate value (2) for PRIMARY KEY (id) of k.strict")
            && e.message.contains("a.csv row 2")
            && e.message.contains("b.csv row 2"),
        "{e:?}"
    );
    let ddl_text = server.rows("SHOW CREATE TABLE k.strict").await[0][1]
        .as_str()
        .unwrap()
        .to_string();
    for part in [
        "`id` INT NOT NULL",
        "PRIMARY KEY (`id`)",
        "UNIQUE KEY `by_code` (`code`)",
        "VERIFY_KEY_CONSTRAINTS = 1",
    ] {
        assert!(ddl_text.contains(part), "{part}: {ddl_text}");
    }
    // Not strict: the later duplicate is left out and listed with where the first is; the NULL
    // codes repeat, as MySQL's unique keys let them.
    server
        .ok(&ddl(
            "loose",
            "",
            "VERIFY_KEY_CONSTRAINTS = 1 STRICT_LOAD = 0",
        ))
        .await;
    server.ok("ALTER TABLE k.loose SECONDARY_LOAD").await;
    assert_eq!(
        server
            .rows("SELECT id, name FROM k.loose ORDER BY id")
            .await,
        vec![
            vec![json!(1), json!("x")],
            vec![json!(2), json!("y")],
            vec![json!(3), json!("z")],
        ]
    );
    let rejected = server
        .rows("SELECT file, line, reason FROM performance_schema.tarn_rejected_rows WHERE table_name = 'loose'")
        .await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0][0].as_str().unwrap().ends_with("b.csv"),
        "{rejected:?}"
    );
    assert_eq!(rejected[0][1], json!(2));
    assert!(
        rejected[0][2]
            .as_str()
            .unwrap()
            .contains("duplicate value (2) for PRIMARY KEY (id); the first is"),
        "{rejected:?}"
    );
    // Without VERIFY_KEY_CONSTRAINTS the keys are declarations only.
    server.ok(&ddl("plain", "", "")).await;
    server.ok("ALTER TABLE k.plain SECONDARY_LOAD").await;
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM k.plain").await,
        vec![vec![json!(4)]]
    );
    // A refresh that would bring a duplicate fails, and the loaded version keeps answering.
    server
        .ok(&ddl("fresh", "r/", "VERIFY_KEY_CONSTRAINTS = 1"))
        .await;
    server.ok("ALTER TABLE k.fresh SECONDARY_LOAD").await;
    std::fs::write(data.join("r/c.csv"), "5,q,k1\n").unwrap();
    let (status, v) = server.post("/v1/tables/k/fresh/refresh").await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v.to_string()
            .contains("duplicate value (k1) for UNIQUE KEY `by_code` (code) of k.fresh"),
        "{v}"
    );
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM k.fresh").await,
        vec![vec![json!(2)]]
    );
    // Keys must name declared columns, and verifying needs a key.
    for (sql, says) in [
        (
            "CREATE EXTERNAL TABLE k.bad (id INT, PRIMARY KEY (nope)) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///x/')",
            "PRIMARY KEY (nope) names 'nope', which is not a declared column",
        ),
        (
            "CREATE EXTERNAL TABLE k.bad (id INT) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///x/') VERIFY_KEY_CONSTRAINTS = 1",
            "needs a PRIMARY KEY or UNIQUE key",
        ),
    ] {
        let e = server.err(sql).await;
        assert!(e.message.contains(says), "{sql}: {e:?}");
    }
}

#[tokio::test]
async fn dialect_details_null_and_empty_values_trimming_formats_zip_and_column_matching() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("zip")).unwrap();
    // Python writes every file: a CSV with NA for NULL, '-' for empty text, padded fields, times
    // as 14.05.09, dates as 31/12/2024; a zip archive of two CSV entries (deflated and stored);
    // a Parquet file whose columns are A, b and c_other.
    python_json(
        r#"import csv, os, json, zipfile
import pyarrow as pa, pyarrow.parquet as pq
d = os.environ["DIR"]
with open(f"{d}/details.csv", "w", newline="") as f:
    csv.writer(f).writerows([
        [1, "  ann ", " 14.05.09", "31/12/2024", "2024/01/02 03:04"],
        [2, "NA", "00.00.01", " 01/02/2023", "NA"],
        [3, "-", "NA", "NA", "2023/12/31 23:59"],
    ])
with zipfile.ZipFile(f"{d}/zip/parts.zip", "w") as z:
    z.writestr("one.csv", "1,a\n2,b\n", compress_type=zipfile.ZIP_DEFLATED)
    z.writestr("two.csv", "3,c\n", compress_type=zipfile.ZIP_STORED)
pq.write_table(pa.table({"A": pa.array([1, 2], pa.int32()), "b": ["x", "y"], "c_other": [0.5, 1.5]}), f"{d}/cols.parquet")
print(json.dumps(True))
"#,
        &[("DIR", data.to_str().unwrap())],
    );
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE v").await;
    let dialect = r#"{"format": "csv", "field_delimiter": ",", "null_value": "NA", "empty_value": "-", "trim_spaces": true, "time_format": "%H.%i.%s", "timestamp_format": "%Y/%m/%d %H:%i"}"#;
    server
        .ok(&format!(
            "CREATE TABLE v.d (id INT, name VARCHAR(10), t TIME, day DATE ENGINE_ATTRIBUTE '{{\"date_format\": \"%d/%m/%Y\"}}', at DATETIME) \
             ENGINE=lakehouse SECONDARY_ENGINE=rapid ENGINE_ATTRIBUTE='{{\"dialect\": {dialect}, \"file\": [{{\"uri\": \"file://{}/details.csv\"}}]}}'",
            data.display()
        ))
        .await;
    server.ok("ALTER TABLE v.d SECONDARY_LOAD").await;
    let select =
        "SELECT id, name, CAST(t AS VARCHAR), CAST(day AS VARCHAR), CAST(at AS VARCHAR) FROM";
    let want = vec![
        vec![
            json!(1),
            json!("ann"),
            json!("14:05:09"),
            json!("2024-12-31"),
            json!("2024-01-02T03:04:00"),
        ],
        vec![
            json!(2),
            Value::Null,
            json!("00:00:01"),
            json!("2023-02-01"),
            Value::Null,
        ],
        vec![
            json!(3),
            json!(""),
            Value::Null,
            Value::Null,
            json!("2023-12-31T23:59:00"),
        ],
    ];
    assert_eq!(
        server.rows(&format!("{select} v.d ORDER BY id")).await,
        want
    );
    // SHOW CREATE TABLE keeps every detail: its DDL defines a table that reads the same.
    let ddl = server.rows("SHOW CREATE TABLE v.d").await[0][1]
        .as_str()
        .unwrap()
        .to_string();
    for part in [
        "TIME FORMAT",
        "NULL VALUE 'NA'",
        "EMPTY VALUE '-'",
        "TRIM SPACES ON",
        "ENGINE_ATTRIBUTE '{\"date_format\":\"%d/%m/%Y\"}'",
    ] {
        assert!(ddl.contains(part), "{part}: {ddl}");
    }
    server.ok(&ddl.replace("`v`.`d`", "`v`.`d2`")).await;
    server.ok("ALTER TABLE v.d2 SECONDARY_LOAD").await;
    assert_eq!(
        server.rows(&format!("{select} v.d2 ORDER BY id")).await,
        want
    );
    // A zip archive's entries are read one after another, by option or by extension.
    for (name, compression) in [("z1", "COMPRESSION zip "), ("z2", "")] {
        server
            .create_and_load(
                &format!("v.{name}"),
                &format!(
                    "(id INT, s VARCHAR(4)) FILE_FORMAT = (FORMAT csv {compression}FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/zip/')",
                    data.display()
                ),
            )
            .await;
        assert_eq!(
            server
                .rows(&format!("SELECT id, s FROM v.{name} ORDER BY id"))
                .await,
            vec![
                vec![json!(1), json!("a")],
                vec![json!(2), json!("b")],
                vec![json!(3), json!("c")],
            ]
        );
    }
    // A file that is not a zip archive fails the refresh naming it; the loaded rows answer on.
    std::fs::write(data.join("zip/broken.zip"), b"PK\x03\x04 not really").unwrap();
    let (status, v) = server.post("/v1/tables/v/z2/refresh").await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v.to_string().contains("broken.zip") && v.to_string().contains("zip:"),
        "{v}"
    );
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM v.z2").await,
        vec![vec![json!(3)]]
    );
    // Parquet columns meet the table's by name without case (the default), by exact name, or
    // by position; a missing column reads as NULL unless allow_missing_columns is off.
    let cols = format!("URI 'file://{}/cols.parquet'", data.display());
    for (name, how, want) in [
        ("m1", "", vec![json!(1), json!("x"), Value::Null]),
        (
            "m2",
            "MATCH COLUMNS BY NAME_CASE_SENSITIVE",
            vec![Value::Null, json!("x"), Value::Null],
        ),
        (
            "m3",
            "MATCH COLUMNS BY POSITION",
            vec![json!(1), json!("x"), json!(0.5)],
        ),
    ] {
        server
            .create_and_load(
                &format!("v.{name}"),
                &format!("(a INT, b TEXT, c DOUBLE) FILE_FORMAT = (FORMAT parquet {how}) FILES = ({cols})"),
            )
            .await;
        assert_eq!(
            server
                .rows(&format!("SELECT a, b, c FROM v.{name} ORDER BY b LIMIT 1"))
                .await,
            vec![want],
            "{name}"
        );
    }
    server
        .ok(&format!(
            "CREATE TABLE v.m4 (a INT, b TEXT, c DOUBLE) ENGINE=lakehouse SECONDARY_ENGINE=rapid ENGINE_ATTRIBUTE='{{\"dialect\": {{\"format\": \"parquet\", \"allow_missing_columns\": false}}, \"file\": [{{\"uri\": \"file://{}/cols.parquet\"}}]}}'",
            data.display()
        ))
        .await;
    let e = server.err("ALTER TABLE v.m4 SECONDARY_LOAD").await;
    assert!(
        e.message.contains("cols.parquet")
            && e.message.contains("no column 'c'")
            && e.message.contains("allow_missing_columns"),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_autopilot_report_keeps_the_last_calls_messages_and_its_load_script_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    write_files(&dir);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &dir, &[]).await;
    server.ok("CREATE DATABASE v").await;
    let good = format!("file://{}/good/", dir.display());
    let all = format!("file://{}/all/", dir.display());
    // One connection, as a HeatWave user works: a dry run, its load script read from the report
    // and run, then a validation whose warnings land in the report in place of the dry run's.
    let out = server
        .pymysql_json(
            r#"cur = connect(autocommit=True).cursor()
out = {}
cur.execute("SELECT COUNT(*) FROM sys.heatwave_autopilot_report")
out["before"] = cur.fetchone()[0]
attr = {"dialect": {"format": "csv", "field_delimiter": ","}, "file": [{"uri": os.environ["GOOD"]}]}
cur.execute("SET @input_list = %s", (json.dumps([{"db_name": "v", "tables": [{"table_name": "g", "engine_attribute": attr}]}]),))
cur.execute("CALL sys.HEATWAVE_LOAD(CAST(@input_list AS JSON), JSON_OBJECT('mode', 'dryrun', 'output', 'silent'))")
out["silent"] = cur.fetchall() if cur.description else []
cur.execute("SELECT type, stage FROM sys.heatwave_autopilot_report ORDER BY id")
out["kinds"] = [list(r) for r in cur.fetchall()]
cur.execute("SELECT log->>'$.sql' FROM sys.heatwave_autopilot_report WHERE type = 'sql' ORDER BY id")
script = [r[0] for r in cur.fetchall()]
out["script"] = script
for stmt in script:
    cur.execute(stmt)
cur.execute("SELECT COUNT(*) FROM v.g")
out["loaded"] = cur.fetchone()[0]
cur.execute("CREATE EXTERNAL TABLE v.a (id INT, day DATE, name VARCHAR(8)) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = (URI '" + os.environ["ALL"] + "')")
cur.execute("CALL sys.HEATWAVE_LOAD(CAST('[{\"db_name\": \"v\", \"tables\": [\"a\"]}]' AS JSON), JSON_OBJECT('mode', 'validation'))")
cur.fetchall()
cur.execute("SELECT type, log->>'$.line', log->>'$.column' FROM sys.heatwave_autopilot_report WHERE stage = 'VALIDATION' AND type = 'warn' ORDER BY id")
out["warnings"] = [list(r) for r in cur.fetchall()]
cur.execute("SELECT COUNT(*) FROM sys.heatwave_autopilot_report WHERE stage = 'DRYRUN'")
out["dryrun_left"] = cur.fetchone()[0]
print(json.dumps(out))
"#,
            &[("GOOD", &good), ("ALL", &all)],
        )
        .await;
    assert_eq!(out["before"], json!(0), "{out}");
    // `output: silent` answers nothing; the report has it all.
    assert_eq!(out["silent"], json!([]), "{out}");
    let kinds = out["kinds"].as_array().unwrap();
    assert!(
        kinds.contains(&json!(["info", "DRYRUN"])) && kinds.contains(&json!(["sql", "DRYRUN"])),
        "{out}"
    );
    let script: Vec<&str> = out["script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(script.len(), 2, "{out}");
    assert!(
        script[0].starts_with("CREATE EXTERNAL TABLE `v`.`g` ("),
        "{out}"
    );
    assert_eq!(script[1], "ALTER TABLE `v`.`g` SECONDARY_LOAD;");
    assert_eq!(out["loaded"], json!(3), "{out}");
    // bad.csv's line 2 (id) and line 4 (day): one warning each.
    assert_eq!(
        out["warnings"],
        json!([["warn", "2", "id"], ["warn", "4", "day"]]),
        "{out}"
    );
    assert_eq!(out["dryrun_left"], json!(0), "{out}");
    // Each HTTP request is a session of its own: no report there.
    assert_eq!(
        server
            .rows("SELECT COUNT(*) FROM sys.heatwave_autopilot_report")
            .await,
        vec![vec![json!(0)]]
    );
    let e = server.err("CREATE DATABASE sys").await;
    assert!(e.message.contains("sys is reserved"), "{e:?}");
}
