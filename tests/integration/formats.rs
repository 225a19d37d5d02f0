//! Every format loads from the samples and answers the same rows and values as an independent
//! reader of the same files (see tests/reference.py).

use crate::support::*;

async fn check(format: &str, dir: &str, ddl_tail: &str, declared: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample(dir, &data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    let cols = if declared { COLUMNS } else { "" };
    let ddl = ddl_tail.replace("@DATA@", &data.display().to_string());
    server
        .ok(&format!("CREATE EXTERNAL TABLE s.t {cols} {ddl}"))
        .await;
    let load = server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let got = server
        .rows(&format!("SELECT {SELECT_ALL} FROM s.t ORDER BY order_id"))
        .await;
    let want = reference_rows(format, &data);
    assert!(want.len() > 100, "reference read too little");
    assert_same_rows(format, &got, &want);
    assert_eq!(
        load["rows"][0][3].as_u64(),
        Some(want.len() as u64),
        "{load}"
    );
}

#[tokio::test]
async fn csv_matches_independent_reader() {
    // Two files, one of them gzip-compressed; quoted fields with commas, quotes, tabs and UTF-8.
    check(
        "csv",
        "csv",
        "FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"') FILES = (URI 'file://@DATA@/')",
        true,
    )
    .await;
}

#[tokio::test]
async fn parquet_matches_independent_reader_with_inferred_schema() {
    check(
        "parquet",
        "parquet",
        "FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://@DATA@/*.parquet')",
        false,
    )
    .await;
}

#[tokio::test]
async fn json_matches_independent_reader() {
    check(
        "json",
        "json",
        "FILE_FORMAT = (FORMAT json) FILES = (URI 'file://@DATA@/orders.ndjson')",
        true,
    )
    .await;
}

#[tokio::test]
async fn avro_matches_independent_reader_all_codecs() {
    // null, deflate and snappy codecs, schema inferred from the files.
    check(
        "avro",
        "avro",
        "FILE_FORMAT = (FORMAT avro) FILES = (URI 'file://@DATA@/')",
        false,
    )
    .await;
}

#[tokio::test]
async fn delta_current_version_matches_independent_reader() {
    // Four versions: appends, a delete, another append; the current one is read.
    check(
        "delta",
        "delta/orders",
        "FILE_FORMAT = (FORMAT delta) FILES = (URI 'file://@DATA@/')",
        false,
    )
    .await;
}

#[tokio::test]
async fn datafusion_and_engine_attribute_forms_load_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("csv/orders_1.csv", &data.join("orders_1.csv"));
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    let d = data.display();
    server
        .ok(&format!("CREATE EXTERNAL TABLE s.a {COLUMNS} STORED AS CSV OPTIONS ('format.has_header' 'true') LOCATION 'file://{d}/'"))
        .await;
    server
        .ok(&format!(
            r#"CREATE TABLE s.b {COLUMNS} ENGINE=lakehouse SECONDARY_ENGINE=rapid ENGINE_ATTRIBUTE='{{"file": [{{"uri": "file://{d}/orders_1.csv"}}], "dialect": {{"format": "csv", "field_delimiter": ",", "has_header": true}}}}'"#
        ))
        .await;
    server.ok("ALTER TABLE s.a SECONDARY_LOAD").await;
    server.ok("ALTER TABLE s.b SECONDARY_LOAD").await;
    let a = server
        .rows(&format!("SELECT {SELECT_ALL} FROM s.a ORDER BY order_id"))
        .await;
    let b = server
        .rows(&format!("SELECT {SELECT_ALL} FROM s.b ORDER BY order_id"))
        .await;
    assert_eq!(a.len(), 120);
    assert_eq!(a, b);
}
