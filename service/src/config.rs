//! Configuration: `tarn.toml` (by `--config` or `TARN_CONFIG`), overridden by `TARN_*` variables,
//! overridden by flags. clap reads flags and variables; the file fills in what neither gave.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tarn_connectors::StoreConfig;
use tarn_connectors::store::RegionConfig;

use crate::error::{Result, ServiceError};
use crate::regions::{FailoverSettings, RegionsConfig, Replica};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `tarn serve` flags; each also from its `TARN_*` variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "TARN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TARN_LISTEN")]
    pub listen: Option<String>,
    /// Where the catalog and (by default) the snapshots live [default: ./tarn-data].
    #[arg(long, env = "TARN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// What `SELECT @@hostname` answers [default: the machine's host name].
    #[arg(long, env = "TARN_INSTANCE_NAME")]
    pub instance_name: Option<String>,
    /// Memory for loaded tables and queries, e.g. `16GiB`, or `none`; a load that would exceed it
    /// is refused [default: 75% of the machine's (or the cgroup's) memory].
    #[arg(long, env = "TARN_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Shards per loaded table; 0 means one per core [default: 0].
    #[arg(long, env = "TARN_SHARDS")]
    pub shards: Option<usize>,
    /// Optimized plans of queries kept for when the same text runs again; 0 keeps none [default: 256].
    #[arg(long, env = "TARN_PLAN_CACHE")]
    pub plan_cache: Option<usize>,
    /// Locations tables may name (comma-separated prefixes) [default: file:// under the working directory].
    #[arg(long, env = "TARN_ALLOWED_LOCATIONS", value_delimiter = ',')]
    pub allowed_locations: Option<Vec<String>>,
    /// The region this instance runs in.
    #[arg(long, env = "TARN_HOME_REGION")]
    pub home_region: Option<String>,
    /// PEM files of extra CAs to trust for stores (comma-separated).
    #[arg(long, env = "TARN_CA_CERTIFICATES", value_delimiter = ',')]
    pub ca_certificates: Option<Vec<PathBuf>>,
    /// Where table snapshots are written, e.g. `s3://bucket/tarn-snapshots/` [default: the data dir's `snapshots/`].
    #[arg(long, env = "TARN_SNAPSHOT_LOCATION")]
    pub snapshot_location: Option<String>,
    /// Write snapshots of loaded tables, so a restart recovers them [default: true].
    #[arg(long, env = "TARN_SNAPSHOTS")]
    pub snapshots: Option<bool>,
    /// The admin token (at least 16 characters) [default: generated into <data_dir>/admin.token].
    #[arg(long, env = "TARN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The audit log file; "" writes none [default: <data_dir>/audit.log].
    #[arg(long, env = "TARN_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Address for the MySQL protocol; "" turns it off [default: 127.0.0.1:3306].
    #[arg(long, env = "TARN_MYSQL_LISTEN")]
    pub mysql_listen: Option<String>,
    /// Address for Arrow Flight SQL; "" turns it off [default: 127.0.0.1:50051].
    #[arg(long, env = "TARN_FLIGHT_LISTEN")]
    pub flight_listen: Option<String>,
    /// Certificate chain (PEM) to serve HTTPS with; needs --tls-key [default: plain HTTP].
    #[arg(long, env = "TARN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "TARN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The workers this instance coordinates (comma-separated URLs, e.g. http://10.0.0.5:7070);
    /// needs --cluster-token [default: none: one process holds every table].
    #[arg(long, env = "TARN_WORKERS", value_delimiter = ',')]
    pub workers: Option<Vec<String>>,
    /// The token a cluster's coordinator and workers show each other (at least 16 characters).
    #[arg(long, env = "TARN_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// How batches are compressed between a cluster's processes: lz4, zstd or none [default: lz4].
    #[arg(long, env = "TARN_CLUSTER_COMPRESSION")]
    pub cluster_compression: Option<String>,
}

