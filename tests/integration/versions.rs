//! A query reads exactly one published version: while reloads swap between two different file
//! sets, every answer equals one of the two versions' answers, and no query fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn queries_see_one_version_while_reloads_publish_others() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet/orders-0.parquet", &data.join("t/a.parquet"));
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/t/')",
            data.display()
        ))
        .await;
    // The self-join reads the table twice in one query: both sides must see the same version.
    let q =
        "SELECT COUNT(*) AS n, SUM(a.quantity) AS q, (SELECT COUNT(*) FROM s.t b) AS n2 FROM s.t a";
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let v1 = server.rows(q).await;
    copy_sample("parquet/orders-1.parquet", &data.join("t/b.parquet"));
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let v2 = server.rows(q).await;
    assert_ne!(v1, v2);
    assert_eq!(v1[0][0], v1[0][2]);
    assert_eq!(v2[0][0], v2[0][2]);

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (stop, addr, v1, v2) = (stop.clone(), server.addr.clone(), v1.clone(), v2.clone());
        readers.push(tokio::spawn(async move {
            let http = client();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let r: Value = http
                    .post(format!("http://{addr}/v1/sql"))
                    .body(q)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let rows: Vec<Vec<Value>> = serde_json::from_value(r["rows"].clone())
                    .unwrap_or_else(|_| panic!("query failed: {r}"));
                assert!(
                    rows == v1 || rows == v2,
                    "answer from no single version: {rows:?}"
                );
                n += 1;
            }
            n
        }));
    }
    for i in 0..12 {
        if i % 2 == 0 {
            std::fs::rename(data.join("t/b.parquet"), data.join("b.parquet.away")).unwrap();
        } else {
            std::fs::rename(data.join("b.parquet.away"), data.join("t/b.parquet")).unwrap();
        }
        server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert!(total > 10, "only {total} queries ran");
    let status = server.get("/v1/tables/s/t").await;
    assert_eq!(status["status"]["version"], 14);
}
