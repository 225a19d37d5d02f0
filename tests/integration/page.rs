//! The status page in a real browser (headless Chromium driven by Playwright,
//! `tests/page/status_page.py`): signing in (and a wrong token), the table list against
//! `GET /v1/tables`, a STALE table's reason, a load started from the page reaching AVAIL, the
//! refresh history chart, the SQL box, the regions view with failovers, a reader's narrower view,
//! a phone's width, and no request to any other host and no console error.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

/// Debian's Chromium, unless `TARN_CHROMIUM` names another.
fn chromium() -> String {
    std::env::var("TARN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test]
async fn the_status_page_shows_tables_loads_history_regions_and_runs_sql() {
    if !std::path::Path::new(&chromium()).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "{} is missing: scripts/test.sh installs Debian's chromium",
            chromium()
        );
        eprintln!("skipped: no chromium at {}", chromium());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for t in ["p", "q", "bad"] {
        copy_sample("parquet", &data.join(t));
    }
    // A table big enough that its load is seen under way (a few seconds in a debug build).
    std::fs::create_dir_all(data.join("big")).unwrap();
    let made = Command::new(python())
        .arg("-c")
        .arg(
            "import sys\n\
             with open(sys.argv[1], 'w') as f:\n\
             \tfor i in range(3_000_000): f.write(f'{i},{i % 997},name-{i % 101}\\n')",
        )
        .arg(data.join("big/big.csv"))
        .status()
        .unwrap();
    assert!(made.success());
    // Two regions whose stores do not answer: both are failed over at once, for the timeline.
    let config = tmp.path().join("tarn.toml");
    std::fs::write(
        &config,
        r#"
[regions.east]
endpoint = "http://127.0.0.1:9"
allow_http = true
credentials = "none"
[regions.west]
endpoint = "http://127.0.0.1:9"
allow_http = true
credentials = "none"
[[replicas]]
primary = { region = "east", location = "s3://lake/" }
replica = { region = "west", location = "s3://lake-dr/" }
[failover]
probe_interval = "200ms"
failure_threshold = 2
failback_after = "1s"
"#,
    )
    .unwrap();
    let server = TestServer::spawn(
        &tmp.path().join("tarn"),
        &data,
        &["--config", config.to_str().unwrap()],
    )
    .await;
    server.ok("CREATE DATABASE s").await;
    server.ok("CREATE DATABASE other").await;
    let ddl = |t: &str| {
        format!(
            "FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')",
            data.join(t).display()
        )
    };
    server.create_and_load("s.p", &ddl("p")).await;
    for _ in 0..3 {
        let (status, body) = server.post("/v1/tables/s/p/refresh").await;
        assert_eq!(status, 200, "{body}");
    }
    server
        .ok(&format!("CREATE EXTERNAL TABLE s.q {}", ddl("q")))
        .await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE s.big (id BIGINT, v INT, name VARCHAR(16)) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') FILES = (URI 'file://{}/')",
            data.join("big").display()
        ))
        .await;
    server
        .ok(&format!("CREATE EXTERNAL TABLE other.o {}", ddl("q")))
        .await;
    // A table whose refresh fails: it keeps serving and shows why it is stale.
    server.create_and_load("s.bad", &ddl("bad")).await;
    std::fs::write(data.join("bad/bad.parquet"), b"this is not parquet").unwrap();
    let (status, _) = server.post("/v1/tables/s/bad/refresh").await;
    assert_ne!(status, 200);
    // Still serving its last version: loaded, 100%, for the API and rpd_tables alike.
    let listed = server.get("/v1/tables").await;
    let bad = listed["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table_name"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(bad["status"]["load_status"], "STALE_RPDGSTABSTATE", "{bad}");
    assert_eq!(bad["status"]["load_progress"], 100.0, "{bad}");
    let rpd = server
        .ok("SELECT t.load_progress FROM performance_schema.rpd_tables t JOIN performance_schema.rpd_table_id i ON t.id = i.id WHERE i.name = 's.bad'")
        .await;
    assert_eq!(rpd["rows"], json!([[100.0]]), "{rpd}");
    let reader = server
        .make_token(json!({"name": "reader", "role": "reader", "databases": ["s"]}))
        .await;
    let shots = std::env::var("TARN_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("shots"));
    let out = Command::new(python())
        .arg(repo_root().join("tests/page/status_page.py"))
        .env("URL", server.url(""))
        .env("ADMIN", ADMIN_TOKEN)
        .env("READER", &reader)
        .env("CHROMIUM", chromium())
        .env("SHOTS", &shots)
        .env("HISTORY_TABLE", "s.p")
        .env("LOAD_TABLE", "s.big")
        .env("STALE_TABLE", "s.bad")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(out["login_visible"], true);
    assert!(
        out["wrong_token"].as_str().unwrap().contains("not known"),
        "{out}"
    );
    assert_eq!(out["still_signed_out"], true);
    assert_eq!(out["who"], "admin (admin)");
    assert_eq!(out["instance"], "tarn-test");
    // The list is GET /v1/tables, table by table.
    let page = out["page_tables"].as_array().unwrap();
    let api = out["api_tables"].as_array().unwrap();
    assert_eq!(page.len(), 5, "{out}");
    for (p, a) in page.iter().zip(api) {
        for k in ["table", "status", "rows"] {
            assert_eq!(p[k], a[k], "{k}: page {p} api {a}");
        }
    }
    // The refresh history: one bar per load or refresh, and the bytes-read line.
    assert_eq!(out["history_rows"], 4, "a load and three refreshes: {out}");
    assert_eq!(out["history_bars"], out["history_rows"]);
    assert_eq!(out["history_line"], true);
    assert!(
        out["ddl"]
            .as_str()
            .unwrap()
            .starts_with("CREATE EXTERNAL TABLE `s`.`p`"),
        "{out}"
    );
    assert_eq!(out["admin_buttons"], json!(["Refresh", "Load", "Unload"]));
    assert_eq!(out["before_load"], "NOLOAD");
    // The load as the page showed it: under way with its progress, then AVAIL at 100%.
    let seen = out["load_seen"].as_array().unwrap();
    assert!(seen.contains(&json!(["AVAIL", "100%"])), "{out}");
    assert!(
        seen.iter().any(|s| s[0] == "LOADING"
            && s[1]
                .as_str()
                .unwrap()
                .trim_end_matches('%')
                .parse::<f64>()
                .unwrap()
                < 100.0),
        "the load was never seen under way: {seen:?}"
    );
    assert_eq!(out["stale"]["status"], "STALE", "{out}");
    assert!(
        out["stale"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("bad.parquet"),
        "{out}"
    );
    assert_eq!(out["filtered"], json!(["s.bad"]));
    // SQL: names with their types, the values, the timing; an error; the history.
    let header = out["sql_header"].as_array().unwrap();
    assert!(
        header[0].as_str().unwrap().starts_with("nBIGINT")
            && header[1].as_str().unwrap().starts_with("top"),
        "{out}"
    );
    assert_eq!(out["sql_cells"], json!(["200", "200"]));
    assert!(
        out["sql_status"].as_str().unwrap().starts_with("1 row in "),
        "{out}"
    );
    assert!(
        out["sql_error"].as_str().unwrap().contains("syntax_error"),
        "{out}"
    );
    let history = out["sql_history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].as_str().unwrap().contains("SELEC 1"), "{out}");
    // Regions: both failed over, on the timeline.
    let regions = out["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 2, "{out}");
    assert!(
        regions
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("failed over")),
        "{out}"
    );
    let events = out["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.as_str().unwrap().contains("failover")),
        "{out}"
    );
    assert_eq!(out["timeline_dots"].as_u64(), Some(events.len() as u64));
    assert_eq!(out["keyboard_tables"], true);
    assert!(
        out["phone_overflow"].as_i64().unwrap() <= 0,
        "the page scrolls sideways at a phone's width: {out}"
    );
    assert_eq!(out["signed_out"], true);
    // A reader: its database only, no buttons; still signed in after a reload.
    assert_eq!(
        out["reader_tables"],
        json!(["s.bad", "s.big", "s.p", "s.q"])
    );
    assert_eq!(out["reader_buttons"], 0);
    assert_eq!(out["reader_after_reload"], "reader (reader: s)");
    // Nothing but this server, and a quiet console.
    assert_eq!(out["requests_elsewhere"], json!([]), "{out}");
    assert_eq!(out["console_errors"], json!([]), "{out}");
}

#[tokio::test]
async fn the_page_is_served_without_a_token_and_keeps_to_its_host() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), tmp.path(), &[]).await;
    let plain = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = plain.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        // The SVG namespace is a name, not a request.
        let body = r
            .text()
            .await
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} names another host"
        );
    }
    // The data behind the page still needs a token.
    let r = plain.get(server.url("/v1/whoami")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let who = server.get("/v1/whoami").await;
    assert_eq!(
        who,
        json!({"name": "admin", "role": "admin", "databases": null, "instance": "tarn-test"})
    );
}
