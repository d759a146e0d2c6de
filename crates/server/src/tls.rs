//! Listener TLS: a certificate and key from keysources, re-read at most every
//! five minutes so rotation needs no restart, or a self-signed certificate
//! generated in memory at start when none is configured. The source itself
//! lives in `ironpost-listen`, shared with the HTTP admin listener; this
//! module adds what only SMTP has, client certificates from the policy's
//! `tls_required_client_ca` / `tls_client_certificates`.

use ironpost_keysource::KeySource;
use ironpost_policy::ClientCertMode;
use rustls::server::danger::ClientCertVerifier;
use std::sync::Arc;

pub use ironpost_listen::tls::{provider, TlsError, TlsOptions, TlsSource, RELOAD_INTERVAL};

/// Client certificate verification from `tls_required_client_ca`.
pub fn client_verifier(
    ca: &KeySource,
    mode: ClientCertMode,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mode = match mode {
        ClientCertMode::Optional => ironpost_listen::ClientCertMode::Optional,
        ClientCertMode::Required => ironpost_listen::ClientCertMode::Required,
    };
    ironpost_listen::client_verifier(ca, mode)
}
