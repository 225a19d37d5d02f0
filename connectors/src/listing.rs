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
    if let Location::File { .. } = loc {
        let (owned, prefix) = (loc.clone(), prefix.to_string());
        return tokio::task::spawn_blocking(move || list_local(&owned, &prefix))
            .await
            .map_err(|e| ConnectorError::Store {
                location: loc.to_string(),
                message: format!("the listing stopped: {e}"),
            })?;
    }
    let path = (!prefix.is_empty()).then(|| Path::from(prefix));
    store
        .list(path.as_ref())
        .map_err(|e| ConnectorError::store(loc.to_string(), e))
        .map_ok(|m| to_entry(loc, m))
        .try_collect()
        .await
}

/// The files below the local directory `prefix` (a key: a path without its leading `/`), as the
/// object store for local files lists them (links followed, broken ones left out, the same keys
/// and ETags), with one `stat` per file made relative to its directory: the store's listing
/// looks each file's whole path up three times, most of a refresh's time in a directory of
/// 10,000 files. A large directory's files are looked at on every core at once, and a plain
/// name's key is its directory's key and the name (the directory's path is parsed once).
fn list_local(loc: &Location, prefix: &str) -> Result<Vec<FileEntry>> {
    let root = std::path::PathBuf::from(format!("/{}", prefix.trim_end_matches('/')));
    let mut out = Vec::new();
    // Directories to read, with the directories (resolved) above them: a link back up is a
    // loop, an error as in the store's listing.
    let top = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    let mut dirs = vec![(root, vec![top])];
    while let Some((dir, above)) = dirs.pop() {
        let read = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(local_error(&dir, e)),
        };
        let mut entries = Vec::new();
        for entry in read {
            match entry {
                Ok(e) => entries.push(e),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(local_error(&dir, e)),
            }
        }
        let prefixes = Path::from_absolute_path(&dir)
            .ok()
            .filter(|p| !p.as_ref().is_empty())
            .map(|p| DirPrefixes {
                uri: loc.object_uri(p.as_ref()),
                key: p.as_ref().to_string(),
            });
        let found = on_every_core(&entries, |e| look_at(loc, prefixes.as_ref(), e));
        for f in found {
            match f? {
                Found::File(entry) => out.push(entry),
                Found::Dir(path) => {
                    let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                    if above.contains(&real) {
                        let why = format!("a link loop: it leads back to {}", real.display());
                        return Err(local_error(&path, std::io::Error::other(why)));
                    }
                    let mut below = above.clone();
                    below.push(real);
                    dirs.push((path, below));
                }
                Found::Nothing => {}
            }
        }
    }
    Ok(out)
}

/// What one entry of a local directory is to a listing.
enum Found {
    File(FileEntry),
    Dir(std::path::PathBuf),
    Nothing,
}

/// A local directory's key and URI, which a plain name's are followed by.
struct DirPrefixes {
    key: String,
    uri: String,
}

/// An entry of a local directory (whose key and URI are `dir`, when it parses): a file (its
/// metadata as the store's), a directory to read, or nothing listed (a broken link, a special
/// file, one of the store's uploads).
fn look_at(loc: &Location, dir: Option<&DirPrefixes>, entry: &std::fs::DirEntry) -> Result<Found> {
    let Ok(kind) = entry.file_type() else {
        return Ok(Found::Nothing);
    };
    let metadata = if kind.is_symlink() {
        // Followed; a broken link is left out.
        match std::fs::metadata(entry.path()) {
            Ok(m) => m,
            Err(_) => return Ok(Found::Nothing),
        }
    } else {
        match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
            Err(e) => return Err(local_error(&entry.path(), e)),
        }
    };
    if metadata.is_dir() {
        return Ok(Found::Dir(entry.path()));
    }
    if !metadata.is_file() {
        return Ok(Found::Nothing);
    }
    let name = entry.file_name();
    if let (Some(dir), Some(name)) = (dir, name.to_str())
        && is_plain(name)
    {
        // Such a name is the same in a key and a URI as on disk, and is not an upload.
        let (last_modified, size, etag) = local_figures(&metadata);
        return Ok(Found::File(FileEntry {
            uri: format!("{}/{name}", dir.uri),
            key: format!("{}/{name}", dir.key),
            size,
            etag: Some(etag),
            last_modified,
        }));
    }
    let Ok(location) = Path::from_absolute_path(entry.path()) else {
        return Ok(Found::Nothing);
    };
    if !is_valid_file_path(&location) {
        return Ok(Found::Nothing);
    }
    Ok(Found::File(to_entry(loc, local_meta(location, &metadata))))
}

