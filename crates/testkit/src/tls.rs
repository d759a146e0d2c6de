//! rustls configuration helpers (ring provider) for the test client and for
//! in-test fake servers.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// How the client decides whether to trust the server certificate.
#[derive(Clone, Debug)]
pub enum TlsTrust {
    /// Accept any certificate chain and name (signatures are still checked,
    /// so the handshake itself is real). Test-only.
    AcceptAnyInsecure,
    /// Trust exactly the CA certificate(s) in this PEM bundle.
    CaPem(Vec<u8>),
}

/// The ring provider, passed explicitly so tests never depend on which
/// process-wide default some other crate may have installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn parse_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("parsing certificate PEM")?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in PEM"));
    }
    Ok(certs)
}

pub fn parse_key(pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).context("parsing private key PEM")
}

/// Client config for `trust`, optionally presenting a client certificate
/// (cert PEM, key PEM). TLS 1.2 and 1.3 are both offered.
pub fn client_config(
    trust: &TlsTrust,
    client_cert: Option<(&[u8], &[u8])>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("protocol versions")?;
    let builder = match trust {
        TlsTrust::AcceptAnyInsecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InsecureAcceptAnyServerCert::new())),
        TlsTrust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(pem)? {
                roots.add(cert).context("adding CA certificate")?;
            }
            builder.with_root_certificates(roots)
        }
    };
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(parse_certs(cert)?, parse_key(key)?)
            .context("client certificate")?,
    };
    Ok(Arc::new(config))
}

/// Server config for fake servers in tests. With `client_ca`, client
/// certificates signed by it are requested but optional.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca: Option<&[u8]>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(pem)? {
                roots.add(cert).context("adding client CA")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .context("client verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)
        .context("server certificate")?;
    Ok(Arc::new(config))
}

/// Test-only verifier: accepts every server certificate and name, so tests
/// can reach a daemon using a self-signed or mismatched certificate. The
/// delivery client's own accept-any verifier, reused.
pub use ironpost_smtp_client::tls::AcceptAnyCertificate as InsecureAcceptAnyServerCert;
