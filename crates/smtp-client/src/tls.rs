//! TLS client configurations for STARTTLS, all on rustls's ring provider.
//!
//! [`SmtpClient::starttls`](crate::SmtpClient::starttls) takes any
//! `ClientConfig`, so the caller decides how the server is authenticated:
//!
//! - [`verifying_config`]: WebPKI validation against the system roots plus
//!   an optional extra CA (for tests and private deployments).
//! - [`insecure_config`]: any certificate is accepted (the handshake
//!   signature is still checked, so the certificate is bound to the
//!   connection). To record whether the certificate *would* have validated,
//!   check the chain from [`TlsInfo`](crate::TlsInfo) afterwards with
//!   [`check_certificate`] and a verifier from [`webpki_verifier`].
//! - [`config_with_verifier`]: any other `ServerCertVerifier`, such as the
//!   DANE and MTA-STS verifiers, which are typically built per connection
//!   because they carry the policy of one destination.
//!
//! Configs are meant to be built once and shared (`Arc`); the system roots
//! are read from the host once per process.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};

/// A client certificate chain and its private key.
pub type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("extra CA: {0}")]
    ExtraCa(String),
    /// Never contains key material: rustls errors describe, not quote.
    #[error("client certificate: {0}")]
    ClientCert(String),
    #[error("certificate verifier: {0}")]
    Verifier(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring crypto provider, used for every config built here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's trusted roots (rustls-native-certs), read on first use and
/// kept for the life of the process. Roots that fail to load are skipped
/// with a warning: an empty list only means nothing validates except
/// through an extra CA.
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        for e in &result.errors {
            tracing::warn!("loading system TLS roots: {e}");
        }
        result.certs
    })
}

/// System roots plus every certificate in `extra_ca_pem`.
pub fn root_store(extra_ca_pem: Option<&[u8]>) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    tracing::debug!("system TLS roots: {added} usable, {ignored} ignored");
    if let Some(pem) = extra_ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsConfigError::ExtraCa(format!("not a PEM certificate list ({e})")))?;
        if certs.is_empty() {
            return Err(TlsConfigError::ExtraCa("no certificate found".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| TlsConfigError::ExtraCa(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// A WebPKI verifier over `roots`, for [`config_with_verifier`] or
/// [`check_certificate`].
pub fn webpki_verifier(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, TlsConfigError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsConfigError::Verifier(e.to_string()))
}

/// A config that validates the server's certificate and name against the
/// system roots plus `extra_ca_pem`.
pub fn verifying_config(
    extra_ca_pem: Option<&[u8]>,
    client_cert: Option<ClientCert>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let verifier = webpki_verifier(root_store(extra_ca_pem)?)?;
    config_with_verifier(verifier, client_cert)
}

/// A config that accepts any server certificate.
pub fn insecure_config(
    client_cert: Option<ClientCert>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    config_with_verifier(Arc::new(AcceptAnyCertificate::new()), client_cert)
}

/// A config whose server authentication is done by `verifier` (the hook
/// for DANE and MTA-STS). TLS 1.2 and 1.3 only.
pub fn config_with_verifier(
    verifier: Arc<dyn ServerCertVerifier>,
    client_cert: Option<ClientCert>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsConfigError::ClientCert(e.to_string()))?,
    };
    Ok(Arc::new(config))
}

/// Would `verifier` accept `chain` (leaf first) for `server_name` now?
/// Used after a handshake with [`insecure_config`] to record whether the
/// certificate validated. The handshake signature is not part of this check
/// (the insecure verifier already checked it).
pub fn check_certificate(
    verifier: &dyn ServerCertVerifier,
    server_name: &str,
    chain: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(server_name)
        .map_err(|_| rustls::Error::General(format!("invalid server name {server_name:?}")))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
}

/// Accepts every certificate chain; checks handshake signatures with the
/// ring provider's algorithms.
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyCertificate {
    pub fn new() -> AcceptAnyCertificate {
        AcceptAnyCertificate {
            provider: provider(),
        }
    }
}

impl Default for AcceptAnyCertificate {
    fn default() -> Self {
        AcceptAnyCertificate::new()
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_schemes(&self.provider)
    }
}

/// The handshake signature check every verifier here shares: it binds the
/// presented certificate's key to this connection, whatever decided that
/// the certificate itself is acceptable.
pub(crate) fn handshake_signature(
    provider: &CryptoProvider,
    tls13: bool,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algs = &provider.signature_verification_algorithms;
    if tls13 {
        verify_tls13_signature(message, cert, dss, algs)
    } else {
        verify_tls12_signature(message, cert, dss, algs)
    }
}

pub(crate) fn signature_schemes(provider: &CryptoProvider) -> Vec<SignatureScheme> {
    provider
        .signature_verification_algorithms
        .supported_schemes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_extra_ca_is_reported() {
        assert!(matches!(
            verifying_config(Some(b"not pem"), None),
            Err(TlsConfigError::ExtraCa(_))
        ));
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            verifying_config(Some(garbage), None),
            Err(TlsConfigError::ExtraCa(_))
        ));
    }

    #[test]
    fn configs_build_without_extra_ca() {
        insecure_config(None).unwrap();
        // Without an extra CA it depends on the host having roots.
        assert_eq!(
            verifying_config(None, None).is_ok(),
            !system_roots().is_empty()
        );
    }
}
