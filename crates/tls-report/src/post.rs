//! Delivery to `https:` destinations (RFC 8460 §5.4): one POST of the
//! gzipped report.

use std::error::Error as _;
use std::time::Duration;

use crate::error::{Error, Result};

/// The media type of a gzipped report (RFC 8460 §6.4).
pub const CONTENT_TYPE_GZIP: &str = "application/tlsrpt+gzip";

/// POSTs `body_gzip` to `url` with `Content-Type: application/tlsrpt+gzip`.
/// `tls`: `None` validates the server against the system's roots (as for
/// STARTTLS); `Some` uses that configuration instead (a private CA,
/// tests). Redirects are not followed; any status but 2xx is an error
/// naming it. `timeout` bounds the whole request.
pub async fn post_https(
    url: &str,
    body_gzip: Vec<u8>,
    tls: Option<&rustls::ClientConfig>,
    timeout: Duration,
) -> Result<()> {
    let fail = |reason: String| Error::Http {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| fail(format!("bad URL: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(fail("not an https: URL".into()));
    }
    let builder = reqwest::Client::builder()
        .https_only(true)
        // A report endpoint that redirects is misconfigured; following it
        // would send the report somewhere the domain did not publish.
        .redirect(reqwest::redirect::Policy::none())
        // Like the MTA-STS fetch: outbound HTTPS goes direct, not through
        // whatever proxy the environment names.
        .no_proxy()
        .referer(false)
        .user_agent(concat!("ironpost-tls-report/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        .timeout(timeout);
    let builder = match tls {
        Some(config) => builder.use_preconfigured_tls(config.clone()),
        None => builder.use_rustls_tls().tls_built_in_root_certs(true),
    };
    let client = builder
        .build()
        .map_err(|e| fail(format!("HTTP client: {}", error_chain(&e))))?;
    let mut resp = client
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE_GZIP)
        .body(body_gzip)
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    // The start of the body often says why; one chunk is enough for a log.
    let detail = match resp.chunk().await {
        Ok(Some(chunk)) if !chunk.is_empty() => {
            let text = String::from_utf8_lossy(&chunk[..chunk.len().min(200)]);
            let text: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!(": {}", text.trim())
        }
        _ => String::new(),
    };
    Err(Error::HttpStatus {
        url: url.to_string(),
        status: status.as_u16(),
        detail,
    })
}

/// reqwest's Display stops at "error sending request"; the cause (TLS,
/// refused, timeout) is in the sources.
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}
