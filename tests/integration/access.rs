//! Access: tokens and roles on every endpoint and statement kind, databases a token is limited
//! to, and the admin token a server generates for the clients on its machine.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

/// A server with two databases, `s` (table `p`, loaded) and `o` (table `q`, loaded), and three
/// tokens: a reader and a loader limited to `s`, and a reader of everything.
struct Fixture {
    server: TestServer,
    reader_s: String,
    loader_s: String,
    reader_all: String,
    _tmp: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet", &data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    for db in ["s", "o"] {
        server.ok(&format!("CREATE DATABASE {db}")).await;
    }
    for t in ["s.p", "o.q"] {
        server
            .create_and_load(
                t,
                &format!(
                    "FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')",
                    data.display()
                ),
            )
            .await;
    }
    let token = |name: &str, role: &str, dbs: Option<Vec<&str>>| {
        let server = &server;
        let body = json!({"name": name, "role": role, "databases": dbs});
        async move { server.make_token(body).await }
    };
    let reader_s = token("reader-s", "reader", Some(vec!["s"])).await;
    let loader_s = token("loader-s", "loader", Some(vec!["S"])).await;
    let reader_all = token("reader-all", "reader", None).await;
    Fixture {
        server,
        reader_s,
        loader_s,
        reader_all,
        _tmp: tmp,
    }
}

