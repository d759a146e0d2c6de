//! Fetching `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461
//! §3.3), with every failure classified for TLS-RPT (RFC 8460 §4.3.2).

use crate::dns::{PinnedHandle, PinnedResolve, StsDns};
use crate::policy::Policy;
use crate::StsError;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Largest policy body accepted (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS-RPT failure class of a policy fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailureKind {
    /// Network, timeout, HTTP status, redirect, size or content type.
    FetchError,
    /// The body was fetched but is not a valid policy.
    PolicyInvalid,
    /// The policy host's certificate did not validate.
    WebPkiInvalid,
}

impl FetchFailureKind {
    /// The RFC 8460 `result-type` string.
    pub fn result_type(self) -> &'static str {
        match self {
            FetchFailureKind::FetchError => "sts-policy-fetch-error",
            FetchFailureKind::PolicyInvalid => "sts-policy-invalid",
            FetchFailureKind::WebPkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// Why no fresh policy could be obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    pub kind: FetchFailureKind,
    /// Human-readable cause, for logs and the report's failure details.
    pub detail: String,
}

impl FetchFailure {
    fn fetch(detail: impl Into<String>) -> FetchFailure {
        FetchFailure {
            kind: FetchFailureKind::FetchError,
            detail: crate::clip(detail.into()),
        }
    }
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.result_type(), self.detail)
    }
}

/// Settings for [`PolicyFetcher`].
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Extra trusted CA certificates (PEM), on top of the system roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// HTTPS port of the policy host. Always 443 in production; other
    /// values exist only so tests can use an unprivileged loopback port.
    pub https_port: u16,
    pub connect_timeout: Duration,
    /// Limit for the whole fetch: resolution, connection, TLS, headers
    /// and body.
    pub fetch_timeout: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            extra_ca_pem: None,
            https_port: 443,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// Fetches and parses policies. Built once and shared: the HTTP client
/// (and so the system trust store) is created here.
pub struct PolicyFetcher {
    client: reqwest::Client,
    pins: Arc<PinnedResolve>,
    https_port: u16,
    fetch_timeout: Duration,
}

