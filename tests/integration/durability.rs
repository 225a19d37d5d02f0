//! Catalog durability: a SIGKILL in the middle of a stream of DDL loses nothing acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

#[tokio::test]
async fn sigkill_during_ddl_keeps_every_committed_definition() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet", &data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE d").await;
    let addr = server.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Several writers keep DDL in flight when the kill lands.
    let mut writers = Vec::new();
    for w in 0..4 {
        let (stop, acked, addr, d) = (
            stop.clone(),
            acked.clone(),
            addr.clone(),
            data.display().to_string(),
        );
        writers.push(tokio::spawn(async move {
            let http = client();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("t_{w}_{i}");
                let ddl = format!(
                    "CREATE EXTERNAL TABLE d.{name} (order_id INT) FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{d}/')"
                );
                match http.post(format!("http://{addr}/v1/sql")).body(ddl).send().await {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(name),
                    _ => break,
                }
            }
        }));
    }
    wait_until(
        || {
            let n = acked.lock().unwrap().len();
            async move { n >= 60 }
        },
        "60 acknowledged tables",
    )
    .await;
    let server = server.kill_and_restart().await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let tables: Vec<String> = server
        .rows("SHOW TABLES FROM d")
        .await
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    for name in &acked {
        assert!(
            tables.contains(name),
            "acknowledged table {name} lost after SIGKILL"
        );
    }
    // Each surviving definition is whole: it loads.
    let probe = &acked[acked.len() / 2];
    server
        .ok(&format!("ALTER TABLE d.{probe} SECONDARY_LOAD"))
        .await;
    let n = server
        .rows(&format!("SELECT COUNT(*) FROM d.{probe}"))
        .await;
    assert_eq!(n[0][0], 200);
}
