//! TLS for the HTTP listener: a certificate and key from keysources (read
//! at bind time, while still privileged, and re-read at most every five
//! minutes so rotation needs no restart), or a self-signed certificate
//! generated in memory when `use_tls` is set without one. The source is
//! `ironpost-listen`'s, shared with the SMTP listeners; HTTP adds ALPN.

use ironpost_keysource::KeySource;
use ironpost_listen::TlsOptions;
pub(crate) use ironpost_listen::TlsSource;

/// Load eagerly so a broken certificate stops the daemon at start.
/// `names` are the subject alternative names of a self-signed certificate
/// (IP literals become IP SANs); `listen` names the listener in warnings.
pub(crate) fn source(
    cert: Option<KeySource>,
    key: Option<KeySource>,
    names: Vec<String>,
    listen: &str,
) -> Result<TlsSource, String> {
    let options = TlsOptions::new(names)
        .alpn(vec![b"http/1.1".to_vec()])
        .label(format!("http listener {listen}"));
    TlsSource::new(cert, key, options).map_err(|e| e.to_string())
}
