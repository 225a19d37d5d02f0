//! Table locations: the URI forms of `FILES = (URI '...')`, and the allow-list check that runs
//! before any request.

use std::fmt;

use url::Url;

use crate::error::{ConnectorError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file:///abs/path`
    File { path: String },
    /// `s3://bucket/key`
    S3 { bucket: String, key: String },
    /// `oci://bucket@namespace/key`, served through OCI's S3-compatible endpoint.
    Oci {
        bucket: String,
        namespace: String,
        key: String,
    },
    /// `https://host/path` (and `http://` where the config allows it).
    Http { base: String, key: String },
}

impl Location {
    pub fn parse(uri: &str) -> Result<Self> {
        let bad = |reason: &str| ConnectorError::InvalidLocation {
            uri: redact(uri),
            reason: reason.to_string(),
        };
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            bad("expected scheme://..., e.g. oci://bucket@namespace/path/ or file:///path/")
        })?;
        let loc = match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad(
                        "a file:// location must be an absolute path: file:///path/to/data",
                    ));
                }
                Self::File {
                    path: normalize(rest).ok_or_else(|| bad("'..' is not allowed in a path"))?,
                }
            }
            "s3" | "s3a" => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("the bucket name is missing"));
                }
                Self::S3 {
                    bucket: bucket.to_string(),
                    key: normalize(key).ok_or_else(|| bad("'..' is not allowed in a path"))?,
                }
            }
            "oci" => {
                let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
                let (bucket, namespace) = authority
                    .split_once('@')
                    .ok_or_else(|| bad("expected oci://bucket@namespace/path"))?;
                if bucket.is_empty() || namespace.is_empty() {
                    return Err(bad("expected oci://bucket@namespace/path"));
                }
                Self::Oci {
                    bucket: bucket.to_string(),
                    namespace: namespace.to_string(),
                    key: normalize(key).ok_or_else(|| bad("'..' is not allowed in a path"))?,
                }
            }
            "https" | "http" => {
                let url = Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
                let host = url.host_str().ok_or_else(|| bad("the host is missing"))?;
                let base = match url.port() {
                    Some(p) => format!("{scheme}://{host}:{p}"),
                    None => format!("{scheme}://{host}"),
                };
                Self::Http {
                    base,
                    key: normalize(url.path().trim_start_matches('/'))
                        .ok_or_else(|| bad("'..' is not allowed in a path"))?,
                }
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme '{other}': expected file, s3, oci or https"
                )));
            }
        };
        Ok(loc)
    }

    /// The key (path inside the store) this location names: an object, a prefix ending in `/`,
    /// or a glob.
    pub fn key(&self) -> &str {
        match self {
            Self::File { path } => path,
            Self::S3 { key, .. } | Self::Oci { key, .. } | Self::Http { key, .. } => key,
        }
    }

    /// The store's own URI (scheme and bucket); objects are `store_uri() + "/" + key`.
    pub fn store_uri(&self) -> String {
        match self {
            Self::File { .. } => "file://".to_string(),
            Self::S3 { bucket, .. } => format!("s3://{bucket}"),
            Self::Oci {
                bucket, namespace, ..
            } => format!("oci://{bucket}@{namespace}"),
            Self::Http { base, .. } => base.clone(),
        }
    }

    /// The URI of one object of this location's store, as shown to people: a pre-authenticated
    /// request's token is redacted (it grants access to the data).
    pub fn object_uri(&self, key: &str) -> String {
        format!(
            "{}/{}",
            self.store_uri(),
            redact_key(key.trim_start_matches('/'))
        )
    }

    /// For an OCI object storage URL (`.../n/<ns>/b/<bucket>/o/<name>`, optionally behind a
    /// pre-authenticated request `/p/<token>`), the part up to and including `o/` and the object
    /// name (or name prefix) after it.
    pub fn oci_object_path(&self) -> Option<(&str, &str)> {
        let Self::Http { key, .. } = self else {
            return None;
        };
        let parts: Vec<&str> = key.splitn(8, '/').collect();
        let start = match parts.as_slice() {
            ["p", _, "n", _, "b", _, "o", ..] => 7,
            ["n", _, "b", _, "o", ..] => 5,
            _ => return None,
        };
        let head_len: usize = parts[..start].iter().map(|p| p.len() + 1).sum();
        Some((&key[..head_len], &key[head_len.min(key.len())..]))
    }

    /// Whether `allowed` (an entry of `allowed_locations`) covers this location. An entry ending in
    /// `/` covers everything below it; any other entry covers exactly itself.
    pub fn is_allowed_by(&self, allowed: &str) -> bool {
        Location::parse(allowed).is_ok_and(|a| self.is_within(&a))
    }

    /// [`Self::is_allowed_by`] an entry already parsed.
    pub fn is_within(&self, a: &Location) -> bool {
        if a.store_uri() != self.store_uri() {
            return false;
        }
        key_within(self.key(), a.key())
    }

    /// Whether this is a local file location whose path is `path` or below it (an allow-list
    /// entry's rule, for paths already known to be local).
    pub fn holds_path(&self, path: &str) -> bool {
        matches!(self, Self::File { .. }) && key_within(path, self.key())
    }
}