/// The keys of `tarn.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub instance_name: Option<String>,
    pub memory_limit: Option<String>,
    pub shards: Option<usize>,
    /// Query plans kept by statement text, 0 for none [default: 256].
    pub plan_cache: Option<usize>,
    /// How often tables without their own REFRESH_INTERVAL are refreshed, e.g. "5m" [default: never].
    pub refresh_interval: Option<String>,
    pub allowed_locations: Option<Vec<String>>,
    pub home_region: Option<String>,
    /// PEM files of extra CAs to trust for stores (a private CA, a test server).
    pub ca_certificates: Option<Vec<PathBuf>>,
    pub snapshot_location: Option<String>,
    pub snapshots: Option<bool>,
    /// The admin token [default: generated into `<data_dir>/admin.token`].
    pub admin_token: Option<String>,
    /// The audit log file; "" writes none [default: `<data_dir>/audit.log`].
    pub audit_log: Option<String>,
    /// Address of the MySQL protocol door; "" turns it off [default: 127.0.0.1:3306].
    pub mysql_listen: Option<String>,
    /// Address of the Arrow Flight SQL door; "" turns it off [default: 127.0.0.1:50051].
    pub flight_listen: Option<String>,
    /// Certificate chain (PEM) the doors serve TLS with; reloaded when it changes [default: none].
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The workers this instance coordinates, e.g. ["http://10.0.0.5:7070"] [default: none].
    pub workers: Option<Vec<String>>,
    /// The token a cluster's coordinator and workers show each other.
    pub cluster_token: Option<String>,
    /// How batches are compressed between a cluster's processes: "lz4", "zstd" or "none".
    pub cluster_compression: Option<String>,
    /// Tables (`db.table`) `/readyz` waits for; [default: every table being recovered].
    pub ready_tables: Option<Vec<String>>,
    #[serde(default)]
    pub regions: BTreeMap<String, RegionFile>,
    #[serde(default)]
    pub replicas: Vec<ReplicaFile>,
    #[serde(default)]
    pub failover: FailoverFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub tables: Vec<DeclaredTable>,
}

/// `[limits]`: what one query may take, and how many run at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// How long a query may run, e.g. "30s" [default: 5m].
    pub query_timeout: Option<String>,
    /// Memory one query's operators may hold, e.g. "2GiB" [default: no limit of its own].
    pub query_memory: Option<String>,
    /// Queries running at once; more wait up to `queue_timeout` [default: 32].
    pub max_concurrent_queries: Option<usize>,
    /// How long a query waits for its turn before `too_many_queries` [default: 30s].
    pub queue_timeout: Option<String>,
    /// Bytes of Arrow data one answer may carry, e.g. "1GiB" [default: no limit].
    pub max_result_bytes: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionFile {
    pub endpoint: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
    pub credentials: Option<String>,
}

/// A `[[replicas]]` entry: `replica` holds a copy of `primary`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaFile {
    pub primary: CopyFile,
    pub replica: CopyFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyFile {
    pub region: String,
    pub location: String,
}

/// `[failover]`: how region health is judged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverFile {
    /// How often each region's store is probed [default: 1s].
    pub probe_interval: Option<String>,
    /// Failures in a row (requests or probes) before a region is failed over [default: 3].
    pub failure_threshold: Option<u32>,
    /// How long a failed-over region must answer every probe before it is failed back [default: 30s].
    pub failback_after: Option<String>,
    /// How long a file missing from (or different on) the copy a table moved to is kept as
    /// loaded, taken to be still replicating [default: 10m].
    pub max_replication_lag: Option<String>,
}