/// The status and error code of `sql` sent with `token`.
async fn sql_as(server: &TestServer, token: &str, sql: &str) -> (u16, Value) {
    let r = client_with(token)
        .post(server.url("/v1/sql"))
        .header("accept", "application/json")
        .body(sql.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_request_but_health_and_readiness_needs_a_known_token() {
    let f = fixture().await;
    let s = &f.server;
    let anonymous = reqwest::Client::new();
    assert_eq!(status_of(anonymous.get(s.url("/healthz"))).await, 200);
    assert_eq!(status_of(anonymous.get(s.url("/readyz"))).await, 200);
    let endpoints = [
        ("POST", "/v1/sql"),
        ("GET", "/v1/tables"),
        ("GET", "/v1/tables/s/p"),
        ("GET", "/v1/tables/s/p/refreshes"),
        ("POST", "/v1/tables/s/p/refresh"),
        ("POST", "/v1/refresh"),
        ("GET", "/v1/refreshes/1"),
        ("GET", "/v1/regions"),
        ("POST", "/v1/regions/a/cut"),
        ("POST", "/v1/regions/a/restore"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/tokens"),
        ("DELETE", "/v1/tokens/reader-s"),
        ("GET", "/metrics"),
        ("GET", "/v2/nothing"),
    ];
    for (method, path) in endpoints {
        for client in [anonymous.clone(), client_with("tarn_not-a-token")] {
            let r = client
                .request(method.parse().unwrap(), s.url(path))
                .body("SELECT 1")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{method} {path}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}: {v}");
        }
    }
    // Nothing was done on the way: the token an anonymous DELETE named still works.
    assert_eq!(sql_as(s, &f.reader_s, "SELECT 1").await.0, 200);
}

#[tokio::test]
async fn roles_and_databases_decide_each_statement() {
    let f = fixture().await;
    let s = &f.server;
    let (r, l, a) = (f.reader_s.as_str(), f.loader_s.as_str(), ADMIN_TOKEN);
    // (statement, status for the reader of s, the loader of s, the admin)
    let cases: [(&str, [u16; 3]); 20] = [
        ("SELECT COUNT(*) FROM s.p", [200, 200, 200]),
        ("SELECT COUNT(*) FROM o.q", [403, 403, 200]),
        (
            "SELECT COUNT(*) FROM s.p JOIN o.q ON s.p.order_id = o.q.order_id",
            [403, 403, 200],
        ),
        (
            "WITH x AS (SELECT * FROM o.q) SELECT COUNT(*) FROM x",
            [403, 403, 200],
        ),
        ("SHOW TABLES FROM s", [200, 200, 200]),
        ("SHOW TABLES FROM o", [403, 403, 200]),
        ("DESCRIBE s.p", [200, 200, 200]),
        ("DESCRIBE o.q", [403, 403, 200]),
        ("SHOW COLUMNS FROM o.q", [403, 403, 200]),
        ("SHOW CREATE TABLE s.p", [200, 200, 200]),
        ("SHOW CREATE TABLE o.q", [403, 403, 200]),
        ("SHOW COLUMNS FROM p FROM s", [200, 200, 200]),
        // The admin's comes after the loader's unload: past the access check, not loaded.
        ("ALTER TABLE s.p SECONDARY_UNLOAD", [403, 200, 409]),
        ("ALTER TABLE s.p SECONDARY_LOAD", [403, 200, 200]),
        ("ALTER TABLE o.q SECONDARY_LOAD", [403, 403, 200]),
        (
            r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "s", "tables": [{"table_name": "p"}]}]' AS JSON), JSON_OBJECT('refresh_external_tables', TRUE))"#,
            [403, 200, 200],
        ),
        (
            r#"CALL sys.HEATWAVE_LOAD(CAST('[{"db_name": "o"}]' AS JSON), JSON_OBJECT('refresh_external_tables', TRUE))"#,
            [403, 403, 200],
        ),
        ("CREATE DATABASE n1", [403, 403, 200]),
        ("DROP DATABASE n1", [403, 403, 200]),
        ("DROP TABLE IF EXISTS s.nothing", [403, 403, 200]),
    ];
    for (sql, want) in cases {
        for (token, want) in [r, l, a].into_iter().zip(want) {
            let (status, v) = sql_as(s, token, sql).await;
            assert_eq!(status, want, "{sql}: {v}");
            if want == 403 {
                assert_eq!(v["error"]["code"], "forbidden", "{sql}: {v}");
            }
        }
    }
    // Refused statements had no effect: s.p was unloaded and loaded again by the loader, o.q is
    // still loaded, no table was dropped.
    let rows = s
        .rows(
            "SELECT i.table_name, t.load_status FROM performance_schema.rpd_tables t \
             JOIN performance_schema.rpd_table_id i ON t.id = i.id ORDER BY 1",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!("p"), json!("AVAIL_RPDGSTABSTATE")],
            vec![json!("q"), json!("AVAIL_RPDGSTABSTATE")]
        ]
    );
    // A token limited to s sees only s: SHOW, the status views, the table lists.
    let (_, v) = sql_as(s, r, "SHOW DATABASES").await;
    assert_eq!(v["rows"], json!([["performance_schema"], ["s"]]));
    let (_, v) = sql_as(
        s,
        r,
        "SELECT schema_name, table_name FROM performance_schema.rpd_table_id",
    )
    .await;
    assert_eq!(v["rows"], json!([["s", "p"]]));
    let (_, v) = sql_as(
        s,
        &f.reader_all,
        "SELECT COUNT(*) FROM performance_schema.rpd_tables",
    )
    .await;
    assert_eq!(v["rows"], json!([[2]]));
    let listed: Value = client_with(r)
        .get(s.url("/v1/tables"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p"]);
    let metrics = client_with(r)
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("database=\"s\"") && !metrics.contains("database=\"o\""));
}

