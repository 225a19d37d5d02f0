//! Object stores for locations: one per store URI (scheme, bucket, region), built on first use and
//! cached. Every lookup first checks the location against the allow-list, so a location the config
//! does not allow is refused before any request is sent.
//!
//! Requests retry with exponential backoff on 5xx answers, timeouts and dropped connections, for a
//! bounded total time; 4xx answers are not retried, and a host that does not resolve fails at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig};
use tokio::sync::Mutex;

use crate::credentials::AwsChain;
use crate::error::{ConnectorError, Result};
use crate::gate::{GatedStore, RegionGate};
use crate::location::Location;

/// A region's endpoint and access, as `[regions.<name>]` in the config gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionConfig {
    /// Overrides the endpoint of `s3://` and `oci://` locations read in this region.
    pub endpoint: Option<String>,
    pub allow_http: bool,
    /// `env` (aws-config's default chain: AWS_* variables, profiles, SSO, web identity, instance
    /// metadata), `none` (anonymous), or `profile:<name>`.
    pub credentials: String,
}

#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// Entries of `allowed_locations`; a location must be covered by one of them.
    pub allowed_locations: Vec<String>,
    pub home_region: Option<String>,
    pub regions: BTreeMap<String, RegionConfig>,
    /// Extra trusted CA certificates (PEM), for stores behind a private CA.
    pub ca_certificates: Vec<Vec<u8>>,
    /// Locations refused whatever `allowed_locations` says: Tarn's data directory and snapshot
    /// location.
    pub reserved_locations: Vec<String>,
}

/// How long requests may take and how they are retried.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 6,
        retry_timeout: Duration::from_secs(20),
    }
}

/// How probes ask whether a region's store is there: once, briefly.
fn probe_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        retry_timeout: PROBE_TIMEOUT,
        ..retry()
    }
}

/// How long a probe may take before the region counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

fn client_options(
    allow_http: bool,
    ca_certificates: &[Vec<u8>],
    probe: bool,
) -> Result<ClientOptions> {
    let (connect, total) = if probe {
        (PROBE_TIMEOUT, PROBE_TIMEOUT)
    } else {
        (Duration::from_secs(5), Duration::from_secs(60))
    };
    let mut o = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(connect)
        .with_timeout(total);
    for pem in ca_certificates {
        for cert in Certificate::from_pem_bundle(pem).map_err(|e| ConnectorError::Store {
            location: "ca_certificates".into(),
            message: format!("not a PEM certificate: {e}"),
        })? {
            o = o.with_root_certificate(cert);
        }
    }
    Ok(o)
}

#[derive(Debug)]
pub struct StoreRegistry {
    config: StoreConfig,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// One per configured region (and the home region): every store read in a region is
    /// reached through its gate.
    gates: BTreeMap<String, Arc<RegionGate>>,
    /// For requests object_store does not make (OCI's JSON listing), with the same trust.
    http: reqwest::Client,
}