/// A `[[tables]]` entry: DDL applied at start (as `IF NOT EXISTS`), loaded when `load = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredTable {
    pub ddl: String,
    #[serde(default)]
    pub load: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub instance_name: String,
    pub memory_limit: Option<u64>,
    pub shards: usize,
    /// Optimized query plans kept by statement text (0: none).
    pub plan_cache: usize,
    /// Refresh interval of tables that set none themselves.
    pub refresh_interval: Option<std::time::Duration>,
    pub store: StoreConfig,
    pub tables: Vec<DeclaredTable>,
    pub snapshot_location: Option<String>,
    /// A worker's shared snapshot location and its own place below it (`worker-<id>`), where
    /// the other workers' snapshots are looked in for a lost worker's files.
    pub shared_snapshots: Option<(String, String)>,
    /// Whether loaded tables are written as snapshots (and come back from them after a restart).
    pub snapshots: bool,
    pub ready_tables: Option<Vec<tarn_catalog::TableKey>>,
    pub regions: RegionsConfig,
    /// The admin token, when configured (else one is generated into the data directory).
    pub admin_token: Option<String>,
    pub limits: Limits,
    /// Where the audit log goes; none: nowhere.
    pub audit_log: Option<PathBuf>,
    /// The certificate and key the doors serve TLS with; none: plain text.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Where the MySQL protocol door listens; none: it is off.
    pub mysql_listen: Option<SocketAddr>,
    /// Where the Arrow Flight SQL door listens; none: it is off.
    pub flight_listen: Option<SocketAddr>,
    /// The cluster this instance coordinates; none: one process holds every table.
    pub cluster: Option<tarn_engine::query::cluster::ClusterSettings>,
    /// The cluster's token, when one is set (a coordinator's, or a worker's).
    pub cluster_token: Option<String>,
    /// Whether this instance is a cluster's worker (`tarn worker`).
    pub worker: bool,
}

/// `[limits]` with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub query_timeout: std::time::Duration,
    pub query_memory: Option<u64>,
    pub max_concurrent_queries: usize,
    pub queue_timeout: std::time::Duration,
    pub max_result_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            query_timeout: std::time::Duration::from_secs(300),
            query_memory: None,
            max_concurrent_queries: 32,
            queue_timeout: std::time::Duration::from_secs(30),
            max_result_bytes: None,
        }
    }
}

fn duration(
    key: &str,
    value: &Option<String>,
    default: std::time::Duration,
) -> Result<std::time::Duration> {
    match value {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ServiceError::Config(format!("{key} = '{s}': {e}")))
            .and_then(|d| {
                if d.is_zero() {
                    Err(ServiceError::Config(format!(
                        "{key} = '{s}': must be more than zero"
                    )))
                } else {
                    Ok(d)
                }
            }),
    }
}

/// `tarn config check`: whether the file at `path` is a configuration `tarn serve` would start
/// with (its keys, values, regions and replicas, and the DDL of its `[[tables]]`). Answers a
/// summary, or what is wrong with the line it is on.
pub fn check(path: &Path) -> std::result::Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let at = |message: &str| match line_of(&text, message) {
        Some(n) => format!("{} line {n}: {message}", path.display()),
        None => format!("{}: {message}", path.display()),
    };
    // The parser's own errors carry their line and column.
    let file: FileConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let args = ServeArgs {
        config: Some(path.to_path_buf()),
        ..Default::default()
    };
    let config = Config::load(&args).map_err(|e| at(&e.to_string()))?;
    for (i, t) in file.tables.iter().enumerate() {
        match tarn_catalog::parse_statement(&t.ddl) {
            Ok(tarn_catalog::Statement::CreateTable { .. }) => {}
            Ok(_) => {
                return Err(at(&format!(
                    "[[tables]] #{}: ddl is not a CREATE EXTERNAL TABLE",
                    i + 1
                )));
            }
            Err(e) => return Err(at(&format!("[[tables]] #{}: ddl: {e}", i + 1))),
        }
    }
    Ok(format!(
        "{}: valid (listen {}, {} region(s), {} replica mapping(s), {} declared table(s), TLS {})",
        path.display(),
        config.listen,
        config.store.regions.len(),
        file.replicas.len(),
        file.tables.len(),
        if config.tls.is_some() { "on" } else { "off" }
    ))
}