#[tokio::test]
async fn endpoints_ask_for_their_role() {
    let f = fixture().await;
    let s = &f.server;
    let (r, l) = (client_with(&f.reader_s), client_with(&f.loader_s));
    // (request builder for a token, status for the reader of s, the loader of s, the admin)
    type Req = fn(&reqwest::Client, &TestServer) -> reqwest::RequestBuilder;
    let cases: [(&str, Req, [u16; 3]); 10] = [
        (
            "GET /v1/tables/s/p",
            |c, s| c.get(s.url("/v1/tables/s/p")),
            [200, 200, 200],
        ),
        (
            "GET /v1/tables/o/q",
            |c, s| c.get(s.url("/v1/tables/o/q")),
            [403, 403, 200],
        ),
        (
            "GET refreshes of o.q",
            |c, s| c.get(s.url("/v1/tables/o/q/refreshes")),
            [403, 403, 200],
        ),
        (
            "refresh s.p",
            |c, s| c.post(s.url("/v1/tables/s/p/refresh")),
            [403, 200, 200],
        ),
        (
            "refresh o.q",
            |c, s| c.post(s.url("/v1/tables/o/q/refresh")),
            [403, 403, 200],
        ),
        (
            "refresh all",
            |c, s| c.post(s.url("/v1/refresh")),
            [403, 200, 200],
        ),
        (
            "GET /v1/regions",
            |c, s| c.get(s.url("/v1/regions")),
            [200, 200, 200],
        ),
        (
            "cut a region",
            |c, s| c.post(s.url("/v1/regions/nowhere/cut")),
            [403, 403, 404],
        ),
        (
            "list tokens",
            |c, s| c.get(s.url("/v1/tokens")),
            [403, 403, 200],
        ),
        (
            "delete a token",
            |c, s| c.delete(s.url("/v1/tokens/nobody")),
            [403, 403, 404],
        ),
    ];
    for (what, req, want) in cases {
        for (c, want) in [&r, &l, &client()].into_iter().zip(want) {
            assert_eq!(status_of(req(c, s)).await, want, "{what}");
        }
    }
    // The loader's refresh of everything covers its own databases only.
    let v: Value = l
        .post(s.url("/v1/refresh"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tables: Vec<&str> = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["s.p"]);
    let e: Value = r
        .post(s.url("/v1/tokens"))
        .json(&json!({"name": "x", "role": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["error"]["code"], "forbidden");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the admin role"),
        "{e}"
    );

    // The list shows no secret; a deleted token is refused from then on.
    let list = client()
        .get(s.url("/v1/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("\"reader-s\"") && !list.contains(&f.reader_s) && !list.contains("sha256")
    );
    assert_eq!(
        status_of(client().delete(s.url("/v1/tokens/reader-s"))).await,
        200
    );
    assert_eq!(sql_as(s, &f.reader_s, "SELECT 1").await.0, 401);
    // Tokens outlive a restart, as hashes only.
    let stored = std::fs::read_to_string(s.data_dir.join("tokens.json")).unwrap();
    assert!(!stored.contains(&f.loader_s));
    let s = f.server.kill_and_restart().await;
    assert_eq!(sql_as(&s, &f.loader_s, "SELECT 1").await.0, 200);
    let expiring: Value = client()
        .post(s.url("/v1/tokens"))
        .json(&json!({"name": "brief", "role": "reader", "expires_in": "1s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let brief = expiring["token"].as_str().unwrap();
    assert!(expiring["expires_at"].is_string(), "{expiring}");
    assert_eq!(sql_as(&s, brief, "SELECT 1").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, v) = sql_as(&s, brief, "SELECT 1").await;
    assert_eq!(status, 401);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
}

#[tokio::test]
async fn a_server_without_an_admin_token_generates_one_for_the_clients_on_its_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("tarn");
    let allowed = format!("file://{}/", tmp.path().display());
    // An empty TARN_ADMIN_TOKEN is no token: one is generated.
    let server = TestServer::spawn_with_env(
        &data_dir,
        &["--allowed-locations", &allowed],
        &[("TARN_ADMIN_TOKEN", "")],
    )
    .await;
    let file = data_dir.join("admin.token");
    let admin = std::fs::read_to_string(&file).unwrap().trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(sql_as(&server, ADMIN_TOKEN, "SELECT 1").await.0, 401);
    assert_eq!(sql_as(&server, &admin, "SELECT 1").await.0, 200);
    let tarn = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
            .args(args)
            .env_remove("TARN_TOKEN")
            .env("TARN_URL", server.url(""))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let dir = data_dir.to_str().unwrap();
    // `tarn sql` finds the generated token through the data directory.
    let (ok, out, err) = tarn(
        &["sql", "-e", "CREATE DATABASE g"],
        &[("TARN_DATA_DIR", dir)],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "OK\n");
    // Without it, the answer says what is missing.
    let (ok, _, err) = tarn(
        &["sql", "-e", "SHOW DATABASES"],
        &[("TARN_DATA_DIR", "/nonexistent")],
    );
    assert!(!ok);
    assert!(
        err.contains("ERROR (unauthorized)") && err.contains("Bearer"),
        "{err}"
    );
    // `tarn token create` prints a token that works for its role.
    let (ok, token, err) = tarn(
        &[
            "token",
            "create",
            "--name",
            "bi",
            "--role",
            "reader",
            "--databases",
            "g",
        ],
        &[("TARN_DATA_DIR", dir)],
    );
    assert!(ok, "{err}");
    let token = token.trim();
    assert!(token.starts_with("tarn_"), "{token}");
    assert_eq!(sql_as(&server, token, "SHOW TABLES FROM g").await.0, 200);
    assert_eq!(sql_as(&server, token, "CREATE DATABASE h").await.0, 403);
    let (ok, out, _) = tarn(&["token", "list"], &[("TARN_DATA_DIR", dir)]);
    assert!(ok);
    assert!(
        out.contains("admin\tadmin\t*") && out.contains("bi\treader\tg"),
        "{out}"
    );
    let (ok, _, err) = tarn(&["token", "delete", "bi"], &[("TARN_TOKEN", token)]);
    assert!(!ok && err.contains("ERROR (forbidden)"), "{err}");
}

#[tokio::test]
async fn statements_that_write_or_reconfigure_are_refused_and_leave_nothing_behind() {
    let f = fixture().await;
    let s = &f.server;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("written.csv");
    let before = s.rows("SELECT COUNT(*) FROM s.p").await;
    for sql in [
        format!("COPY (SELECT * FROM s.p) TO '{}'", target.display()),
        format!("EXPLAIN COPY (SELECT 1) TO '{}'", target.display()),
        "INSERT INTO s.p SELECT * FROM s.p".to_string(),
        "DELETE FROM s.p".to_string(),
        "UPDATE s.p SET order_id = 0".to_string(),
        "CREATE VIEW s.v AS SELECT * FROM s.p".to_string(),
        "CREATE TABLE s.copy AS SELECT * FROM s.p".to_string(),
        "SET datafusion.execution.target_partitions = 64".to_string(),
        "RESET datafusion.execution.target_partitions".to_string(),
        "PREPARE q AS SELECT 1".to_string(),
        "EXECUTE q".to_string(),
        format!(
            "SELECT * FROM '{}'",
            s.data_dir.join("tokens.json").display()
        ),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
    ] {
        // Even the admin: the surface is closed to everyone.
        let e = s.err(&sql).await;
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "unsupported_statement"),
            "{sql}: {}",
            e.message
        );
        assert!(
            e.message.contains("is not supported"),
            "{sql}: {}",
            e.message
        );
    }
    assert!(!target.exists(), "COPY wrote {}", target.display());
    assert_eq!(s.rows("SELECT COUNT(*) FROM s.p").await, before);
    assert_eq!(s.err("SELECT * FROM s.v").await.code, "query_error");
    assert_eq!(s.err("SELECT * FROM s.copy").await.code, "query_error");
    // What the surface keeps: queries, WITH, VALUES, EXPLAIN, computed table functions.
    for sql in [
        "WITH x AS (SELECT order_id FROM s.p) SELECT COUNT(*) FROM x",
        "VALUES (1, 'a'), (2, 'b')",
        "EXPLAIN SELECT * FROM s.p WHERE order_id = 3",
        "SELECT SUM(value) FROM generate_series(1, 10)",
    ] {
        s.ok(sql).await;
    }
}

#[tokio::test]
async fn the_audit_log_says_who_changed_what_and_how_it_ended() {
    let f = fixture().await;
    let s = &f.server;
    sql_as(s, &f.reader_s, "ALTER TABLE s.p SECONDARY_UNLOAD").await;
    sql_as(s, &f.loader_s, "ALTER TABLE s.p SECONDARY_UNLOAD").await;
    sql_as(s, &f.loader_s, "ALTER TABLE s.p SECONDARY_LOAD").await;
    sql_as(s, &f.reader_s, "SELECT COUNT(*) FROM s.p").await;
    client_with(&f.loader_s)
        .post(s.url("/v1/tables/s/p/refresh"))
        .send()
        .await
        .unwrap();
    client()
        .post(s.url("/v1/regions/nowhere/cut"))
        .send()
        .await
        .unwrap();
    client()
        .delete(s.url("/v1/tokens/reader-all"))
        .send()
        .await
        .unwrap();
    let log = std::fs::read_to_string(s.data_dir.join("audit.log")).unwrap();
    for secret in [&f.reader_s, &f.loader_s, &f.reader_all] {
        assert!(!log.contains(secret.as_str()), "a token in the audit log");
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("who"), s("action"), s("target"), s("outcome"))
        })
        .collect();
    let want = |who: &str, action: &str, target: &str, outcome: &str| {
        (who.into(), action.into(), target.into(), outcome.into())
    };
    for line in [
        want("admin", "create_database", "s", "ok"),
        want("admin", "create_table", "s.p", "ok"),
        want("admin", "create_token", "reader-s", "ok"),
        want("reader-s", "secondary_unload", "s.p", "error"),
        want("loader-s", "secondary_unload", "s.p", "ok"),
        want("loader-s", "secondary_load", "s.p", "ok"),
        want("loader-s", "refresh", "s.p", "ok"),
        want("admin", "cut_region", "nowhere", "error"),
        want("admin", "delete_token", "reader-all", "ok"),
    ] {
        assert!(seen.contains(&line), "{line:?} not in {seen:?}");
    }
    // The refused unload says why; queries are not logged.
    let refused = lines
        .iter()
        .find(|l| l["who"] == "reader-s" && l["action"] == "secondary_unload")
        .unwrap();
    assert_eq!(refused["error"]["code"], "forbidden");
    assert!(!log.contains("SELECT"));
}

