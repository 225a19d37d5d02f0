//! Object storage against a real S3 server (SeaweedFS, started by scripts/test.sh): every format
//! through `s3://` and `oci://` (endpoint override) answers exactly what the local files answer.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::support::*;

/// The S3 server the test command started.
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    /// The running server, or `None` (with a notice) outside CI when none was started; under
    /// `CI=true` a missing server fails the test instead of skipping it.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok();
        match (
            var("TARN_TEST_S3_ENDPOINT"),
            var("TARN_TEST_S3_BUCKET"),
            var("TARN_TEST_S3_ACCESS_KEY"),
            var("TARN_TEST_S3_SECRET_KEY"),
        ) {
            (Some(endpoint), Some(bucket), Some(access_key), Some(secret_key)) => Some(Self {
                endpoint,
                bucket,
                access_key,
                secret_key,
            }),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!(
                    "CI=true but no S3 server: run the tests through scripts/test.sh, which starts SeaweedFS"
                )
            }
            _ => {
                eprintln!("SKIPPED: no S3 server (TARN_TEST_S3_*); scripts/test.sh starts one");
                None
            }
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(&self.bucket)
                .with_region("us-east-1")
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(&self.secret_key)
                .build()
                .unwrap(),
        )
    }

    /// Uploads every file below `local` to `prefix/` in the bucket.
    pub async fn upload_dir(&self, local: &Path, prefix: &str) {
        let store = self.store();
        let files = walk(local);
        let uploads = files.into_iter().map(|f| {
            let key = format!("{prefix}/{}", f.strip_prefix(local).unwrap().display());
            let store = store.clone();
            async move {
                let bytes = std::fs::read(&f).unwrap();
                store
                    .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                    .await
                    .unwrap();
            }
        });
        futures::stream::iter(uploads)
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    }

    /// Uploads one local file as `key`.
    pub async fn put_file(&self, local: &Path, key: &str) {
        let bytes = std::fs::read(local).unwrap();
        self.store()
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .unwrap();
    }

    pub async fn delete(&self, key: &str) {
        self.store().delete(&ObjectPath::from(key)).await.unwrap();
    }

    /// Brings `prefix/` up to the local Delta table at `local` the way a writer commits: data
    /// files first, then the log, so a reader never sees a commit before its files. Files
    /// already uploaded (by name, in `sent`) are not sent again.
    pub async fn sync_delta(
        &self,
        local: &Path,
        prefix: &str,
        sent: &mut std::collections::HashSet<std::path::PathBuf>,
    ) {
        let mut files = walk(local);
        files.retain(|f| !sent.contains(f));
        files.sort_by_key(|f| f.to_string_lossy().contains("_delta_log"));
        for f in files {
            let key = format!("{prefix}/{}", f.strip_prefix(local).unwrap().display());
            self.put_file(&f, &key).await;
            sent.insert(f);
        }
    }

    /// A `tarn.toml` whose home region points `s3://` and `oci://` at this server.
    pub fn config(&self, dir: &Path, allowed: &[String]) -> std::path::PathBuf {
        let path = dir.join("tarn.toml");
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        std::fs::write(
            &path,
            format!(
                "allowed_locations = [{}]\nhome_region = \"us-east-1\"\n[regions.us-east-1]\nendpoint = \"{}\"\nallow_http = true\ncredentials = \"env\"\n",
                allowed.join(", "),
                self.endpoint
            ),
        )
        .unwrap();
        path
    }

    /// A server with database `s` reading this bucket through `endpoint` (a proxy in front of
    /// the server, say) with `secret` as the secret key.
    pub async fn server_via(
        &self,
        tmp: &Path,
        endpoint: &str,
        secret: &str,
        allowed: &[String],
    ) -> TestServer {
        let cfg = S3 {
            endpoint: endpoint.to_string(),
            bucket: self.bucket.clone(),
            access_key: self.access_key.clone(),
            secret_key: secret.to_string(),
        };
        let config = cfg.config(tmp, allowed);
        let server = TestServer::spawn_with_env(
            &tmp.join("tarn"),
            &["--config", config.to_str().unwrap()],
            &cfg.credentials(),
        )
        .await;
        server.ok("CREATE DATABASE s").await;
        server
    }

    pub fn credentials(&self) -> [(&str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
        ]
    }
}