impl StoreRegistry {
    /// Fails only when `ca_certificates` holds something that is not a PEM certificate.
    pub fn new(config: StoreConfig) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            // A redirect could lead a request (and its token) to another host.
            .redirect(reqwest::redirect::Policy::none());
        for pem in &config.ca_certificates {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ConnectorError::Store {
                    location: "ca_certificates".into(),
                    message: format!("not a PEM certificate: {e}"),
                })?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build().map_err(|e| ConnectorError::Store {
            location: "http client".into(),
            message: e.to_string(),
        })?;
        let gates = config
            .regions
            .keys()
            .chain(config.home_region.iter())
            .map(|r| (r.clone(), Arc::new(RegionGate::new(r.clone()))))
            .collect();
        Ok(Self {
            config,
            stores: Mutex::new(HashMap::new()),
            gates,
            http,
        })
    }

    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The gate of `region`, if the region is configured (or is the home region).
    pub fn gate(&self, region: &str) -> Option<&Arc<RegionGate>> {
        self.gates.get(region)
    }

    /// Parses `uri` and refuses it unless the config allows it; no request is sent.
    pub fn check(&self, uri: &str) -> Result<Location> {
        self.checker().check(uri)
    }

    /// A checker for many locations at once (a listing's files): the allow-list's entries and
    /// each directory are resolved once, not once per file.
    pub fn checker(&self) -> LocationCheck<'_> {
        LocationCheck {
            registry: self,
            allowed: std::cell::OnceCell::new(),
            reserved: std::cell::OnceCell::new(),
            dirs: Default::default(),
        }
    }

    /// Whether `region` is one the configuration knows (a `[regions.NAME]` or the home region).
    pub fn knows_region(&self, region: &str) -> bool {
        self.config.regions.contains_key(region)
            || self.config.home_region.as_deref() == Some(region)
    }

    /// The store holding `loc` (which must have passed [`Self::check`]), read in `region` (the
    /// table's, else the home region).
    pub async fn store_for(
        &self,
        loc: &Location,
        region: Option<&str>,
    ) -> Result<Arc<dyn ObjectStore>> {
        self.cached(loc, region, false).await
    }

    /// A store for asking whether `loc`'s store answers in `region`: requests are not retried
    /// and time out after [`PROBE_TIMEOUT`]. Probe outcomes count in the region's gate.
    pub async fn probe_store_for(
        &self,
        loc: &Location,
        region: Option<&str>,
    ) -> Result<Arc<dyn ObjectStore>> {
        self.cached(loc, region, true).await
    }

    async fn cached(
        &self,
        loc: &Location,
        region: Option<&str>,
        probe: bool,
    ) -> Result<Arc<dyn ObjectStore>> {
        let region = region.or(self.config.home_region.as_deref());
        let cache_key = format!("{}#{}#{probe}", loc.store_uri(), region.unwrap_or(""));
        let mut stores = self.stores.lock().await;
        if let Some(s) = stores.get(&cache_key) {
            return Ok(s.clone());
        }
        let mut store = self.build(loc, region, probe).await?;
        if let (Some(gate), Location::S3 { .. } | Location::Oci { .. }) =
            (region.and_then(|r| self.gates.get(r)), loc)
        {
            store = Arc::new(GatedStore::new(store, gate.clone()));
        }
        stores.insert(cache_key, store.clone());
        Ok(store)
    }

    async fn build(
        &self,
        loc: &Location,
        region: Option<&str>,
        probe: bool,
    ) -> Result<Arc<dyn ObjectStore>> {
        let fail = |e: object_store::Error| ConnectorError::store(loc.store_uri(), e);
        // A region becomes part of a host name: only configured ones, and only plain names.
        if let Some(r) = region
            && (!self.knows_region(r) || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(ConnectorError::InvalidLocation {
                uri: loc.to_string(),
                reason: format!("region '{r}' is not configured: add [regions.{r}] to the config"),
            });
        }
        let retry = if probe { probe_retry() } else { retry() };
        let region_cfg = region.and_then(|r| self.config.regions.get(r));
        let allow_http = region_cfg.is_some_and(|r| r.allow_http);
        Ok(match loc {
            Location::File { .. } => Arc::new(LocalFileSystem::new()),
            Location::S3 { bucket, .. } | Location::Oci { bucket, .. } => {
                let endpoint = region_cfg
                    .and_then(|r| r.endpoint.clone())
                    .or_else(|| match loc {
                        Location::Oci { namespace, .. } => region.map(|r| {
                            format!("https://{namespace}.compat.objectstorage.{r}.oraclecloud.com")
                        }),
                        _ => None,
                    });
                if matches!(loc, Location::Oci { .. }) && endpoint.is_none() {
                    return Err(ConnectorError::InvalidLocation {
                        uri: loc.to_string(),
                        reason: "an oci:// location needs a region: set home_region or the table's region".into(),
                    });
                }
                let aws_region = region
                    .map(str::to_string)
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into());
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(aws_region)
                    .with_retry(retry)
                    .with_client_options(client_options(
                        allow_http,
                        &self.config.ca_certificates,
                        probe,
                    )?);
                if let Some(ep) = &endpoint {
                    // The endpoint is the operator's (or OCI's): its address is not judged.
                    resolve(loc, ep).await?;
                    // S3-compatible servers (OCI, SeaweedFS) are addressed path-style.
                    b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
                }
                let credentials = region_cfg.map_or("env", |r| r.credentials.as_str());
                if credentials == "none" {
                    b = b.with_skip_signature(true);
                } else {
                    let profile = credentials.strip_prefix("profile:");
                    let chain =
                        AwsChain::load(profile)
                            .await
                            .ok_or_else(|| ConnectorError::Store {
                                location: loc.store_uri(),
                                message: "no AWS credential provider is configured".into(),
                            })?;
                    b = b.with_credentials(Arc::new(chain));
                }
                Arc::new(b.build().map_err(fail)?)
            }
            Location::Http { base, .. } => {
                // Allowed only by an entry that names this host (an https entry always does),
                // so an internal address is reached only where the operator named it.
                resolve(loc, base).await?;
                Arc::new(
                    HttpBuilder::new()
                        .with_url(base.clone())
                        .with_retry(retry)
                        .with_client_options(client_options(
                            allow_http || base.starts_with("http://"),
                            &self.config.ca_certificates,
                            probe,
                        )?)
                        .build()
                        .map_err(fail)?,
                )
            }
        })
    }
}