/// A file name made only of letters, digits, `-`, `_` and `.` (and not `.` or `..`), and not
/// `n`: in the directory `/p/<x>` that name would make `<x>` a pre-authenticated request's
/// token, which a URI hides.
fn is_plain(name: &str) -> bool {
    !matches!(name, "" | "." | ".." | "n")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn local_error(path: &std::path::Path, e: std::io::Error) -> ConnectorError {
    ConnectorError::Store {
        location: format!("file://{}", path.display()),
        message: e.to_string(),
    }
}

/// Below this many items a thread of its own costs more than it saves.
const PER_THREAD: usize = 512;

/// `f` of every item, in order, with the items shared out over the machine's cores when there
/// are enough of them.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len() / PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// What the object store for local files says of a file: its size, modification time and ETag
/// (inode, modification time in microseconds, size, in hex).
fn local_meta(location: Path, metadata: &std::fs::Metadata) -> object_store::ObjectMeta {
    let (last_modified, size, etag) = local_figures(metadata);
    object_store::ObjectMeta {
        location,
        last_modified,
        size,
        e_tag: Some(etag),
        version: None,
    }
}

/// A local file's modification time, size and ETag, as [`local_meta`] has them.
fn local_figures(metadata: &std::fs::Metadata) -> (chrono::DateTime<chrono::Utc>, u64, String) {
    use std::os::unix::fs::MetadataExt;
    let modified = metadata
        .modified()
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    let micros = modified
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let (inode, size) = (metadata.ino(), metadata.len());
    (
        modified.into(),
        size,
        format!("{inode:x}-{micros:x}-{size:x}"),
    )
}

/// The object store's rule for local files: a name ending in `#` and digits is one of its
/// uploads in progress, not a file.
fn is_valid_file_path(path: &Path) -> bool {
    match path.filename() {
        Some(p) => match p.split_once('#') {
            Some((_, suffix)) if !suffix.is_empty() => {
                !suffix.as_bytes().iter().all(|x| x.is_ascii_digit())
            }
            _ => true,
        },
        None => false,
    }
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

    /// Local directories are listed by Tarn itself (one `stat` per file): the same files, keys,
    /// sizes, times and ETags as the object store's own listing, links and odd names included.
    #[tokio::test]
    async fn local_listing_is_the_object_stores_listing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let t = root.join("t");
        for f in [
            "a.csv",
            "sub/b.csv",
            "sub/deeper/c.csv",
            "with space é.csv",
            "up#123",
            "x#y",
        ] {
            let p = t.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f.repeat(3)).unwrap();
        }
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("o.csv"), "outside").unwrap();
        std::os::unix::fs::symlink(t.join("a.csv"), t.join("link.csv")).unwrap();
        std::os::unix::fs::symlink(root.join("missing"), t.join("broken.csv")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("linked_dir")).unwrap();
        // A directory large enough to be looked at on several cores, with plain and odd names.
        let many = t.join("many");
        std::fs::create_dir_all(&many).unwrap();
        for i in 0..1200 {
            let name = match i % 6 {
                0 => format!("part-{i:05}.parquet"),
                1 => format!("%4{i}.csv"),
                2 => format!("a={i}.csv"),
                3 if i == 3 => "n".to_string(),
                3 => format!(".{i}"),
                4 => format!("up#{i}"),
                _ => format!("{i}"),
            };
            std::fs::write(many.join(name), i.to_string()).unwrap();
        }
        std::os::unix::fs::symlink(t.join("a.csv"), many.join("link-in-many.csv")).unwrap();

        let loc = Location::parse(&format!("file://{}/", t.display())).unwrap();
        let prefix = loc.key().to_string();
        let mut ours = list_local(&loc, &prefix).unwrap();
        let store = LocalFileSystem::new();
        let mut theirs: Vec<FileEntry> = store
            .list(Some(&Path::from(prefix.as_str())))
            .map_ok(|m| to_entry(&loc, m))
            .try_collect()
            .await
            .unwrap();
        ours.sort_by(|a, b| a.key.cmp(&b.key));
        theirs.sort_by(|a, b| a.key.cmp(&b.key));
        let shown = |v: &[FileEntry]| -> Vec<String> {
            v.iter()
                .map(|f| {
                    let (uri, key) = (&f.uri, &f.key);
                    format!("{uri} {key} {} {:?} {}", f.size, f.etag, f.last_modified)
                })
                .collect()
        };
        assert_eq!(shown(&ours), shown(&theirs));
        let in_many = ours
            .iter()
            .filter(|f| f.key.starts_with(&format!("{prefix}many/")))
            .count();
        // The store's uploads (`up#<digits>`) are left out.
        assert_eq!(in_many, 1000 + 1);
        let names: Vec<&str> = ours
            .iter()
            .map(|f| f.key.strip_prefix(&prefix).unwrap())
            .filter(|n| !n.starts_with("many/"))
            .collect();
        assert_eq!(
            names,
            [
                "a.csv",
                "link.csv",
                "linked_dir/o.csv",
                "sub/b.csv",
                "sub/deeper/c.csv",
                "with space é.csv",
                "x#y"
            ]
        );
        assert!(
            list_local(&loc, &format!("{prefix}none/"))
                .unwrap()
                .is_empty()
        );

        // A link back up is a loop: an error naming it, as the store's listing fails.
        std::os::unix::fs::symlink(&t, t.join("sub/loop")).unwrap();
        let e = list_local(&loc, &prefix).unwrap_err().to_string();
        assert!(e.contains("sub/loop") && e.contains("loop"), "{e}");
        assert!(
            store
                .list(Some(&Path::from(prefix.as_str())))
                .try_collect::<Vec<_>>()
                .await
                .is_err()
        );
    }
}
