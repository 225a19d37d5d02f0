//! The diff of a listing against what is loaded: which files' data is kept as it is, which are
//! read (added or changed), which are gone. A pure function: no store, no I/O.
//!
//! A file is unchanged when the loaded manifest has it with the same ETag (or, for Delta, the
//! same deletion vector) and size; last-modified is not compared, since replication does not keep
//! it.

// hashbrown with its fast hash: a refresh beside 10,000 files hashes each name three times.
use datafusion::common::{HashMap, HashSet};

use tarn_connectors::listing::FileEntry;

/// What is loaded of a table: its manifest's files, and per segment its file and rows.
#[derive(Debug, Clone, Copy)]
pub struct Loaded<'a> {
    pub files: &'a [FileEntry],
    pub segments: &'a [(&'a str, u64)],
    /// Whether the loaded data can be kept under the next version's columns (false when the
    /// layout changed and every file must be read again).
    pub reusable: bool,
}

/// What the next version takes from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDiff {
    /// Nothing was added, changed or removed: the loaded version stands.
    pub unchanged: bool,
    /// Per listed file, in order: `Some(i)` keeps loaded segment `i`, `None` reads the file.
    pub plan: Vec<Option<usize>>,
    pub files_added: usize,
    pub files_changed: usize,
    pub files_removed: usize,
    pub files_reused: usize,
    /// Rows of the loaded version that the next one drops (removed and changed files; all of
    /// them when nothing can be kept).
    pub rows_removed: u64,
    /// Bytes of the files to read.
    pub bytes_to_read: u64,
}

impl FileDiff {
    /// The listed files to read, by index.
    pub fn to_read(&self) -> Vec<usize> {
        self.plan
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_none())
            .map(|(i, _)| i)
            .collect()
    }
}

/// Diffs `listed` (the files the next version has) against `loaded` (none for a first load).
pub fn diff(listed: &[&FileEntry], loaded: Option<Loaded<'_>>) -> FileDiff {
    let Some(loaded) = loaded else {
        return FileDiff {
            plan: vec![None; listed.len()],
            files_added: listed.len(),
            bytes_to_read: listed.iter().map(|f| f.size).sum(),
            ..Default::default()
        };
    };
    let mut d = FileDiff::default();
    let mut loaded_files: HashMap<&str, &FileEntry> = HashMap::with_capacity(loaded.files.len());
    loaded_files.extend(loaded.files.iter().map(|f| (f.uri.as_str(), f)));
    let mut reusable_segments: HashMap<&str, (usize, u64)> = HashMap::new();
    if loaded.reusable {
        reusable_segments.reserve(loaded.segments.len());
        reusable_segments.extend(
            (loaded.segments.iter().enumerate()).map(|(i, (file, rows))| (*file, (i, *rows))),
        );
    }
    let unchanged = |f: &FileEntry| {
        loaded.reusable
            && loaded_files
                .get(f.uri.as_str())
                .is_some_and(|p| p.etag == f.etag && p.size == f.size)
    };
    let mut listed_uris: HashSet<&str> = HashSet::with_capacity(listed.len());
    listed_uris.extend(listed.iter().map(|f| f.uri.as_str()));
    for (file, rows) in loaded.segments {
        if !listed_uris.contains(file) {
            d.files_removed += 1;
            d.rows_removed += rows;
        }
    }
    if !loaded.reusable {
        // Nothing is kept: every file still listed counts as changed.
        d.rows_removed = loaded.segments.iter().map(|(_, rows)| rows).sum();
    }
    if loaded.reusable && d.files_removed == 0 && listed.iter().all(|f| unchanged(f)) {
        d.unchanged = true;
        d.files_reused = listed.len();
        d.plan = (0..listed.len()).map(Some).collect();
        return d;
    }
    for f in listed {
        match reusable_segments
            .get(f.uri.as_str())
            .filter(|_| unchanged(f))
        {
            Some(&(i, _)) => {
                d.files_reused += 1;
                d.plan.push(Some(i));
            }
            None => {
                if loaded_files.contains_key(f.uri.as_str()) {
                    d.files_changed += 1;
                    d.rows_removed += reusable_segments
                        .get(f.uri.as_str())
                        .map_or(0, |(_, rows)| *rows);
                } else {
                    d.files_added += 1;
                }
                d.bytes_to_read += f.size;
                d.plan.push(None);
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(uri: &str, etag: &str, size: u64) -> FileEntry {
        FileEntry {
            uri: uri.into(),
            key: uri.into(),
            size,
            etag: Some(etag.into()),
            last_modified: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_first_load_reads_every_file() {
        let (a, b) = (file("s3://b/a", "1", 10), file("s3://b/b", "1", 20));
        let d = diff(&[&a, &b], None);
        assert_eq!(d.plan, vec![None, None]);
        assert_eq!(
            (d.files_added, d.bytes_to_read, d.unchanged),
            (2, 30, false)
        );
    }

    #[test]
    fn only_added_and_changed_files_are_read_and_removed_ones_dropped() {
        let loaded_files = [
            file("s3://b/a", "1", 10),
            file("s3://b/b", "1", 20),
            file("s3://b/c", "1", 30),
        ];
        let segments = [("s3://b/a", 100), ("s3://b/b", 200), ("s3://b/c", 300)];
        let loaded = Loaded {
            files: &loaded_files,
            segments: &segments,
            reusable: true,
        };
        // Nothing changed: the loaded version stands.
        let same: Vec<&FileEntry> = loaded_files.iter().collect();
        let d = diff(&same, Some(loaded));
        assert!(d.unchanged);
        assert_eq!((d.files_reused, d.bytes_to_read), (3, 0));

        // b changed (new ETag), c is gone, d is new; a is kept as loaded.
        let (a, b2, d_new) = (
            file("s3://b/a", "1", 10),
            file("s3://b/b", "2", 25),
            file("s3://b/d", "1", 40),
        );
        let d = diff(&[&a, &b2, &d_new], Some(loaded));
        assert!(!d.unchanged);
        assert_eq!(d.plan, vec![Some(0), None, None]);
        assert_eq!(d.to_read(), vec![1, 2]);
        assert_eq!(
            (
                d.files_added,
                d.files_changed,
                d.files_removed,
                d.files_reused
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(d.rows_removed, 200 + 300, "b's old rows and c's");
        assert_eq!(d.bytes_to_read, 25 + 40);

        // The same size with another ETag is a change; only a removal is a change too.
        let b_etag = file("s3://b/b", "3", 20);
        assert_eq!(
            diff(&[&loaded_files[0], &b_etag, &loaded_files[2]], Some(loaded)).files_changed,
            1
        );
        let d = diff(&[&loaded_files[0], &loaded_files[1]], Some(loaded));
        assert!(!d.unchanged);
        assert_eq!((d.files_removed, d.rows_removed), (1, 300));
        assert_eq!(d.to_read(), Vec::<usize>::new());
    }

    #[test]
    fn a_new_layout_reads_every_file_again() {
        let loaded_files = [file("s3://b/a", "1", 10)];
        let segments = [("s3://b/a", 100)];
        let loaded = Loaded {
            files: &loaded_files,
            segments: &segments,
            reusable: false,
        };
        let d = diff(&[&loaded_files[0]], Some(loaded));
        assert!(!d.unchanged);
        assert_eq!(d.plan, vec![None]);
        assert_eq!(
            (d.files_changed, d.rows_removed, d.bytes_to_read),
            (1, 100, 10)
        );
    }
}