/// The line (1-based) of the first `key = ...` in `text` whose key the error `message` names.
fn line_of(text: &str, message: &str) -> Option<usize> {
    let named = |key: &str| {
        message.match_indices(key).any(|(i, _)| {
            let before = message[..i].chars().last();
            let after = message[i + key.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    };
    text.lines().enumerate().find_map(|(n, line)| {
        let line = line.trim_start();
        let key = line.split('=').next()?.trim();
        (line.contains('=') && !key.is_empty() && !key.starts_with('#') && named(key))
            .then_some(n + 1)
    })
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServiceError::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ServiceError::Config(format!("{}: {e}", path.display())))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tarn".to_string())
}

impl Config {
    /// The configuration from `args` (flags and `TARN_*` variables) over the file they name.
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./tarn-data"));
        let snapshot_location = args
            .snapshot_location
            .clone()
            .or(file.snapshot_location.clone());
        let reserved = reserved_locations(&data_dir, snapshot_location.as_deref())?;
        let audit_log = match args.audit_log.clone().or(file.audit_log.clone()) {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(PathBuf::from(p)),
            None => Some(data_dir.join("audit.log")),
        };
        let home_region = args.home_region.clone().or(file.home_region.clone());
        let cluster_token = args
            .cluster_token
            .clone()
            .or(file.cluster_token.clone())
            .filter(|t| !t.is_empty());
        let regions = replicas(&file, home_region.clone())?;
        Ok(Self {
            listen: listen(args.listen.clone().or(file.listen))?,
            data_dir,
            instance_name: args
                .instance_name
                .clone()
                .or(file.instance_name)
                .unwrap_or_else(host_name),
            memory_limit: memory_limit(args.memory_limit.clone().or(file.memory_limit))?,
            shards: match args.shards.or(file.shards).unwrap_or(0) {
                0 => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                n => n,
            },
            plan_cache: args
                .plan_cache
                .or(file.plan_cache)
                .unwrap_or(tarn_engine::query::PLAN_CACHE_ENTRIES),
            refresh_interval: file
                .refresh_interval
                .map(|s| {
                    humantime::parse_duration(&s)
                        .map_err(|e| ServiceError::Config(format!("refresh_interval = '{s}': {e}")))
                })
                .transpose()?,
            store: StoreConfig {
                reserved_locations: reserved,
                allowed_locations: allowed_locations(
                    args.allowed_locations.clone().or(file.allowed_locations),
                )?,
                home_region,
                regions: store_regions(file.regions)?,
                ca_certificates: ca_certificates(
                    args.ca_certificates.clone().or(file.ca_certificates),
                )?,
            },
            tables: file.tables,
            snapshot_location,
            shared_snapshots: None,
            snapshots: args.snapshots.or(file.snapshots).unwrap_or(true),
            ready_tables: file.ready_tables.map(ready_tables).transpose()?,
            regions,
            admin_token: args
                .admin_token
                .clone()
                .filter(|t| !t.is_empty())
                .or(file.admin_token),
            limits: limits(&file.limits)?,
            audit_log,
            mysql_listen: door_listen(
                "mysql_listen",
                args.mysql_listen.clone().or(file.mysql_listen),
                DEFAULT_MYSQL_LISTEN,
            )?,
            flight_listen: door_listen(
                "flight_listen",
                args.flight_listen.clone().or(file.flight_listen),
                DEFAULT_FLIGHT_LISTEN,
            )?,
            tls: tls(
                args.tls_cert.clone().or(file.tls_cert),
                args.tls_key.clone().or(file.tls_key),
            )?,
            cluster: cluster(
                args.workers.clone().or(file.workers),
                cluster_token.clone(),
                args.cluster_compression
                    .clone()
                    .or(file.cluster_compression.clone()),
            )?,
            worker: false,
            cluster_token,
        })
    }

    /// A cluster's worker (`tarn worker`): the same settings as `tarn serve`, with the cluster
    /// token as the admin token (the coordinator is its only client) and no doors but its own.
    pub fn load_worker(args: &ServeArgs) -> Result<Self> {
        let mut config = Self::load(args)?;
        let token = config.cluster_token.clone().ok_or_else(|| {
            ServiceError::Config(
                "a worker needs the cluster's token: --cluster-token or TARN_CLUSTER_TOKEN".into(),
            )
        })?;
        check_cluster_token(&token)?;
        if config.cluster.is_some() {
            return Err(ServiceError::Config(
                "a worker has no workers of its own: drop workers from its settings".into(),
            ));
        }
        config.admin_token = Some(token);
        config.mysql_listen = None;
        config.flight_listen = None;
        config.worker = true;
        // Workers may share a snapshot_location: each writes below it in a place of its own
        // (named by its data directory), since they hold parts of the same tables.
        if let Some(shared) = config.snapshot_location.take() {
            let own = format!("worker-{}", worker_id(&config.data_dir)?);
            config.snapshot_location = Some(format!("{}/{own}/", shared.trim_end_matches('/')));
            config.shared_snapshots = Some((shared, own));
        }
        Ok(config)
    }
}

/// A worker's name under a shared snapshot_location: from its data directory's absolute path.
fn worker_id(data_dir: &Path) -> Result<String> {
    use sha2::Digest;
    let cwd = std::env::current_dir().map_err(|e| ServiceError::Config(e.to_string()))?;
    let path = cwd.join(data_dir);
    let digest = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
    Ok(hex::encode(&digest[..6]))
}

fn check_cluster_token(token: &str) -> Result<()> {
    if token.len() < 16 {
        return Err(ServiceError::Config(
            "cluster_token must be at least 16 characters".into(),
        ));
    }
    Ok(())
}

/// `workers` and `cluster_token`: both, or no cluster.
fn cluster(
    workers: Option<Vec<String>>,
    token: Option<String>,
    compression: Option<String>,
) -> Result<Option<tarn_engine::query::cluster::ClusterSettings>> {
    use tarn_engine::query::cluster::CompressionType;
    let compression = match compression
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lz4") => Some(CompressionType::LZ4_FRAME),
        Some("zstd") => Some(CompressionType::ZSTD),
        Some("none") => None,
        Some(other) => {
            return Err(ServiceError::Config(format!(
                "cluster_compression = '{other}': lz4, zstd or none"
            )));
        }
    };
    let workers: Vec<String> = workers
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    if workers.is_empty() {
        return Ok(None);
    }
    let Some(token) = token else {
        return Err(ServiceError::Config(
            "workers is set but cluster_token is not: the coordinator and its workers need a shared token".into(),
        ));
    };
    check_cluster_token(&token)?;
    let mut urls = workers
        .iter()
        .map(|w| {
            let url = url::Url::parse(w)
                .map_err(|e| ServiceError::Config(format!("workers: '{w}': {e}")))?;
            if url.scheme() != "http" || url.host().is_none() {
                return Err(ServiceError::Config(format!(
                    "workers: '{w}' is not an http://host:port URL"
                )));
            }
            Ok(url)
        })
        .collect::<Result<Vec<_>>>()?;
    urls.sort();
    urls.dedup();
    let mut settings = tarn_engine::query::cluster::ClusterSettings::new(urls, token);
    settings.compression = compression;
    Ok(Some(settings))
}

