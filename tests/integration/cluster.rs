//! A cluster on loopback: three `tarn worker` processes and a coordinator (`tarn serve
//! --workers`). Its answers equal one process's over the same files; a refresh reads only what
//! changed, on the workers holding it; a stopped worker is named, the cluster's status shows it
//! down, its files move to the workers that answer, and once it is back the table spreads over it
//! again.

use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "cluster-test-token-0123456789";

const COLUMNS: &str = "(order_id INT, customer VARCHAR(16), quantity INT, amount DECIMAL(10,2), \
                       order_date DATE)";

/// `n` rows from `first`, CSV with a header.
fn csv(first: u32, n: u32) -> String {
    let mut s = String::from("order_id,customer,quantity,amount,order_date\n");
    for i in first..first + n {
        s.push_str(&format!(
            "{i},c{},{},{}.{:02},2024-{:02}-{:02}\n",
            i % 7,
            i % 11,
            i % 1000,
            i % 100,
            i % 12 + 1,
            i % 28 + 1
        ));
    }
    s
}

/// `count` CSV files `{prefix}0.csv`, `{prefix}1.csv`, ... in `dir`, of `rows` orders each,
/// numbered on from `first`.
fn write_csvs(dir: &std::path::Path, prefix: &str, count: u32, first: u32, rows: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let file = dir.join(format!("{prefix}{i}.csv"));
        std::fs::write(file, csv(first + i * rows, rows)).unwrap();
    }
}

struct Cluster {
    coordinator: TestServer,
    workers: Vec<TestServer>,
}

/// Workers write their snapshots below one shared `snapshot_location`, each in a place of its own.
async fn cluster(tmp: &std::path::Path, data: &std::path::Path, n: usize) -> Cluster {
    let shared = format!("file://{}/", tmp.join("snapshots").display());
    let mut workers = Vec::new();
    for i in 0..n {
        workers.push(
            TestServer::spawn_worker(
                &tmp.join(format!("w{i}")),
                data,
                TOKEN,
                &["--shards", "2", "--snapshot-location", &shared],
            )
            .await,
        );
    }
    let urls: Vec<String> = workers
        .iter()
        .map(|w| format!("http://{}", w.addr))
        .collect();
    let urls = urls.join(",");
    let coordinator = TestServer::spawn(
        &tmp.join("coordinator"),
        data,
        &["--workers", &urls, "--cluster-token", TOKEN],
    )
    .await;
    Cluster {
        coordinator,
        workers,
    }
}

const QUERIES: &[&str] = &[
    "SELECT COUNT(*), SUM(quantity), SUM(amount), MIN(order_date), MAX(order_id) FROM s.o",
    "SELECT customer, COUNT(*), SUM(amount), AVG(quantity) FROM s.o GROUP BY customer ORDER BY customer",
    "SELECT order_id, amount FROM s.o WHERE order_id BETWEEN 1990 AND 2010 ORDER BY order_id",
    "SELECT COUNT(*) FROM s.o a JOIN s.o b ON a.order_id = b.order_id + 1 WHERE a.quantity > 5",
    "SELECT COUNT(DISTINCT customer), COUNT(DISTINCT quantity) FROM s.o",
    "SELECT quantity, COUNT(*) FROM s.o WHERE customer IN ('c1', 'c2') GROUP BY quantity \
     ORDER BY 2 DESC, 1 LIMIT 4",
    "SELECT * FROM s.o ORDER BY amount DESC, order_id LIMIT 3",
    // A null-aware anti join (NOT IN), which the planner runs in one task.
    "SELECT COUNT(*), SUM(amount) FROM s.o WHERE customer NOT IN \
     (SELECT customer FROM s.o WHERE quantity = 10 AND order_id % 2 = 0)",
    // DataFusion's functions and Tarn's own, evaluated where the rows are.
    "SELECT EXTRACT(YEAR FROM order_date) AS y, EXTRACT(MONTH FROM order_date) AS m, COUNT(*) FROM s.o \
     WHERE customer LIKE 'c%' GROUP BY y, m ORDER BY y, m",
    "SELECT COUNT(*), SUM(CASE WHEN quantity > 5 THEN amount END) FROM s.o \
     WHERE JSON_UNQUOTE(JSON_EXTRACT(CONCAT('{\"c\": \"', customer, '\"}'), '$.c')) = 'c3'",
];

