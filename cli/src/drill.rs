//! `tarn drill failover`: a failover rehearsal against live instances.
//!
//! 1. Checks that every instance answers the same for every loaded table (a fingerprint: row
//!    count, and sums, minimums and maximums of the columns).
//! 2. Keeps querying every table on every instance for the whole drill, counting failures.
//! 3. Takes the region's stores away: by default it cuts every instance off from the region
//!    (`POST /v1/regions/{region}/cut`); `--cut-command` runs a command instead (stopping the
//!    store itself, say).
//! 4. Measures the recovery time (from the cut until every table that read the region has been
//!    refreshed from another copy, on every instance) and the data lag (how long each such table
//!    went without a successful refresh, i.e. how far behind the served data could be).
//! 5. Restores the region (`.../restore`, or `--restore-command`), waits for failback (every table
//!    reads its own region's copy again) and checks again that all instances answer the same.
//!
//! Prints the report as a table, writes it as JSON with `--json`, and exits non-zero when a check
//! fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// A running instance's URL (repeat for each region's instance).
    #[arg(long = "instance", required = true)]
    pub instances: Vec<String>,
    /// The token to send (an admin's: the drill cuts and restores regions) [default: the admin
    /// token in <data_dir>/admin.token, if there].
    #[arg(long, env = "TARN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The region to take away.
    #[arg(long)]
    pub region: String,
    /// A shell command that takes the region's store away (instead of cutting the instances
    /// off from it through their admin endpoint).
    #[arg(long)]
    pub cut_command: Option<String>,
    /// A shell command that brings the region's store back (with --cut-command).
    #[arg(long)]
    pub restore_command: Option<String>,
    /// The longest recovery time that passes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_recovery: Duration,
    /// How long to wait for recovery, failback, or instances to agree.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Write the report as JSON to this file (`-` for standard output).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct DrillReport {
    pub region: String,
    pub instances: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub tables: Vec<String>,
    /// Tables that read the region on some instance before it was taken away.
    pub affected: Vec<String>,
    pub checks: Vec<Check>,
    pub recovery_seconds: Option<f64>,
    pub failback_seconds: Option<f64>,
    /// The longest time a table went without a successful refresh across the failover.
    pub data_lag_seconds: Option<f64>,
    pub queries: u64,
    pub failed_queries: u64,
    pub query_errors: Vec<String>,
    pub per_table: Vec<TableFigures>,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct TableFigures {
    pub instance: String,
    pub table: String,
    pub source_before: Option<String>,
    pub source_during: Option<String>,
    pub source_after: Option<String>,
    pub version_before: Option<u64>,
    pub version_after_failover: Option<u64>,
    pub recovery_seconds: Option<f64>,
    pub lag_seconds: Option<f64>,
}

struct Client {
    http: reqwest::Client,
}

impl Client {
    /// Sends `req` (to `what`) and answers its JSON body; an error status becomes an error
    /// naming `what` and the service's message.
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
        let r = req
            .send()
            .await
            .map_err(|e| format!("{what}: {}", crate::http::describe(&e)))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "{what}: {status}: {}",
                v["error"]["message"].as_str().unwrap_or("no message")
            ));
        }
        Ok(v)
    }

    async fn get(&self, url: &str) -> Result<Value, String> {
        self.send(self.http.get(url), url).await
    }

    async fn post(&self, url: &str) -> Result<Value, String> {
        self.send(self.http.post(url), url).await
    }

    async fn sql(&self, base: &str, sql: &str) -> Result<Value, String> {
        let req = self
            .http
            .post(format!("{base}/v1/sql"))
            .json(&serde_json::json!({ "sql": sql }));
        self.send(req, &format!("{base}: {sql}")).await
    }
}

/// A table's answer to the fingerprint query, with floats kept apart (compared with tolerance).
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint(Vec<Value>);

impl Fingerprint {
    fn matches(&self, other: &Fingerprint) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| match (a, b) {
                (Value::Number(x), Value::Number(y)) => {
                    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                }
                _ => a == b,
            })
    }
}