fn tls(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<crate::tls::TlsFiles>> {
    let empty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    match (empty(cert), empty(key)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles { cert, key })),
        (Some(_), None) => Err(ServiceError::Config(
            "tls_cert is set but tls_key is not: give both, or neither".into(),
        )),
        (None, Some(_)) => Err(ServiceError::Config(
            "tls_key is set but tls_cert is not: give both, or neither".into(),
        )),
    }
}

pub const DEFAULT_MYSQL_LISTEN: &str = "127.0.0.1:3306";
pub const DEFAULT_FLIGHT_LISTEN: &str = "127.0.0.1:50051";

/// A door's address (`setting`): its default when not given, none when "".
fn door_listen(setting: &str, value: Option<String>, default: &str) -> Result<Option<SocketAddr>> {
    let value = value.unwrap_or_else(|| default.to_string());
    if value.trim().is_empty() {
        return Ok(None);
    }
    value.trim().parse().map(Some).map_err(|e| {
        ServiceError::Config(format!(
            "{setting} = '{value}' is not an address (\"\" turns the door off): {e}"
        ))
    })
}

fn listen(value: Option<String>) -> Result<SocketAddr> {
    let listen = value.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    listen
        .parse()
        .map_err(|e| ServiceError::Config(format!("listen = '{listen}' is not an address: {e}")))
}

/// `memory_limit`: as given ("none" for no limit), else [`DEFAULT_MEMORY_SHARE`] of the memory the
/// process may use (the machine's, or its cgroup's limit when lower), so that a load or a query
/// that would not fit fails with an error instead of taking the process down.
fn memory_limit(value: Option<String>) -> Result<Option<u64>> {
    match value.as_deref().map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("none") => Ok(None),
        Some(_) => bytes("memory_limit", value),
        None => Ok(available_memory().map(|m| (m as f64 * DEFAULT_MEMORY_SHARE) as u64)),
    }
}

