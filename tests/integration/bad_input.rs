//! Bad input gets a clear error naming the thing at fault, and what was loaded keeps answering.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// A server with `s.t` loaded from one good CSV file in `data/`; returns the server and its count.
async fn loaded_csv(tmp: &Path, extra_options: &str) -> (TestServer, std::path::PathBuf) {
    let data = tmp.join("data");
    copy_sample("csv/orders_1.csv", &data.join("a.csv"));
    let server = TestServer::spawn(&tmp.join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .create_and_load(
            "s.t",
            &format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') \
                 FILES = (URI 'file://{}/') {extra_options}",
                data.display()
            ),
        )
        .await;
    assert_previous_answers(&server).await;
    (server, data)
}

/// The first load's answer: 120 rows and their total.
async fn assert_previous_answers(server: &TestServer) {
    let r = server.rows("SELECT COUNT(*), SUM(quantity) FROM s.t").await;
    assert_eq!(r[0][0], 120, "previous version lost");
    assert_eq!(r[0][1], 1305, "previous version changed");
}

#[tokio::test]
async fn malformed_ddl_says_where_and_what() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _) = loaded_csv(tmp.path(), "").await;
    let e = server
        .err(
            "CREATE EXTERNAL TABLE s.u (a INT FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///x')",
        )
        .await;
    assert_eq!((e.status, e.code.as_str()), (400, "syntax_error"));
    assert!(
        e.message.contains("Expected") && e.message.contains("Line: 1, Column: 34"),
        "{}",
        e.message
    );
    let e = server.err("ALTER TABLE s.t SECONDARY_LAOD").await;
    assert!(
        e.message
            .contains("Expected: SECONDARY_LOAD, SECONDARY_UNLOAD, FILES or ENGINE_ATTRIBUTE, found: SECONDARY_LAOD"),
        "{}",
        e.message
    );
    assert_previous_answers(&server).await;
}

#[tokio::test]
async fn unknown_format_option_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = loaded_csv(tmp.path(), "").await;
    let e = server
        .err(&format!(
            "CREATE EXTERNAL TABLE s.u (a INT) FILE_FORMAT = (FORMAT csv DELIMITER ';') FILES = (URI 'file://{}/')",
            data.display()
        ))
        .await;
    assert_eq!((e.status, e.code.as_str()), (400, "invalid_definition"));
    assert!(
        e.message.contains("unknown FILE_FORMAT option DELIMITER"),
        "{}",
        e.message
    );
    let e = server.err("CREATE EXTERNAL TABLE s.u (a INT) FILE_FORMAT = (FORMAT xml) FILES = (URI 'file:///x/')").await;
    assert!(e.message.contains("unknown FORMAT xml"), "{}", e.message);
    assert!(
        server
            .err("DESCRIBE s.u")
            .await
            .message
            .contains("unknown table 's.u'")
    );
    assert_previous_answers(&server).await;
}

#[tokio::test]
async fn csv_with_wrong_column_count_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = loaded_csv(tmp.path(), "").await;
    std::fs::write(
        data.join("b.csv"),
        "h\n1,acme,widget,2,1.00,1.5,true,2024-01-01,\n2,acme,widget\n",
    )
    .unwrap();
    let e = server.err("ALTER TABLE s.t SECONDARY_LOAD").await;
    assert_eq!(e.code, "bad_data");
    assert!(
        e.message.contains("b.csv, line 3") && e.message.contains("expected 9 fields, found 3"),
        "{}",
        e.message
    );
    assert_previous_answers(&server).await;
    server.assert_stale("s", "t", "b.csv, line 3").await;
}

