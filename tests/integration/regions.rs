//! Two regions: two SeaweedFS servers of their own (so a test can kill one, as a lost region),
//! a replicator whose lag the test controls, and one Tarn instance per region serving the same
//! tables from its own region's bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;

use crate::s3::{S3, unique_prefix};
use crate::support::*;

/// One region's S3 server, started (and stopped) by the test.
struct Region {
    dir: tempfile::TempDir,
    s3: S3,
    /// While the server is killed, its ports are held (bound, never listening: connections are
    /// refused as by a dead host), so that a server another test starts meanwhile picks other
    /// free ports rather than answering in the lost region's place.
    held: std::sync::Mutex<Vec<tokio::net::TcpSocket>>,
}

impl Region {
    /// Ready once its bucket answers a signed listing (the bucket is created as it starts).
    async fn start(suite: &S3) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(repo_root().join("scripts/seaweed.sh"))
            .arg("start")
            .arg(dir.path())
            .env("TARN_TEST_S3_SECRET_KEY", &suite.secret_key)
            .output()
            .expect("run scripts/seaweed.sh");
        assert!(
            out.status.success(),
            "SeaweedFS did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let endpoint = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("TARN_TEST_S3_ENDPOINT="))
            .expect("the endpoint is printed")
            .to_string();
        let region = Self {
            dir,
            s3: S3 {
                endpoint,
                bucket: "lake".into(),
                access_key: suite.access_key.clone(),
                secret_key: suite.secret_key.clone(),
            },
            held: Default::default(),
        };
        region.wait_ready().await;
        region
    }

    async fn wait_ready(&self) {
        let store = self.s3.store();
        wait_until(
            || async { store.list_with_delimiter(None).await.is_ok() },
            "the region's bucket to answer",
        )
        .await;
    }

    fn script(&self, cmd: &str) -> String {
        format!(
            "{} {cmd} {}",
            repo_root().join("scripts/seaweed.sh").display(),
            self.dir.path().display()
        )
    }

    /// Runs `scripts/seaweed.sh cmd` on this region's server; true when it succeeded.
    fn run(&self, cmd: &str) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(self.script(cmd))
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILL: the region's store is gone.
    fn kill(&self) {
        assert!(self.run("kill"), "SeaweedFS was not killed");
        let ports = std::fs::read_to_string(self.dir.path().join("ports")).expect("ports file");
        let mut held = self.held.lock().unwrap();
        for port in ports.split_whitespace() {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            let addr = format!("127.0.0.1:{port}").parse().unwrap();
            socket
                .bind(addr)
                .unwrap_or_else(|e| panic!("hold the killed server's port {port}: {e}"));
            held.push(socket);
        }
    }

    /// Back on the same ports with the same data.
    fn restart(&self) {
        self.held.lock().unwrap().clear();
        assert!(self.run("restart"), "SeaweedFS did not restart");
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.run("stop");
    }
}