/// The share of the process's memory the default `memory_limit` gives to loaded data and queries;
/// the rest is for the service itself, readers' buffers and the allocator's slack.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.75;

/// Memory the process may use: the machine's, or its cgroup's limit if lower.
fn available_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// A size such as "16GiB" under `key`.
fn bytes(key: &str, value: Option<String>) -> Result<Option<u64>> {
    value
        .map(|s| {
            s.parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| ServiceError::Config(format!("{key} = '{s}': {e}")))
        })
        .transpose()
}

/// `[limits]`, each key defaulted.
fn limits(f: &LimitsFile) -> Result<Limits> {
    let defaults = Limits::default();
    Ok(Limits {
        query_timeout: duration(
            "limits.query_timeout",
            &f.query_timeout,
            defaults.query_timeout,
        )?,
        query_memory: bytes("limits.query_memory", f.query_memory.clone())?,
        max_concurrent_queries: match f.max_concurrent_queries {
            Some(0) => {
                return Err(ServiceError::Config(
                    "limits.max_concurrent_queries = 0: must be at least 1".into(),
                ));
            }
            Some(n) => n,
            None => defaults.max_concurrent_queries,
        },
        queue_timeout: duration(
            "limits.queue_timeout",
            &f.queue_timeout,
            defaults.queue_timeout,
        )?,
        max_result_bytes: bytes("limits.max_result_bytes", f.max_result_bytes.clone())?,
    })
}

/// What no table may read, whatever `allowed_locations` says: the data directory (the catalog,
/// its secrets, the tokens, the snapshots) and the snapshot location.
fn reserved_locations(data_dir: &Path, snapshots: Option<&str>) -> Result<Vec<String>> {
    let cwd = std::env::current_dir().map_err(|e| ServiceError::Config(e.to_string()))?;
    let dir = cwd.join(data_dir);
    let mut out = vec![format!("file://{}/", dir.display())];
    out.extend(snapshots.map(|s| s.to_string()));
    Ok(out)
}

/// The locations tables may name; by default, files under the working directory.
fn allowed_locations(value: Option<Vec<String>>) -> Result<Vec<String>> {
    match value {
        Some(v) => Ok(v),
        None => {
            let cwd = std::env::current_dir().map_err(|e| ServiceError::Config(e.to_string()))?;
            Ok(vec![format!("file://{}/", cwd.display())])
        }
    }
}

fn ca_certificates(paths: Option<Vec<PathBuf>>) -> Result<Vec<Vec<u8>>> {
    paths
        .unwrap_or_default()
        .iter()
        .map(|p| {
            std::fs::read(p).map_err(|e| {
                ServiceError::Config(format!("ca_certificates: cannot read {}: {e}", p.display()))
            })
        })
        .collect()
}

/// `[regions.NAME]` as the object stores take them.
fn store_regions(regions: BTreeMap<String, RegionFile>) -> Result<BTreeMap<String, RegionConfig>> {
    regions
        .into_iter()
        .map(|(name, r)| {
            let credentials = r.credentials.unwrap_or_else(|| "env".into());
            if !(credentials == "env" || credentials == "none" || credentials.starts_with("profile:")) {
                return Err(ServiceError::Config(format!(
                    "regions.{name}.credentials = '{credentials}': expected env, none or profile:<name>"
                )));
            }
            Ok((name, RegionConfig { endpoint: r.endpoint, allow_http: r.allow_http, credentials }))
        })
        .collect()
}

/// `[failover]`, each key defaulted.
fn failover_settings(f: &FailoverFile) -> Result<FailoverSettings> {
    let defaults = FailoverSettings::default();
    Ok(FailoverSettings {
        probe_interval: duration(
            "failover.probe_interval",
            &f.probe_interval,
            defaults.probe_interval,
        )?,
        failure_threshold: match f.failure_threshold {
            Some(0) => {
                return Err(ServiceError::Config(
                    "failover.failure_threshold = 0: must be at least 1".into(),
                ));
            }
            Some(n) => n,
            None => defaults.failure_threshold,
        },
        failback_after: duration(
            "failover.failback_after",
            &f.failback_after,
            defaults.failback_after,
        )?,
        max_replication_lag: duration(
            "failover.max_replication_lag",
            &f.max_replication_lag,
            defaults.max_replication_lag,
        )?,
    })
}

