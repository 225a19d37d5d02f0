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
    diff_sorted(listed, loaded).unwrap_or_else(|| diff_hashed(listed, loaded))
}

/// [`diff`] as one walk down both lists, when both are sorted by URI and the loaded segments
/// are the loaded files, in order (as a listing's are): no name is hashed. `None` otherwise.
fn diff_sorted(listed: &[&FileEntry], loaded: Loaded<'_>) -> Option<FileDiff> {
    let (files, segments) = (loaded.files, loaded.segments);
    let aligned =
        files.len() == segments.len() && files.iter().zip(segments).all(|(f, (s, _))| f.uri == *s);
    if !loaded.reusable
        || !aligned
        || !listed.is_sorted_by(|a, b| a.uri < b.uri)
        || !files.is_sorted_by(|a, b| a.uri < b.uri)
    {
        return None;
    }
    let mut d = FileDiff::default();
    let mut j = 0;
    let remove_below = |d: &mut FileDiff, j: &mut usize, uri: Option<&str>| {
        while *j < files.len() && uri.is_none_or(|u| files[*j].uri.as_str() < u) {
            d.files_removed += 1;
            d.rows_removed += segments[*j].1;
            *j += 1;
        }
    };
    for f in listed {
        remove_below(&mut d, &mut j, Some(&f.uri));
        match files.get(j).filter(|p| p.uri == f.uri) {
            Some(p) if p.etag == f.etag && p.size == f.size => {
                d.files_reused += 1;
                d.plan.push(Some(j));
                j += 1;
                continue;
            }
            Some(_) => {
                d.files_changed += 1;
                d.rows_removed += segments[j].1;
                j += 1;
            }
            None => d.files_added += 1,
        }
        d.bytes_to_read += f.size;
        d.plan.push(None);
    }
    remove_below(&mut d, &mut j, None);
    d.unchanged = d.files_added + d.files_changed + d.files_removed == 0;
    Some(d)
}

/// [`diff`] by looking every name up: any order, any segments.
fn diff_hashed(listed: &[&FileEntry], loaded: Loaded<'_>) -> FileDiff {
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

    /// [`super::diff`], checked against the diff that looks every name up wherever the walk
    /// down sorted lists applies.
    fn diff(listed: &[&FileEntry], loaded: Option<Loaded<'_>>) -> FileDiff {
        let d = super::diff(listed, loaded);
        if let Some(loaded) = loaded {
            assert_eq!(d, diff_hashed(listed, loaded));
        }
        d
    }

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

    /// Lists that are not sorted, or segments that are not the files in order, are diffed by
    /// name; sorted ones by the walk, with the same answer.
    #[test]
    fn sorted_lists_are_walked_and_others_looked_up() {
        let loaded_files = [
            file("s3://b/a", "1", 10),
            file("s3://b/c", "1", 30),
            file("s3://b/e", "1", 50),
        ];
        let segments = [("s3://b/a", 1), ("s3://b/c", 3), ("s3://b/e", 5)];
        let loaded = Loaded {
            files: &loaded_files,
            segments: &segments,
            reusable: true,
        };
        let (b, c2, f) = (
            file("s3://b/b", "1", 20),
            file("s3://b/c", "2", 31),
            file("s3://b/f", "1", 60),
        );
        // a kept, b added, c changed, e removed, f added.
        let listed = [&loaded_files[0], &b, &c2, &f];
        assert!(diff_sorted(&listed, loaded).is_some());
        let d = diff(&listed, Some(loaded));
        assert_eq!(d.plan, vec![Some(0), None, None, None]);
        assert_eq!(
            (
                d.files_added,
                d.files_changed,
                d.files_removed,
                d.files_reused
            ),
            (2, 1, 1, 1)
        );
        assert_eq!((d.rows_removed, d.bytes_to_read), (3 + 5, 20 + 31 + 60));

        // Out of order: looked up, the same answer in the listing's order.
        let shuffled = [&f, &loaded_files[0], &c2, &b];
        assert!(diff_sorted(&shuffled, loaded).is_none());
        let d = diff(&shuffled, Some(loaded));
        assert_eq!(d.plan, vec![None, Some(0), None, None]);
        assert_eq!((d.files_removed, d.rows_removed), (1, 3 + 5));

        // Segments that are not the files in order (one file's rows in none): looked up.
        let fewer = [("s3://b/a", 1), ("s3://b/e", 5)];
        let other = Loaded {
            segments: &fewer,
            ..loaded
        };
        assert!(diff_sorted(&listed, other).is_none());
        let d = diff(&listed, Some(other));
        assert_eq!(d.plan, vec![Some(0), None, None, None]);
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
