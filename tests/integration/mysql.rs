//! The MySQL protocol door, driven by a real client (PyMySQL): a HeatWave Lakehouse session as
//! its users write it, values with their MySQL types, logins by token, roles, MySQL error codes
//! and connections that stay usable after an error, and connections side by side.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

/// A server under `dir` with the Parquet sample loaded as `s.p`; answers it and the sample's
/// directory.
pub async fn sample_loaded(dir: &std::path::Path) -> (TestServer, std::path::PathBuf) {
    let data = dir.join("data");
    copy_sample("parquet", &data);
    let server = TestServer::spawn(&dir.join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .create_and_load(
            "s.p",
            &format!(
                "FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')",
                data.display()
            ),
        )
        .await;
    (server, data)
}

const SESSION: &str = r#"
import datetime, decimal, json, os, pymysql, threading

host, port = os.environ["HOST"], int(os.environ["PORT"])
data = os.environ["DATA"]
out = {}

def connect(user, password, **kw):
    return pymysql.connect(host=host, port=port, user=user, password=password, **kw)

def plain(v):
    if isinstance(v, decimal.Decimal):
        return "decimal:" + str(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return type(v).__name__ + ":" + v.isoformat()
    return v

# The HeatWave Lakehouse session, as written.
c = connect("admin", os.environ["ADMIN"])
cur = c.cursor()
cur.execute("CREATE DATABASE market_data")
cur.execute("USE market_data")
cur.execute("CREATE EXTERNAL TABLE orders (order_id INT NOT NULL, customer VARCHAR(32), product LONGTEXT, "
            "quantity INT, amount DECIMAL(10,2), weight DOUBLE, express BOOLEAN, order_date DATE, shipped_at DATETIME) "
            "FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://" + data + "/')")
cur.execute("SET @input_list = '[{\"db_name\": \"market_data\", \"tables\": [{\"table_name\": \"orders\"}]}]'")
cur.execute("CALL sys.HEATWAVE_LOAD(CAST(@input_list AS JSON), @options)")
out["heatwave_load"] = [list(r) for r in cur.fetchall()]
cur.execute("SELECT @@hostname, a.order_id, a.amount, a.order_date, a.shipped_at, a.express, a.weight, a.customer "
            "FROM orders a ORDER BY a.order_id LIMIT 2")
out["columns"] = [d[0] for d in cur.description]
out["rows"] = [[plain(v) for v in r] for r in cur.fetchall()]
cur.execute("SELECT DATABASE(), CONNECTION_ID() > 0, @@version, @@version_comment, @@session.autocommit")
out["session"] = [plain(v) for v in cur.fetchone()]
cur.execute("SELECT NAME, LOAD_STATUS FROM performance_schema.rpd_tables JOIN performance_schema.rpd_table_id USING (ID)")
out["rpd_tables"] = [list(r) for r in cur.fetchall()]
cur.execute("SHOW DATABASES")
out["databases"] = [r[0] for r in cur.fetchall()]
cur.execute("SHOW TABLES")
out["tables"] = [r[0] for r in cur.fetchall()]
cur.execute("DESCRIBE orders")
out["describe"] = [r[0] for r in cur.fetchall()][:3]
cur.execute("SHOW FULL COLUMNS FROM orders FROM market_data")
out["show_columns"] = [r[0] for r in cur.fetchall()][:3]
cur.execute("SHOW CREATE TABLE orders")
out["show_create"] = list(cur.fetchone())
cur.execute("SHOW VARIABLES LIKE 'character_set_c%'")
out["variables"] = [list(r) for r in cur.fetchall()]

# Errors carry MySQL's codes, and the connection goes on.
errors = {}
for name, sql in [("no_table", "SELECT * FROM nowhere"), ("syntax", "SELEKT 1"),
                  ("engine_setting", "SET datafusion.execution.batch_size = 1"),
                  ("writes_files", "COPY (SELECT 1) TO '/tmp/x.csv'"), ("unknown_db", "USE nowhere")]:
    try:
        cur.execute(sql)
        errors[name] = "no error"
    except pymysql.MySQLError as e:
        errors[name] = [e.args[0], e.args[1]]
    cur.execute("SELECT 1")
    assert cur.fetchone()[0] == 1
out["errors"] = errors
c2 = connect("admin", os.environ["ADMIN"])
try:
    c2.cursor().execute("SELECT * FROM orders")
    out["no_database"] = "no error"
except pymysql.MySQLError as e:
    out["no_database"] = [e.args[0], e.args[1]]
c2.close()

# A reader: queries yes, DDL no (and the connection stays usable).
cur.execute("SELECT 1")
r = connect("reader", os.environ["READER"], database="market_data")
rc = r.cursor()
try:
    rc.execute("DROP TABLE orders")
    out["reader_ddl"] = "no error"
except pymysql.MySQLError as e:
    out["reader_ddl"] = [e.args[0], e.args[1]]
rc.execute("SELECT count(*) FROM orders")
out["reader_count"] = rc.fetchone()[0]
r.close()

# A wrong token, and a token under another name.
for name, user, password in [("wrong_token", "admin", "tarn_not_the_token"), ("other_name", "reader", os.environ["ADMIN"])]:
    try:
        connect(user, password)
        out[name] = "logged in"
    except pymysql.MySQLError as e:
        out[name] = e.args[0]

# Eight connections at once, each with its own default database and variables.
results = [None] * 8
def worker(i):
    k = connect("admin", os.environ["ADMIN"], database="market_data")
    kc = k.cursor()
    kc.execute("SET @mine = %d" % i)
    kc.execute("SELECT @mine, count(*) FROM orders WHERE order_id > @mine")
    results[i] = list(kc.fetchone())
    k.close()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
out["concurrent"] = results
print(json.dumps(out))
"#;

#[tokio::test]
async fn a_heatwave_session_runs_over_the_mysql_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("parquet", &data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    let reader = server
        .make_token(json!({"name": "reader", "role": "reader", "databases": ["market_data"]}))
        .await;
    let addr = server.mysql_addr().await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = python_json(
        SESSION,
        &[
            ("HOST", host),
            ("PORT", port),
            ("ADMIN", ADMIN_TOKEN),
            ("READER", &reader),
            ("DATA", data.to_str().unwrap()),
        ],
    );
    assert_eq!(out["heatwave_load"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(
        out["heatwave_load"][0][0], "market_data.orders",
        "{}",
        out["heatwave_load"]
    );
    assert_eq!(
        out["columns"],
        json!([
            "@@hostname",
            "order_id",
            "amount",
            "order_date",
            "shipped_at",
            "express",
            "weight",
            "customer"
        ])
    );
    // Exact decimals, dates and datetimes, as a MySQL driver makes them.
    let mut want = reference_rows("parquet", &data);
    want.sort_by_key(|r| r[0].as_i64());
    for (got, want) in out["rows"].as_array().unwrap().iter().zip(&want) {
        // order_id, amount, order_date, shipped_at, express, weight, customer
        let expected = json!([
            "tarn-test",
            want[0],
            format!("decimal:{}", want[4].as_str().unwrap()),
            format!("date:{}", want[7].as_str().unwrap()),
            format!("datetime:{}", want[8].as_str().unwrap()),
            i64::from(want[6].as_bool().unwrap()),
            want[5],
            want[1]
        ]);
        assert_eq!(got, &expected);
    }
    assert_eq!(
        out["session"],
        json!([
            "market_data",
            1,
            format!("9.4.0-tarn-{}", env!("CARGO_PKG_VERSION")),
            "Tarn lakehouse query service",
            1
        ])
    );
    assert_eq!(
        out["rpd_tables"],
        json!([["market_data.orders", "AVAIL_RPDGSTABSTATE"]])
    );
    assert!(
        out["databases"]
            .as_array()
            .unwrap()
            .contains(&json!("market_data")),
        "{out}"
    );
    assert_eq!(out["tables"], json!(["orders"]));
    assert_eq!(out["show_create"][0], "orders");
    let ddl = out["show_create"][1].as_str().unwrap();
    assert!(
        ddl.starts_with("CREATE EXTERNAL TABLE `market_data`.`orders` (`order_id` INT NOT NULL, ")
            && ddl.contains("FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://"),
        "{ddl}"
    );
    assert_eq!(out["describe"], json!(["order_id", "customer", "product"]));
    assert_eq!(out["show_columns"], out["describe"]);
    assert_eq!(
        out["variables"],
        json!([
            ["character_set_client", "utf8mb4"],
            ["character_set_connection", "utf8mb4"]
        ])
    );
    let errors = &out["errors"];
    assert_eq!(errors["no_table"][0], 1146, "{errors}");
    assert!(
        errors["no_table"][1].as_str().unwrap().contains("nowhere"),
        "{errors}"
    );
    assert_eq!(errors["syntax"][0], 1064, "{errors}");
    assert_eq!(errors["engine_setting"][0], 1235, "{errors}");
    assert_eq!(errors["writes_files"][0], 1235, "{errors}");
    assert_eq!(errors["unknown_db"][0], 1049, "{errors}");
    assert_eq!(out["no_database"][0], 1046, "{out}");
    assert_eq!(out["reader_ddl"][0], 1142, "{out}");
    assert_eq!(out["reader_count"], 200);
    // PyMySQL reports a refused login as 1045 (access denied) whatever the server's code.
    for refused in ["wrong_token", "other_name"] {
        assert!(
            out[refused]
                .as_u64()
                .is_some_and(|c| c == 1045 || c == 1698),
            "{refused}: {}",
            out[refused]
        );
    }
    let concurrent = out["concurrent"].as_array().unwrap();
    for (i, r) in concurrent.iter().enumerate() {
        let over = want
            .iter()
            .filter(|row| row[0].as_i64().unwrap() > i as i64)
            .count();
        assert_eq!(r, &json!([i, over]), "connection {i}");
    }
    // The door's logins and DDL are in the audit log, like HTTP's.
    let audit = std::fs::read_to_string(server.data_dir.join("audit.log")).unwrap();
    assert!(
        audit.contains(r#""action":"create_table""#) && audit.contains(r#""who":"admin""#),
        "{audit}"
    );
}

#[tokio::test]
async fn the_mysql_and_flight_sql_doors_can_be_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &[],
        &[("TARN_MYSQL_LISTEN", ""), ("TARN_FLIGHT_LISTEN", " ")],
    )
    .await;
    server.ok("SELECT 1").await;
    let log = server.log.lock().unwrap().join("\n");
    for door in ["MySQL protocol listening", "Arrow Flight SQL listening"] {
        assert!(!log.contains(door), "{door}:\n{log}");
    }
}

const KILL: &str = r#"
import json, os, pymysql, threading, time

host, port = os.environ["HOST"], int(os.environ["PORT"])
def connect(user, password):
    return pymysql.connect(host=host, port=port, user=user, password=password, database="s")

a = connect("admin", os.environ["ADMIN"])
ac = a.cursor()
ac.execute("SELECT CONNECTION_ID()")
victim = ac.fetchone()[0]
out = {}
def heavy():
    started = time.monotonic()
    try:
        ac.execute("SELECT count(*) FROM p a, p b, p c, p d WHERE a.order_id + b.order_id + c.order_id + d.order_id = -1")
        out["heavy"] = "finished"
    except pymysql.MySQLError as e:
        out["heavy"] = [e.args[0], e.args[1]]
    out["stopped_after"] = time.monotonic() - started
t = threading.Thread(target=heavy)
t.start()
time.sleep(1.5)
r = connect("reader", os.environ["READER"])
for name, sql in [("reader_kills_admin", "KILL QUERY %d" % victim), ("unknown", "KILL QUERY 999999")]:
    try:
        r.cursor().execute(sql)
        out[name] = "no error"
    except pymysql.MySQLError as e:
        out[name] = e.args[0]
rc = r.cursor()
rc.execute("SHOW PROCESSLIST")
out["reader_sees"] = sorted({row[1] for row in rc.fetchall()})
k = connect("admin", os.environ["ADMIN"])
kc = k.cursor()
kc.execute("SHOW FULL PROCESSLIST")
listed = {int(row[0]): row for row in kc.fetchall()}
out["victim_listed"] = [listed[victim][1], listed[victim][3], listed[victim][4], listed[victim][7][:24]]
kc.execute("KILL QUERY %d" % victim)
t.join(60)
out["alive"] = not t.is_alive()
ac.execute("SELECT 1")
out["after"] = ac.fetchone()[0]
print(json.dumps(out))
"#;

#[tokio::test]
async fn kill_query_stops_a_running_query_and_leaves_its_connection_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _) = sample_loaded(tmp.path()).await;
    let reader = server
        .make_token(json!({"name": "reader", "role": "reader"}))
        .await;
    let addr = server.mysql_addr().await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = python_json(
        KILL,
        &[
            ("HOST", host),
            ("PORT", port),
            ("ADMIN", ADMIN_TOKEN),
            ("READER", &reader),
        ],
    );
    assert_eq!(out["reader_kills_admin"], 1095, "{out}");
    // SHOW PROCESSLIST: the admin sees the running query; a reader only its own connections.
    assert_eq!(
        out["victim_listed"],
        json!(["admin", "s", "Query", "SELECT count(*) FROM p a"]),
        "{out}"
    );
    assert_eq!(out["reader_sees"], json!(["reader"]), "{out}");
    assert_eq!(out["unknown"], 1094, "{out}");
    assert_eq!(out["heavy"][0], 1317, "{out}");
    assert_eq!(out["alive"], true);
    assert_eq!(out["after"], 1, "the connection answers after the kill");
    // The query stopped: the server's CPU goes quiet.
    let before = server.cpu_seconds();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let busy = server.cpu_seconds() - before;
    assert!(busy < 1.0, "{busy} CPU seconds in 2 s after the kill");
}

const PREPARED: &str = r#"
import datetime, decimal, json, os
import mysql.connector

def plain(v):
    if isinstance(v, decimal.Decimal):
        return "decimal:" + str(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return type(v).__name__ + ":" + v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.decode()
    return v

c = mysql.connector.connect(host=os.environ["HOST"], port=int(os.environ["PORT"]), user="admin",
                            password=os.environ["ADMIN"], database="s", use_pure=True)
out = {"server": c.get_server_info()}
cur = c.cursor(prepared=True)
sql = ("SELECT order_id, amount, order_date, shipped_at, express, weight, customer FROM p "
       "WHERE order_id = ? OR (customer = ? AND quantity > ?) ORDER BY order_id")
cur.execute(sql, (1, "acme", 5))
out["rows"] = [[plain(v) for v in r] for r in cur.fetchall()]
cur.execute(sql, (2, "no one", 0))
out["again"] = [[plain(v) for v in r] for r in cur.fetchall()]
try:
    cur.execute("SELECT * FROM p WHERE order_id = ?", (1, 2))
    out["wrong_count"] = "no error"
except mysql.connector.Error as e:
    out["wrong_count"] = e.errno
# A string parameter is a value, never SQL: quotes and backslashes come back as sent.
tricky = "it's a \\ test' OR '1'='1"
cur.execute("SELECT ? AS s", (tricky,))
out["echo"] = [plain(cur.fetchone()[0]), tricky]
# The text protocol on the same connection.
plain_cur = c.cursor()
plain_cur.execute("SELECT count(*) FROM p WHERE customer = %s", ("acme",))
out["text_count"] = plain_cur.fetchone()[0]
print(json.dumps(out))
"#;

#[tokio::test]
async fn prepared_statements_take_parameters_and_answer_typed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = sample_loaded(tmp.path()).await;
    let addr = server.mysql_addr().await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = python_json(
        PREPARED,
        &[("HOST", host), ("PORT", port), ("ADMIN", ADMIN_TOKEN)],
    );
    assert!(
        out["server"].as_str().unwrap().starts_with("9.4.0-tarn"),
        "{out}"
    );
    let mut want = reference_rows("parquet", &data);
    want.sort_by_key(|r| r[0].as_i64());
    let expected = |pick: &dyn Fn(&Vec<Value>) -> bool| -> Value {
        want.iter()
            .filter(|r| pick(r))
            .map(|r| {
                let tag = |prefix: &str, v: &Value| match v.as_str() {
                    Some(s) => json!(format!("{prefix}:{s}")),
                    None => Value::Null,
                };
                json!([
                    r[0],
                    tag("decimal", &r[4]),
                    tag("date", &r[7]),
                    tag("datetime", &r[8]),
                    r[6].as_bool().map(i64::from),
                    r[5],
                    r[1]
                ])
            })
            .collect()
    };
    let acme =
        |r: &Vec<Value>| r[0] == 1 || (r[1] == "acme" && r[3].as_i64().is_some_and(|q| q > 5));
    assert_eq!(out["rows"], expected(&acme));
    assert!(out["rows"].as_array().unwrap().len() > 1, "{out}");
    assert_eq!(out["again"], expected(&|r: &Vec<Value>| r[0] == 2));
    assert_eq!(out["wrong_count"], 1210, "{out}");
    assert_eq!(out["echo"][0], out["echo"][1], "{out}");
    assert_eq!(
        out["text_count"],
        want.iter().filter(|r| r[1] == "acme").count()
    );
}

/// The `mysql` command-line client (Debian's), installed by scripts/test.sh.
fn mysql_cli(addr: &str, user: &str, password: &str, script: &str) -> (bool, String, String) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("mysql")
        .args(["-h", host, "-P", port, "-u", user, "--batch"])
        .arg(format!("-p{password}"))
        .args(["-e", script])
        .output()
        .unwrap_or_else(|e| {
            panic!("the mysql client is not installed ({e}): scripts/test.sh installs it")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn the_mysql_command_line_client_runs_a_heatwave_script() {
    if std::env::var("CI").is_err() && Command::new("mysql").arg("--version").output().is_err() {
        eprintln!(
            "skipped: no mysql client (scripts/test.sh installs it; CI=true makes this fail)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_sample("csv", &data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    let addr = server.mysql_addr().await;
    let script = format!(
        "CREATE DATABASE market_data; USE market_data; \
         CREATE EXTERNAL TABLE orders {COLUMNS} FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',') \
           FILES = (URI 'file://{}/'); \
         ALTER TABLE orders SECONDARY_LOAD; \
         SELECT @@hostname, DATABASE(), count(*) AS n, sum(amount) AS total FROM orders; \
         SELECT LOAD_STATUS FROM performance_schema.rpd_tables;",
        data.display()
    );
    let (ok, out, err) = mysql_cli(&addr, "admin", ADMIN_TOKEN, &script);
    assert!(ok, "{err}");
    let want = reference_rows("csv", &data);
    let total: f64 = want
        .iter()
        .filter_map(|r| r[4].as_str().and_then(|s| s.parse::<f64>().ok()))
        .sum();
    let lines: Vec<&str> = out.lines().collect();
    let select = lines
        .iter()
        .position(|l| l.starts_with("@@hostname"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(lines[select], "@@hostname\tDATABASE()\tn\ttotal", "{out}");
    assert_eq!(
        lines[select + 1],
        format!("tarn-test\tmarket_data\t{}\t{total:.2}", want.len()),
        "{out}"
    );
    assert!(out.contains("AVAIL_RPDGSTABSTATE"), "{out}");
    // A wrong token: refused, with MySQL's access-denied error.
    let (ok, _, err) = mysql_cli(&addr, "admin", "tarn_wrong", "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains("ERROR 1045") || err.contains("ERROR 1698"),
        "{err}"
    );
}

/// A server under `dir` with `s.big` loaded: 1 M rows of `id` (0..n) and `v` (id % 997),
/// written by pyarrow.
pub async fn million_rows_loaded(dir: &std::path::Path) -> TestServer {
    let data = dir.join("big");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("big.parquet");
    let made = Command::new(python())
        .arg("-c")
        .arg(
            "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
             n = 1_000_000\n\
             pq.write_table(pa.table({'id': pa.array(range(n), pa.int64()), \
             'v': pa.array([i % 997 for i in range(n)], pa.int32())}), sys.argv[1])",
        )
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let server = TestServer::spawn(&dir.join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE s").await;
    server
        .create_and_load(
            "s.big",
            &format!(
                "FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}')",
                file.display()
            ),
        )
        .await;
    server
}

#[tokio::test]
async fn a_million_row_result_streams_through_an_unbuffered_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let server = million_rows_loaded(tmp.path()).await;
    let addr = server.mysql_addr().await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = python_json(
        r#"
import json, os, pymysql, pymysql.cursors
c = pymysql.connect(host=os.environ["HOST"], port=int(os.environ["PORT"]), user="admin",
                    password=os.environ["ADMIN"], cursorclass=pymysql.cursors.SSCursor)
cur = c.cursor()
cur.execute("SELECT id, v FROM s.big")
rows = ids = vs = 0
for i, v in cur:
    rows += 1; ids += i; vs += v
print(json.dumps({"rows": rows, "ids": ids, "vs": vs}))
"#,
        &[("HOST", host), ("PORT", port), ("ADMIN", ADMIN_TOKEN)],
    );
    let n: u64 = 1_000_000;
    let vs: u64 = (0..n).map(|i| i % 997).sum();
    assert_eq!(out, json!({"rows": n, "ids": n * (n - 1) / 2, "vs": vs}));
}