/// `[[replicas]]` and `[failover]`, checked against the configured regions.
fn replicas(file: &FileConfig, home_region: Option<String>) -> Result<RegionsConfig> {
    let region_names: Vec<String> = file.regions.keys().cloned().collect();
    let copy = |c: &CopyFile| Replica {
        region: c.region.clone(),
        location: c.location.clone(),
    };
    RegionsConfig::new(
        home_region,
        file.replicas
            .iter()
            .map(|r| (copy(&r.primary), copy(&r.replica)))
            .collect(),
        &region_names,
        failover_settings(&file.failover)?,
    )
}

fn ready_tables(tables: Vec<String>) -> Result<Vec<tarn_catalog::TableKey>> {
    tables
        .iter()
        .map(|t| match t.split_once('.') {
            Some((db, table)) if !db.is_empty() && !table.is_empty() => {
                Ok(tarn_catalog::TableKey::new(db, table))
            }
            _ => Err(ServiceError::Config(format!(
                "ready_tables: '{t}' is not db.table"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_needs_http_workers_a_long_enough_token_and_a_known_compression() {
        let token = || Some("a-cluster-token-0123456789".to_string());
        let err = |r: Result<Option<tarn_engine::query::cluster::ClusterSettings>>| {
            r.err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(
            cluster(None, token(), None).unwrap().is_none(),
            "no workers: one process"
        );
        let workers = || {
            Some(vec![
                "http://10.0.0.6:7070".into(),
                " http://10.0.0.5:7070 ".into(),
            ])
        };
        let c = cluster(workers(), token(), Some("NONE".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.workers.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            ["http://10.0.0.5:7070/", "http://10.0.0.6:7070/"],
            "trimmed and in order"
        );
        assert_eq!((c.compression, c.live.get().len()), (None, 2));
        assert!(err(cluster(workers(), None, None)).contains("cluster_token is not"));
        assert!(err(cluster(workers(), Some("short".into()), None)).contains("at least 16"));
        assert!(
            err(cluster(Some(vec!["grpc://w:1".into()]), token(), None))
                .contains("'grpc://w:1' is not an http://host:port URL")
        );
        assert!(
            err(cluster(workers(), token(), Some("gzip".into())))
                .contains("cluster_compression = 'gzip': lz4, zstd or none")
        );
    }

    #[test]
    fn config_check_accepts_a_valid_file_and_names_the_line_of_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tarn.toml");
        let good = r#"listen = "0.0.0.0:8080"
home_region = "a"
allowed_locations = ["s3://lake/"]
[regions.a]
endpoint = "https://a.example"
[regions.b]
endpoint = "https://b.example"
[[replicas]]
primary = { region = "a", location = "s3://lake/" }
replica = { region = "b", location = "s3://lake-dr/" }
[[tables]]
ddl = "CREATE EXTERNAL TABLE IF NOT EXISTS s.t FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/t/')"
"#;
        std::fs::write(&path, good).unwrap();
        let summary = check(&path).unwrap();
        assert!(
            summary.contains("2 region(s), 1 replica mapping(s), 1 declared table(s)"),
            "{summary}"
        );
        for (broken, line, says) in [
            (good.replace("listen = ", "lisen = "), "line 1", "lisen"),
            (
                good.replace("\"0.0.0.0:8080\"", "\"nowhere\""),
                "line 1",
                "listen",
            ),
            (
                good.replace("mysql_listen", "x") + "mysql_listen = \"x:y\"\n",
                "line 13",
                "mysql_listen",
            ),
            (
                good.replace("FORMAT parquet", "FORMAT nope"),
                "line 12",
                "ddl",
            ),
        ] {
            std::fs::write(&path, &broken).unwrap();
            let e = check(&path).unwrap_err();
            assert!(e.contains(line) && e.contains(says), "{e}\n{broken}");
        }
    }

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tarn.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:9000"
instance_name = "from-file"
memory_limit = "16GiB"
allowed_locations = ["file:///srv/data/"]
[regions.us-ashburn-1]
endpoint = "http://127.0.0.1:8333"
allow_http = true
[[tables]]
ddl = "CREATE DATABASE x"
"#,
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            instance_name: Some("from-flag".into()),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.instance_name, "from-flag");
        assert_eq!(c.memory_limit, Some(16 * 1024 * 1024 * 1024));
        assert_eq!(
            c.store.allowed_locations,
            vec!["file:///srv/data/".to_string()]
        );
        assert!(c.store.regions["us-ashburn-1"].allow_http);
        assert_eq!(c.tables.len(), 1);
        assert_eq!(c.data_dir, PathBuf::from("./tarn-data"));
        assert_eq!(c.plan_cache, tarn_engine::query::PLAN_CACHE_ENTRIES);

        std::fs::write(&path, "plan_cache = 0").unwrap();
        assert_eq!(Config::load(&args).unwrap().plan_cache, 0);
        let flagged = ServeArgs {
            plan_cache: Some(8),
            ..args.clone()
        };
        assert_eq!(Config::load(&flagged).unwrap().plan_cache, 8);
        std::fs::write(&path, "plan_cache = \"lots\"").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(
            e.contains("plan_cache = \"lots\"") && e.contains("expected usize"),
            "{e}"
        );

        std::fs::write(&path, "lisen = 1").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(e.contains("unknown field `lisen`"), "{e}");

        std::fs::write(&path, "refresh_interval = \"soon\"").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(
            e.starts_with("configuration: refresh_interval = 'soon'"),
            "{e}"
        );

        std::fs::write(&path, "ca_certificates = [\"/nonexistent/ca.pem\"]").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(
            e.contains("ca_certificates: cannot read /nonexistent/ca.pem"),
            "{e}"
        );

        std::fs::write(&path, "[failover]\nprobe_interval = \"soon\"").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(e.contains("failover.probe_interval = 'soon'"), "{e}");
        std::fs::write(&path, "[failover]\nfailure_threshold = 0").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(e.contains("failover.failure_threshold = 0"), "{e}");
        std::fs::write(
            &path,
            "[[replicas]]\nprimary = { region = \"a\", location = \"s3://x/\" }\nreplica = { region = \"b\", location = \"s3://y/\" }",
        )
        .unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(
            e.contains("replicas[0].primary: region 'a' is not configured"),
            "{e}"
        );
        std::fs::write(
            &path,
            "home_region = \"a\"\n[regions.b]\n[[replicas]]\nprimary = { region = \"a\", location = \"s3://x\" }\nreplica = { region = \"b\", location = \"s3://y/\" }\n[failover]\nfailback_after = \"2s\"",
        )
        .unwrap();
        let c = Config::load(&args).unwrap();
        assert_eq!(c.regions.groups[0][0].location, "s3://x/");
        assert_eq!(
            c.regions.settings.failback_after,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.regions.settings.failure_threshold, 3);

        assert_eq!(c.limits, Limits::default());
        std::fs::write(
            &path,
            "[limits]\nquery_timeout = \"2s\"\nquery_memory = \"1MiB\"\nmax_concurrent_queries = 3\nmax_result_bytes = \"10KiB\"",
        )
        .unwrap();
        let l = Config::load(&args).unwrap().limits;
        assert_eq!(l.query_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            (l.query_memory, l.max_concurrent_queries, l.max_result_bytes),
            (Some(1 << 20), 3, Some(10 << 10))
        );
        for (bad, key) in [
            ("query_timeout = \"0s\"", "limits.query_timeout = '0s'"),
            ("query_memory = \"lots\"", "limits.query_memory = 'lots'"),
            (
                "max_concurrent_queries = 0",
                "limits.max_concurrent_queries = 0",
            ),
        ] {
            std::fs::write(&path, format!("[limits]\n{bad}")).unwrap();
            let e = Config::load(&args).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }

        std::fs::write(&path, "ready_tables = [\"orders\"]").unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(e.contains("ready_tables: 'orders' is not db.table"), "{e}");
    }
}
