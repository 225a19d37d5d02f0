//! Tarn's catalog as DataFusion's catalog provider: each database is a schema whose tables are
//! the loaded versions, and `performance_schema` holds the status views.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use tarn_catalog::{CatalogStore, TableKey};

use super::cluster::ClusterTable;
use super::provider::LoadedTable;
use super::report;
use super::system;
use crate::error::EngineError;
use crate::store::MemoryStore;

pub const PERFORMANCE_SCHEMA: &str = "performance_schema";

#[derive(Debug)]
pub struct TarnCatalog {
    pub catalog: Arc<CatalogStore>,
    pub memory: Arc<MemoryStore>,
}

impl CatalogProvider for TarnCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.catalog.databases();
        names.push(PERFORMANCE_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name.eq_ignore_ascii_case(report::SYS_SCHEMA) {
            return Some(Arc::new(Sys));
        }
        if name.eq_ignore_ascii_case(PERFORMANCE_SCHEMA) {
            return Some(Arc::new(system::SystemSchema {
                catalog: self.catalog.clone(),
                memory: self.memory.clone(),
            }));
        }
        self.catalog.database_exists(name).then(|| {
            Arc::new(Database {
                name: name.to_lowercase(),
                catalog: self.catalog.clone(),
                memory: self.memory.clone(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

#[derive(Debug)]
struct Database {
    name: String,
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
}

#[async_trait]
impl SchemaProvider for Database {
    fn table_names(&self) -> Vec<String> {
        self.catalog.tables(&self.name).unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let key = TableKey::new(&self.name, name);
        if self.catalog.get(&key).is_err() {
            return Ok(None);
        }
        let entry = self.memory.get(&key);
        match entry.as_ref().and_then(|e| e.current()) {
            Some(v) if v.is_remote() => Ok(Some(Arc::new(ClusterTable::new(key, v)))),
            Some(v) => Ok(Some(Arc::new(LoadedTable::of_table(key, v)))),
            None if entry.is_some_and(|e| e.status().recovering()) => Err(
                DataFusionError::External(Box::new(EngineError::Recovering { table: key })),
            ),
            None => Err(DataFusionError::External(Box::new(
                EngineError::NotLoaded { table: key },
            ))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.get(&TableKey::new(&self.name, name)).is_ok()
    }
}

/// MySQL's `sys` schema, as far as Tarn has it: HeatWave's `heatwave_autopilot_report`.
#[derive(Debug)]
struct Sys;

#[async_trait]
impl SchemaProvider for Sys {
    fn table_names(&self) -> Vec<String> {
        vec![report::REPORT_TABLE.to_string()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(name
            .eq_ignore_ascii_case(report::REPORT_TABLE)
            .then(|| Arc::new(report::ReportTable) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(report::REPORT_TABLE)
    }
}