#[tokio::test]
async fn value_that_does_not_convert_names_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = loaded_csv(tmp.path(), "").await;
    std::fs::write(data.join("b.csv"), "h\n1,acme,widget,2,1.00,1.5,true,2024-01-01,\n2,acme,widget,many,1.00,1.5,true,2024-01-01,\n").unwrap();
    let e = server.err("ALTER TABLE s.t SECONDARY_LOAD").await;
    assert!(
        e.message
            .contains("b.csv, line 3, column quantity: value 'many' is not a valid INT"),
        "{}",
        e.message
    );
    assert_previous_answers(&server).await;
}

#[tokio::test]
async fn non_strict_load_skips_and_records_bad_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = loaded_csv(tmp.path(), "STRICT_LOAD = 0").await;
    std::fs::write(
        data.join("b.csv"),
        "h\n1001,acme,widget,2,1.00,1.5,true,2024-01-01,\n1002,acme,widget\n1003,x,y,3,notanumber,1,true,2024-01-01,\n1004,x,y,3,2.00,1,true,2024-13-45,\n",
    )
    .unwrap();
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let r = server.rows("SELECT COUNT(*), MAX(order_id) FROM s.t").await;
    assert_eq!(r[0], vec![Value::from(121), Value::from(1001)]);
    let rej = server
        .rows("SELECT line, column_name, reason, file FROM performance_schema.tarn_rejected_rows WHERE table_name = 't' ORDER BY line")
        .await;
    assert_eq!(rej.len(), 3, "{rej:?}");
    assert_eq!(rej[0][0], 3);
    assert_eq!(rej[0][1], Value::Null);
    assert_eq!(rej[0][2], "expected 9 fields, found 3");
    assert_eq!(
        rej[1][0..3],
        [
            Value::from(4),
            Value::from("amount"),
            Value::from("value 'notanumber' is not a valid DECIMAL(10,2)")
        ]
    );
    assert_eq!(rej[2][0..2], [Value::from(5), Value::from("order_date")]);
    assert!(rej[0][3].as_str().unwrap().ends_with("/b.csv"));
}

#[tokio::test]
async fn corrupt_parquet_and_truncated_avro_fail_the_load_and_keep_the_previous_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet/orders-0.parquet", &data.join("p/a.parquet"));
    copy_sample("avro/orders_deflate.avro", &data.join("v/a.avro"));
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    let d = data.display();
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.p FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{d}/p/')"
        ))
        .await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.v FILE_FORMAT = (FORMAT avro) FILES = (URI 'file://{d}/v/')"
        ))
        .await;
    server.ok("ALTER TABLE s.p SECONDARY_LOAD").await;
    server.ok("ALTER TABLE s.v SECONDARY_LOAD").await;

    std::fs::write(
        data.join("p/b.parquet"),
        b"PAR1 this is not parquet at all PAR1",
    )
    .unwrap();
    let e = server.err("ALTER TABLE s.p SECONDARY_LOAD").await;
    assert_eq!(e.code, "bad_data");
    assert!(
        e.message.contains("b.parquet: not a readable Parquet file"),
        "{}",
        e.message
    );

    let avro = std::fs::read(samples().join("avro/orders_null.avro")).unwrap();
    std::fs::write(data.join("v/b.avro"), &avro[..avro.len() * 2 / 3]).unwrap();
    let e = server.err("ALTER TABLE s.v SECONDARY_LOAD").await;
    assert!(
        e.message.contains("b.avro") && e.message.contains("corrupt or truncated Avro data"),
        "{}",
        e.message
    );

    assert_eq!(server.rows("SELECT COUNT(*) FROM s.p").await[0][0], 120);
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.v").await[0][0], 60);
}