async fn same_answers(single: &TestServer, cluster: &TestServer, what: &str) {
    for q in QUERIES {
        let (one, many) = (single.rows(q).await, cluster.rows(q).await);
        assert!(!one.is_empty(), "{q}");
        assert_eq!(one, many, "{what}: {q}");
    }
}

/// A coordinator and `workers` workers over `files` CSV files of `rows` orders each (`f0.csv`,
/// ...) in `tmp`/data, loaded as `s.o`; answers the data directory too.
async fn loaded_cluster(
    tmp: &std::path::Path,
    files: u32,
    rows: u32,
    workers: usize,
) -> (std::path::PathBuf, Cluster) {
    let data = tmp.join("data");
    write_csvs(&data, "f", files, 0, rows);
    let c = cluster(tmp, &data, workers).await;
    declare_and_load(&c.coordinator, &data).await;
    (data, c)
}

async fn declare_and_load(server: &TestServer, data: &std::path::Path) -> Value {
    server.ok("CREATE DATABASE s").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.o {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') \
             FILES = (URI 'file://{}/')",
            data.display()
        ))
        .await;
    server.ok("ALTER TABLE s.o SECONDARY_LOAD").await
}

#[tokio::test]
async fn three_workers_answer_as_one_process_and_refresh_reads_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Six files of different sizes: 3,000 rows in all.
    for (i, (first, n)) in [
        (0, 900),
        (900, 600),
        (1500, 500),
        (2000, 400),
        (2400, 350),
        (2750, 250),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(data.join(format!("f{i}.csv")), csv(first, n)).unwrap();
    }
    let single = TestServer::spawn(&tmp.path().join("single"), &data, &[]).await;
    let c = cluster(tmp.path(), &data, 3).await;
    declare_and_load(&single, &data).await;
    declare_and_load(&c.coordinator, &data).await;
    same_answers(&single, &c.coordinator, "after the load").await;

    // Each worker tells the coordinator its part's column bounds, and the coordinator plans with
    // them: a join whose one side a filter leaves small builds on that side whole (broadcast to
    // the tasks) instead of shuffling both sides between the workers.
    let (_, held) = c.workers[0].get_with("/v1/worker?files=true", TOKEN).await;
    let bounds = held["tables"][0]["bounds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(bounds.len(), 5, "one a column: {held}");
    assert!(
        bounds
            .iter()
            .all(|b| b["min"].is_string() && b["max"].is_string() && b["nulls"] == 0),
        "{held}"
    );
    let join = "SELECT COUNT(*), SUM(a.amount) FROM s.o a JOIN s.o b ON a.order_id = b.order_id \
                WHERE b.order_id < 40";
    let plan = c.coordinator.rows(&format!("EXPLAIN {join}")).await;
    let physical = plan[1][1].as_str().unwrap_or_default();
    assert!(
        physical.contains("mode=CollectLeft") && !physical.contains("mode=Partitioned"),
        "{physical}"
    );
    assert_eq!(single.rows(join).await, c.coordinator.rows(join).await);

    // Every worker holds a part; the parts add up to the table and are near an even split.
    let status = c.coordinator.get("/v1/cluster").await;
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{status}");
    let mut files = 0;
    let mut rows = Vec::new();
    for w in workers {
        assert_eq!(w["state"], "up", "{status}");
        let t = &w["tables"][0];
        assert_eq!(t["table"], "s.o", "{status}");
        files += t["files"].as_u64().unwrap();
        rows.push(t["rows"].as_u64().unwrap());
    }
    assert_eq!(files, 6, "{status}");
    assert_eq!(rows.iter().sum::<u64>(), 3000, "{status}");
    assert!(
        rows.iter().all(|&r| (800..=1200).contains(&r)),
        "balanced by bytes: {rows:?}"
    );
    // Through the MySQL door, as through HTTP: the same session API over the same cluster.
    let q = "SELECT customer, COUNT(*), SUM(amount) FROM s.o GROUP BY customer ORDER BY customer";
    let mysql = c
        .coordinator
        .pymysql_json(
            r#"cur = connect(database="s").cursor()
cur.execute(os.environ["Q"])
print(json.dumps([[str(v) for v in r] for r in cur.fetchall()]))
"#,
            &[("Q", q)],
        )
        .await;
    let http: Vec<Vec<String>> = single
        .rows(q)
        .await
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(mysql, serde_json::json!(http));
    // Metrics per worker, from the coordinator's probes.
    wait_until(
        || {
            let c = &c.coordinator;
            async move {
                let m = c.text("/metrics").await;
                m.lines()
                    .filter(|l| l.starts_with("tarn_worker_up{") && l.ends_with(" 1"))
                    .count()
                    == 3
                    && m.lines()
                        .filter(|l| l.starts_with("tarn_worker_tables{") && l.ends_with(" 1"))
                        .count()
                        == 3
            }
        },
        "metrics of the three workers",
    )
    .await;
    // The coordinator's status sums the cluster.
    let st = c.coordinator.table_status("s", "o").await;
    assert_eq!(st["load_status"], "AVAIL_RPDGSTABSTATE", "{st}");
    assert_eq!(
        c.coordinator
            .rows("SELECT nrows, load_status FROM performance_schema.rpd_tables")
            .await,
        single
            .rows("SELECT nrows, load_status FROM performance_schema.rpd_tables")
            .await
    );

    // One file changes, one is added, one removed: the refresh reads those two only, and the
    // answers equal one process's after its own refresh.
    std::fs::write(data.join("f5.csv"), csv(2750, 260)).unwrap();
    std::fs::write(data.join("f6.csv"), csv(5000, 120)).unwrap();
    std::fs::remove_file(data.join("f3.csv")).unwrap();
    let (status, report) = c.coordinator.post("/v1/tables/s/o/refresh").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["files_added"], 1, "{report}");
    assert_eq!(report["files_changed"], 1, "{report}");
    assert_eq!(report["files_removed"], 1, "{report}");
    assert_eq!(report["files_reused"], 4, "{report}");
    let (status, _) = single.post("/v1/tables/s/o/refresh").await;
    assert_eq!(status, 200);
    same_answers(&single, &c.coordinator, "after the refresh").await;

    // A refresh that finds nothing changed publishes nothing.
    let (_, again) = c.coordinator.post("/v1/tables/s/o/refresh").await;
    assert_eq!(again["version"], report["version"], "{again}");

    // The worker's API and its task service answer the cluster token only: no token and the
    // coordinator's admin token are refused (401), and so is a reader token the worker made (403).
    let (refused, _) = c.workers[0].get_with("/v1/worker", ADMIN_TOKEN).await;
    assert_eq!(refused, 401);
    let reader = c.workers[0]
        .make_token_as(TOKEN, serde_json::json!({"name": "r", "role": "reader"}))
        .await;
    let (refused, _) = c.workers[0].get_with("/v1/worker", &reader).await;
    let http = reqwest::Client::new();
    assert_eq!(refused, 403);
    let tasks = c.workers[0].url("/worker.WorkerService/GetWorkerInfo");
    let status = |r: reqwest::RequestBuilder| async move { r.send().await.unwrap().status() };
    assert_eq!(status(http.post(&tasks)).await, 401);
    assert_eq!(
        status(http.post(&tasks).bearer_auth(ADMIN_TOKEN)).await,
        401
    );
    assert_eq!(status(http.post(&tasks).bearer_auth(&reader)).await, 403);
    // A part that does not read is refused, naming why, and the worker's part is as it was.
    let held = worker_tables(&c.workers[0]).await;
    let bad = http
        .put(c.workers[0].url("/v1/worker/tables/s/o"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"def": {"key": "s.o"}, "load": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("def"));
    assert_eq!(worker_tables(&c.workers[0]).await, held);
    assert_eq!(
        held[0]["rows"].as_u64().map(|r| r > 0),
        Some(true),
        "{held:?}"
    );

    // Unloaded, the parts are gone from the workers too.
    c.coordinator.ok("ALTER TABLE s.o SECONDARY_UNLOAD").await;
    for w in c.workers.iter() {
        assert_eq!(worker_tables(w).await, Vec::<Value>::new());
    }
}

