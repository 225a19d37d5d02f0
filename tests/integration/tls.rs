//! TLS: HTTPS on `listen` with the configured certificate, a renewed certificate served without a
//! restart, a broken one ignored, and `tarn sql` trusting a private CA through `TARN_CA_CERT`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A self-signed certificate for 127.0.0.1 written to `dir/cert.pem` and `dir/key.pem`; answers
/// the certificate's PEM.
fn write_certificate(dir: &Path) -> String {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = made.cert.pem();
    // The key first, then the certificate: between the two writes the pair does not match, which
    // the server must ride out.
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    cert
}

/// A client trusting only `ca_pem`, keeping no connection between requests (each request makes a
/// new handshake, so it sees the certificate served now).
fn trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn select_one(http: &reqwest::Client, addr: &str) -> Result<String, String> {
    let r = http
        .post(format!("https://{addr}/v1/sql"))
        .bearer_auth(ADMIN_TOKEN)
        .body("SELECT 1 AS one")
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(format!(
        "{} {}",
        r.status().as_u16(),
        r.text().await.unwrap()
    ))
}

#[tokio::test]
async fn https_serves_the_certificate_and_picks_up_a_renewed_one_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let first = write_certificate(&tls);
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let server = TestServer::spawn(
        &tmp.path().join("tarn"),
        tmp.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("listening on https://{}", server.addr))),
        "the log says where HTTPS listens"
    );
    let old = trusting(&first);
    assert_eq!(
        select_one(&old, &server.addr).await.unwrap(),
        r#"200 {"columns":[{"name":"one","type":"BIGINT"}],"rows":[[1]]}"#
    );
    let health = old
        .get(format!("https://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // Plain HTTP on the TLS port gets no answer, and the server goes on serving HTTPS.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    assert!(select_one(&old, &server.addr).await.is_ok());

    // `tarn sql` over HTTPS, trusting the certificate through TARN_CA_CERT.
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, &first).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
        .args(["sql", "--url", &format!("https://{}", server.addr)])
        .args(["--output", "csv", "-e", "SELECT 41 + 1 AS answer"])
        .env("TARN_TOKEN", ADMIN_TOKEN)
        .env("TARN_CA_CERT", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "answer\n42\n\n");
    // Without it the client refuses the unknown certificate, and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
        .args(["sql", "--url", &format!("https://{}", server.addr)])
        .args(["-e", "SELECT 1"])
        .env("TARN_TOKEN", ADMIN_TOKEN)
        .env_remove("TARN_CA_CERT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");

    // A renewed certificate: new connections get it, without a restart.
    let second = write_certificate(&tls);
    let new = trusting(&second);
    wait_until(
        || async { select_one(&new, &server.addr).await.is_ok() },
        "the renewed certificate to be served",
    )
    .await;
    // (A client that resumes a session made before the renewal is not asked for the
    // certificate again, as TLS has it: a new client is.)
    let e = select_one(&trusting(&first), &server.addr)
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // A certificate file that no longer parses is not taken: the last good one keeps serving.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    wait_until(
        || async {
            server
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("TLS certificate not reloaded") && l.contains("cert.pem"))
        },
        "the server to report the broken certificate",
    )
    .await;
    assert_eq!(
        select_one(&new, &server.addr).await.unwrap(),
        r#"200 {"columns":[{"name":"one","type":"BIGINT"}],"rows":[[1]]}"#
    );
}

#[test]
fn serve_refuses_a_certificate_without_its_key_or_a_file_it_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tarn-test-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join("tarn"))
            .args(args)
            .env_remove("TARN_TLS_CERT")
            .env_remove("TARN_TLS_KEY")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = serve(&["--tls-cert", "/nonexistent/cert.pem"]);
    assert!(err.contains("tls_key is not"), "{err}");
    let err = serve(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

/// A server under `dir` serving a fresh self-signed certificate (answered, PEM) on every door.
async fn tls_server(dir: &Path) -> (TestServer, String) {
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let cert = write_certificate(&tls);
    let server = TestServer::spawn(
        &dir.join("tarn"),
        dir,
        &[
            "--tls-cert",
            tls.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            tls.join("key.pem").to_str().unwrap(),
        ],
    )
    .await;
    (server, cert)
}

#[tokio::test]
async fn the_mysql_door_serves_the_same_certificate_and_refuses_plain_logins() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(tmp.path()).await;
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let addr = server.mysql_addr().await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = r#"
import json, os, pymysql
host, port, token = os.environ["HOST"], int(os.environ["PORT"]), os.environ["ADMIN"]
out = {}
c = pymysql.connect(host=host, port=port, user="admin", password=token, ssl={"ca": os.environ["CA"]})
cur = c.cursor()
cur.execute("SELECT 40 + 2")
out["answer"] = cur.fetchone()[0]
out["tls"] = c._sock.version()
try:
    pymysql.connect(host=host, port=port, user="admin", password=token, ssl_disabled=True)
    out["plain"] = "logged in"
except pymysql.MySQLError as e:
    out["plain"] = e.args[0]
    out["plain_message"] = str(e.args[1])
print(json.dumps(out))
"#;
    let out = python_json(
        script,
        &[
            ("HOST", host),
            ("PORT", port),
            ("ADMIN", ADMIN_TOKEN),
            ("CA", ca.to_str().unwrap()),
        ],
    );
    assert_eq!(out["answer"], 42, "{out}");
    assert!(out["tls"].as_str().unwrap().starts_with("TLSv1."), "{out}");
    assert!(
        out["plain"]
            .as_u64()
            .is_some_and(|c| c == 1045 || c == 1698),
        "a plain login got in: {out}"
    );
}

#[tokio::test]
async fn the_flight_sql_door_serves_the_same_certificate_and_refuses_plain_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(tmp.path()).await;
    let addr = server.flight_addr().await;
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("Arrow Flight SQL listening on grpc+tls://{addr}"))),
        "the door says it serves TLS"
    );
    let script = r#"
import json, os
import adbc_driver_flightsql.dbapi as flight
import adbc_driver_manager as adbc
addr, token, ca = os.environ["ADDR"], os.environ["ADMIN"], os.environ["CA"]
out = {}
def query(uri, **opts):
    opts.update(username="admin", password=token)
    c = flight.connect(uri, db_kwargs=opts, autocommit=True)
    cur = c.cursor()
    cur.execute("SELECT 40 + 2")
    return cur.fetchone()[0]
out["answer"] = query("grpc+tls://" + addr, **{"adbc.flight.sql.client_option.tls_root_certs": ca})
for name, uri, opts in [("plain", "grpc://" + addr, {}), ("untrusted", "grpc+tls://" + addr, {})]:
    try:
        out[name] = query(uri, **opts)
    except adbc.Error as e:
        out[name] = str(e)
print(json.dumps(out))
"#;
    let out = python_json(
        script,
        &[("ADDR", &addr), ("ADMIN", ADMIN_TOKEN), ("CA", &cert)],
    );
    assert_eq!(out["answer"], 42, "{out}");
    // Plain text to the TLS port, or a certificate the client does not trust: no answer.
    for refused in ["plain", "untrusted"] {
        assert!(out[refused].is_string(), "{refused} answered: {out}");
    }
    assert!(
        out["untrusted"].as_str().unwrap().contains("certificate"),
        "{out}"
    );
}