#[tokio::test]
async fn missing_files_follow_allow_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = loaded_csv(tmp.path(), "").await;
    let d = data.display();
    server.ok(&format!("CREATE EXTERNAL TABLE s.m {COLUMNS} FILE_FORMAT = (FORMAT csv) FILES = (URI 'file://{d}/nope.csv')")).await;
    let e = server.err("ALTER TABLE s.m SECONDARY_LOAD").await;
    assert_eq!(e.code, "no_files");
    assert!(
        e.message
            .contains(&format!("no files match 'file://{d}/nope.csv'")),
        "{}",
        e.message
    );
    server
        .create_and_load(
            "s.n",
            &format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT csv) FILES = (URI 'file://{d}/nope.csv') ALLOW_MISSING_FILES = 1"
            ),
        )
        .await;
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.n").await[0][0], 0);
    // A file removed after the first load: the reload fails, the loaded version stays.
    std::fs::remove_file(data.join("a.csv")).unwrap();
    let e = server.err("ALTER TABLE s.t SECONDARY_LOAD").await;
    assert_eq!(e.code, "no_files");
    assert_previous_answers(&server).await;
}

#[tokio::test]
async fn locations_outside_the_allowed_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _) = loaded_csv(tmp.path(), "").await;
    for uri in [
        "file:///etc/",
        "http://127.0.0.1:8080/v1/",
        "http://169.254.169.254/latest/meta-data/",
        "s3://somebody-elses-bucket/x/",
    ] {
        let e = server
            .err(&format!(
                "CREATE EXTERNAL TABLE s.x (a INT) FILE_FORMAT = (FORMAT csv) FILES = (URI '{uri}')"
            ))
            .await;
        assert_eq!(
            (e.status, e.code.as_str()),
            (403, "location_not_allowed"),
            "{uri}"
        );
        assert!(e.message.contains(uri), "{}", e.message);
    }
    let e = server.err("CREATE EXTERNAL TABLE s.x (a INT) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file:///tmp/../etc/')").await;
    assert_eq!(e.code, "invalid_location");
}

#[tokio::test]
async fn memory_limit_refuses_a_load_before_dropping_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet", &data.join("p"));
    // Forty copies of the CSV sample: many times what the limit leaves once `s.p` is loaded, while
    // `s.p` (its files read side by side) fits well within it.
    for i in 0..40 {
        copy_sample("csv", &data.join(format!("c/{i}")));
    }
    let server = TestServer::spawn(
        &tmp.path().join("tarn"),
        &data,
        &["--memory-limit", "192KiB"],
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    let d = data.display();
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.p FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{d}/p/')"
        ))
        .await;
    server
        .ok(&format!("CREATE EXTERNAL TABLE s.c {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{d}/c/')"))
        .await;
    server.ok("ALTER TABLE s.p SECONDARY_LOAD").await;
    let e = server.err("ALTER TABLE s.c SECONDARY_LOAD").await;
    assert_eq!((e.status, e.code.as_str()), (507, "memory_limit"));
    // Refused while the files were read, naming the file and the limit.
    assert!(
        e.message.contains("data/c/") && e.message.contains("memory_limit (192.0 KiB)"),
        "{}",
        e.message
    );
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.p").await[0][0], 200);
    let e = server.err("SELECT * FROM s.c").await;
    assert_eq!(e.code, "table_not_loaded");
}

/// A gzip file of `members` gzip members, each `block` compressed: what it expands to is
/// `members * block.len()` bytes, from a file a thousandth of that.
fn gzip_bomb(path: &std::path::Path, block: &[u8], members: usize) {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(block).unwrap();
    let member = enc.finish().unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    for _ in 0..members {
        f.write_all(&member).unwrap();
    }
}

