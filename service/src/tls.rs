//! TLS for the front doors: the certificate chain and key of `tls_cert` / `tls_key` (PEM), served
//! with rustls. The files are checked for changes every [`RELOAD_CHECK`] and read again when they
//! change, so a renewed certificate is served to new connections without a restart; a pair that
//! does not load (a key written before its certificate, a truncated file) leaves the previous
//! certificate serving and is logged, naming the file. Every door that speaks TLS takes its
//! `rustls::ServerConfig` from here, so they all serve the same certificate. (The MySQL door's
//! protocol library speaks rustls 0.22: [`Certificates::mysql_config`] serves the same files
//! through it.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::error::{Result, ServiceError};

/// How often the certificate and key files are looked at for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// How long a client may take over its handshake before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The configured certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the files looked like when last read: changed when either's length or time changes.
type Stamp = [Option<(u64, SystemTime)>; 2];

/// The certificate being served, and the files it comes from.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The same certificate for rustls 0.22 (the MySQL door).
    legacy: RwLock<Arc<rustls022::sign::CertifiedKey>>,
    stamp: Mutex<Stamp>,
}

impl Certificates {
    /// Reads the files; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = stamp(&files);
        let (key, legacy) = certified_key(&files, &provider)?;
        Ok(Arc::new(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            legacy: RwLock::new(Arc::new(legacy)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// The rustls configuration the doors serve with (HTTP/2 and HTTP/1.1 offered by ALPN).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The rustls 0.22 configuration the MySQL door serves with: the same certificate, reloaded
    /// with it.
    pub fn mysql_config(self: &Arc<Self>) -> Arc<rustls022::ServerConfig> {
        let config = rustls022::ServerConfig::builder_with_provider(Arc::new(
            rustls022::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Legacy(self.clone())));
        Arc::new(config)
    }

    /// Reads the files again if they changed since they were last read; true when a new
    /// certificate is now served.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.files);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *last == now {
                return false;
            }
            *last = now;
        }
        match certified_key(&self.files, &self.provider) {
            Ok((key, legacy)) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                *self.legacy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(legacy);
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                warn!(error = %e, "TLS certificate not reloaded; the previous one keeps serving");
                false
            }
        }
    }

    /// Looks for changed files every [`RELOAD_CHECK`] until the task is aborted.
    pub fn spawn_reload(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let check = this.clone();
                // File reads off the async workers.
                let _ = tokio::task::spawn_blocking(move || check.reload_if_changed()).await;
            }
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// [`Certificates`] as rustls 0.22 asks for them.
#[derive(Debug)]
struct Legacy(Arc<Certificates>);

impl rustls022::server::ResolvesServerCert for Legacy {
    fn resolve(
        &self,
        _hello: rustls022::server::ClientHello<'_>,
    ) -> Option<Arc<rustls022::sign::CertifiedKey>> {
        Some(
            self.0
                .legacy
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
    };
    [one(&files.cert), one(&files.key)]
}

/// The files' certificate and key, for rustls 0.23 and 0.22.
fn certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, rustls022::sign::CertifiedKey)> {
    let bad = |path: &Path, why: String| {
        ServiceError::Config(format!("TLS file {}: {why}", path.display()))
    };
    let cert_pem = std::fs::read(&files.cert).map_err(|e| bad(&files.cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, "holds no certificate".into()));
    }
    let key_pem = std::fs::read(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&files.key, format!("no private key in it: {e}")))?;
    let legacy_key = rustls022::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| bad(&files.key, format!("not a key TLS can use: {e}")))?;
    let legacy = rustls022::sign::CertifiedKey::new(chain.clone(), legacy_key);
    let current = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        bad(
            &files.key,
            format!("does not go with {}: {e}", files.cert.display()),
        )
    })?;
    Ok((current, legacy))
}

/// A listener that hands out connections once their TLS handshake is done. Handshakes run in
/// tasks of their own (bounded by [`HANDSHAKE_TIMEOUT`]), so a slow or silent client holds up no
/// one else; a failed handshake (say, plain HTTP sent to the TLS port) drops only that connection.
pub struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum's own listener does.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Small writes (a gRPC stream's frames, an answer's last bytes) go out at once.
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            accepted,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The acceptor task only ends when aborted, which happens when this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_unmatched_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let e = Certificates::load(files.clone()).unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
        std::fs::write(&files.cert, "not pem").unwrap();
        std::fs::write(&files.key, "not pem").unwrap();
        let e = Certificates::load(files).unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("no certificate"),
            "{e}"
        );
    }
}