/// Fails at once, naming the location, when the endpoint's host does not resolve (retrying
/// would only wait out the retry budget).
async fn resolve(loc: &Location, endpoint: &str) -> Result<()> {
    let url = url::Url::parse(endpoint).map_err(|e| ConnectorError::InvalidLocation {
        uri: loc.to_string(),
        reason: format!("endpoint '{endpoint}': {e}"),
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(|a| a.collect::<Vec<_>>())
    {
        Ok(addrs) if !addrs.is_empty() => Ok(()),
        _ => Err(ConnectorError::Store {
            location: loc.to_string(),
            message: format!("unknown host '{host}'"),
        }),
    }
}

/// Checks locations against the allow-list and Tarn's own places ([`StoreRegistry::check`]),
/// remembering what it resolved on the local file system.
pub struct LocationCheck<'a> {
    registry: &'a StoreRegistry,
    /// The allow-list's and the reserved entries, and for local ones their resolved forms.
    allowed: std::cell::OnceCell<Vec<Location>>,
    reserved: std::cell::OnceCell<Vec<Location>>,
    /// Directories (as file locations' paths): what they resolve to, and the names of the
    /// links in them (none when they cannot be read).
    #[allow(clippy::type_complexity)]
    dirs: std::cell::RefCell<
        datafusion::common::HashMap<
            String,
            (Option<String>, Option<datafusion::common::HashSet<String>>),
        >,
    >,
}

impl LocationCheck<'_> {
    /// Parses `uri` and refuses it unless the config allows it; no request is sent.
    pub fn check(&self, uri: &str) -> Result<Location> {
        let loc = Location::parse(uri)?;
        if let Location::File { path } = &loc {
            self.judge_file(path, || uri.to_string())?;
            return Ok(loc);
        }
        if !self.allowed(&loc) {
            return Err(ConnectorError::LocationNotAllowed {
                uri: crate::location::redact(uri),
            });
        }
        if self.reserved(&loc) {
            return Err(ConnectorError::LocationRefused {
                uri: crate::location::redact(uri),
                reason: "it holds Tarn's own data (data_dir, snapshot_location)".to_string(),
            });
        }
        Ok(loc)
    }

    /// [`Self::check`] for a local file a listing found, by its path (a file location's, no
    /// leading `/`), without parsing a URI again.
    pub fn check_file(&self, path: &str) -> Result<()> {
        self.judge_file(path, || format!("file:///{path}"))
    }

    /// A local path is judged by where it leads too: a symbolic link or `..` must not take it
    /// out of the allowed directories or into Tarn's own. `uri` names it in an error.
    fn judge_file(&self, path: &str, uri: impl Fn() -> String) -> Result<()> {
        let refused = |reason: &str| ConnectorError::LocationRefused {
            uri: crate::location::redact(&uri()),
            reason: reason.to_string(),
        };
        let allowed = |p: &str| self.allowed_entries().iter().any(|e| e.holds_path(p));
        let reserved = |p: &str| self.reserved_entries().iter().any(|e| e.holds_path(p));
        if !allowed(path) {
            return Err(ConnectorError::LocationNotAllowed {
                uri: crate::location::redact(&uri()),
            });
        }
        if reserved(path) {
            return Err(refused(
                "it holds Tarn's own data (data_dir, snapshot_location)",
            ));
        }
        let real = match self.canonical(path) {
            Some(Resolved::Same) => return Ok(()),
            Some(Resolved::Elsewhere(real)) => real,
            None => return Err(refused("the path has '..' after a missing part")),
        };
        if !allowed(&real) {
            return Err(refused(&format!(
                "it leads to file:///{real}, outside allowed_locations"
            )));
        }
        if reserved(&real) {
            return Err(refused(
                "it leads into Tarn's own data (data_dir, snapshot_location)",
            ));
        }
        Ok(())
    }

    fn allowed_entries(&self) -> &[Location] {
        self.allowed
            .get_or_init(|| with_canonical(&self.registry.config.allowed_locations))
    }

    fn reserved_entries(&self) -> &[Location] {
        self.reserved
            .get_or_init(|| with_canonical(&self.registry.config.reserved_locations))
    }

    fn allowed(&self, loc: &Location) -> bool {
        self.allowed_entries().iter().any(|a| loc.is_within(a))
    }

    fn reserved(&self, loc: &Location) -> bool {
        self.reserved_entries().iter().any(|r| loc.is_within(r))
    }

    /// [`canonical`], with each directory resolved once: a file that is not itself a link is
    /// its directory's resolved path and its name.
    fn canonical(&self, path: &str) -> Option<Resolved> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) if !name.is_empty() && name != "." && name != ".." => (dir, name),
            _ => return Resolved::from(path, canonical(path)),
        };
        let mut dirs = self.dirs.borrow_mut();
        let (real_dir, links) = dirs
            .entry_ref(dir)
            .or_insert_with(|| (canonical(dir), links_in(dir)));
        // A file that is a link (or any file, when its directory could not be read) is resolved
        // on its own.
        if links.as_ref().is_none_or(|links| links.contains(name)) {
            drop(dirs);
            return Resolved::from(path, canonical(path));
        }
        let real_dir = real_dir.as_deref()?;
        if real_dir == dir {
            return Some(Resolved::Same);
        }
        Some(Resolved::Elsewhere(if real_dir.is_empty() {
            name.to_string()
        } else {
            format!("{real_dir}/{name}")
        }))
    }
}

