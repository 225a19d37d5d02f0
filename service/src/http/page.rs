//! The status page: `GET /` serves a single-page app built into the binary (plain HTML, CSS and
//! an ES module; no build step, nothing fetched from another host). It holds no data itself: the
//! page asks the API with the token its user signs in with, so it shows what that token's role
//! may see. The assets need no token; `GET /v1/whoami` tells the page who signed in.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::HttpState;
use crate::access::Caller;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// Paths served without a token (the assets carry no data).
pub fn is_asset(path: &str) -> bool {
    matches!(path, "/" | "/ui/app.js" | "/ui/style.css")
}

/// Every asset is served with a policy that keeps the page on this host: no script, style,
/// image or connection anywhere else, and no framing.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /v1/whoami`: the caller's name, role and databases, and the instance's name.
pub async fn whoami(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    Json(json!({
        "name": caller.name,
        "role": caller.role.as_str(),
        "databases": caller.databases.as_ref().map(|d| d.iter().collect::<Vec<_>>()),
        "instance": state.instance.as_ref(),
    }))
}
