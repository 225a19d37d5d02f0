//! `TestServer`: the real `tarn` process on an ephemeral port, with its own data dir, and a small
//! HTTP client for it. Also the paths of the samples and the independent reference reader.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn samples() -> PathBuf {
    repo_root().join("samples/data")
}

/// An error answer: status, `error.code`, `error.message`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// The admin token every test server runs with (`TARN_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A client that sends the test servers' admin token.
pub fn client() -> reqwest::Client {
    client_with(ADMIN_TOKEN)
}

/// A door's address once the server logged it.
async fn door_addr(door: &Arc<Mutex<Option<String>>>, what: &str) -> String {
    wait_until(
        || {
            let d = door.clone();
            async move { d.lock().unwrap().is_some() }
        },
        what,
    )
    .await;
    door.lock().unwrap().clone().unwrap()
}

pub struct TestServer {
    pub addr: String,
    /// Where the MySQL and the Flight SQL doors listen, once the server said so.
    mysql: Arc<Mutex<Option<String>>>,
    flight: Arc<Mutex<Option<String>>>,
    pub data_dir: PathBuf,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    http: reqwest::Client,
    /// `serve`, or `worker` for a cluster's worker.
    command: &'static str,
    /// The address it was asked to listen on (port 0: any).
    listen: String,
}

impl TestServer {
    /// Starts a server whose tables may read anything under `allowed` (a directory).
    pub async fn spawn(data_dir: &Path, allowed: &Path, extra: &[&str]) -> Self {
        let allowed = format!("file://{}/", allowed.display());
        let args: Vec<&str> = ["--allowed-locations", allowed.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        Self::spawn_with_env(data_dir, &args, &[]).await
    }

    /// Starts a server with exactly these arguments (after `serve`) and extra environment variables.
    pub async fn spawn_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let args = args.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start("serve", "127.0.0.1:0", data_dir.to_path_buf(), args, env).await
    }