#[tokio::test]
async fn locations_that_lead_to_tarns_own_files_or_out_of_the_allow_list_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    copy_sample("parquet", &data);
    // The allow-list covers the whole directory, the data directory included.
    let server = TestServer::spawn(&root.join("tarn"), root, &[]).await;
    server.ok("CREATE DATABASE s").await;
    let own = server.data_dir.join("catalog.json");
    std::os::unix::fs::symlink(&own, data.join("sneaky.json")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("outside.csv")).unwrap();
    let create = |name: &str, format: &str, uri: String| {
        format!(
            "CREATE EXTERNAL TABLE s.{name} FILE_FORMAT = (FORMAT {format}) FILES = (URI '{uri}')"
        )
    };
    for (sql, why) in [
        (
            create("own", "json", format!("file://{}", own.display())),
            "Tarn's own data",
        ),
        (
            create(
                "catalog",
                "json",
                format!("file://{}/", server.data_dir.display()),
            ),
            "Tarn's own data",
        ),
        (
            create(
                "link",
                "json",
                format!("file://{}/sneaky.json", data.display()),
            ),
            "leads into Tarn's own data",
        ),
        (
            create(
                "passwd",
                "csv",
                format!("file://{}/outside.csv", data.display()),
            ),
            "outside allowed_locations",
        ),
    ] {
        let e = server.err(&sql).await;
        assert_eq!(
            (e.status, e.code.as_str()),
            (403, "location_not_allowed"),
            "{sql}: {}",
            e.message
        );
        assert!(e.message.contains(why), "{sql}: {}", e.message);
    }
    // A directory that is allowed, holding a link that leads out: its load fails, naming it.
    let links = root.join("links");
    std::fs::create_dir_all(&links).unwrap();
    std::fs::copy(data.join("orders-0.parquet"), links.join("a.parquet")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", links.join("b.parquet")).unwrap();
    server
        .ok(&create(
            "l",
            "parquet",
            format!("file://{}/", links.display()),
        ))
        .await;
    let e = server.err("ALTER TABLE s.l SECONDARY_LOAD").await;
    assert_eq!(e.code, "location_not_allowed", "{}", e.message);
    assert!(
        e.message.contains("b.parquet") && e.message.contains("outside allowed_locations"),
        "{}",
        e.message
    );
    // A region must be one the config names: it becomes part of a host name.
    let e = server
        .err(
            r#"CREATE TABLE s.r ENGINE=lakehouse SECONDARY_ENGINE=rapid ENGINE_ATTRIBUTE='{"file": [{"bucket": "b", "namespace": "ns", "region": "evil.example.com/x", "prefix": "d/"}], "dialect": {"format": "csv"}}'"#,
        )
        .await;
    assert_eq!(e.code, "invalid_definition", "{}", e.message);
    assert!(
        e.message.contains("region 'evil.example.com/x'") && e.message.contains("not configured"),
        "{}",
        e.message
    );
    assert_eq!(
        server
            .rows("SELECT COUNT(*) FROM performance_schema.rpd_table_id")
            .await,
        vec![vec![json!(1)]],
        "only s.l was created"
    );
}