/// Copies the objects under `from_prefix` in `from` that `to` lacks (or holds otherwise) to
/// `to_prefix`, as bucket replication does; `only` picks which. With `deletes`, objects `from`
/// no longer has are deleted from `to`. Answers the keys copied.
async fn replicate(
    from: &S3,
    from_prefix: &str,
    to: &S3,
    to_prefix: &str,
    only: impl Fn(&str) -> bool,
    deletes: bool,
) -> Vec<String> {
    let (src, dst) = (from.store(), to.store());
    let listed = |s: Arc<dyn ObjectStore>, p: String| async move {
        s.list(Some(&ObjectPath::from(p.as_str())))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .map(|m| {
                let rel = m.location.as_ref()[p.len() + 1..].to_string();
                (rel, (m.size, m.e_tag))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let have = listed(dst.clone(), to_prefix.to_string()).await;
    let want = listed(src.clone(), from_prefix.to_string()).await;
    let mut copied = Vec::new();
    for (rel, meta) in &want {
        if !only(rel) || have.get(rel) == Some(meta) {
            continue;
        }
        let bytes = src
            .get(&ObjectPath::from(format!("{from_prefix}/{rel}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        dst.put(
            &ObjectPath::from(format!("{to_prefix}/{rel}")),
            PutPayload::from(bytes),
        )
        .await
        .unwrap();
        copied.push(rel.clone());
    }
    if deletes {
        for rel in have.keys().filter(|r| !want.contains_key(*r) && only(r)) {
            dst.delete(&ObjectPath::from(format!("{to_prefix}/{rel}")))
                .await
                .unwrap();
        }
    }
    copied
}

/// An instance whose home is `home` (region `a` or `b`), with `p/` in region a replicated to
/// `p-dr/` in region b; probes every 200 ms, fails over after 3 failures, fails back after 1 s.
async fn instance(
    tmp: &Path,
    name: &str,
    home: &str,
    a: &Region,
    b: &Region,
    p: &str,
) -> TestServer {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tarn.toml");
    std::fs::write(
        &config,
        format!(
            r#"allowed_locations = ["s3://lake/"]
home_region = "{home}"
[regions.a]
endpoint = "{}"
allow_http = true
[regions.b]
endpoint = "{}"
allow_http = true
[[replicas]]
primary = {{ region = "a", location = "s3://lake/{p}/" }}
replica = {{ region = "b", location = "s3://lake/{p}-dr/" }}
[failover]
probe_interval = "200ms"
failure_threshold = 3
failback_after = "1s"
"#,
            a.s3.endpoint, b.s3.endpoint
        ),
    )
    .unwrap();
    let server = TestServer::spawn_with_env(
        &dir.join("data"),
        &["--config", config.to_str().unwrap()],
        &a.s3.credentials(),
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    server
}

/// Writes Parquet files of rows (`tests/write.py`) and uploads them under `prefix/` in `region`.
async fn put_rows(s3: &S3, tmp: &Path, prefix: &str, specs: &[&str]) {
    let dir = tmp.join(unique_prefix("rows"));
    write_files("parquet", &dir, specs);
    for f in walk(&dir) {
        let name = f.file_name().unwrap().to_str().unwrap();
        s3.put_file(&f, &format!("{prefix}/{name}")).await;
    }
}

/// (count, sum of id) of `table`.
async fn state(server: &TestServer, table: &str) -> (i64, i64) {
    let r = server
        .rows(&format!(
            "SELECT COUNT(*), COALESCE(SUM(id), 0) FROM {table}"
        ))
        .await;
    (r[0][0].as_i64().unwrap(), r[0][1].as_i64().unwrap())
}

fn range(a: i64, z: i64) -> (i64, i64) {
    (z - a, (a..z).sum())
}

async fn table_source(server: &TestServer, table: &str) -> Value {
    let r = server.get("/v1/regions").await;
    r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .cloned()
        .unwrap_or_else(|| panic!("{table} in /v1/regions: {r}"))
}

async fn region_state(server: &TestServer, region: &str) -> Value {
    let r = server.get("/v1/regions").await;
    r["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == region)
        .cloned()
        .unwrap()
}

/// Queries `tables` on `servers` without pause until stopped; answers every failure and every
/// time a table's answer went back to an earlier one (rows only ever get added in these tests).
struct QueryLoop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl QueryLoop {
    fn start(servers: Vec<String>, tables: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let http = client();
            let mut problems = Vec::new();
            let mut last: BTreeMap<(String, String), i64> = BTreeMap::new();
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                for server in &servers {
                    for t in &tables {
                        n += 1;
                        let r = http
                            .post(format!("{server}/v1/sql"))
                            .body(format!("SELECT COUNT(*) FROM {t}"))
                            .send()
                            .await;
                        let v: Value = match r {
                            Ok(r) if r.status().is_success() => r.json().await.unwrap(),
                            Ok(r) => {
                                problems.push(format!("{server} {t}: {}", r.text().await.unwrap()));
                                continue;
                            }
                            Err(e) => {
                                problems.push(format!("{server} {t}: {e}"));
                                continue;
                            }
                        };
                        let c = v["rows"][0][0].as_i64().unwrap();
                        let prev = last.insert((server.clone(), t.clone()), c);
                        if prev.is_some_and(|p| c < p) {
                            problems
                                .push(format!("{server} {t}: went back from {prev:?} to {c} rows"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (n, problems)
        });
        Self { stop, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let (n, problems) = self.task.await.unwrap();
        assert!(
            problems.is_empty(),
            "queries failed or went back: {problems:#?}"
        );
        n
    }
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} in metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_primary_store_during_a_load_and_a_refresh_fails_over_and_back_without_failed_queries()
 {
    let Some(suite) = S3::from_env() else { return };
    let (a, b) = (Region::start(&suite).await, Region::start(&suite).await);
    let tmp = tempfile::tempdir().unwrap();
    let p = unique_prefix("ff");
    let (pa, pb) = (format!("{p}/t"), format!("{p}-dr/t"));
    put_rows(
        &a.s3,
        tmp.path(),
        &pa,
        &["f1.parquet:0:100", "f2.parquet:100:200"],
    )
    .await;
    put_rows(&a.s3, tmp.path(), &format!("{p}/u"), &["u1.parquet:0:50"]).await;
    replicate(&a.s3, &p, &b.s3, &format!("{p}-dr"), |_| true, false).await;
    let one = instance(tmp.path(), "one", "a", &a, &b, &p).await;
    let two = instance(tmp.path(), "two", "b", &a, &b, &p).await;
    let ddl = |t: &str| {
        format!(
            "CREATE EXTERNAL TABLE s.{t} (id BIGINT, name VARCHAR(16), amount DOUBLE) FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/{p}/{t}/') REFRESH_INTERVAL = '300ms'"
        )
    };
    for server in [&one, &two] {
        server.ok(&ddl("t")).await;
        server.ok(&ddl("u")).await;
        server.ok("ALTER TABLE s.t SECONDARY_LOAD").await;
        assert_eq!(state(server, "s.t").await, range(0, 200));
    }
    // Each instance reads its own region's copy; files are known by the table's location.
    assert_eq!(table_source(&one, "s.t").await["source_region"], "a");
    assert_eq!(table_source(&two, "s.t").await["source_region"], "b");
    let files = one.get("/v1/tables/s/t").await;
    assert!(
        files.to_string().contains(&format!("s3://lake/{p}/t/")),
        "{files}"
    );

    let queries = QueryLoop::start(vec![one.url(""), two.url("")], vec!["s.t".into()]);
    // A file lands in region b only (written there, not replicated back).
    put_rows(&b.s3, tmp.path(), &pb, &["f3.parquet:200:250"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(&one, "s.t").await, range(0, 200));
    // Region a's store dies.
    a.kill();
    let killed = Instant::now();
    // A refresh and a load start while the store is dead, before the failover: both finish,
    // from region b's copy.
    let (status, job) = one.post("/v1/tables/s/t/refresh?async=true").await;
    assert_eq!(status, 202, "{job}");
    one.ok("ALTER TABLE s.u SECONDARY_LOAD").await;
    let loaded_after = killed.elapsed();
    assert_eq!(state(&one, "s.u").await, range(0, 50));
    assert_eq!(table_source(&one, "s.u").await["source_region"], "b");
    // The load was under way when region a was failed over, and was run again from b.
    let loads = one.get("/v1/tables/s/u/refreshes").await;
    let load = loads["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "load")
        .unwrap();
    assert_eq!(load["report"]["failed_over_from"], "a", "{loads}");
    let id = job["id"].as_u64().unwrap();
    wait_until(
        || async { one.get(&format!("/v1/refreshes/{id}")).await["state"] != "running" },
        "the refresh started during the outage to finish",
    )
    .await;
    let outcome = one.get(&format!("/v1/refreshes/{id}")).await;
    assert_eq!(outcome["state"], "done", "{outcome}");
    assert_eq!(outcome["report"]["source_region"], "b", "{outcome}");
    wait_until(
        || async { state(&one, "s.t").await == range(0, 250) },
        "the file written in region b to be served by instance one",
    )
    .await;
    let recovered = killed.elapsed();
    assert!(loaded_after < Duration::from_secs(15), "{loaded_after:?}");
    let r = region_state(&one, "a").await;
    assert_eq!(r["state"], "failed_over", "{r}");
    assert_eq!(r["failovers"], 1, "{r}");
    let regions = one.get("/v1/regions").await;
    assert_eq!(regions["failover_count"], 1, "{regions}");
    assert!(regions["last_failover"].is_string(), "{regions}");
    let status = one.table_status("s", "t").await;
    assert_eq!(status["source_region"], "b", "{status}");
    let m = one.text("/metrics").await;
    assert_eq!(metric(&m, "tarn_region_failovers_total{region=\"a\"}"), 1.0);
    assert_eq!(metric(&m, "tarn_region_healthy{region=\"a\"}"), 0.0);
    assert_eq!(
        metric(
            &m,
            "tarn_table_source_region{database=\"s\",table=\"t\",region=\"b\"}"
        ),
        1.0
    );
    // Instance two never read region a: nothing changed for it but the new file.
    wait_until(
        || async { state(&two, "s.t").await == range(0, 250) },
        "instance two to take the new file",
    )
    .await;
    // Instance two reads nothing from region a: only its probes see the outage, three in a row.
    wait_until(
        || async { region_state(&two, "a").await["state"] == "failed_over" },
        "instance two's probes to fail region a over",
    )
    .await;

    // Region a comes back without the file written in b: after failback, the file loaded from
    // b is kept until a's copy has it (replication lag), and nothing goes backwards.
    a.restart();
    a.wait_ready().await;
    wait_until(
        || async { table_source(&one, "s.t").await["source_region"] == "a" },
        "instance one to fail back to region a",
    )
    .await;
    assert_eq!(state(&one, "s.t").await, range(0, 250));
    let t = table_source(&one, "s.t").await;
    assert_eq!(t["files_awaiting_replication"], 1, "{t}");
    let r = region_state(&one, "a").await;
    assert_eq!(
        (r["state"].as_str(), r["failbacks"].as_u64()),
        (Some("healthy"), Some(1)),
        "{r}"
    );
    replicate(&b.s3, &format!("{p}-dr"), &a.s3, &p, |_| true, false).await;
    wait_until(
        || async { table_source(&one, "s.t").await["files_awaiting_replication"] == 0 },
        "region a's copy to confirm the file",
    )
    .await;
    assert_eq!(state(&one, "s.t").await, range(0, 250));
    let n = queries.finish().await;
    assert!(n > 50, "{n} queries");
    eprintln!("recovered in {recovered:?} (load during the outage took {loaded_after:?})");
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_lag_never_moves_a_table_backwards() {
    let Some(suite) = S3::from_env() else { return };
    let (a, b) = (Region::start(&suite).await, Region::start(&suite).await);
    let tmp = tempfile::tempdir().unwrap();
    let p = unique_prefix("lag");
    let local = tmp.path().join("delta");
    delta_op(&local, &["create", "0", "100", "2"]);
    let mut sent_a = std::collections::HashSet::new();
    a.s3.sync_delta(&local, &format!("{p}/d"), &mut sent_a)
        .await;
    replicate(&a.s3, &p, &b.s3, &format!("{p}-dr"), |_| true, false).await;
    put_rows(
        &a.s3,
        tmp.path(),
        &format!("{p}/f"),
        &["f1.parquet:0:10", "f2.parquet:10:20"],
    )
    .await;
    replicate(&a.s3, &p, &b.s3, &format!("{p}-dr"), |_| true, false).await;
    let one = instance(tmp.path(), "one", "a", &a, &b, &p).await;
    let two = instance(tmp.path(), "two", "b", &a, &b, &p).await;
    for server in [&one, &two] {
        server
            .create_and_load(
                "s.d",
                &format!("FILE_FORMAT = (FORMAT delta) FILES = (URI 's3://lake/{p}/d/')"),
            )
            .await;
        server
            .create_and_load("s.f", &format!("(id BIGINT, name VARCHAR(16), amount DOUBLE) FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/{p}/f/')"))
            .await;
        assert_eq!(state(server, "s.d").await, range(0, 100));
    }

    // A commit reaches region b's log before its data files: instance two stays at the loaded
    // version, says why, and takes the commit by itself once the files arrive.
    let v1 = delta_op(&local, &["append", "100", "150"]);
    a.s3.sync_delta(&local, &format!("{p}/d"), &mut sent_a)
        .await;
    let copied = replicate(
        &a.s3,
        &format!("{p}/d"),
        &b.s3,
        &format!("{p}-dr/d"),
        |k| k.starts_with("_delta_log/"),
        false,
    )
    .await;
    assert!(!copied.is_empty());
    let (status, e) = two.post("/v1/tables/s/d/refresh").await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["code"], "replica_behind", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("region 'b' is behind") && msg.contains(".parquet"),
        "{msg}"
    );
    assert_eq!(state(&two, "s.d").await, range(0, 100));
    assert!(table_source(&two, "s.d").await["waiting_for_replica"].is_string());
    replicate(
        &a.s3,
        &format!("{p}/d"),
        &b.s3,
        &format!("{p}-dr/d"),
        |_| true,
        false,
    )
    .await;
    wait_until(
        || async { state(&two, "s.d").await == range(0, 150) },
        "instance two to take the commit once its files arrived",
    )
    .await;
    assert_eq!(v1["count"], 150);

    // Instance one has version 2 from region a; region b is still at version 1 when region a
    // is cut off: the table keeps version 2.
    one.ok("ALTER TABLE s.d SECONDARY_LOAD").await;
    let v2 = delta_op(&local, &["append", "150", "170"]);
    a.s3.sync_delta(&local, &format!("{p}/d"), &mut sent_a)
        .await;
    let r = one.post("/v1/tables/s/d/refresh").await.1;
    assert_eq!(r["delta_version"], v2["version"], "{r}");
    assert_eq!(state(&one, "s.d").await, range(0, 170));
    // Plain files: f3 reached region a only, and f2 was rewritten in a only.
    put_rows(&a.s3, tmp.path(), &format!("{p}/f"), &["f3.parquet:20:30"]).await;
    one.post("/v1/tables/s/f/refresh").await;
    assert_eq!(state(&one, "s.f").await, range(0, 30));

    let (status, _) = one.post("/v1/regions/a/cut").await;
    assert_eq!(status, 200);
    wait_until(
        || async {
            table_source(&one, "s.d").await["source_region"] == "b"
                && table_source(&one, "s.f").await["source_region"] == "b"
        },
        "instance one to read region b",
    )
    .await;
    assert_eq!(region_state(&one, "a").await["state"], "cut");
    assert_eq!(
        state(&one, "s.d").await,
        range(0, 170),
        "the older Delta version in b does not replace the loaded one"
    );
    let (_, r) = one.post("/v1/tables/s/d/refresh").await;
    assert!(
        r["replica_behind"].as_str().unwrap().contains(&format!(
            "is at Delta version {} and the loaded version is {}",
            v1["version"], v2["version"]
        )),
        "{r}"
    );
    assert_eq!(r["version"], r["version_before"], "{r}");
    assert_eq!(
        state(&one, "s.f").await,
        range(0, 30),
        "f3 is kept while b lacks it"
    );
    let t = table_source(&one, "s.f").await;
    assert_eq!(t["files_awaiting_replication"], 1, "{t}");
    // Replication catches up: f3 is confirmed; then a file deleted in b (after it was seen
    // there) is deleted from the table, and new files in b are added.
    replicate(&a.s3, &p, &b.s3, &format!("{p}-dr"), |_| true, false).await;
    let (_, r) = one.post("/v1/tables/s/f/refresh").await;
    assert_eq!(r["files_awaiting_replication"], 0, "{r}");
    assert_eq!(state(&one, "s.f").await, range(0, 30));
    b.s3.delete(&format!("{p}-dr/f/f1.parquet")).await;
    put_rows(
        &b.s3,
        tmp.path(),
        &format!("{p}-dr/f"),
        &["f4.parquet:30:35"],
    )
    .await;
    let (_, r) = one.post("/v1/tables/s/f/refresh").await;
    assert_eq!(
        (r["files_removed"].as_u64(), r["files_added"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(state(&one, "s.f").await, range(10, 35));
    let (_, r) = one.post("/v1/tables/s/d/refresh").await;
    assert_eq!(r["delta_version"], v2["version"], "{r}");
    assert_eq!(state(&one, "s.d").await, range(0, 170));
    // Back to region a.
    one.post("/v1/regions/a/restore").await;
    wait_until(
        || async { table_source(&one, "s.f").await["source_region"] == "a" },
        "instance one to fail back",
    )
    .await;
    let served = (state(&one, "s.d").await, state(&one, "s.f").await);
    let (status, e) = one.post("/v1/regions/mars/cut").await;
    assert_eq!(status, 404, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no region 'mars'"),
        "{e}"
    );
    // Nothing loaded was touched, and every region is still in use.
    assert_eq!((state(&one, "s.d").await, state(&one, "s.f").await), served);
    assert_eq!(region_state(&one, "a").await["state"], "healthy");
}

/// Runs `tarn drill failover` against the instances; answers its exit status and JSON report.
fn drill(instances: &[&TestServer], region: &str, extra: &[String], out: &Path) -> (bool, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"));
    cmd.args(["drill", "failover", "--region", region, "--timeout", "60s"])
        .env("TARN_TOKEN", ADMIN_TOKEN);
    for i in instances {
        cmd.args(["--instance", &i.url("")]);
    }
    cmd.args(extra).arg("--json").arg(out);
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("| check"),
        "the report is printed as a table: {stdout}"
    );
    let report = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    (o.status.success(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_drill_runs_end_to_end_against_two_instances() {
    let Some(suite) = S3::from_env() else { return };
    let (a, b) = (Region::start(&suite).await, Region::start(&suite).await);
    let tmp = tempfile::tempdir().unwrap();
    let p = unique_prefix("drill");
    put_rows(
        &a.s3,
        tmp.path(),
        &format!("{p}/t"),
        &["f1.parquet:0:100", "f2.parquet:100:300"],
    )
    .await;
    let local = tmp.path().join("delta");
    delta_op(&local, &["create", "0", "80", "2"]);
    a.s3.sync_delta(&local, &format!("{p}/d"), &mut Default::default())
        .await;
    replicate(&a.s3, &p, &b.s3, &format!("{p}-dr"), |_| true, false).await;
    let one = instance(tmp.path(), "one", "a", &a, &b, &p).await;
    let two = instance(tmp.path(), "two", "b", &a, &b, &p).await;
    for server in [&one, &two] {
        server.create_and_load("s.t", &format!("(id BIGINT, name VARCHAR(16), amount DOUBLE) FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/{p}/t/') REFRESH_INTERVAL = '500ms'")).await;
        server
            .create_and_load(
                "s.d",
                &format!("FILE_FORMAT = (FORMAT delta) FILES = (URI 's3://lake/{p}/d/')"),
            )
            .await;
    }

    // Through the instances' admin endpoint.
    let (passed, r) = drill(&[&one, &two], "a", &[], &tmp.path().join("cut.json"));
    assert!(passed, "{r:#}");
    assert_eq!(r["failed_queries"], 0, "{r:#}");
    assert!(r["queries"].as_u64().unwrap() > 10, "{r:#}");
    assert!(r["recovery_seconds"].as_f64().unwrap() <= 5.0, "{r:#}");
    assert_eq!(r["affected"], serde_json::json!(["s.d", "s.t"]), "{r:#}");
    let t = &r["per_table"][0];
    assert_eq!(
        (
            t["source_before"].as_str(),
            t["source_during"].as_str(),
            t["source_after"].as_str()
        ),
        (Some("a"), Some("b"), Some("a")),
        "{r:#}"
    );
    assert!(r["data_lag_seconds"].as_f64().is_some(), "{r:#}");

    // By stopping region a's store for real.
    let (passed, r) = drill(
        &[&one, &two],
        "a",
        &[
            "--cut-command".into(),
            a.script("kill"),
            "--restore-command".into(),
            a.script("restart"),
        ],
        &tmp.path().join("kill.json"),
    );
    assert!(passed, "{r:#}");
    assert_eq!(r["failed_queries"], 0, "{r:#}");
    assert!(r["recovery_seconds"].as_f64().unwrap() <= 5.0, "{r:#}");
    let checks: BTreeSet<String> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for c in [
        "answers agree before",
        "recovered from replicas",
        "failed back",
        "answers agree after",
        "no failed queries",
    ] {
        assert!(checks.contains(c), "{c} in {checks:?}");
    }

    // A check that fails makes the drill fail: no recovery is that fast.
    let (passed, r) = drill(
        &[&one, &two],
        "a",
        &["--max-recovery".into(), "1ms".into()],
        &tmp.path().join("strict.json"),
    );
    assert!(!passed, "{r:#}");
    let failed: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["recovered from replicas"], "{r:#}");
}
