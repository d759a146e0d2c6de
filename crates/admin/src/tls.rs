//! TLS for the HTTP listener: a certificate and key from keysources (read
//! at bind time, while still privileged, and re-read at most every five
//! minutes so rotation needs no restart), or a self-signed certificate
//! generated in memory when `use_tls` is set without one.

use ironpost_keysource::KeySource;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const RELOAD_INTERVAL: Duration = Duration::from_secs(300);

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let mut cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS configuration rejected: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn load_pair(cert: &KeySource, key: &KeySource) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = cert
        .load()
        .map_err(|e| format!("cannot load tls_certificate: {e}"))?;
    let key_pem = key
        .load()
        .map_err(|e| format!("cannot load tls_private_key: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.expose())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "tls_certificate: {}: not a PEM certificate chain ({e})",
                cert.describe()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_certificate: {}: no certificate found",
            cert.describe()
        ));
    }
    // The error names the source only: never echo key material.
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.expose()).map_err(|_| {
        format!(
            "tls_private_key: {}: no PEM private key found (encrypted keys are not supported)",
            key.describe()
        )
    })?;
    server_config(certs, key_der)
}

fn self_signed(names: Vec<String>) -> Result<Arc<ServerConfig>, String> {
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    server_config(vec![ck.cert.der().clone()], key)
}

pub(crate) struct Loaded {
    at: Instant,
    config: Arc<ServerConfig>,
}

pub(crate) enum TlsSource {
    SelfSigned(Arc<ServerConfig>),
    Configured(Box<Configured>),
}

pub(crate) struct Configured {
    cert: KeySource,
    key: KeySource,
    current: Mutex<Loaded>,
}

impl TlsSource {
    /// Load eagerly so a broken certificate stops the daemon at start.
    /// `names` are the subject alternative names of a self-signed
    /// certificate (IP literals become IP SANs).
    pub(crate) fn new(
        cert: Option<KeySource>,
        key: Option<KeySource>,
        names: Vec<String>,
    ) -> Result<TlsSource, String> {
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
            _ => Ok(TlsSource::SelfSigned(self_signed(names)?)),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            TlsSource::SelfSigned(_) => "self-signed certificate generated in memory".into(),
            TlsSource::Configured(c) => format!("certificate from {}", c.cert.describe()),
        }
    }

    /// The configuration for a handshake now; stale sources are re-read off
    /// the async threads, and a failed reload keeps the previous one.
    pub(crate) async fn config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let current = match &**self {
            TlsSource::SelfSigned(c) => return c.clone(),
            TlsSource::Configured(c) => &c.current,
        };
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
            Ok(Err(e)) => {
                tracing::warn!(
                    "http listener: keeping the previous certificate: reload failed: {e}"
                )
            }
            Err(e) => tracing::warn!(
                "http listener: keeping the previous certificate: reload task failed: {e}"
            ),
        }
        cur.config.clone()
    }
}