/// Where a local path leads, resolved.
enum Resolved {
    /// To itself: nothing on the way is a link, `.` or `..`.
    Same,
    Elsewhere(String),
}

impl Resolved {
    fn from(path: &str, real: Option<String>) -> Option<Self> {
        real.map(|r| {
            if r == path {
                Self::Same
            } else {
                Self::Elsewhere(r)
            }
        })
    }
}

/// The names of the links in the directory `dir` (a file location's path), from the directory
/// itself (no `stat` per file); none when it cannot be read, or a name does not read.
fn links_in(dir: &str) -> Option<datafusion::common::HashSet<String>> {
    let mut links = datafusion::common::HashSet::new();
    for entry in std::fs::read_dir(format!("/{dir}")).ok()? {
        let entry = entry.ok()?;
        if entry.file_type().ok()?.is_symlink() {
            links.insert(entry.file_name().into_string().ok()?);
        }
    }
    Some(links)
}

/// Entries of an allow-list (those that parse), and beside each local one whose links resolve
/// elsewhere, its resolved form.
fn with_canonical(entries: &[String]) -> Vec<Location> {
    entries
        .iter()
        .cloned()
        .chain(entries.iter().filter_map(|e| canonical_entry(e)))
        .filter_map(|e| Location::parse(&e).ok())
        .collect()
}

/// `path` (a file location's, without its leading `/`) with symbolic links and `.` / `..`
/// resolved, in the same form: the longest part that exists is resolved by the file system, the
/// rest (which does not exist yet) must hold no `..`.
fn canonical(path: &str) -> Option<String> {
    let absolute = format!("/{path}");
    let p = std::path::Path::new(&absolute);
    let mut existing = p;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            let mut s = out.to_string_lossy().trim_start_matches('/').to_string();
            if path.ends_with('/') && !s.ends_with('/') {
                s.push('/');
            }
            return Some(s);
        }
        let name = existing.file_name()?;
        if name == ".." {
            return None;
        }
        rest.push(name.to_os_string());
        existing = existing.parent()?;
    }
}

/// An allow-list entry for local files, with its own links resolved (so `/tmp/` also allows what
/// `/private/tmp/` names, say); none for other entries.
fn canonical_entry(entry: &str) -> Option<String> {
    match Location::parse(entry).ok()? {
        Location::File { path } => {
            let c = canonical(&path)?;
            (c != path).then(|| format!("file:///{c}"))
        }
        _ => None,
    }
}
