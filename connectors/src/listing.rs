//! Listing: a `FILES` entry expanded to the objects it selects, recorded in a manifest.
//!
//! A URI ending in `/` is a prefix (everything below it), one containing `*`, `?` or `[` is a glob
//! (`*` stays within one path segment, `**` crosses them), anything else names one object. An
//! optional `PATTERN` regex further filters the object keys. Objects whose name starts with `_` or
//! `.` (`_SUCCESS`, `.crc` files, `_delta_log`) are not data and are skipped in prefixes and globs.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{ConnectorError, Result};
use crate::location::Location;
pub use crate::manifest::{FileEntry, Manifest};

fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

fn is_hidden(key: &str, below: &str) -> bool {
    key.strip_prefix(below)
        .unwrap_or(key)
        .split('/')
        .any(|seg| seg.starts_with('_') || seg.starts_with('.'))
}

fn to_entry(loc: &Location, m: object_store::ObjectMeta) -> FileEntry {
    FileEntry {
        uri: loc.object_uri(m.location.as_ref()),
        key: m.location.to_string(),
        size: m.size,
        etag: m.e_tag,
        last_modified: m.last_modified,
    }
}

/// Every object whose key starts with `prefix` (a directory-like prefix ending in `/`, or empty).
/// OCI object URLs list through OCI's own JSON listing; everything else through the store.
async fn list_below(
    http: &reqwest::Client,
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
    prefix: &str,
) -> Result<Vec<FileEntry>> {
    if let (Some((head, _)), Location::Http { base, .. }) = (loc.oci_object_path(), loc) {
        let name_prefix = prefix.strip_prefix(head).unwrap_or("");
        return crate::oci::list(http, loc, base, head, name_prefix).await;
    }
    let path = (!prefix.is_empty()).then(|| Path::from(prefix));
    store
        .list(path.as_ref())
        .map_err(|e| ConnectorError::store(loc.to_string(), e))
        .map_ok(|m| to_entry(loc, m))
        .try_collect()
        .await
}

/// Lists the objects `loc` (with optional `pattern`) selects, sorted by key. An empty result is
/// not an error here; the caller decides by ALLOW_MISSING_FILES.
pub async fn list(
    http: &reqwest::Client,
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
    pattern: Option<&str>,
) -> Result<Vec<FileEntry>> {
    let key = loc.key();
    let regex = pattern
        .map(|p| {
            regex::Regex::new(p).map_err(|e| ConnectorError::InvalidPattern {
                pattern: p.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()?;
    let mut out: Vec<FileEntry> = if key.is_empty() || key.ends_with('/') {
        list_below(http, store, loc, key)
            .await?
            .into_iter()
            .filter(|f| !is_hidden(&f.key, key))
            .collect()
    } else if is_glob(key) {
        let literal = &key[..key.find(['*', '?', '[']).unwrap_or(key.len())];
        let dir = &literal[..literal.rfind('/').map(|i| i + 1).unwrap_or(0)];
        let glob = globset::GlobBuilder::new(key)
            .literal_separator(true)
            .build()
            .map_err(|e| ConnectorError::InvalidLocation {
                uri: loc.to_string(),
                reason: e.to_string(),
            })?
            .compile_matcher();
        list_below(http, store, loc, dir)
            .await?
            .into_iter()
            .filter(|f| glob.is_match(&f.key) && !is_hidden(&f.key, dir))
            .collect()
    } else {
        match store.head(&Path::from(key)).await {
            Ok(m) => vec![to_entry(loc, m)],
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(ConnectorError::store(loc.to_string(), e)),
        }
    };
    if let Some(re) = regex {
        out.retain(|f| re.is_match(&f.key));
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    #[tokio::test]
    async fn prefix_glob_name_and_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for f in [
            "t/a.csv",
            "t/b.csv",
            "t/c.json",
            "t/sub/d.csv",
            "t/_SUCCESS",
            "t/.x.crc",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "1\n").unwrap();
        }
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let http = reqwest::Client::new();
        let names = |v: Vec<FileEntry>| {
            v.into_iter()
                .map(|f| f.key.rsplit('/').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let base = format!("file://{}", root.display());
        let loc = |s: &str| Location::parse(&format!("{base}/{s}")).unwrap();
        assert_eq!(
            names(list(&http, &store, &loc("t/"), None).await.unwrap()),
            ["a.csv", "b.csv", "c.json", "d.csv"]
        );
        assert_eq!(
            names(list(&http, &store, &loc("t/*.csv"), None).await.unwrap()),
            ["a.csv", "b.csv"]
        );
        assert_eq!(
            names(list(&http, &store, &loc("t/**/*.csv"), None).await.unwrap()),
            ["a.csv", "b.csv", "d.csv"]
        );
        assert_eq!(
            names(list(&http, &store, &loc("t/b.csv"), None).await.unwrap()),
            ["b.csv"]
        );
        assert!(
            list(&http, &store, &loc("t/none.csv"), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            names(
                list(&http, &store, &loc("t/"), Some(r"[ab]\.csv$"))
                    .await
                    .unwrap()
            ),
            ["a.csv", "b.csv"]
        );
        let e = list(&http, &store, &loc("t/"), Some("("))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid PATTERN '('"), "{e}");
        let one = list(&http, &store, &loc("t/a.csv"), None).await.unwrap();
        assert_eq!(one[0].size, 2);
        assert!(one[0].etag.is_some());
        assert_eq!(one[0].uri, format!("{base}/t/a.csv"));
    }
}