/// A fresh key prefix per test, so tests share the bucket without seeing each other's objects.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{nanos}")
}

#[tokio::test]
async fn every_format_loads_the_same_from_s3_and_oci_as_from_files() {
    let Some(s3) = S3::from_env() else { return };
    let prefix = unique_prefix("formats");
    s3.upload_dir(&samples(), &prefix).await;
    let tmp = tempfile::tempdir().unwrap();
    let local = samples();
    let b = &s3.bucket;
    let config = s3.config(
        tmp.path(),
        &[
            format!("file://{}/", local.display()),
            format!("s3://{b}/{prefix}/"),
            format!("oci://{b}@testns/{prefix}/"),
        ],
    );
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &["--config", config.to_str().unwrap()],
        &s3.credentials(),
    )
    .await;
    server.ok("CREATE DATABASE f").await;
    let cases = [
        (
            "csv",
            format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"') FILES = (URI '@ROOT/csv/')"
            ),
        ),
        (
            "parquet",
            "FILE_FORMAT = (FORMAT parquet) FILES = (URI '@ROOT/parquet/*.parquet')".to_string(),
        ),
        (
            "json",
            format!(
                "{COLUMNS} FILE_FORMAT = (FORMAT json) FILES = (URI '@ROOT/json/orders.ndjson')"
            ),
        ),
        (
            "avro",
            "FILE_FORMAT = (FORMAT avro) FILES = (URI '@ROOT/avro/' PATTERN '\\\\.avro$')"
                .to_string(),
        ),
        (
            "delta",
            "FILE_FORMAT = (FORMAT delta) FILES = (URI '@ROOT/delta/orders/')".to_string(),
        ),
    ];
    let roots = [
        ("file", format!("file://{}", local.display())),
        ("s3", format!("s3://{b}/{prefix}")),
        ("oci", format!("oci://{b}@testns/{prefix}")),
    ];
    for (format, tail) in &cases {
        let mut answers = Vec::new();
        for (scheme, root) in &roots {
            let t = format!("f.{format}_{scheme}");
            server
                .create_and_load(&t, &tail.replace("@ROOT", root))
                .await;
            answers.push(
                server
                    .rows(&format!("SELECT {SELECT_ALL} FROM {t} ORDER BY order_id"))
                    .await,
            );
        }
        assert!(answers[0].len() > 100, "{format}: too few rows");
        assert_eq!(
            answers[0], answers[1],
            "{format}: s3:// differs from file://"
        );
        assert_eq!(
            answers[0], answers[2],
            "{format}: oci:// differs from file://"
        );
    }
    // The manifest records each object's size, ETag and last-modified.
    let one = server.get("/v1/tables/f/parquet_s3").await;
    assert_eq!(one["manifest"]["files"], 2);
}

/// A server reading `s3://` through `endpoint`, with the given credentials, and `s.t` defined over
/// the Parquet samples uploaded under `prefix`.
async fn parquet_server(
    s3: &S3,
    tmp: &Path,
    endpoint: &str,
    prefix: &str,
    secret: &str,
) -> TestServer {
    let b = &s3.bucket;
    let allowed = [
        format!("s3://{b}/"),
        "s3://tarn-no-such-bucket/".into(),
        "s3://tarn-unknown-host-bucket/".into(),
    ];
    let server = s3.server_via(tmp, endpoint, secret, &allowed).await;
    server.ok(&format!("CREATE EXTERNAL TABLE s.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://{b}/{prefix}/parquet/')")).await;
    server
}

async fn assert_loaded_answers(server: &TestServer) {
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM s.t").await[0][0],
        200,
        "loaded data lost"
    );
}