/// An entry's rule for keys: an empty `entry` holds everything, one ending in `/` what is below
/// it, any other only itself.
fn key_within(key: &str, entry: &str) -> bool {
    if entry.is_empty() {
        return true;
    }
    if entry.ends_with('/') {
        key.starts_with(entry)
    } else {
        key == entry
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.object_uri(self.key()))
    }
}

use tarn_catalog::model::redact_path as redact_key;
pub use tarn_catalog::model::redact_uri as redact;

/// Drops `.` and empty segments (keeping a trailing `/`), refuses `..`; no leading `/`.
fn normalize(path: &str) -> Option<String> {
    let trailing = path.ends_with('/');
    let mut parts = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    let mut out = parts.join("/");
    if trailing && !out.is_empty() {
        out.push('/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Location::parse("file:///srv/data/x.csv").unwrap(),
            Location::File {
                path: "srv/data/x.csv".into()
            }
        );
        assert_eq!(
            Location::parse("s3://lake/a/b/").unwrap(),
            Location::S3 {
                bucket: "lake".into(),
                key: "a/b/".into()
            }
        );
        assert_eq!(
            Location::parse("oci://demo@mysqlpm/delta/").unwrap(),
            Location::Oci {
                bucket: "demo".into(),
                namespace: "mysqlpm".into(),
                key: "delta/".into()
            }
        );
        let h = Location::parse("https://example.com:8443/p/x.parquet").unwrap();
        assert_eq!(h.store_uri(), "https://example.com:8443");
        assert_eq!(h.key(), "p/x.parquet");
    }

    #[test]
    fn refuses_bad_forms() {
        for (uri, reason) in [
            ("/srv/x", "expected scheme"),
            ("file://rel/x", "absolute path"),
            ("file:///srv/../etc/passwd", "'..'"),
            ("oci://bucket/x", "bucket@namespace"),
            ("ftp://h/x", "unknown scheme 'ftp'"),
        ] {
            let e = Location::parse(uri).unwrap_err().to_string();
            assert!(e.contains(uri) && e.contains(reason), "{e}");
        }
    }

    #[test]
    fn oci_urls_and_redacted_par_tokens() {
        let par = "https://objectstorage.us-ashburn-1.oraclecloud.com/p/SeCrEtToKeN123/n/ns/b/bkt/o/data/";
        let l = Location::parse(par).unwrap();
        assert_eq!(
            l.oci_object_path(),
            Some(("p/SeCrEtToKeN123/n/ns/b/bkt/o/", "data/"))
        );
        assert_eq!(
            l.to_string(),
            "https://objectstorage.us-ashburn-1.oraclecloud.com/p/<redacted>/n/ns/b/bkt/o/data/"
        );
        assert_eq!(redact(par), l.to_string());
        let plain = Location::parse(
            "https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/bkt/o/a/b.csv",
        )
        .unwrap();
        assert_eq!(plain.oci_object_path(), Some(("n/ns/b/bkt/o/", "a/b.csv")));
        assert_eq!(
            Location::parse("https://example.com/a/b.csv")
                .unwrap()
                .oci_object_path(),
            None
        );
        let refused = crate::store::StoreRegistry::new(Default::default())
            .unwrap()
            .check(par)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("/p/<redacted>/n/ns/") && !refused.contains("SeCrEtToKeN123"),
            "{refused}"
        );
    }

    #[test]
    fn allow_list() {
        let l = Location::parse("file:///srv/data/t/x.csv").unwrap();
        assert!(l.is_allowed_by("file:///srv/data/"));
        assert!(!l.is_allowed_by("file:///srv/dat"));
        assert!(!l.is_allowed_by("file:///srv/other/"));
        assert!(!l.is_allowed_by("s3://srv/"));
        let s = Location::parse("s3://lake/x/").unwrap();
        assert!(s.is_allowed_by("s3://lake/"));
        assert!(!s.is_allowed_by("s3://lake2/"));
        assert!(
            !Location::parse("http://169.254.169.254/latest/")
                .unwrap()
                .is_allowed_by("https://169.254.169.254/")
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
        ))]

        /// Any text is a location or an error; a location has no `..` and shows no token.
        #[test]
        fn any_text_is_a_location_or_an_error(text in ".{0,120}") {
            if let Ok(loc) = Location::parse(&text) {
                prop_assert!(!loc.key().split('/').any(|p| p == ".."));
                let shown = loc.to_string();
                prop_assert_eq!(redact(&shown), shown.clone());
            }
        }

        #[test]
        fn locations_built_from_parts_parse_and_keep_their_token_hidden(
            scheme in prop_oneof![Just("s3://"), Just("oci://"), Just("https://"), Just("file:///")],
            bucket in "[a-z0-9][a-z0-9.@_-]{0,11}",
            path in prop::collection::vec("[a-zA-Z0-9._*?\\[\\]-]{0,8}", 0..5),
            token in "[A-Za-z0-9_-]{1,16}",
        ) {
            let text = format!("{scheme}{bucket}/p/{token}/n/ns/{}", path.join("/"));
            let secret = format!("/p/{token}/n/");
            if let Ok(loc) = Location::parse(&text)
                && scheme == "https://"
            {
                let shown = loc.to_string();
                prop_assert!(!shown.contains(&secret), "{}", shown);
            }
            let redacted = redact(&format!("https://h{secret}x"));
            prop_assert!(!redacted.contains(&secret), "{}", redacted);
        }
    }
}