    /// Starts a cluster's worker (`tarn worker`) whose parts may read anything under `allowed`;
    /// its coordinator is a server started with `--workers` and the same `token`.
    pub async fn spawn_worker(
        data_dir: &Path,
        allowed: &Path,
        token: &str,
        extra: &[&str],
    ) -> Self {
        let allowed = format!("file://{}/", allowed.display());
        let args = [
            "--allowed-locations",
            allowed.as_str(),
            "--cluster-token",
            token,
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(str::to_string)
        .collect();
        Self::start(
            "worker",
            "127.0.0.1:0",
            data_dir.to_path_buf(),
            args,
            Vec::new(),
        )
        .await
    }

    async fn start(
        command: &'static str,
        listen: &str,
        data_dir: PathBuf,
        extra_args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
            .args([command, "--listen", listen, "--instance-name", "tarn-test"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&extra_args)
            .env("TARN_LOG", "info")
            .env("TARN_ADMIN_TOKEN", ADMIN_TOKEN)
            // Any free port for the MySQL door (a test may set its own).
            .env("TARN_MYSQL_LISTEN", "127.0.0.1:0")
            .env("TARN_FLIGHT_LISTEN", "127.0.0.1:0")
            .env_remove("TARN_CONFIG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tarn");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        let mysql = Arc::new(Mutex::new(None));
        let flight = Arc::new(Mutex::new(None));
        let (mysql2, flight2) = (mysql.clone(), flight.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // "listening on http://127.0.0.1:N" (or https://): the address after the scheme.
                if let Some(i) = line.find("listening on http") {
                    let url = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default();
                    let _ = tx.send(
                        url.split_once("://")
                            .map(|(_, a)| a)
                            .unwrap_or(url)
                            .to_string(),
                    );
                }
                for (said, door) in [
                    ("MySQL protocol listening on ", &mysql2),
                    ("Arrow Flight SQL listening on ", &flight2),
                ] {
                    if let Some(i) = line.find(said) {
                        let addr = line[i + said.len()..]
                            .split_whitespace()
                            .next()
                            .unwrap_or_default();
                        let addr = addr.split_once("://").map_or(addr, |(_, a)| a);
                        *door.lock().unwrap() = Some(addr.to_string());
                    }
                }
                log2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "tarn did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            addr,
            mysql,
            flight,
            data_dir,
            child,
            log,
            extra_args,
            env,
            http: client(),
            command,
            listen: listen.to_string(),
        }
    }

    /// SIGKILL, then start again on the same data dir.
    pub async fn kill_and_restart(mut self) -> Self {
        self.kill();
        let (data_dir, extra_args, env) = (
            self.data_dir.clone(),
            self.extra_args.clone(),
            self.env.clone(),
        );
        let listen = self.listen.clone();
        Self::start(self.command, &listen, data_dir, extra_args, env).await
    }

    /// Starts again (after [`Self::kill`]) on the same address and data dir.
    pub async fn restart_on_same_port(mut self) -> Self {
        self.listen = self.addr.clone();
        self.kill_and_restart().await
    }

    /// SIGKILL, then start again on the same data dir with `env` added to the environment.
    pub async fn kill_and_restart_with(mut self, env: &[(&str, &str)]) -> Self {
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.kill_and_restart().await
    }

    /// Waits until `/readyz` says ready.
    pub async fn wait_ready(&self) {
        wait_until(
            || async {
                let r = self.http.get(self.url("/readyz")).send().await.unwrap();
                r.status().as_u16() == 200
            },
            "the server to be ready",
        )
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The MySQL door's address (`127.0.0.1:port`).
    pub async fn mysql_addr(&self) -> String {
        door_addr(&self.mysql, "the MySQL door to listen").await
    }

    /// The Flight SQL door's address (`127.0.0.1:port`).
    /// Runs a Python `script` against this server's MySQL door: it starts with `json`, `os` and
    /// `pymysql` imported and `connect(**kw)` logging in as admin; `env` is handed on. Answers
    /// what it prints, one JSON document.
    pub async fn pymysql_json(&self, script: &str, env: &[(&str, &str)]) -> Value {
        let addr = self.mysql_addr().await;
        let (host, port) = addr.rsplit_once(':').unwrap();
        let prelude = r#"import json, os, pymysql
def connect(**kw):
    return pymysql.connect(host=os.environ["HOST"], port=int(os.environ["PORT"]), user="admin",
                           password=os.environ["ADMIN"], **kw)
"#;
        let env: Vec<(&str, &str)> = [("HOST", host), ("PORT", port), ("ADMIN", ADMIN_TOKEN)]
            .into_iter()
            .chain(env.iter().copied())
            .collect();
        python_json(&format!("{prelude}{script}"), &env)
    }

    pub async fn flight_addr(&self) -> String {
        door_addr(&self.flight, "the Flight SQL door to listen").await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the server process has used so far (user and system).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which is in parentheses): utime is the 14th field.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_sql(&self, sql: &str, accept: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/sql"))
            .header("accept", accept)
            .body(sql.to_string())
            .send()
            .await
            .expect("request")
    }

    /// Runs one statement; the JSON answer, or the error answer.
    pub async fn sql(&self, sql: &str) -> Result<Value, ApiError> {
        let resp = self.post_sql(sql, "application/json").await;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("JSON answer");
        if status == 200 {
            Ok(v)
        } else {
            Err(ApiError {
                status,
                code: v["error"]["code"].as_str().unwrap_or_default().to_string(),
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
        }
    }

    /// Runs a statement that must succeed.
    pub async fn ok(&self, sql: &str) -> Value {
        match self.sql(sql).await {
            Ok(v) => v,
            Err(e) => panic!(
                "{sql}\nfailed: {e:?}\nlog:\n{}",
                self.log.lock().unwrap().join("\n")
            ),
        }
    }

    /// Runs a statement that must fail, and fail within `limit` (a fast failure, not a time-out).
    pub async fn err_within(&self, sql: &str, limit: std::time::Duration) -> ApiError {
        let started = Instant::now();
        let e = self.err(sql).await;
        assert!(
            started.elapsed() < limit,
            "{sql} failed only after {:?}",
            started.elapsed()
        );
        e
    }

    /// Runs a statement that must fail.
    pub async fn err(&self, sql: &str) -> ApiError {
        match self.sql(sql).await {
            Ok(v) => panic!("{sql}\nsucceeded unexpectedly: {v}"),
            Err(e) => e,
        }
    }

    pub async fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let v = self.ok(sql).await;
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().clone())
            .collect()
    }

    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The `status` object of `GET /v1/tables/{db}/{table}` (load status, progress, last error...).
    pub async fn table_status(&self, db: &str, table: &str) -> Value {
        self.get(&format!("/v1/tables/{db}/{table}")).await["status"]["status"].clone()
    }

    /// The table still serves its loaded version, marked stale, and its last error names `cause`.
    pub async fn assert_stale(&self, db: &str, table: &str, cause: &str) {
        let st = self.table_status(db, table).await;
        assert_eq!(st["load_status"], "STALE_RPDGSTABSTATE", "{st}");
        let err = st["last_error"].as_str().unwrap_or_default();
        assert!(err.contains(cause), "last error should name {cause}: {st}");
    }

    /// POSTs to `path` (no body): the status and the JSON answer.
    /// Creates `table` (`db.t`) as `CREATE EXTERNAL TABLE table definition` and loads it.
    pub async fn create_and_load(&self, table: &str, definition: &str) {
        self.ok(&format!("CREATE EXTERNAL TABLE {table} {definition}"))
            .await;
        self.ok(&format!("ALTER TABLE {table} SECONDARY_LOAD"))
            .await;
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let resp = self.http.post(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A token made through `POST /v1/tokens` by `admin` (a token allowed to make them) from
    /// `body` (name, role, databases, expires_in): the new token's secret.
    pub async fn make_token_as(&self, admin: &str, body: Value) -> String {
        let r = client_with(admin)
            .post(self.url("/v1/tokens"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "making the token {body}");
        let made: Value = r.json().await.unwrap();
        made["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {made}"))
            .to_string()
    }

    /// A token made by the admin token from `body`: see [`Self::make_token_as`].
    pub async fn make_token(&self, body: Value) -> String {
        self.make_token_as(ADMIN_TOKEN, body).await
    }

    /// `GET path` with `token` instead of the admin token: the status and the JSON answer.
    pub async fn get_with(&self, path: &str, token: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The venv python with the independent readers (set up by scripts/venv.sh).
/// Runs a Python `script` (the venv's: PyMySQL, ADBC, pyarrow) with `env` set; answers what it
/// prints, one JSON document.
pub fn python_json(script: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("TARN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tarn-venv/bin/python")
        });
    assert!(
        p.exists(),
        "{} not found: run scripts/venv.sh (the README's test command does) or set TARN_PYTHON",
        p.display()
    );
    p
}

/// The rows an independent reader finds in the sample files of `format` at `path`.
pub fn reference_rows(format: &str, path: &Path) -> Vec<Vec<Value>> {
    let out = Command::new(python())
        .arg(repo_root().join("tests/reference.py"))
        .arg(format)
        .arg(path)
        .output()
        .expect("run reference reader");
    assert!(
        out.status.success(),
        "reference reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

/// Row-by-row, value-by-value equality; floats within a relative 1e-9.
pub fn assert_same_rows(what: &str, got: &[Vec<Value>], want: &[Vec<Value>]) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {i} width");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            let same = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
                    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                }
                _ => a == b,
            };
            assert!(
                same,
                "{what}: row {i} column {j}: tarn {a} vs reference {b}\n tarn row: {g:?}\n ref row:  {w:?}"
            );
        }
    }
}

/// Copies a sample directory (or file) to `dest`.
pub fn copy_sample(rel: &str, dest: &Path) {
    let src = samples().join(rel);
    if src.is_dir() {
        std::fs::create_dir_all(dest).unwrap();
        for e in walk(&src) {
            let to = dest.join(e.strip_prefix(&src).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&e, &to).unwrap();
        }
    } else {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&src, dest).unwrap();
    }
}

/// Every file below `dir`, at any depth.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

pub async fn wait_until<F: std::future::Future<Output = bool>>(
    mut f: impl FnMut() -> F,
    what: &str,
) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const COLUMNS: &str = "(order_id INT NOT NULL, customer VARCHAR(32), product LONGTEXT, quantity INT, \
    amount DECIMAL(10,2), weight DOUBLE, express BOOLEAN, order_date DATE, shipped_at DATETIME)";

pub const SELECT_ALL: &str =
    "order_id, customer, product, quantity, amount, weight, express, order_date, shipped_at";

/// Writes files of rows `(id, name, amount[, note])` with `tests/write.py` (pyarrow, fastavro):
/// each spec is `NAME:START:END[:note]`.
pub fn write_files(format: &str, dir: &Path, specs: &[&str]) {
    run_writer(&[&["files", format, dir.to_str().unwrap()], specs].concat());
}

/// Commits to the Delta table at `path` with deltalake (`tests/write.py delta`), answering the
/// table's version, data files, row count and sum of ids as deltalake reads them afterwards.
pub fn delta_op(path: &Path, op: &[&str]) -> Value {
    let out = run_writer(&[&["delta", path.to_str().unwrap()], op].concat());
    serde_json::from_slice(&out).unwrap()
}

/// The data file names in a [`delta_op`] answer.
pub fn delta_files(state: &Value) -> Vec<String> {
    state["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn run_writer(args: &[&str]) -> Vec<u8> {
    let out = Command::new(python())
        .arg(repo_root().join("tests/write.py"))
        .args(args)
        .output()
        .expect("run tests/write.py");
    assert!(
        out.status.success(),
        "tests/write.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