#[tokio::test]
async fn a_store_answering_503_for_a_while_is_retried_until_the_load_succeeds() {
    let Some(s3) = S3::from_env() else { return };
    let prefix = unique_prefix("retry");
    s3.upload_dir(&samples(), &prefix).await;
    let proxy = crate::proxy::Proxy::start(&s3.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(&s3, tmp.path(), &proxy.endpoint, &prefix, &s3.secret_key).await;
    proxy
        .faults
        .fail_next
        .store(4, std::sync::atomic::Ordering::SeqCst);
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    assert_loaded_answers(&server).await;
    assert_eq!(
        proxy
            .faults
            .served_503
            .load(std::sync::atomic::Ordering::SeqCst),
        4
    );
}

#[tokio::test]
async fn store_failures_fail_with_the_location_named_and_loaded_data_keeps_answering() {
    let Some(s3) = S3::from_env() else { return };
    let prefix = unique_prefix("faults");
    s3.upload_dir(&samples(), &prefix).await;
    let proxy = crate::proxy::Proxy::start(&s3.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(&s3, tmp.path(), &proxy.endpoint, &prefix, &s3.secret_key).await;
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let b = &s3.bucket;

    // A missing object: nothing matches, named.
    server.ok(&format!("CREATE EXTERNAL TABLE s.one FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://{b}/{prefix}/nope.parquet')")).await;
    let e = server.err("ALTER TABLE s.one SECONDARY_LOAD").await;
    assert_eq!(e.code, "no_files");
    assert!(
        e.message
            .contains(&format!("s3://{b}/{prefix}/nope.parquet")),
        "{}",
        e.message
    );

    // A missing bucket: fails fast, naming the location.
    server.ok("CREATE EXTERNAL TABLE s.nob FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://tarn-no-such-bucket/x/')").await;
    let e = server
        .err_within(
            "ALTER TABLE s.nob SECONDARY_LOAD",
            std::time::Duration::from_secs(5),
        )
        .await;
    assert_eq!((e.status, e.code.as_str()), (502, "store_unavailable"));
    assert!(
        e.message.contains("s3://tarn-no-such-bucket/x/"),
        "{}",
        e.message
    );

    // The store goes down: the reload gives up within the retry budget; the loaded version stays.
    proxy.faults.set_down(true).await;
    let e = server
        .err_within(
            "ALTER TABLE s.t SECONDARY_LOAD",
            std::time::Duration::from_secs(40),
        )
        .await;
    assert_eq!(e.code, "store_unavailable");
    assert!(
        e.message.contains(&format!("s3://{b}/{prefix}/parquet/")),
        "{}",
        e.message
    );
    assert_loaded_answers(&server).await;
    server.assert_stale("s", "t", "s3://").await;

    // It comes back: the next load succeeds and clears the error.
    proxy.faults.set_down(false).await;
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let st = server.get("/v1/tables/s/t").await;
    assert_eq!(st["status"]["status"]["load_status"], "AVAIL_RPDGSTABSTATE");
    assert_eq!(
        st["status"]["status"]["last_error"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_fast_keeps_loaded_data_and_no_secret_is_ever_shown() {
    let Some(s3) = S3::from_env() else { return };
    let prefix = unique_prefix("secrets");
    s3.upload_dir(&samples(), &prefix).await;
    let b = &s3.bucket;
    let wrong = "tarn-WRONG-secret-9f8e7d6c5b4a";
    let tmp = tempfile::tempdir().unwrap();
    // Two regions on the same server: `good` reads with the right keys from the environment,
    // `bad` with a named profile (from a shared credentials file) whose secret is wrong.
    let creds = tmp.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[wrong]\naws_access_key_id = {}\naws_secret_access_key = {wrong}\n",
            s3.access_key
        ),
    )
    .unwrap();
    let config = tmp.path().join("tarn.toml");
    std::fs::write(
        &config,
        format!(
            "allowed_locations = [\"s3://{b}/\"]\nhome_region = \"good\"\n\
             [regions.good]\nendpoint = \"{ep}\"\nallow_http = true\ncredentials = \"env\"\n\
             [regions.bad]\nendpoint = \"{ep}\"\nallow_http = true\ncredentials = \"profile:wrong\"\n",
            ep = s3.endpoint
        ),
    )
    .unwrap();
    let mut env = s3.credentials().to_vec();
    let creds_path = creds.display().to_string();
    env.push(("AWS_SHARED_CREDENTIALS_FILE", creds_path.as_str()));
    env.push(("AWS_CONFIG_FILE", "/nonexistent"));
    env.push(("AWS_EC2_METADATA_DISABLED", "true"));
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &["--config", config.to_str().unwrap()],
        &env,
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    server.ok(&format!("CREATE EXTERNAL TABLE s.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://{b}/{prefix}/parquet/')")).await;
    server
        .ok(&format!(
            r#"CREATE TABLE s.w ENGINE=lakehouse SECONDARY_ENGINE=rapid ENGINE_ATTRIBUTE='{{"file": [{{"uri": "s3://{b}/{prefix}/parquet/", "region": "bad"}}], "dialect": {{"format": "parquet"}}}}'"#
        ))
        .await;
    server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
    let e = server
        .err_within(
            "ALTER TABLE s.w SECONDARY_LOAD",
            std::time::Duration::from_secs(5),
        )
        .await;
    assert_eq!(e.code, "store_unavailable");
    assert!(
        e.message.contains("access denied (403)")
            && e.message.contains(&format!("s3://{b}/{prefix}/parquet/")),
        "{}",
        e.message
    );
    assert_loaded_answers(&server).await;

    // Everything Tarn shows or keeps: the error, the status views, the table endpoints, the catalog
    // file, the metrics and the log. None of it may hold a secret.
    let mut seen = vec![e.message.clone()];
    seen.push(
        server
            .ok("SELECT * FROM performance_schema.rpd_tables")
            .await
            .to_string(),
    );
    seen.push(server.get("/v1/tables").await.to_string());
    seen.push(server.get("/v1/tables/s/w").await.to_string());
    seen.push(std::fs::read_to_string(server.data_dir.join("catalog.json")).unwrap());
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains("tarn_loads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    seen.push(metrics);
    seen.push(server.log.lock().unwrap().join("\n"));
    for text in &seen {
        assert!(!text.contains(wrong), "a secret leaked: {text}");
        assert!(!text.contains(&s3.secret_key), "a secret leaked: {text}");
    }
    assert!(
        seen.last().unwrap().contains("load failed"),
        "the log should record the failure"
    );
}

#[tokio::test]
async fn anonymous_access_reads_public_buckets_only() {
    let Some(s3) = S3::from_env() else { return };
    let public = S3 {
        bucket: "public".into(),
        endpoint: s3.endpoint.clone(),
        access_key: s3.access_key.clone(),
        secret_key: s3.secret_key.clone(),
    };
    let prefix = unique_prefix("anon");
    public.upload_dir(&samples().join("parquet"), &prefix).await;
    s3.upload_dir(&samples().join("parquet"), &prefix).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tarn.toml");
    std::fs::write(
        &config,
        format!(
            "allowed_locations = [\"s3://public/\", \"s3://{b}/\"]\nhome_region = \"anon\"\n[regions.anon]\nendpoint = \"{ep}\"\nallow_http = true\ncredentials = \"none\"\n",
            b = s3.bucket,
            ep = s3.endpoint
        ),
    )
    .unwrap();
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &["--config", config.to_str().unwrap()],
        &[],
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    // Anonymous reads may fetch objects but not list: name the objects.
    let files = |bucket: &str| {
        format!(
            "URI 's3://{bucket}/{prefix}/orders-0.parquet', URI 's3://{bucket}/{prefix}/orders-1.parquet'"
        )
    };
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.pub FILE_FORMAT = (FORMAT parquet) FILES = ({})",
            files("public")
        ))
        .await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.priv FILE_FORMAT = (FORMAT parquet) FILES = ({})",
            files(&s3.bucket)
        ))
        .await;
    server.ok("ALTER TABLE s.pub SECONDARY_LOAD").await;
    assert_eq!(server.rows("SELECT COUNT(*) FROM s.pub").await[0][0], 200);
    let e = server.err("ALTER TABLE s.priv SECONDARY_LOAD").await;
    assert_eq!(e.code, "store_unavailable");
    assert!(e.message.contains("access denied (403)"), "{}", e.message);
}

