//! Listener TLS: a certificate and key from keysources, re-read at most every
//! five minutes so rotation needs no restart, or a self-signed certificate
//! generated in memory at start when none is configured.

use ironpost_keysource::{KeySource, KeySourceError};
use ironpost_policy::ClientCertMode;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
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
    #[error("tls_required_client_ca: {0}")]
    ClientCa(String),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

type ClientAuth = Option<Arc<dyn ClientCertVerifier>>;

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: &ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

/// Client certificate verification from `tls_required_client_ca`.
pub fn client_verifier(
    ca: &KeySource,
    mode: ClientCertMode,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let pem = ca.load().map_err(|source| TlsError::Load {
        what: "tls_required_client_ca",
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.expose()) {
        let cert = cert.map_err(|e| TlsError::ClientCa(format!("{}: {e}", ca.describe())))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::ClientCa(format!("{}: {e}", ca.describe())))?;
    }
    if roots.is_empty() {
        return Err(TlsError::ClientCa(format!(
            "{}: no CA certificate found",
            ca.describe()
        )));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match mode {
        ClientCertMode::Optional => builder.allow_unauthenticated(),
        ClientCertMode::Required => builder,
    };
    builder
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))
}

fn load_pair(
    cert: &KeySource,
    key: &KeySource,
    client_auth: &ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
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
    server_config(certs, key_der, client_auth)
}

fn self_signed(hostname: &str, client_auth: &ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    server_config(vec![ck.cert.der().clone()], key, client_auth)
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
    client_auth: ClientAuth,
    current: Mutex<Loaded>,
}

impl TlsSource {
    /// Load eagerly so a broken certificate stops the daemon at start.
    pub fn new(
        cert: Option<KeySource>,
        key: Option<KeySource>,
        hostname: &str,
        client_auth: ClientAuth,
    ) -> Result<TlsSource, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let config = load_pair(&cert, &key, &client_auth)?;
                Ok(TlsSource::Configured(Box::new(Configured {
                    cert,
                    key,
                    client_auth,
                    current: Mutex::new(Loaded {
                        at: Instant::now(),
                        config,
                    }),
                })))
            }
            _ => Ok(TlsSource::SelfSigned(self_signed(hostname, &client_auth)?)),
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
                    TlsSource::Configured(c) => load_pair(&c.cert, &c.key, &c.client_auth),
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
