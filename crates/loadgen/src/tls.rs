//! TLS configurations, all on rustls's ring provider: the sink's (a given
//! certificate, or a self-signed one made with rcgen) and the generator's
//! (smtp-client's verifying or accept-anything configs).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::error::Error;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}

/// A server config from a PEM certificate chain and private key.
pub fn server_config_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::TlsConfig(format!("certificate: not PEM ({e})")))?;
    if certs.is_empty() {
        return Err(Error::TlsConfig("no certificate found".into()));
    }
    // Never quote key material in an error.
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| Error::TlsConfig("no PEM private key found".into()))?;
    server_config(certs, key)
}

/// A server config from certificate and key files.
pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    server_config_from_pem(&read(cert)?, &read(key)?)
}

/// A server config with a new self-signed certificate (ECDSA P-256, valid
/// for a year from a day ago) naming `names` (host names or IP addresses).
pub fn self_signed_server_config(names: &[String]) -> Result<Arc<ServerConfig>, Error> {
    let err = |e: rcgen::Error| Error::TlsConfig(format!("self-signed certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(err)?;
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
    params.not_before = now - Duration::from_secs(86_400);
    params.not_after = now + Duration::from_secs(365 * 86_400);
    let key_pair = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key_pair).map_err(err)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    server_config(vec![cert.der().clone()], key)
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, Error> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    Ok(Arc::new(config))
}

/// How the generator checks the server's certificate.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// Validate the certificate and name (system roots plus `ca_file`);
    /// otherwise any certificate is accepted.
    pub verify: bool,
    pub ca_file: Option<std::path::PathBuf>,
    /// The name for SNI and verification (default: the target's host).
    pub name: Option<String>,
}

impl ClientTls {
    /// The client config and server name; `host` is the target's host part.
    pub fn build(&self, host: &str) -> Result<(Arc<ClientConfig>, ServerName<'static>), Error> {
        use ironpost_smtp_client::tls;
        let config = if self.verify {
            let ca = self.ca_file.as_deref().map(read).transpose()?;
            tls::verifying_config(ca.as_deref(), None)
        } else {
            tls::insecure_config(None)
        }
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
        let name = self.name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| Error::Config(format!("{name:?} is not a valid TLS server name")))?;
        Ok((config, server_name))
    }
}