/// The server's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn files_that_expand_past_the_memory_limit_stop_the_load_and_the_process_stays_small() {
    const LIMIT: u64 = 256 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("csv", &data.join("ok"));
    for d in ["rows", "line", "json", "claimed"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    // 4 GiB of CSV rows, 4 GiB of one endless line, 4 GiB of JSON lines: a few MB each on disk.
    const ROW: &[u8] = b"123456,a row of some length for the bomb\n";
    let rows: Vec<u8> = ROW.repeat((16 << 20) / ROW.len());
    gzip_bomb(&data.join("rows/bomb.csv.gz"), &rows, 256);
    gzip_bomb(&data.join("line/bomb.csv.gz"), &vec![b'7'; 16 << 20], 256);
    const LINE: &[u8] = b"{\"a\": 123456, \"b\": \"a json line for the bomb\"}\n";
    let json: Vec<u8> = LINE.repeat((16 << 20) / LINE.len());
    gzip_bomb(&data.join("json/bomb.json.gz"), &json, 256);
    // A file whose size claims 100 GiB (sparse: it takes no disk).
    std::fs::File::create(data.join("claimed/huge.csv"))
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
    assert!(
        std::fs::metadata(data.join("rows/bomb.csv.gz"))
            .unwrap()
            .len()
            < 64 << 20
    );

    let server = TestServer::spawn(
        &tmp.path().join("tarn"),
        &data,
        &["--memory-limit", "256MiB"],
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    let d = data.display();
    server
        .ok(&format!("CREATE EXTERNAL TABLE s.ok {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') FILES = (URI 'file://{d}/ok/')"))
        .await;
    server.ok("ALTER TABLE s.ok SECONDARY_LOAD").await;
    let before = server.rows("SELECT COUNT(*) FROM s.ok").await;
    for (table, def, file) in [
        (
            "rows",
            format!(
                "(a INT, b TEXT) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = (URI 'file://{d}/rows/')"
            ),
            "rows/bomb.csv.gz",
        ),
        (
            "json",
            format!("(a INT, b TEXT) FILE_FORMAT = (FORMAT json) FILES = (URI 'file://{d}/json/')"),
            "json/bomb.json.gz",
        ),
        (
            "claimed",
            format!("(a TEXT) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file://{d}/claimed/')"),
            "claimed/huge.csv",
        ),
        // Schema inference reads only the start of a file, whatever its size.
        (
            "inferred",
            format!(
                "FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = (URI 'file://{d}/rows/')"
            ),
            "rows/bomb.csv.gz",
        ),
    ] {
        server
            .ok(&format!("CREATE EXTERNAL TABLE s.{table} {def}"))
            .await;
        let e = server
            .err(&format!("ALTER TABLE s.{table} SECONDARY_LOAD"))
            .await;
        assert_eq!(
            (e.status, e.code.as_str()),
            (507, "memory_limit"),
            "{table}: {}",
            e.message
        );
        assert!(
            e.message.contains(file) && e.message.contains("memory_limit (256.0 MiB)"),
            "{table}: {}",
            e.message
        );
        let e = server.err(&format!("SELECT * FROM s.{table}")).await;
        assert_eq!(e.code, "table_not_loaded", "{table}");
        let peak = peak_rss(server.pid());
        assert!(
            peak < LIMIT * 3,
            "{table}: the server's peak RSS reached {} MiB under a 256 MiB limit",
            peak >> 20
        );
    }
    // One endless line is bad data, found before it grows past a bound of its own.
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.line (a TEXT) FILE_FORMAT = (FORMAT csv) FILES = (URI 'file://{d}/line/')"
        ))
        .await;
    let e = server.err("ALTER TABLE s.line SECONDARY_LOAD").await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (400, "bad_data"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("line/bomb.csv.gz, line 1")
            && e.message.contains("a line longer than 64 MiB"),
        "{}",
        e.message
    );
    let peak = peak_rss(server.pid());
    assert!(peak < LIMIT * 3, "peak RSS {} MiB", peak >> 20);
    // What was loaded before is still there, and the memory the bombs took is free again.
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.ok").await, before);
    let tables = server.get("/v1/tables").await;
    assert!(tables.to_string().contains("AVAIL"), "{tables}");
    let metrics = server.text("/metrics").await;
    let reserved = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tarn_memory_reserved_bytes "))
        .unwrap_or_else(|| panic!("no tarn_memory_reserved_bytes in {metrics}"));
    assert_eq!(
        reserved.trim(),
        "0",
        "memory still held after the loads failed"
    );
}