#[tokio::test]
async fn a_stopped_worker_is_named_and_its_tables_answer_again_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut c) = loaded_cluster(tmp.path(), 4, 500, 2).await;
    let q = "SELECT customer, COUNT(*), SUM(amount) FROM s.o GROUP BY customer ORDER BY customer";
    let before = c.coordinator.rows(q).await;

    // Wait for both workers' snapshots, each in its own place below the shared location, then
    // stop one hard.
    let lost = c.workers.pop().unwrap();
    let shared = tmp.path().join("snapshots");
    wait_until(
        || {
            let shared = shared.clone();
            async move {
                std::fs::read_dir(&shared).is_ok_and(|places| {
                    places
                        .flatten()
                        .filter(|p| p.file_name().to_string_lossy().starts_with("worker-"))
                        .filter(|p| p.path().join("s/o/snapshot.json").exists())
                        .count()
                        == 2
                })
            }
        },
        "each worker's snapshot in its own place",
    )
    .await;
    let lost_addr = lost.addr.clone();
    let mut lost = lost;
    lost.kill();
    let e = c.coordinator.err(q).await;
    assert_eq!(
        (e.status, e.code.as_str()),
        (503, "table_recovering"),
        "{}",
        e.message
    );
    assert!(e.message.contains(&lost_addr), "{}", e.message);
    let status = c.coordinator.get("/v1/cluster").await;
    let down: Vec<&Value> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "down")
        .collect();
    assert_eq!(down.len(), 1, "{status}");
    assert!(
        down[0]["url"].as_str().unwrap().contains(&lost_addr),
        "{status}"
    );

    // Taken out after missed probes, its files go to the worker that answers, which reads them
    // from the files: the whole table answers again while it is away.
    answers(
        &c.coordinator,
        q,
        serde_json::json!(before),
        "the table over the worker that answers",
    )
    .await;
    let held = worker_tables(&c.workers[0]).await;
    assert_eq!(held[0]["files"], 4, "{held:?}");
    // The lost worker's two files were taken from its snapshot, not read from the source.
    let history = c.coordinator.get("/v1/tables/s/o/refreshes").await;
    let taken = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["report"]["files_added"] == 2)
        .unwrap_or_else(|| panic!("no refresh took the lost worker's files: {history}"));
    assert_eq!(
        (
            &taken["report"]["files_from_snapshots"],
            &taken["report"]["bytes_read"]
        ),
        (&serde_json::json!(2), &serde_json::json!(0)),
        "{taken}"
    );

    // Back on its port: the table spreads over it again, with the same answers.
    let back = lost.restart_on_same_port().await;
    wait_until(
        || {
            let back = &back;
            async move {
                worker_tables(back)
                    .await
                    .first()
                    .is_some_and(|t| t["files"].as_u64() > Some(0))
            }
        },
        "the returning worker's part",
    )
    .await;
    wait_until(
        || {
            let w = &c.workers[0];
            async move { worker_tables(w).await[0]["files"].as_u64() < Some(4) }
        },
        "the files moved back",
    )
    .await;
    let answer = c.coordinator.sql(q).await;
    assert!(
        answer
            .as_ref()
            .is_ok_and(|v| v["rows"] == serde_json::json!(before)),
        "{answer:?}; worker {} came back as {}; cluster: {}; coordinator log:\n{}",
        lost_addr,
        back.addr,
        c.coordinator.get("/v1/cluster").await,
        c.coordinator.log.lock().unwrap().join("\n")
    );
}

