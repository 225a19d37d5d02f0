//! What the clients share about talking to a service: checking the URLs they are given, and
//! errors that say what went wrong (reqwest's own message is often only "builder error" or
//! "error sending request").

/// `url` as a service's base URL (`http://host:port`, no trailing `/`), or why it is not one;
/// `what` names where it came from (`--instance`, say).
pub fn base_url(url: &str, what: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let bad = |why: &str| format!("{what} '{url}' is not a service URL: {why}");
    if trimmed.contains(',') {
        return Err(bad("give one URL per flag (it holds a comma)"));
    }
    let parsed = url::Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("expected http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(trimmed.to_string())
}

/// A request error with its causes: `cannot reach http://h:1: error sending request: connection
/// refused`.
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The token to send: `explicit` (`--token` / `TARN_TOKEN`), else the admin token a service on
/// this machine generated into `<data_dir>/admin.token` (`data_dir` from the config or
/// `TARN_DATA_DIR`, else `./tarn-data`), if it is there.
pub fn token(explicit: Option<String>, data_dir: Option<std::path::PathBuf>) -> Option<String> {
    if let Some(t) = explicit.filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_string());
    }
    let dir = data_dir
        .or_else(|| std::env::var_os("TARN_DATA_DIR").map(Into::into))
        .unwrap_or_else(|| "tarn-data".into());
    std::fs::read_to_string(dir.join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A client that sends `token` with every request, and times out after `timeout` if given. It
/// trusts the system's CAs and, when `TARN_CA_CERT` names a PEM file, the certificates in it (a
/// service serving HTTPS with its own or a private CA's certificate).
pub fn client(
    token: Option<&str>,
    timeout: Option<std::time::Duration>,
) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| "the token holds characters a header cannot carry".to_string())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder().default_headers(headers);
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    if let Some(path) = std::env::var_os("TARN_CA_CERT").filter(|p| !p.is_empty()) {
        let shown = std::path::Path::new(&path).display().to_string();
        let pem = std::fs::read(&path).map_err(|e| format!("TARN_CA_CERT {shown}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "TARN_CA_CERT {shown}: not PEM certificates: {}",
                describe(&e)
            )
        })?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|e| describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_are_checked_and_named_in_errors() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/", "--url").unwrap(),
            "http://127.0.0.1:8080"
        );
        let e = base_url("http://a,http://b", "--instance").unwrap_err();
        assert_eq!(
            e,
            "--instance 'http://a,http://b' is not a service URL: give one URL per flag (it holds a comma)"
        );
        let e = base_url("127.0.0.1:8080", "--instance").unwrap_err();
        assert!(
            e.starts_with("--instance '127.0.0.1:8080' is not a service URL"),
            "{e}"
        );
        let e = base_url("ftp://h/", "--url").unwrap_err();
        assert!(e.ends_with("expected http:// or https://"), "{e}");
    }
}
