//! `SELECT ... INTO OUTFILE` to object storage: CSV, Parquet and NDJSON files written in
//! parallel with a manifest, read back by DuckDB and by Tarn again (the same rows), to
//! `file://`, `s3://` and `oci://` (SeaweedFS) and a pre-authenticated request URL; a failed
//! export leaves nothing behind; only loaders and admins export, only where allowed.

use serde_json::{Value, json};

use crate::s3::{S3, unique_prefix};
use crate::support::*;

/// Rows exported per test table.
const ROWS: i64 = 20_000;

/// `typed.parquet` (pyarrow): every kind of value an export writes, with the text a CSV writer
/// must take care of (delimiters, quotes, backslashes, line breaks, empty text, NULLs).
fn write_typed(dir: &std::path::Path) {
    python_json(
        r#"import os, json, datetime, decimal
import pyarrow as pa, pyarrow.parquet as pq
n = int(os.environ["ROWS"])
# (A text that is exactly \N is left out: Tarn's CSV reader takes it as NULL, quoted or not.)
names = ["plain", "a,b", 'say "hi"', "back\\slash", "two\nlines", "x\\N", "", None, "ünï ☃", "|pipe|"]
t = pa.table({
    "id": pa.array(range(n), pa.int64()),
    "name": pa.array([names[i % len(names)] for i in range(n)], pa.string()),
    "amount": pa.array([None if i % 17 == 0 else decimal.Decimal(i * 7 % 100000) / 100 for i in range(n)], pa.decimal128(12, 2)),
    "ratio": pa.array([i / 7 for i in range(n)], pa.float64()),
    "day": pa.array([datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 400) for i in range(n)], pa.date32()),
    "at": pa.array([datetime.datetime(2024, 1, 1, 12, 0, 0) + datetime.timedelta(seconds=i * 37, microseconds=i) for i in range(n)], pa.timestamp("us")),
    "flag": pa.array([i % 3 == 0 for i in range(n)], pa.bool_()),
})
pq.write_table(t, os.environ["OUT"] + "/typed.parquet", row_group_size=4096)
print(json.dumps(n))
"#,
        &[("OUT", dir.to_str().unwrap()), ("ROWS", &ROWS.to_string())],
    );
}

const COLUMNS: &str = "(id BIGINT, name TEXT, amount DECIMAL(12,2), ratio DOUBLE, day DATE, at DATETIME(6), flag BOOLEAN)";

/// What DuckDB finds in an export's files: rows, sum of ids, sum of amounts, names present and
/// their total length.
fn duckdb_summary(read: &str) -> Value {
    python_json(
        r#"import os, json, duckdb
r = duckdb.connect().execute(f"SELECT count(*), sum(id), sum(amount)::VARCHAR, count(name), sum(length(name)) FROM {os.environ['READ']}").fetchone()
print(json.dumps([r[0], r[1], r[2], r[3], r[4]]))
"#,
        &[("READ", read)],
    )
}

const SUMMARY: &str =
    "SELECT COUNT(*), SUM(id), CAST(SUM(amount) AS VARCHAR), COUNT(name), SUM(CHAR_LENGTH(name))";

/// [`duckdb_summary`] of files in the test S3 server, read through DuckDB's httpfs.
fn duckdb_s3_summary(s3: &S3, read: &str) -> Value {
    let endpoint = s3.endpoint.trim_start_matches("http://");
    python_json(
        r#"import os, json, duckdb, pathlib
import duckdb_extension_httpfs
ext = next(pathlib.Path(duckdb_extension_httpfs.__file__).parent.rglob("httpfs.duckdb_extension"))
con = duckdb.connect()
con.execute(f"LOAD '{ext}'")
for k, v in [("s3_endpoint", os.environ["ENDPOINT"]), ("s3_use_ssl", "false"), ("s3_url_style", "path"),
             ("s3_region", "us-east-1"), ("s3_access_key_id", os.environ["KEY"]),
             ("s3_secret_access_key", os.environ["SECRET"])]:
    con.execute(f"SET {k} = '{v}'")
r = con.execute(f"SELECT count(*), sum(id), sum(amount)::VARCHAR, count(name), sum(length(name)) FROM {os.environ['READ']}").fetchone()
print(json.dumps([r[0], r[1], r[2], r[3], r[4]]))
"#,
        &[
            ("READ", read),
            ("ENDPOINT", endpoint),
            ("KEY", &s3.access_key),
            ("SECRET", &s3.secret_key),
        ],
    )
}