/// Waits until `q` answers `rows` on `server` (errors meanwhile are waited through).
async fn answers(server: &TestServer, q: &str, rows: Value, what: &str) {
    wait_until(
        || {
            let rows = &rows;
            async move { server.sql(q).await.is_ok_and(|v| v["rows"] == *rows) }
        },
        what,
    )
    .await;
}

/// The tables a worker holds, as it tells its coordinator.
async fn worker_tables(worker: &TestServer) -> Vec<Value> {
    let (_, held) = worker.get_with("/v1/worker", TOKEN).await;
    held["tables"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_table_larger_than_any_worker_loads_across_them_and_one_larger_than_all_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_csvs(&data.join("small"), "f", 6, 0, 10_000);
    write_csvs(&data.join("large"), "f", 6, 0, 60_000);
    let mut workers = Vec::new();
    for i in 0..3 {
        workers.push(
            TestServer::spawn_worker(
                &tmp.path().join(format!("w{i}")),
                &data,
                TOKEN,
                &["--memory-limit", "1536KiB", "--snapshots", "false"],
            )
            .await,
        );
    }
    let urls: Vec<String> = workers
        .iter()
        .map(|w| format!("http://{}", w.addr))
        .collect();
    let coordinator = TestServer::spawn(
        &tmp.path().join("coordinator"),
        &data,
        &["--workers", &urls.join(","), "--cluster-token", TOKEN],
    )
    .await;
    coordinator.ok("CREATE DATABASE s").await;
    for t in ["small", "large"] {
        coordinator
            .ok(&format!(
                "CREATE EXTERNAL TABLE s.{t} {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON \
                 FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/{t}/')",
                data.display()
            ))
            .await;
    }
    coordinator.ok("ALTER TABLE s.small SECONDARY_LOAD").await;
    let size = coordinator
        .rows(
            "SELECT size_bytes FROM performance_schema.rpd_tables t \
             JOIN performance_schema.rpd_table_id i ON t.id = i.id WHERE i.name = 's.small'",
        )
        .await[0][0]
        .as_u64()
        .unwrap();
    assert!(
        size > 1536 << 10,
        "the table ({size} bytes) is larger than one worker's memory_limit"
    );
    assert_eq!(
        coordinator.rows("SELECT COUNT(*) FROM s.small").await[0][0],
        60_000
    );

    // Six times larger: more than the three workers hold. Refused, naming a worker and its
    // limit; the loaded table answers on.
    let e = coordinator.err("ALTER TABLE s.large SECONDARY_LOAD").await;
    assert!(
        e.message.contains("worker http://127.0.0.1:") && e.message.contains("memory"),
        "{} {}",
        e.code,
        e.message
    );
    assert_eq!(
        coordinator.rows("SELECT COUNT(*) FROM s.small").await[0][0],
        60_000
    );
    let st = coordinator.table_status("s", "large").await;
    assert_eq!(st["load_status"], "NOLOAD_RPDGSTABSTATE", "{st}");
}

#[tokio::test]
async fn a_query_never_mixes_versions_while_refreshes_land_files_on_every_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, c) = loaded_cluster(tmp.path(), 3, 1000, 3).await;
    let coordinator = std::sync::Arc::new(c.coordinator);
    // The counts each version has: 3,000 rows, then each round adds three files of different
    // sizes (one for each worker), so a query reading one worker's new part beside another's
    // old one would count a number no version has.
    let mut counts = vec![3000u64];
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let queries = tokio::spawn({
        let (coordinator, stop, answered) = (coordinator.clone(), stop.clone(), answered.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match coordinator.sql("SELECT COUNT(*) FROM s.o").await {
                    Ok(v) => seen.push(v["rows"][0][0].as_u64().unwrap()),
                    Err(e) => return Err(format!("{e:?}")),
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            Ok(seen)
        }
    });
    let mut next = 10_000;
    for round in 1..=5u32 {
        let mut added = 0;
        for j in 0..3u32 {
            let n = 100 * round + 7 * j + 1;
            std::fs::write(data.join(format!("r{round}-{j}.csv")), csv(next, n)).unwrap();
            next += n;
            added += u64::from(n);
        }
        let (status, report) = coordinator.post("/v1/tables/s/o/refresh").await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["files_added"], 3, "{report}");
        counts.push(counts.last().unwrap() + added);
        // Two more answers before the next round: queries run against every version.
        let at = answered.load(Ordering::SeqCst);
        wait_until(
            || {
                let answered = answered.clone();
                async move { answered.load(Ordering::SeqCst) >= at + 2 }
            },
            "queries between refreshes",
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let seen = match queries.await.unwrap() {
        Ok(seen) => seen,
        Err(e) => panic!(
            "{e}\nworkers:\n{}",
            c.workers
                .iter()
                .map(|w| w.log.lock().unwrap().join("\n"))
                .collect::<Vec<_>>()
                .join("\n---\n")
        ),
    };
    assert!(
        seen.len() >= 10,
        "queries ran through the refreshes: {seen:?}"
    );
    for n in &seen {
        assert!(counts.contains(n), "{n} is no version's count ({counts:?})");
    }
    assert_eq!(
        coordinator.rows("SELECT COUNT(*) FROM s.o").await[0][0],
        *counts.last().unwrap()
    );
    // The new files went to every worker.
    for w in &c.workers {
        assert!(worker_tables(w).await[0]["files"].as_u64() > Some(1));
    }

    // A restarted coordinator takes the workers' parts back, without reading anything.
    let coordinator = std::sync::Arc::try_unwrap(coordinator)
        .unwrap_or_else(|_| panic!("the queries are done"))
        .kill_and_restart()
        .await;
    let last = *counts.last().unwrap();
    answers(
        &coordinator,
        "SELECT COUNT(*) FROM s.o",
        serde_json::json!([[last]]),
        "the table after the coordinator restarted",
    )
    .await;
    let st = coordinator.table_status("s", "o").await;
    assert_eq!(st["load_status"], "AVAIL_RPDGSTABSTATE", "{st}");
    // And refreshes go on from there: a new file is read, the others kept.
    std::fs::write(data.join("z.csv"), csv(90_000, 5)).unwrap();
    let (status, report) = coordinator.post("/v1/tables/s/o/refresh").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["files_added"], 1, "{report}");
    assert_eq!(report["files_removed"], 0, "{report}");
    assert_eq!(
        coordinator.rows("SELECT COUNT(*) FROM s.o").await[0][0],
        last + 5
    );
}

