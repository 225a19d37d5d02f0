//! The state every request shares.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use tarn_catalog::CatalogStore;
use tarn_connectors::StoreRegistry;

use crate::config::Config;
use crate::store::MemoryStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub catalog: Arc<CatalogStore>,
    pub memory: Arc<MemoryStore>,
    pub stores: Arc<StoreRegistry>,
    pub snapshots: Arc<crate::snapshot::Snapshots>,
    pub regions: Arc<crate::regions::Regions>,
    pub ctx: SessionContext,
}