/// The export's folder (from its answer), checked against its manifest.
fn check_answer(answer: &[Vec<Value>], manifest: &Value) -> String {
    assert_eq!(answer.len(), 1, "{answer:?}");
    let (rows, files, location) = (&answer[0][0], &answer[0][1], &answer[0][3]);
    assert_eq!(rows, &json!(ROWS), "{answer:?}");
    assert_eq!(manifest["rows"], json!(ROWS), "{manifest}");
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(json!(listed.len()), *files, "{manifest}");
    // Written in parallel: more than one file.
    assert!(listed.len() >= 2, "{manifest}");
    let total: i64 = listed.iter().map(|f| f["rows"].as_i64().unwrap()).sum();
    assert_eq!(total, ROWS, "{manifest}");
    location.as_str().unwrap().to_string()
}

/// A server whose table `x.t` holds [`write_typed`]'s rows, and the directory `out` it may write
/// to (under its allowed location).
async fn typed_table(tmp: &std::path::Path) -> (TestServer, std::path::PathBuf) {
    let data = tmp.join("data");
    let out = data.join("out");
    std::fs::create_dir_all(&out).unwrap();
    write_typed(&data);
    let server = TestServer::spawn(&tmp.join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE x").await;
    server
        .create_and_load(
            "x.t",
            &format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/typed.parquet')",
                data.display()
            ),
        )
        .await;
    (server, out)
}

#[tokio::test]
async fn exports_to_files_in_every_format_read_back_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, out) = typed_table(tmp.path()).await;
    let original = server.rows("SELECT * FROM x.t ORDER BY id").await;
    let summary = server.rows(&format!("{SUMMARY} FROM x.t")).await;
    let out_uri = format!("file://{}", out.display());
    // Each export is read back by Tarn (the DDL's format), by DuckDB, or both. HeatWave's CSV
    // (`\N` for NULL, `\` escapes) reads back in Tarn; DuckDB takes no `\N` beside an escape,
    // so it reads an RFC 4180 export (doubled quotes, NULL as an empty field).
    let csv_columns = "columns={'id': 'BIGINT', 'name': 'VARCHAR', 'amount': 'DECIMAL(12,2)', \
                       'ratio': 'DOUBLE', 'day': 'DATE', 'at': 'TIMESTAMP', 'flag': 'BOOLEAN'}";
    for (name, clause, back_format, duck) in [
        (
            "csv",
            format!("INTO OUTFILE URI '{out_uri}/csv/' FORMAT csv COMPRESSION 'gzip' HEADER ON"),
            Some(
                "FORMAT csv HEADER ON FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '\\\\'",
            ),
            None,
        ),
        (
            "csv",
            format!(
                "INTO OUTFILE URI '{out_uri}/rfc/' FORMAT csv HEADER ON FIELDS NULL AS '' \
                 TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\"'"
            ),
            None,
            Some(format!(
                "read_csv('{{dir}}*.csv', header=true, quote='\"', escape='\"', \
                 allow_quoted_nulls=false, {csv_columns})"
            )),
        ),
        (
            "parquet",
            format!("INTO OUTFILE URI '{out_uri}/parquet/' FORMAT parquet COMPRESSION 'zstd'"),
            Some("FORMAT parquet"),
            Some("read_parquet('{dir}*.parquet')".to_string()),
        ),
        (
            "json",
            format!(
                "INTO OUTFILE WITH PARAMETERS '{{\"file\": [{{\"uri\": \"{out_uri}/json/\"}}], \"dialect\": {{\"format\": \"json\"}}}}'"
            ),
            Some("FORMAT json"),
            Some(format!("read_json('{{dir}}n*.json', {csv_columns})")),
        ),
    ] {
        let answer = server.rows(&format!("SELECT * FROM x.t {clause}")).await;
        let folder = answer[0][3].as_str().unwrap().to_string();
        let dir = folder.strip_prefix("file://").unwrap().to_string();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(format!("{dir}_manifest.json")).unwrap())
                .unwrap();
        check_answer(&answer, &manifest);
        assert_eq!(manifest["format"], json!(name));
        // Only the listed files and the manifest are there: no temporary upload left.
        let mut found: Vec<String> = walk(std::path::Path::new(&dir))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        found.sort();
        let mut listed: Vec<String> = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .chain(["_manifest.json".to_string()])
            .collect();
        listed.sort();
        assert_eq!(found, listed, "{name}");
        // DuckDB reads the files as Tarn's table has the rows.
        if let Some(duck) = duck {
            let duck = duckdb_summary(&duck.replace("{dir}", &dir));
            assert_eq!(
                duck.as_array().unwrap(),
                &summary[0],
                "{name}: DuckDB's summary of the export differs from the table's"
            );
        }
        // Defined again over the written folder, the files answer the same rows.
        let Some(back_format) = back_format else {
            continue;
        };
        let columns = if name == "parquet" { "" } else { COLUMNS };
        server
            .create_and_load(
                &format!("x.back_{name}"),
                &format!("{columns} FILE_FORMAT = ({back_format}) FILES = (URI '{folder}')"),
            )
            .await;
        let back = server
            .rows(&format!("SELECT * FROM x.back_{name} ORDER BY id"))
            .await;
        assert_same_rows(&format!("{name} round trip"), &back, &original);
    }
    // A HeatWave user exports from the MySQL client's session: the answer is a row like any.
    let out = server
        .pymysql_json(
            r#"cur = connect(database="x").cursor()
cur.execute("SELECT id, name FROM t WHERE id < 100 INTO OUTFILE URI '" + os.environ["OUT"] + "/mysql/' FORMAT parquet")
print(json.dumps([list(r) for r in cur.fetchall()]))
"#,
            &[("OUT", &out_uri)],
        )
        .await;
    assert_eq!(out[0][0], json!(100), "{out}");
    assert!(
        out[0][3]
            .as_str()
            .unwrap()
            .starts_with(&format!("{out_uri}/mysql/")),
        "{out}"
    );
}

