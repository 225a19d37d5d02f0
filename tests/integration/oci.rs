//! OCI object URLs and pre-authenticated requests against a stand-in for OCI Object Storage's
//! HTTP API: JSON object listings paginated with `nextStartWith`, ranged GETs of objects.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::support::*;

pub struct Fake {
    root: PathBuf,
    token: String,
    list_calls: AtomicUsize,
}

fn names(root: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = walk(root)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

async fn list(
    State(f): State<Arc<Fake>>,
    Path((token, _ns, _b)): Path<(String, String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if token != f.token {
        return StatusCode::NOT_FOUND.into_response();
    }
    f.list_calls.fetch_add(1, Ordering::SeqCst);
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let start = q.get("start").cloned().unwrap_or_default();
    let all: Vec<String> = names(&f.root)
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && *n >= start)
        .collect();
    // Two objects a page, to exercise pagination.
    let page: Vec<_> = all
        .iter()
        .take(2)
        .map(|n| {
            let size = std::fs::metadata(f.root.join(n)).unwrap().len();
            json!({"name": n, "size": size, "etag": format!("etag-{size}"), "timeModified": "2026-11-01T10:00:00.000Z"})
        })
        .collect();
    let next = all.get(2).cloned();
    axum::Json(json!({"objects": page, "nextStartWith": next})).into_response()
}

async fn object(
    State(f): State<Arc<Fake>>,
    Path((token, _ns, _b, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = f.root.join(&name);
    if token != f.token || !path.is_file() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .map(|r| {
            let (a, b) = r.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                len - 1
            } else {
                b.parse::<usize>().unwrap().min(len - 1)
            };
            (a, b)
        });
    let common = [
        (header::ETAG, format!("\"etag-{len}\"")),
        (
            header::LAST_MODIFIED,
            "Sun, 01 Nov 2026 10:00:00 GMT".to_string(),
        ),
    ];
    match range {
        Some((a, b)) => (
            StatusCode::PARTIAL_CONTENT,
            [(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))],
            common,
            bytes[a..=b].to_vec(),
        )
            .into_response(),
        None => (StatusCode::OK, common, bytes).into_response(),
    }
}

/// A PUT through the request (a PAR that allows writes) stores the object.
async fn put_object(
    State(f): State<Arc<Fake>>,
    Path((token, _ns, _b, name)): Path<(String, String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if token != f.token {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = f.root.join(&name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    StatusCode::OK.into_response()
}

/// Serves `root` as a bucket behind the pre-authenticated request `token`; answers the base URL.
pub async fn start_fake(root: PathBuf, token: &str) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        root,
        token: token.to_string(),
        list_calls: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/p/{token}/n/{ns}/b/{bucket}/o/", get(list))
        .route(
            "/p/{token}/n/{ns}/b/{bucket}/o/{*name}",
            get(object).put(put_object),
        )
        // Whole files come in one PUT.
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

#[tokio::test]
async fn pre_authenticated_request_prefixes_list_through_oci_json_and_hide_their_token() {
    let token = "PaRtOkEn-s3cr3t-4a5b6c";
    let (base, fake) = start_fake(samples(), token).await;
    let tmp = tempfile::tempdir().unwrap();
    let local = samples();
    let args = [
        "--allowed-locations",
        &format!("file://{}/,{base}/", local.display()),
    ]
    .map(str::to_string);
    let server = TestServer::spawn_with_env(
        &tmp.path().join("tarn"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    )
    .await;
    server.ok("CREATE DATABASE o").await;
    let par = format!("{base}/p/{token}/n/ns/b/bucket/o/");
    server.ok(&format!("CREATE EXTERNAL TABLE o.par FILE_FORMAT = (FORMAT parquet) FILES = (URI '{par}parquet/')")).await;
    server.ok(&format!("CREATE EXTERNAL TABLE o.avro FILE_FORMAT = (FORMAT avro) FILES = (URI '{par}avro/*.avro')")).await;
    server.ok(&format!("CREATE EXTERNAL TABLE o.one FILE_FORMAT = (FORMAT parquet) FILES = (URI '{par}parquet/orders-1.parquet')")).await;
    server.ok(&format!("CREATE EXTERNAL TABLE o.local FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/parquet/')", local.display())).await;
    for t in ["par", "avro", "one", "local"] {
        server
            .ok(&format!("ALTER TABLE o.{t} SECONDARY_LOAD"))
            .await;
    }
    let q = |t: &str| format!("SELECT {SELECT_ALL} FROM o.{t} ORDER BY order_id");
    assert_eq!(server.rows(&q("par")).await, server.rows(&q("local")).await);
    assert_eq!(server.rows("SELECT COUNT(*) FROM o.avro").await[0][0], 200);
    assert_eq!(server.rows("SELECT COUNT(*) FROM o.one").await[0][0], 80);
    // The avro prefix holds three objects: two pages of two.
    assert!(fake.list_calls.load(Ordering::SeqCst) >= 3);

    server.ok(&format!("CREATE EXTERNAL TABLE o.wrong FILE_FORMAT = (FORMAT parquet) FILES = (URI '{base}/p/x{token}/n/ns/b/bucket/o/parquet/')")).await;
    let e = server.err("ALTER TABLE o.wrong SECONDARY_LOAD").await;
    assert_eq!(e.code, "store_unavailable");
    assert!(
        e.message.contains("/p/<redacted>/n/ns/b/bucket/o/parquet/") && e.message.contains("404"),
        "{}",
        e.message
    );

    // What Tarn shows never holds the token.
    let shown = [
        server.get("/v1/tables/o/par").await.to_string(),
        server.get("/v1/tables").await.to_string(),
        server.text("/metrics").await,
        server.log.lock().unwrap().join("\n"),
        std::fs::read_to_string(server.data_dir.join("catalog.json")).unwrap(),
        e.message,
    ];
    for text in shown {
        assert!(!text.contains(token), "PAR token shown: {text}");
    }

    // Nor do the snapshots; after a restart the table comes back from its snapshot, and the
    // refresh that follows finds every file as it was (the names carry the token again).
    wait_until(
        || async { server.table_status("o", "par").await["snapshot_version"].is_u64() },
        "the snapshot of o.par",
    )
    .await;
    for file in walk(&server.data_dir.join("snapshots")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "PAR token in {}",
            file.display()
        );
    }
    let server = server.kill_and_restart().await;
    server.wait_ready().await;
    assert_eq!(
        server.table_status("o", "par").await["recovery_source"],
        "Snapshot"
    );
    wait_until(
        || async {
            let h = server.get("/v1/tables/o/par/refreshes").await;
            h["history"]
                .as_array()
                .is_some_and(|h| h.iter().any(|e| e["kind"] == "refresh"))
        },
        "the refresh after recovery",
    )
    .await;
    let h = server.get("/v1/tables/o/par/refreshes").await;
    let refresh = &h["history"][0]["report"];
    assert_eq!(
        (
            &refresh["files_added"],
            &refresh["files_changed"],
            &refresh["bytes_read"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{h}"
    );
    assert_eq!(server.rows(&q("par")).await, server.rows(&q("local")).await);
}