#[tokio::test]
async fn a_worker_killed_during_a_refresh_gives_no_wrong_answer_and_the_table_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, mut c) = loaded_cluster(tmp.path(), 6, 1000, 3).await;
    write_csvs(&data, "g", 3, 10_000, 700);
    // The refresh starts, and a worker is killed while it runs.
    let (status, job) = c
        .coordinator
        .post("/v1/tables/s/o/refresh?async=true")
        .await;
    assert_eq!(status, 202, "{job}");
    c.workers[1].kill();
    // Every answer is a version's count or a 503 naming why, until the whole table (with the
    // new files) answers from the two workers left.
    let started = std::time::Instant::now();
    loop {
        match c.coordinator.sql("SELECT COUNT(*) FROM s.o").await {
            Ok(v) if v["rows"][0][0] == 8100 => break,
            Ok(v) => assert_eq!(v["rows"][0][0], 6000, "{v}"),
            Err(e) => assert_eq!(
                (e.status, e.code.as_str()),
                (503, "table_recovering"),
                "{e:?}"
            ),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the table did not recover: {}",
            c.coordinator.get("/v1/cluster").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let held: u64 = [&c.workers[0], &c.workers[2]]
        .iter()
        .map(|w| async move { worker_tables(w).await[0]["files"].as_u64().unwrap() })
        .collect::<futures::future::JoinAll<_>>()
        .await
        .into_iter()
        .sum();
    assert_eq!(held, 9, "every file on the two workers left");
}

#[tokio::test]
async fn a_delta_table_spreads_over_the_workers_and_refreshes_follow_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let table = data.join("d");
    delta_op(&table, &["create", "0", "600", "6"]);
    let single = TestServer::spawn(&tmp.path().join("single"), &data, &[]).await;
    let c = cluster(tmp.path(), &data, 3).await;
    let ddl = format!(
        "CREATE EXTERNAL TABLE s.d FILE_FORMAT = (FORMAT delta) FILES = (URI 'file://{}/')",
        table.display()
    );
    for server in [&single, &c.coordinator] {
        server.ok("CREATE DATABASE s").await;
        server.ok(&ddl).await;
        server.ok("ALTER TABLE s.d SECONDARY_LOAD").await;
    }
    let queries = [
        "SELECT COUNT(*), SUM(id), MIN(id), MAX(id) FROM s.d",
        "SELECT id % 7 AS k, COUNT(*) FROM s.d GROUP BY k ORDER BY k",
    ];
    let same = |what: &'static str| {
        let (single, coordinator) = (&single, &c.coordinator);
        async move {
            for q in queries {
                assert_eq!(
                    single.rows(q).await,
                    coordinator.rows(q).await,
                    "{what}: {q}"
                );
            }
        }
    };
    same("after the load").await;
    let parts: Vec<u64> = futures::future::join_all(c.workers.iter().map(worker_tables))
        .await
        .iter()
        .map(|t| t[0]["files"].as_u64().unwrap())
        .collect();
    assert_eq!(parts, vec![2, 2, 2], "six files over three workers");

    // A commit adds a file: one worker reads it, the others keep theirs.
    delta_op(&table, &["append", "600", "700"]);
    let (status, report) = c.coordinator.post("/v1/tables/s/d/refresh").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            report["files_added"].as_u64(),
            report["files_reused"].as_u64()
        ),
        (Some(1), Some(6)),
        "{report}"
    );
    assert_eq!(report["delta_version"], 6, "{report}");
    single.post("/v1/tables/s/d/refresh").await;
    same("after an append").await;

    // A delete rewrites files: the workers holding them read them again.
    delta_op(&table, &["delete", "id % 10 = 3"]);
    let (status, report) = c.coordinator.post("/v1/tables/s/d/refresh").await;
    assert_eq!(status, 200, "{report}");
    single.post("/v1/tables/s/d/refresh").await;
    same("after a delete").await;
    assert_eq!(
        c.coordinator.rows("SELECT COUNT(*) FROM s.d").await[0][0],
        630
    );

    // A restarted coordinator takes the parts back (columns from the log, as the workers read it).
    let mut c = c;
    c.coordinator = c.coordinator.kill_and_restart().await;
    answers(
        &c.coordinator,
        "SELECT COUNT(*) FROM s.d",
        serde_json::json!([[630]]),
        "the Delta table after the coordinator restarted",
    )
    .await;
    for q in queries {
        assert_eq!(
            single.rows(q).await,
            c.coordinator.rows(q).await,
            "after a restart: {q}"
        );
    }
}
