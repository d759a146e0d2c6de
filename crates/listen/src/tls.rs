//! Listener TLS: a certificate and key from keysources, loaded eagerly (at
//! bind time, while still privileged) and re-read at most every
//! [`RELOAD_INTERVAL`] so rotation needs no restart, or a self-signed
//! certificate generated in memory when none is configured. Optionally
//! verifies client certificates (SMTP `tls_required_client_ca`) and offers
//! ALPN protocols (HTTP `http/1.1`).

use ironpost_keysource::{KeySource, KeySourceError};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const RELOAD_INTERVAL: Duration = Duration::from_secs(300);

/// Bumped by [`reload_now`]: every listener re-reads its certificate at
/// its next handshake.
static RELOAD_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Have every listener re-read its certificate and key at its next
/// handshake (the daemon calls it on SIGHUP). Connections in progress keep
/// the configuration they started with.
pub fn reload_now() {
    RELOAD_EPOCH.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn reload_epoch() -> u64 {
    RELOAD_EPOCH.load(std::sync::atomic::Ordering::SeqCst)
}

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

/// Whether a client without a certificate may still complete the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertMode {
    Optional,
    Required,
}

/// Verify client certificates against the CA certificates (PEM) in `ca`.
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

/// Everything about a listener's TLS besides the certificate and key.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Subject alternative names of the self-signed certificate made when
    /// no certificate is configured (IP literals become IP SANs).
    pub self_signed_names: Vec<String>,
    /// Client certificate verification; `None` asks for no certificate.
    pub client_auth: Option<Arc<dyn ClientCertVerifier>>,
    /// ALPN protocols offered, most preferred first.
    pub alpn: Vec<Vec<u8>>,
    /// Names the listener in reload warnings, e.g. `listener 0.0.0.0:25`.
    pub label: String,
    /// How long a certificate loaded from keysources is used before they
    /// are read again.
    pub reload_interval: Duration,
}

impl TlsOptions {
    pub fn new(self_signed_names: Vec<String>) -> TlsOptions {
        TlsOptions {
            self_signed_names,
            client_auth: None,
            alpn: Vec::new(),
            label: "listener".into(),
            reload_interval: RELOAD_INTERVAL,
        }
    }

    pub fn client_auth(mut self, verifier: Option<Arc<dyn ClientCertVerifier>>) -> Self {
        self.client_auth = verifier;
        self
    }

    pub fn alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn reload_interval(mut self, interval: Duration) -> Self {
        self.reload_interval = interval;
        self
    }

    fn server_config(
        &self,
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_auth {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }

    fn load_pair(&self, cert: &KeySource, key: &KeySource) -> Result<Arc<ServerConfig>, TlsError> {
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
        self.server_config(certs, key_der)
    }

    /// A fresh key and certificate, valid for one year from a day ago (not
    /// rcgen's 1975-4096), naming every host name and address given.
    fn self_signed(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let (cert, key) = generate_self_signed(&self.self_signed_names)?;
        self.server_config(vec![cert], key)
    }
}

/// A new key pair and a certificate for `names`, valid for a year.
pub(crate) fn generate_self_signed(
    names: &[String],
) -> Result<
    (
        rustls::pki_types::CertificateDer<'static>,
        PrivateKeyDer<'static>,
    ),
    TlsError,
> {
    {
        let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(err)?;
        let now = rcgen::date_time_ymd(1970, 1, 1)
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
        params.not_before = now - std::time::Duration::from_secs(86_400);
        params.not_after = now + std::time::Duration::from_secs(365 * 86_400);
        let key_pair = rcgen::KeyPair::generate().map_err(err)?;
        let cert = params.self_signed(&key_pair).map_err(err)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        Ok((cert.der().clone(), key))
    }
}

struct Keys {
    cert: KeySource,
    key: KeySource,
}

struct Loaded {
    at: Instant,
    /// The [`reload_now`] count it was loaded under.
    epoch: u64,
    config: Arc<ServerConfig>,
}

/// A listener's certificate source; share it as `Arc<TlsSource>`.
pub struct TlsSource {
    /// `None`: self-signed, never reloaded.
    keys: Option<Keys>,
    options: TlsOptions,
    current: Mutex<Loaded>,
}

impl TlsSource {
    /// With both `cert` and `key`, load them now so a broken certificate
    /// stops the daemon at start; otherwise generate a self-signed
    /// certificate for `options.self_signed_names`.
    pub fn new(
        cert: Option<KeySource>,
        key: Option<KeySource>,
        options: TlsOptions,
    ) -> Result<TlsSource, TlsError> {
        let (keys, config) = match (cert, key) {
            (Some(cert), Some(key)) => {
                let config = options.load_pair(&cert, &key)?;
                (Some(Keys { cert, key }), config)
            }
            _ => (None, options.self_signed()?),
        };
        Ok(TlsSource {
            keys,
            options,
            current: Mutex::new(Loaded {
                at: Instant::now(),
                epoch: reload_epoch(),
                config,
            }),
        })
    }

    pub fn is_self_signed(&self) -> bool {
        self.keys.is_none()
    }

    /// For start-up lines: where the certificate comes from.
    pub fn describe(&self) -> String {
        match &self.keys {
            None => "self-signed certificate generated in memory".into(),
            Some(k) => format!("certificate from {}", k.cert.describe()),
        }
    }

    /// The configuration to use for a handshake now. Once the reload
    /// interval has passed, one caller re-reads the sources off the async
    /// threads (the others keep using the current configuration meanwhile);
    /// a failed reload keeps serving the previous certificate and says so.
    pub async fn config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let config = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let asked = cur.epoch != reload_epoch();
            if self.keys.is_none() || (!asked && cur.at.elapsed() < self.options.reload_interval) {
                return cur.config.clone();
            }
            // Claim this reload: concurrent handshakes do not start more.
            cur.at = Instant::now();
            cur.epoch = reload_epoch();
            cur.config.clone()
        };
        let me = self.clone();
        let reloaded = tokio::task::spawn_blocking(move || match &me.keys {
            Some(k) => me.options.load_pair(&k.cert, &k.key),
            None => Ok(config),
        })
        .await;
        let label = &self.options.label;
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match reloaded {
            Ok(Ok(fresh)) => cur.config = fresh,
            Ok(Err(e)) => {
                tracing::warn!("{label}: keeping the previous certificate: reload failed: {e}")
            }
            Err(e) => {
                tracing::warn!("{label}: keeping the previous certificate: reload task failed: {e}")
            }
        }
        cur.config.clone()
    }
}

#[cfg(test)]
mod tests;
