//! What a listing finds and a load records: each object (path, size, ETag, last-modified), and
//! for Delta the table version. The basis of change detection.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// One object as listed: the basis of change detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Full URI as users see it (`s3://lake/t/part-0.parquet`).
    pub uri: String,
    /// Key inside its store.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl FileEntry {
    pub fn path(&self) -> Path {
        Path::from(self.key.as_str())
    }
}

/// What one load read: every file, and for Delta the table version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
    pub delta_version: Option<u64>,
    /// For Delta, the schema, partition columns and protocol the files were written under.
    #[serde(default)]
    pub delta_layout: Option<String>,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}
