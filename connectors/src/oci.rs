//! OCI Object Storage's native object listing, for `https://objectstorage.<region>.oraclecloud.com`
//! object URLs and pre-authenticated requests (PARs). object_store's HTTP store lists with WebDAV,
//! which OCI does not speak; OCI answers `GET .../o/?prefix=...` with JSON pages instead:
//! `{"objects": [{"name", "size", "etag", "timeModified"}], "nextStartWith": "..."}`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{ConnectorError, Result};
use crate::location::Location;
use crate::manifest::FileEntry;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    objects: Vec<Object>,
    next_start_with: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    name: String,
    size: Option<u64>,
    etag: Option<String>,
    time_modified: Option<DateTime<Utc>>,
}

/// Pages of a listing followed at most (a thousand objects a page: a billion objects).
const MAX_PAGES: usize = 1_000_000;

/// Every object whose name starts with `name_prefix`, below `head` (`[p/<token>/]n/<ns>/b/<bucket>/o/`),
/// following `nextStartWith` until the last page.
pub async fn list(
    client: &reqwest::Client,
    loc: &Location,
    base: &str,
    head: &str,
    name_prefix: &str,
) -> Result<Vec<FileEntry>> {
    let fail = |message: String| ConnectorError::Store {
        location: loc.to_string(),
        message,
    };
    let url = format!("{}/{head}", base.trim_end_matches('/'));
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    let mut pages = 0usize;
    loop {
        // A listing that never ends (a server handing out pages forever) is cut off.
        pages += 1;
        if pages > MAX_PAGES {
            return Err(fail(format!(
                "the listing did not end after {MAX_PAGES} pages; narrow the location or its PATTERN"
            )));
        }
        let mut query = vec![
            ("prefix", name_prefix.to_string()),
            ("fields", "name,size,etag,timeModified".to_string()),
        ];
        if let Some(s) = &start {
            query.push(("start", s.clone()));
        }
        let resp = client
            .get(&url)
            .query(&query)
            .send()
            .await
            // reqwest's message would carry the URL with its token: keep only the kind of failure.
            .map_err(|e| {
                fail(format!(
                    "listing request failed ({})",
                    if e.is_timeout() {
                        "timeout"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "transport error"
                    }
                ))
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(fail(format!("listing answered {status}")));
        }
        let page: Page = resp
            .json()
            .await
            .map_err(|e| fail(format!("listing is not OCI's JSON object list: {e}")))?;
        for o in page.objects {
            if o.name.ends_with('/') {
                continue; // a folder marker, not an object
            }
            let key = format!("{head}{}", o.name);
            out.push(FileEntry {
                uri: loc.object_uri(&key),
                size: o.size.unwrap_or(0),
                etag: o.etag,
                last_modified: o.time_modified.unwrap_or_default(),
                key,
            });
        }
        match page.next_start_with {
            Some(next) if !next.is_empty() && start.as_deref() != Some(next.as_str()) => {
                start = Some(next)
            }
            _ => break,
        }
    }
    Ok(out)
}
