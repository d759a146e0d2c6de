//! Listener TLS: a certificate and key from keysources, re-read at most every
//! five minutes so rotation needs no restart, or a self-signed certificate
//! generated in memory at start when none is configured.

use ironpost_keysource::{KeySource, KeySourceError};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const RELOAD_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_certificate: {0}")]
    Certificate(String),
    #[error("tls_private_key: {0}")]
    PrivateKey(String),
    #[error("cannot load {what}: {source}")]
    Load {
        what: &'static str,
        source: KeySourceError,
    },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}

fn load_pair(cert: &KeySource, key: &KeySource) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = cert.load().map_err(|source| TlsError::Load {
        what: "tls_certificate",
        source,
    })?;
    let key_pem = key.load().map_err(|source| TlsError::Load {
        what: "tls_private_key",
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.expose())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError::Certificate(format!(
                "{}: not a PEM certificate chain ({e})",
                cert.describe()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate(format!(
            "{}: no certificate found",
            cert.describe()
        )));
    }
    // The error names the source only: never echo key material.
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.expose()).map_err(|_| {
        TlsError::PrivateKey(format!(
            "{}: no PEM private key found (encrypted keys are not supported)",
            key.describe()
        ))
    })?;
    server_config(certs, key_der)
}

fn self_signed(hostname: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    server_config(vec![ck.cert.der().clone()], key)
}

#[doc(hidden)]
pub struct Loaded {
    at: Instant,
    config: Arc<ServerConfig>,
}

pub enum TlsSource {
    SelfSigned(Arc<ServerConfig>),
    Configured(Box<Configured>),
}

#[doc(hidden)]
pub struct Configured {
    cert: KeySource,
    key: KeySource,
    current: Mutex<Loaded>,
}

impl TlsSource {
    /// Load eagerly so a broken certificate stops the daemon at start.
    pub fn new(
        cert: Option<KeySource>,
        key: Option<KeySource>,
        hostname: &str,
    ) -> Result<TlsSource, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let config = load_pair(&cert, &key)?;
                Ok(TlsSource::Configured(Box::new(Configured {
                    cert,
                    key,
                    current: Mutex::new(Loaded {
                        at: Instant::now(),
                        config,
                    }),
                })))
            }
            _ => Ok(TlsSource::SelfSigned(self_signed(hostname)?)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            TlsSource::SelfSigned(_) => "self-signed certificate generated in memory".into(),
            TlsSource::Configured(c) => format!("certificate from {}", c.cert.describe()),
        }
    }

    /// The configuration to use for a handshake now. After the reload
    /// interval the sources are read again off the async threads; a failed
    /// reload keeps serving the previous certificate and says so.
    pub async fn config(self: &Arc<Self>) -> Arc<ServerConfig> {
        match &**self {
            TlsSource::SelfSigned(c) => c.clone(),
            TlsSource::Configured(c) => {
                let current = &c.current;
                let (stale, config) = {
                    let cur = current.lock().unwrap_or_else(|p| p.into_inner());
                    (cur.at.elapsed() >= RELOAD_INTERVAL, cur.config.clone())
                };
                if !stale {
                    return config;
                }
                let me = self.clone();
                let reloaded = tokio::task::spawn_blocking(move || match &*me {
                    TlsSource::Configured(c) => load_pair(&c.cert, &c.key),
                    TlsSource::SelfSigned(c) => Ok(c.clone()),
                })
                .await;
                let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
                cur.at = Instant::now();
                match reloaded {
                    Ok(Ok(fresh)) => cur.config = fresh,
                    Ok(Err(e)) => tracing::warn!(
                        "keeping the previous listener certificate: reload failed: {e}"
                    ),
                    Err(e) => tracing::warn!(
                        "keeping the previous listener certificate: reload task failed: {e}"
                    ),
                }
                cur.config.clone()
            }
        }
    }
}
