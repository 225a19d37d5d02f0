//! `tarn.toml`: declarative tables are created and loaded at start; flags override the file.

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn declared_tables_are_created_and_loaded_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet", &data);
    let config = tmp.path().join("tarn.toml");
    std::fs::write(
        &config,
        format!(
            r#"
instance_name = "from-file"
memory_limit = "1GiB"

[[tables]]
ddl = "CREATE DATABASE IF NOT EXISTS cfg"

[[tables]]
ddl = "CREATE EXTERNAL TABLE IF NOT EXISTS cfg.orders FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')"
load = true
"#,
            data.display()
        ),
    )
    .unwrap();
    let server = TestServer::spawn(
        &tmp.path().join("tarn"),
        &data,
        &["--config", config.to_str().unwrap()],
    )
    .await;
    // The flag given by the harness (--instance-name tarn-test) wins over the file.
    assert_eq!(
        server.rows("SELECT @@hostname").await,
        vec![vec![Value::from("tarn-test")]]
    );
    let status = "SELECT load_status FROM performance_schema.rpd_tables";
    wait_until(
        || {
            let s = &server;
            async move { s.rows(status).await == vec![vec![Value::from("AVAIL_RPDGSTABSTATE")]] }
        },
        "the declared table to load",
    )
    .await;
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM cfg.orders").await[0][0],
        200
    );
    // Applying the same declarations again at the next start changes nothing.
    let server = server.kill_and_restart().await;
    assert_eq!(
        server.rows("SHOW TABLES FROM cfg").await,
        vec![vec![Value::from("orders")]]
    );
}