#[tokio::test]
async fn an_unknown_host_fails_at_once() {
    let Some(s3) = S3::from_env() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = parquet_server(
        &s3,
        tmp.path(),
        "http://tarn-no-such-host.invalid:9000",
        "x",
        &s3.secret_key,
    )
    .await;
    let e = server
        .err_within(
            "ALTER TABLE s.t SECONDARY_LOAD",
            std::time::Duration::from_secs(5),
        )
        .await;
    assert_eq!(e.code, "store_unavailable");
    assert!(
        e.message
            .contains("unknown host 'tarn-no-such-host.invalid'")
            && e.message.contains("s3://"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn listings_paginate_past_5000_objects() {
    let Some(s3) = S3::from_env() else { return };
    let prefix = unique_prefix("many");
    let store = s3.store();
    let n = 5_200;
    let puts = (0..n).map(|i| {
        let store = store.clone();
        let key = format!("{prefix}/part-{i:05}.csv");
        async move {
            store
                .put(
                    &ObjectPath::from(key.as_str()),
                    PutPayload::from(format!("{i}\n")),
                )
                .await
                .unwrap()
        }
    });
    futures::stream::iter(puts)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let b = &s3.bucket;
    let config = s3.config(tmp.path(), &[format!("s3://{b}/{prefix}/")]);
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &["--config", config.to_str().unwrap()],
        &s3.credentials(),
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    server
        .create_and_load(
            "s.many",
            &format!("(n INT) FILE_FORMAT = (FORMAT csv) FILES = (URI 's3://{b}/{prefix}/')"),
        )
        .await;
    let r = server
        .rows("SELECT COUNT(*), SUM(n), COUNT(DISTINCT n) FROM s.many")
        .await;
    assert_eq!(
        r[0],
        vec![
            serde_json::Value::from(n),
            ((n - 1) * n / 2).into(),
            n.into()
        ]
    );
    assert_eq!(
        server.get("/v1/tables/s/many").await["manifest"]["files"],
        n
    );
    // A glob and a PATTERN over the same listing.
    server.create_and_load("s.some", &format!("(n INT) FILE_FORMAT = (FORMAT csv) FILES = (URI 's3://{b}/{prefix}/part-0001?.csv', URI 's3://{b}/{prefix}/' PATTERN 'part-050[0-9]{{2}}\\\\.csv$')")).await;
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM s.some").await[0][0],
        10 + 100
    );
}

#[tokio::test]
async fn plain_https_object_urls_load_when_their_ca_is_trusted() {
    let Some(s3) = S3::from_env() else { return };
    let https = std::env::var("TARN_TEST_S3_HTTPS_ENDPOINT")
        .expect("scripts/seaweed.sh exports TARN_TEST_S3_HTTPS_ENDPOINT");
    let ca = std::env::var("TARN_TEST_S3_CA_FILE")
        .expect("scripts/seaweed.sh exports TARN_TEST_S3_CA_FILE");
    let public = S3 {
        bucket: "public".into(),
        endpoint: s3.endpoint.clone(),
        access_key: s3.access_key.clone(),
        secret_key: s3.secret_key.clone(),
    };
    let prefix = unique_prefix("https");
    public.upload_dir(&samples().join("parquet"), &prefix).await;
    let local = samples();
    let allowed = format!("{https}/public/,file://{}/", local.display());
    let ddl = format!(
        "CREATE EXTERNAL TABLE s.h FILE_FORMAT = (FORMAT parquet) FILES = (URI '{https}/public/{prefix}/orders-0.parquet', URI '{https}/public/{prefix}/orders-1.parquet')"
    );
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::spawn_with_env(
        &tmp.path().join("a"),
        &["--allowed-locations", &allowed, "--ca-certificates", &ca],
        &[],
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    server.ok(&ddl).await;
    server.ok(&format!("CREATE EXTERNAL TABLE s.l FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/parquet/')", local.display())).await;
    server.ok("ALTER TABLE s.h SECONDARY_LOAD").await;
    server.ok("ALTER TABLE s.l SECONDARY_LOAD").await;
    let q = |t: &str| format!("SELECT {SELECT_ALL} FROM s.{t} ORDER BY order_id");
    let (h, l) = (server.rows(&q("h")).await, server.rows(&q("l")).await);
    assert_eq!(h.len(), 200);
    assert_eq!(h, l);

    // Without the CA the certificate is not trusted: a clear store error, quickly.
    let untrusting = TestServer::spawn_with_env(
        &tmp.path().join("b"),
        &["--allowed-locations", &allowed],
        &[],
    )
    .await;
    untrusting.ok("CREATE DATABASE s").await;
    untrusting.ok(&ddl).await;
    let e = untrusting.err("ALTER TABLE s.h SECONDARY_LOAD").await;
    assert_eq!(e.code, "store_unavailable");
    assert!(
        e.message
            .contains(&format!("{https}/public/{prefix}/orders-0.parquet")),
        "{}",
        e.message
    );
}