#[tokio::test]
async fn a_failed_or_refused_export_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, out) = typed_table(tmp.path()).await;
    let out_uri = format!("file://{}", out.display());
    // The query fails part way (a division by zero at the last row): the files started are
    // dropped, nothing is left under the prefix.
    let e = server
        .err(&format!(
            "SELECT id, name, 100 / ({} - id) FROM x.t INTO OUTFILE URI '{out_uri}/bad/' FORMAT csv",
            ROWS - 1
        ))
        .await;
    assert!(e.message.to_lowercase().contains("divide by zero"), "{e:?}");
    assert_eq!(walk(&out), Vec::<std::path::PathBuf>::new());
    // Refused before anything runs, each naming what is wrong.
    for (sql, status, says) in [
        (
            "SELECT 1 INTO OUTFILE '/tmp/x.csv'".to_string(),
            400,
            "object storage only",
        ),
        (
            "SELECT * FROM x.t INTO OUTFILE URI 'file:///etc/' FORMAT csv".to_string(),
            403,
            "not allowed",
        ),
        (
            format!("SELECT * FROM x.t INTO OUTFILE URI '{out_uri}/f.csv'"),
            400,
            "must be a prefix",
        ),
        (
            format!("SELECT * FROM x.t INTO OUTFILE URI '{out_uri}/' FORMAT avro"),
            400,
            "unknown export FORMAT 'avro'",
        ),
        (
            format!("SELECT * FROM x.nope INTO OUTFILE URI '{out_uri}/' FORMAT csv"),
            400,
            "nope",
        ),
    ] {
        let e = server.err(&sql).await;
        assert!(
            e.status == status && e.message.contains(says),
            "{sql}: {e:?}"
        );
    }
    // A reader may query but not export.
    let reader = server
        .make_token(json!({"name": "r", "role": "reader"}))
        .await;
    let r = client_with(&reader)
        .post(server.url("/v1/sql"))
        .header("accept", "application/json")
        .body(format!(
            "SELECT * FROM x.t INTO OUTFILE URI '{out_uri}/r/' FORMAT csv"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(walk(&out), Vec::<std::path::PathBuf>::new());
    // The table the exports read is as it was.
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM x.t").await,
        vec![vec![json!(ROWS)]]
    );
}