async fn fingerprint(c: &Client, base: &str, table: &str) -> Result<Fingerprint, String> {
    let cols = c
        .sql(base, &format!("SELECT * FROM {table} LIMIT 0"))
        .await?;
    let mut exprs = vec!["COUNT(*)".to_string()];
    for col in cols["columns"].as_array().into_iter().flatten() {
        let name = col["name"]
            .as_str()
            .unwrap_or_default()
            .replace('"', "\"\"");
        let ty = col["type"].as_str().unwrap_or_default();
        let numeric = ["Int", "UInt", "Float", "Decimal"]
            .iter()
            .any(|p| ty.starts_with(p));
        if numeric {
            exprs.push(format!("SUM(CAST(\"{name}\" AS DOUBLE))"));
        }
        if !ty.starts_with("List") && !ty.starts_with("Struct") && !ty.starts_with("Map") {
            exprs.push(format!("MIN(\"{name}\")"));
            exprs.push(format!("MAX(\"{name}\")"));
        }
    }
    let v = c
        .sql(base, &format!("SELECT {} FROM {table}", exprs.join(", ")))
        .await?;
    Ok(Fingerprint(
        v["rows"][0].as_array().cloned().unwrap_or_default(),
    ))
}

/// Waits until every instance gives the same fingerprint for every table; the tables that
/// still differ at the deadline, with their answers.
async fn converge(
    c: &Client,
    instances: &[String],
    tables: &[String],
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut differ = Vec::new();
        for t in tables {
            let mut prints = Vec::new();
            for i in instances {
                prints.push(fingerprint(c, i, t).await);
            }
            let same = match &prints[0] {
                Ok(first) => prints
                    .iter()
                    .all(|p| p.as_ref().is_ok_and(|p| p.matches(first))),
                Err(_) => false,
            };
            if !same {
                let shown: Vec<String> = instances
                    .iter()
                    .zip(&prints)
                    .map(|(i, p)| match p {
                        Ok(f) => format!("{i}: {}", Value::Array(f.0.clone())),
                        Err(e) => format!("{i}: {e}"),
                    })
                    .collect();
                differ.push(format!("{t} ({})", shown.join("; ")));
            }
        }
        if differ.is_empty() || Instant::now() > deadline {
            return differ;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Per affected table: seconds from the cut, source region, version, data lag in seconds.
type Recovered = (f64, Option<String>, Option<u64>, Option<f64>);

/// The check that instances agree: passed when no table differs (`differ` lists those that do).
fn agreement(name: &str, differ: &[String], agreed: String) -> Check {
    Check {
        name: name.into(),
        passed: differ.is_empty(),
        detail: if differ.is_empty() {
            agreed
        } else {
            differ.join(", ")
        },
    }
}

/// Per instance: table -> (source region, version, last success).
type Sources = BTreeMap<String, (Option<String>, Option<u64>, Option<DateTime<Utc>>)>;

/// One instance's `GET /v1/regions`.
async fn regions(c: &Client, base: &str) -> Result<Value, String> {
    c.get(&format!("{base}/v1/regions")).await
}

async fn sources(c: &Client, base: &str) -> Result<Sources, String> {
    Ok(sources_of(&regions(c, base).await?))
}

fn sources_of(v: &Value) -> Sources {
    v["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["table"].as_str().unwrap_or_default().to_string(),
                (
                    t["source_region"].as_str().map(str::to_string),
                    t["version"].as_u64(),
                    t["last_success"]
                        .as_str()
                        .and_then(|s| s.parse::<DateTime<Utc>>().ok()),
                ),
            )
        })
        .collect()
}

/// `region`'s state (`healthy`, `failed_over`, `cut`) in a `GET /v1/regions` answer.
fn region_state_of<'a>(v: &'a Value, region: &str) -> &'a str {
    v["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == region)
        .and_then(|r| r["state"].as_str())
        .unwrap_or("unknown")
}

async fn run_command(cmd: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .await
        .map_err(|e| format!("{cmd}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}` exited with {status}"))
    }
}

