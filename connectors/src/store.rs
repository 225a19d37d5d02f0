//! Object stores for locations: one per store URI (scheme and bucket), built on first use and
//! cached. Every lookup first checks the location against the allow-list.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;

use crate::error::{ConnectorError, Result};
use crate::location::Location;

/// A region's endpoint and access, as `[regions.<name>]` in the config gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionConfig {
    /// Overrides the endpoint of `s3://` and `oci://` locations read in this region.
    pub endpoint: Option<String>,
    pub allow_http: bool,
    /// `env` (AWS_* variables), `none` (anonymous).
    pub credentials: String,
}

#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// Entries of `allowed_locations`; a location must be covered by one of them.
    pub allowed_locations: Vec<String>,
    pub home_region: Option<String>,
    pub regions: BTreeMap<String, RegionConfig>,
}

#[derive(Debug)]
pub struct StoreRegistry {
    config: StoreConfig,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            stores: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Parses `uri` and refuses it unless the config allows it; no request is sent.
    pub fn check(&self, uri: &str) -> Result<Location> {
        let loc = Location::parse(uri)?;
        if self
            .config
            .allowed_locations
            .iter()
            .any(|a| loc.is_allowed_by(a))
        {
            Ok(loc)
        } else {
            Err(ConnectorError::LocationNotAllowed {
                uri: uri.to_string(),
            })
        }
    }

    /// The store holding `loc` (which must have passed [`Self::check`]).
    pub fn store_for(&self, loc: &Location, region: Option<&str>) -> Result<Arc<dyn ObjectStore>> {
        let region = region.or(self.config.home_region.as_deref());
        let cache_key = format!("{}#{}", loc.store_uri(), region.unwrap_or(""));
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(&cache_key) {
            return Ok(s.clone());
        }
        let fail = |e: object_store::Error| ConnectorError::store(loc.store_uri(), e);
        let region_cfg = region.and_then(|r| self.config.regions.get(r));
        let store: Arc<dyn ObjectStore> = match loc {
            Location::File { .. } => Arc::new(LocalFileSystem::new()),
            Location::S3 { bucket, .. } | Location::Oci { bucket, .. } => {
                let mut b = if region_cfg.is_some_and(|r| r.credentials == "none") {
                    AmazonS3Builder::new().with_skip_signature(true)
                } else {
                    AmazonS3Builder::from_env()
                }
                .with_bucket_name(bucket);
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                let endpoint = region_cfg
                    .and_then(|r| r.endpoint.clone())
                    .or_else(|| match loc {
                        Location::Oci { namespace, .. } => region.map(|r| {
                            format!("https://{namespace}.compat.objectstorage.{r}.oraclecloud.com")
                        }),
                        _ => None,
                    });
                if let Some(ep) = endpoint {
                    // S3-compatible servers (OCI, SeaweedFS) are addressed path-style.
                    b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
                }
                if region_cfg.is_some_and(|r| r.allow_http) {
                    b = b.with_allow_http(true);
                }
                Arc::new(b.build().map_err(fail)?)
            }
            Location::Http { base, .. } => Arc::new(
                HttpBuilder::new()
                    .with_url(base.clone())
                    .build()
                    .map_err(fail)?,
            ),
        };
        stores.insert(cache_key, store.clone());
        Ok(store)
    }
}