#[tokio::test]
async fn exports_to_s3_oci_and_a_pre_authenticated_request_read_back_the_same_rows() {
    let Some(s3) = S3::from_env() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let par_root = tmp.path().join("par");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&par_root).unwrap();
    write_typed(&data);
    let (par_base, _fake) = crate::oci::start_fake(par_root.clone(), "write-token").await;
    let prefix = unique_prefix("export");
    let b = &s3.bucket;
    let config = s3.config(
        tmp.path(),
        &[
            format!("file://{}/", data.display()),
            format!("s3://{b}/{prefix}/"),
            format!("oci://{b}@testns/{prefix}/"),
            format!("{par_base}/"),
        ],
    );
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &["--config", config.to_str().unwrap()],
        &s3.credentials(),
    )
    .await;
    server.ok("CREATE DATABASE x").await;
    server
        .create_and_load(
            "x.t",
            &format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/typed.parquet')",
                data.display()
            ),
        )
        .await;
    let original = server.rows("SELECT * FROM x.t ORDER BY id").await;
    let par = format!("{par_base}/p/write-token/n/ns/b/bucket/o/");
    let summary = server.rows(&format!("{SUMMARY} FROM x.t")).await;
    // Every format to every kind of location: s3:// in the SQL form, oci:// by bucket and
    // namespace and a pre-authenticated request in the JSON form.
    let mut cases = Vec::new();
    for format in ["csv", "parquet", "json"] {
        let (sql_extra, json_extra, back) = match format {
            "csv" => (
                " HEADER ON COMPRESSION 'zstd'",
                ", \"has_header\": true, \"compression\": \"zstd\"",
                "FORMAT csv HEADER ON FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '\\\\'",
            ),
            "parquet" => ("", "", "FORMAT parquet"),
            _ => ("", "", "FORMAT json"),
        };
        cases.push((
            "s3",
            format,
            format!("INTO OUTFILE URI 's3://{b}/{prefix}/{format}/' FORMAT {format}{sql_extra}"),
            back,
        ));
        cases.push((
            "oci",
            format,
            format!(
                "INTO OUTFILE WITH PARAMETERS '{{\"file\": [{{\"bucket\": \"{b}\", \"namespace\": \"testns\", \"prefix\": \"{prefix}/oci-{format}/\"}}], \"dialect\": {{\"format\": \"{format}\"{json_extra}}}}}'"
            ),
            back,
        ));
        cases.push((
            "par",
            format,
            format!(
                "INTO OUTFILE WITH PARAMETERS '{{\"file\": [{{\"par\": \"{par}\", \"prefix\": \"{format}/\"}}], \"dialect\": {{\"format\": \"{format}\"{json_extra}}}}}'"
            ),
            back,
        ));
    }
    for (name, format, clause, back) in cases {
        let answer = server.rows(&format!("SELECT * FROM x.t {clause}")).await;
        let folder = answer[0][3].as_str().unwrap().to_string();
        assert_eq!(answer[0][0], json!(ROWS), "{name} {format}: {answer:?}");
        // The folder as the answer names it reads back (a PAR's token is redacted there).
        let uri = match name {
            "par" => {
                assert!(folder.contains("/p/<redacted>/"), "{folder}");
                folder.replace("<redacted>", "write-token")
            }
            _ => folder.clone(),
        };
        let columns = if format == "parquet" { "" } else { COLUMNS };
        let table = format!("x.back_{name}_{format}");
        server
            .create_and_load(
                &table,
                &format!("{columns} FILE_FORMAT = ({back}) FILES = (URI '{uri}')"),
            )
            .await;
        let got = server
            .rows(&format!("SELECT * FROM {table} ORDER BY id"))
            .await;
        assert_same_rows(&format!("{name} {format} round trip"), &got, &original);
        // DuckDB reads what went to S3 (httpfs, the same server).
        if name == "s3" && format != "csv" {
            let glob = format!("{folder}n*.{format}");
            let read = match format {
                "parquet" => format!("read_parquet('{glob}')"),
                _ => format!(
                    "read_json('{glob}', columns={{'id': 'BIGINT', 'name': 'VARCHAR', 'amount': \
                     'DECIMAL(12,2)', 'ratio': 'DOUBLE', 'day': 'DATE', 'at': 'TIMESTAMP', 'flag': 'BOOLEAN'}})"
                ),
            };
            let duck = duckdb_s3_summary(&s3, &read);
            assert_eq!(
                duck.as_array().unwrap(),
                &summary[0],
                "DuckDB reading {glob}"
            );
        }
        // The manifest, written last, lists what is there.
        let manifest: Value = match name {
            "par" => {
                let key = uri.split("/o/").nth(1).unwrap();
                serde_json::from_slice(
                    &std::fs::read(par_root.join(key).join("_manifest.json")).unwrap(),
                )
                .unwrap()
            }
            _ => {
                use object_store::ObjectStoreExt;
                // s3://bucket/key or oci://bucket@namespace/key: the same bucket here.
                let (_, rest) = folder.split_once("://").unwrap();
                let key = rest.split_once('/').unwrap().1.to_string() + "_manifest.json";
                let bytes = s3
                    .store()
                    .get(&object_store::path::Path::from(key))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                serde_json::from_slice(&bytes).unwrap()
            }
        };
        check_answer(&answer, &manifest);
    }
    // The PAR's files are in the bucket the request writes to, with the manifests.
    let written: Vec<String> = walk(&par_root)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(
        written.contains(&"_manifest.json".to_string()),
        "{written:?}"
    );
    assert!(
        written
            .iter()
            .filter(|n| n.ends_with(".json") && n.starts_with("n0-"))
            .count()
            >= 2,
        "{written:?}"
    );
}
