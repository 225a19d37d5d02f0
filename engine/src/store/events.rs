//! What the store tells its listeners: a version published, a table unloaded or dropped.
//!
//! Listeners are how the layers above react to the store without the store (or whoever
//! published) calling them: kept query plans are dropped, snapshots written, rows placed by a
//! placement key, freed memory handed back.

use std::sync::Arc;

use futures::future::BoxFuture;
use tarn_catalog::TableKey;

use super::{MemoryStore, TableEntry, TableVersion};

/// Why a version was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishCause {
    /// `SECONDARY_LOAD`: the table read in full.
    Load,
    /// A refresh: what changed in the sources read, the rest kept.
    Refresh,
    /// After a restart, from the table's snapshot.
    Recovery,
    /// The same version's rows reordered by the table's placement key.
    Placement,
}

#[derive(Debug)]
pub enum StoreEvent<'a> {
    /// `version` is now the table's current one.
    Published {
        entry: &'a Arc<TableEntry>,
        version: &'a Arc<TableVersion>,
        cause: PublishCause,
    },
    /// The table's data was freed (`SECONDARY_UNLOAD`).
    Unloaded { entry: &'a Arc<TableEntry> },
    /// The table is gone (`DROP TABLE`, `DROP DATABASE`).
    Dropped { key: &'a TableKey },
}

impl StoreEvent<'_> {
    pub fn key(&self) -> &TableKey {
        match self {
            Self::Published { entry, .. } | Self::Unloaded { entry } => &entry.key,
            Self::Dropped { key } => key,
        }
    }
}

/// Reacts to changes of the store.
///
/// `on_change` is called right after the change, in the order the listeners subscribed, while
/// the caller that made the change waits: it must be quick, and must not publish itself (spawn a
/// task for that). What has to be finished before the caller answers (a marker made durable,
/// say) is returned as a future, which the caller awaits after every listener was told.
pub trait StoreListener: Send + Sync {
    fn on_change(
        &self,
        store: &Arc<MemoryStore>,
        event: &StoreEvent<'_>,
    ) -> Option<BoxFuture<'static, ()>>;
}