impl PolicyFetcher {
    pub fn new(config: &FetchConfig) -> Result<PolicyFetcher, StsError> {
        let pins = Arc::new(PinnedResolve::default());
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            // With the rustls-tls-native-roots feature these are the
            // host's roots, as for STARTTLS.
            .tls_built_in_root_certs(true)
            .https_only(true)
            // §3.3: "HTTP 3xx redirects MUST NOT be followed".
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the policy host itself, bypassing
            // StsDns; MTA-STS fetches go direct.
            .no_proxy()
            // No pooling: each fetch connects to the addresses it just
            // resolved, never to a connection made for an older answer.
            .pool_max_idle_per_host(0)
            .referer(false)
            .user_agent(concat!("ironpost-mta-sts/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.fetch_timeout)
            .dns_resolver(Arc::new(PinnedHandle(pins.clone())));
        if let Some(pem) = &config.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| StsError::Config(format!("extra CA: {e}")))?;
            if certs.is_empty() {
                return Err(StsError::Config("extra CA: no certificate found".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| StsError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(PolicyFetcher {
            client,
            pins,
            https_port: config.https_port,
            fetch_timeout: config.fetch_timeout,
        })
    }

    /// Fetches and parses the policy of `domain` (already normalised),
    /// resolving the policy host through `dns`.
    pub async fn fetch<D: StsDns>(&self, dns: &D, domain: &str) -> Result<Policy, FetchFailure> {
        // reqwest's own timeout does not cover the StsDns lookup.
        match tokio::time::timeout(self.fetch_timeout, self.fetch_inner(dns, domain)).await {
            Ok(r) => r,
            Err(_) => Err(FetchFailure::fetch(format!(
                "timed out after {:?}",
                self.fetch_timeout
            ))),
        }
    }

    async fn fetch_inner<D: StsDns>(&self, dns: &D, domain: &str) -> Result<Policy, FetchFailure> {
        let host = format!("mta-sts.{domain}");
        let ips = dns
            .ips(&host)
            .await
            .map_err(|e| FetchFailure::fetch(format!("resolving {host}: {e}")))?;
        if ips.is_empty() {
            return Err(FetchFailure::fetch(format!("{host} has no address")));
        }
        let _pin = self.pins.pin(&host, ips);

        let url = if self.https_port == 443 {
            format!("https://{host}/.well-known/mta-sts.txt")
        } else {
            format!("https://{host}:{}/.well-known/mta-sts.txt", self.https_port)
        };
        let mut resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| classify(&url, &e))?;

        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(FetchFailure::fetch(format!(
                "{url}: redirect refused (HTTP {status}, to {to:.200})"
            )));
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchFailure::fetch(format!("{url}: HTTP {status}")));
        }
        check_content_type(resp.headers().get(reqwest::header::CONTENT_TYPE))
            .map_err(|e| FetchFailure::fetch(format!("{url}: {e}")))?;
        // Refuse early when the size is announced; the streaming check
        // below is what actually bounds memory.
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_POLICY_SIZE as u64)
        {
            return Err(FetchFailure::fetch(format!(
                "{url}: body larger than {MAX_POLICY_SIZE} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&url, &e))? {
            if body.len() + chunk.len() > MAX_POLICY_SIZE {
                return Err(FetchFailure::fetch(format!(
                    "{url}: body larger than {MAX_POLICY_SIZE} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Policy::parse_bytes(&body).map_err(|e| FetchFailure {
            kind: FetchFailureKind::PolicyInvalid,
            detail: format!("{url}: {e}"),
        })
    }
}

/// §3.3: the media type must be `text/plain`; parameters such as
/// `charset` are allowed.
fn check_content_type(value: Option<&reqwest::header::HeaderValue>) -> Result<(), String> {
    let value = value.ok_or("no Content-Type")?;
    let text = value
        .to_str()
        .map_err(|_| "unreadable Content-Type".to_string())?;
    let media = text.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("text/plain") {
        Ok(())
    } else {
        Err(format!(
            "Content-Type {:?} is not text/plain",
            &text[..text.len().min(100)]
        ))
    }
}

/// Sorts a reqwest error into the TLS-RPT classes.
fn classify(url: &str, err: &reqwest::Error) -> FetchFailure {
    let kind = if is_webpki_failure(err) {
        FetchFailureKind::WebPkiInvalid
    } else {
        FetchFailureKind::FetchError
    };
    let chain = error_chain(err);
    // reqwest usually names the URL itself.
    let mut detail = if chain.contains(url) {
        chain
    } else {
        format!("{url}: {chain}")
    };
    if err.is_timeout() && !detail.contains("timed out") {
        detail.push_str(" (timed out)");
    }
    FetchFailure {
        kind,
        detail: crate::clip(detail),
    }
}

/// Whether a certificate-validation failure by rustls is somewhere in the
/// error's cause chain. reqwest → hyper → `io::Error` → `rustls::Error`;
/// `io::Error::source()` skips the error it wraps (it returns the inner
/// error's *source*), so wrapped errors are reached through `get_ref()`.
fn is_webpki_failure(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_webpki_failure(inner) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// "a: b: c" from an error and its causes, skipping repeats (several
/// layers re-display their cause).
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_type() {
        let ok = |s: &str| check_content_type(Some(&HeaderValue::from_str(s).unwrap())).is_ok();
        assert!(ok("text/plain"));
        assert!(ok("text/plain; charset=utf-8"));
        assert!(ok("Text/Plain ;charset=US-ASCII"));
        assert!(!ok("text/html"));
        assert!(!ok("text/plainx"));
        assert!(!ok("application/octet-stream"));
        assert!(check_content_type(None).is_err());
    }

    #[test]
    fn webpki_detection_through_io_error() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        assert!(is_webpki_failure(&io));
        let other =
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(!is_webpki_failure(&other));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_webpki_failure(&refused));
    }

    #[test]
    fn result_types() {
        assert_eq!(
            FetchFailureKind::FetchError.result_type(),
            "sts-policy-fetch-error"
        );
        assert_eq!(
            FetchFailureKind::PolicyInvalid.result_type(),
            "sts-policy-invalid"
        );
        assert_eq!(
            FetchFailureKind::WebPkiInvalid.result_type(),
            "sts-webpki-invalid"
        );
    }
}