/// Queries every table on every instance until stopped, counting failures.
struct Background {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    fn start(c: Arc<Client>, instances: Vec<String>, tables: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (queries, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let task = {
            let (stop, queries, failed, errors) = (
                stop.clone(),
                queries.clone(),
                failed.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    for i in &instances {
                        for t in &tables {
                            queries.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = c.sql(i, &format!("SELECT COUNT(*) FROM {t}")).await {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let mut errs = errors.lock().unwrap_or_else(|e| e.into_inner());
                                if errs.len() < 20 {
                                    errs.push(e);
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Self {
            stop,
            queries,
            failed,
            errors,
            task,
        }
    }

    /// Stops; answers the queries run, those failed, and the first errors.
    async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (
            self.queries.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// One drill: the instances, the region taken away, and what was seen before it was.
struct Drill {
    c: Arc<Client>,
    args: FailoverArgs,
    instances: Vec<String>,
    region: String,
    tables: Vec<String>,
    /// Per instance, what each table read before the drill.
    before: Vec<Sources>,
    /// (instance, table) pairs that read the region before the drill.
    affected: Vec<(usize, String)>,
    checks: Vec<Check>,
}

impl Drill {
    /// What each instance serves, and from where.
    async fn survey(args: FailoverArgs) -> Result<Self, String> {
        let c = Arc::new(Client {
            http: crate::http::client(
                crate::http::token(args.token.clone(), None).as_deref(),
                Some(Duration::from_secs(30)),
            )?,
        });
        let instances = args
            .instances
            .iter()
            .map(|u| crate::http::base_url(u, "--instance"))
            .collect::<Result<Vec<_>, _>>()?;
        let region = args.region.clone();
        let mut tables = BTreeSet::new();
        let mut before = Vec::new();
        for i in &instances {
            let s = sources(&c, i).await?;
            tables.extend(
                s.iter()
                    .filter(|(_, (_, v, _))| v.is_some())
                    .map(|(t, _)| t.clone()),
            );
            before.push(s);
        }
        let tables: Vec<String> = tables.into_iter().collect();
        if tables.is_empty() {
            return Err("no loaded tables on the instances: nothing to drill".into());
        }
        let affected: Vec<(usize, String)> = before
            .iter()
            .enumerate()
            .flat_map(|(n, s)| {
                s.iter()
                    .filter(|(_, (r, v, _))| v.is_some() && r.as_deref() == Some(region.as_str()))
                    .map(move |(t, _)| (n, t.clone()))
            })
            .collect();
        let mut drill = Self {
            c,
            args,
            instances,
            region,
            tables,
            before,
            affected,
            checks: Vec::new(),
        };
        let differ = drill
            .converge(drill.args.timeout.min(Duration::from_secs(30)))
            .await;
        let agreed = format!(
            "{} tables on {} instances",
            drill.tables.len(),
            drill.instances.len()
        );
        drill
            .checks
            .push(agreement("answers agree before", &differ, agreed));
        drill.checks.push(Check {
            name: "region in use".into(),
            passed: !drill.affected.is_empty(),
            detail: format!(
                "{} table(s) read region '{}' before the drill",
                drill.affected.len(),
                drill.region
            ),
        });
        Ok(drill)
    }

    async fn converge(&self, timeout: Duration) -> Vec<String> {
        converge(&self.c, &self.instances, &self.tables, timeout).await
    }

    /// Cuts every instance off from the region (or runs `--cut-command`).
    async fn take_away(&self) -> Result<(), String> {
        eprintln!("drill: taking region '{}' away", self.region);
        match &self.args.cut_command {
            Some(cmd) => run_command(cmd).await,
            None => self.on_every_instance("cut").await,
        }
    }

    /// `POST /v1/regions/{region}/{action}` to every instance.
    async fn on_every_instance(&self, action: &str) -> Result<(), String> {
        for i in &self.instances {
            self.c
                .post(&format!("{i}/v1/regions/{}/{action}", self.region))
                .await?;
        }
        Ok(())
    }

    /// Waits until every affected table was refreshed from another copy after `cut_wall`;
    /// records the recovery check and answers what each table recovered to.
    async fn await_recovery(
        &mut self,
        cut_at: Instant,
        cut_wall: DateTime<Utc>,
    ) -> (
        BTreeMap<(usize, String), Recovered>,
        Option<f64>,
        Option<f64>,
    ) {
        let mut recovered: BTreeMap<(usize, String), Recovered> = BTreeMap::new();
        let deadline = cut_at + self.args.timeout;
        while recovered.len() < self.affected.len() && Instant::now() < deadline {
            for (n, i) in self.instances.iter().enumerate() {
                let Ok(now) = sources(&self.c, i).await else {
                    continue;
                };
                for (an, t) in &self.affected {
                    if *an != n || recovered.contains_key(&(n, t.clone())) {
                        continue;
                    }
                    if let Some((src, version, Some(ok))) = now.get(t)
                        && src.as_deref() != Some(self.region.as_str())
                        && *ok > cut_wall
                    {
                        let lag = self.before[n]
                            .get(t)
                            .and_then(|b| b.2)
                            .map(|b| (*ok - b).num_milliseconds() as f64 / 1000.0);
                        recovered.insert(
                            (n, t.clone()),
                            (cut_at.elapsed().as_secs_f64(), src.clone(), *version, lag),
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let recovery = (recovered.len() == self.affected.len() && !self.affected.is_empty())
            .then(|| recovered.values().map(|r| r.0).fold(0.0f64, f64::max));
        let data_lag = recovered
            .values()
            .filter_map(|r| r.3)
            .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
        self.checks.push(Check {
            name: "recovered from replicas".into(),
            passed: recovery.is_some_and(|r| r <= self.args.max_recovery.as_secs_f64()),
            detail: match recovery {
                Some(r) => format!(
                    "{r:.2} s (limit {:.2} s)",
                    self.args.max_recovery.as_secs_f64()
                ),
                None => format!(
                    "{} of {} table(s) refreshed from another copy within {:?}",
                    recovered.len(),
                    self.affected.len(),
                    self.args.timeout
                ),
            },
        });
        (recovered, recovery, data_lag)
    }

    /// Reconnects every instance to the region (or runs `--restore-command`).
    async fn restore(&self) -> Result<(), String> {
        eprintln!("drill: restoring region '{}'", self.region);
        match (&self.args.cut_command, &self.args.restore_command) {
            (Some(_), Some(cmd)) => run_command(cmd).await,
            (Some(_), None) => Ok(()),
            (None, _) => self.on_every_instance("restore").await,
        }
    }

    /// Waits until the region is healthy on every instance and every affected table reads it
    /// again; records the failback check and answers the source each table went back to.
    async fn await_failback(
        &mut self,
        restore_at: Instant,
        restore_wall: DateTime<Utc>,
    ) -> (BTreeMap<(usize, String), Option<String>>, Option<f64>) {
        let deadline = restore_at + self.args.timeout;
        let mut back: BTreeMap<(usize, String), Option<String>> = BTreeMap::new();
        let mut healthy = false;
        while Instant::now() < deadline {
            healthy = true;
            for (n, i) in self.instances.iter().enumerate() {
                let Ok(v) = regions(&self.c, i).await else {
                    healthy = false;
                    continue;
                };
                healthy &= region_state_of(&v, &self.region) == "healthy";
                let now = sources_of(&v);
                for (an, t) in &self.affected {
                    if *an == n
                        && let Some((src, _, Some(ok))) = now.get(t)
                        && src.as_deref() == Some(self.region.as_str())
                        && *ok > restore_wall
                    {
                        back.insert((n, t.clone()), src.clone());
                    }
                }
            }
            if healthy && back.len() == self.affected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let failback = (healthy && back.len() == self.affected.len())
            .then(|| restore_at.elapsed().as_secs_f64());
        self.checks.push(Check {
            name: "failed back".into(),
            passed: failback.is_some(),
            detail: match failback {
                Some(f) => format!("{f:.2} s after the region was restored"),
                None => format!(
                    "region healthy on every instance: {healthy}; {} of {} table(s) read it again",
                    back.len(),
                    self.affected.len()
                ),
            },
        });
        (back, failback)
    }

    /// Each affected table's figures.
    fn per_table(
        &self,
        recovered: &BTreeMap<(usize, String), Recovered>,
        back: &BTreeMap<(usize, String), Option<String>>,
    ) -> Vec<TableFigures> {
        self.affected
            .iter()
            .map(|(n, t)| {
                let r = recovered.get(&(*n, t.clone()));
                TableFigures {
                    instance: self.instances[*n].clone(),
                    table: t.clone(),
                    source_before: self.before[*n].get(t).and_then(|b| b.0.clone()),
                    source_during: r.and_then(|r| r.1.clone()),
                    source_after: back.get(&(*n, t.clone())).cloned().flatten(),
                    version_before: self.before[*n].get(t).and_then(|b| b.1),
                    version_after_failover: r.and_then(|r| r.2),
                    recovery_seconds: r.map(|r| r.0),
                    lag_seconds: r.and_then(|r| r.3),
                }
            })
            .collect()
    }
}

pub async fn failover(args: FailoverArgs) -> Result<bool, String> {
    let started_at = Utc::now();
    let mut drill = Drill::survey(args).await?;
    let queries = Background::start(
        drill.c.clone(),
        drill.instances.clone(),
        drill.tables.clone(),
    );

    let (cut_at, cut_wall) = (Instant::now(), Utc::now());
    drill.take_away().await?;
    let (recovered, recovery, data_lag) = drill.await_recovery(cut_at, cut_wall).await;
    let during = drill.converge(Duration::from_secs(10)).await;
    let agreed = "same fingerprints on every instance".to_string();
    drill.checks.push(agreement(
        "answers agree during failover",
        &during,
        agreed.clone(),
    ));

    let (restore_at, restore_wall) = (Instant::now(), Utc::now());
    drill.restore().await?;
    let (back, failback) = drill.await_failback(restore_at, restore_wall).await;
    let after = drill
        .converge(drill.args.timeout.min(Duration::from_secs(30)))
        .await;
    drill
        .checks
        .push(agreement("answers agree after", &after, agreed));
    let (queries, failed_queries, query_errors) = queries.stop().await;
    drill.checks.push(Check {
        name: "no failed queries".into(),
        passed: failed_queries == 0,
        detail: format!("{failed_queries} of {queries} queries failed"),
    });

    let per_table = drill.per_table(&recovered, &back);
    let passed = drill.checks.iter().all(|c| c.passed);
    let json = drill.args.json.clone();
    let report = DrillReport {
        region: drill.region,
        instances: drill.instances,
        started_at,
        tables: drill.tables,
        affected: drill
            .affected
            .iter()
            .map(|(_, t)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        checks: drill.checks,
        recovery_seconds: recovery,
        failback_seconds: failback,
        data_lag_seconds: data_lag,
        queries,
        failed_queries,
        query_errors,
        per_table,
        passed,
    };
    print_report(&report, json.as_deref())?;
    Ok(passed)
}

/// Prints the report, and writes it as JSON to `json` (`-`: after it on standard output).
fn print_report(report: &DrillReport, json: Option<&std::path::Path>) -> Result<(), String> {
    let mut text = render(report);
    if let Some(path) = json {
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        if path.as_os_str() == "-" {
            text = format!("{text}{json}\n");
        } else {
            std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())
}

/// The report as people read it: a summary line and Markdown tables.
fn render(r: &DrillReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let secs = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.2} s"));
    let _ = writeln!(
        out,
        "Failover drill of region '{}' ({})",
        r.region,
        r.started_at.to_rfc3339()
    );
    let _ = writeln!(out, "instances: {}", r.instances.join(", "));
    let _ = writeln!(
        out,
        "recovery time: {}   data lag: {}   failback: {}   queries: {} ({} failed)",
        secs(r.recovery_seconds),
        secs(r.data_lag_seconds),
        secs(r.failback_seconds),
        r.queries,
        r.failed_queries
    );
    let _ = writeln!(out);
    let width = r
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "| {:width$} | result | detail", "check");
    let _ = writeln!(out, "|-{}-|--------|-------", "-".repeat(width));
    for c in &r.checks {
        let _ = writeln!(
            out,
            "| {:width$} | {:6} | {}",
            c.name,
            if c.passed { "pass" } else { "FAIL" },
            c.detail
        );
    }
    if !r.per_table.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| instance | table | source before -> during -> after | version | recovery | lag |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for t in &r.per_table {
            let _ = writeln!(
                out,
                "| {} | {} | {} -> {} -> {} | {} -> {} | {} | {} |",
                t.instance,
                t.table,
                t.source_before.as_deref().unwrap_or("-"),
                t.source_during.as_deref().unwrap_or("-"),
                t.source_after.as_deref().unwrap_or("-"),
                t.version_before.map_or("-".into(), |v| v.to_string()),
                t.version_after_failover
                    .map_or("-".into(), |v| v.to_string()),
                secs(t.recovery_seconds),
                secs(t.lag_seconds)
            );
        }
    }
    for e in &r.query_errors {
        let _ = writeln!(out, "query error: {e}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "drill {}", if r.passed { "PASSED" } else { "FAILED" });
    out
}
