//! MTA-STS policy hosting (RFC 8461 §3.2). A request whose `Host` is
//! `mta-sts.<domain>`, for a domain the policy hosts, is answered here and
//! never reaches the admin API: `GET /.well-known/mta-sts.txt` gets the
//! policy (`text/plain`, CRLF lines), anything else `404`, with no
//! authentication either way. The TLS handshake presents that domain's own
//! certificate, chosen by SNI.

use crate::tls::TlsSource;
use ironpost_keysource::KeySource;
use ironpost_listen::TlsOptions;
use std::collections::HashMap;
use std::sync::Arc;

pub const WELL_KNOWN_PATH: &str = "/.well-known/mta-sts.txt";

/// One hosted policy, as the policy configures it.
pub struct HostedPolicy {
    /// The mail domain (`example.com`); served for `mta-sts.example.com`.
    pub domain: String,
    /// The policy file's body.
    pub body: String,
    pub tls_certificate: KeySource,
    pub tls_private_key: KeySource,
}

struct Hosted {
    body: Arc<str>,
    tls: Arc<TlsSource>,
}

/// The hosted policies, by host name (`mta-sts.<domain>`).
#[derive(Default, Clone)]
pub struct MtaStsHosting(Arc<HashMap<String, Hosted>>);

impl MtaStsHosting {
    /// Loads every certificate now, so a broken one stops the start.
    pub fn new(policies: Vec<HostedPolicy>) -> Result<MtaStsHosting, String> {
        let mut map = HashMap::new();
        for p in policies {
            let host = format!("mta-sts.{}", p.domain.to_ascii_lowercase());
            let options = TlsOptions::new(vec![host.clone()])
                .alpn(vec![b"http/1.1".to_vec()])
                .label(format!("MTA-STS policy host {host}"));
            let tls = TlsSource::new(Some(p.tls_certificate), Some(p.tls_private_key), options)
                .map_err(|e| format!("MTA-STS policy for {}: {e}", p.domain))?;
            map.insert(
                host,
                Hosted {
                    body: p.body.into(),
                    tls: Arc::new(tls),
                },
            );
        }
        Ok(MtaStsHosting(Arc::new(map)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The certificate source for a TLS client hello's server name.
    pub(crate) fn tls_for(&self, server_name: Option<&str>) -> Option<Arc<TlsSource>> {
        let name = server_name?.trim_end_matches('.').to_ascii_lowercase();
        self.0.get(&name).map(|h| h.tls.clone())
    }

    /// The answer for a request to a hosted name, or `None` when the host
    /// is not one of ours (the admin API answers then). Over plain HTTP a
    /// hosted name gets `404`: RFC 8461 fetches only over HTTPS.
    pub(crate) fn answer<B>(
        &self,
        req: &hyper::Request<B>,
        tls: bool,
    ) -> Option<hyper::Response<axum::body::Body>> {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())?;
        let host = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let hosted = self.0.get(&host)?;
        let response = hyper::Response::builder();
        let served = tls
            && req.uri().path() == WELL_KNOWN_PATH
            && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD);
        let response = if served {
            let body = if req.method() == hyper::Method::HEAD {
                axum::body::Body::empty()
            } else {
                axum::body::Body::from(hosted.body.to_string())
            };
            response
                .status(200)
                .header(hyper::header::CONTENT_TYPE, "text/plain")
                .header(hyper::header::CONTENT_LENGTH, hosted.body.len())
                .header(hyper::header::CACHE_CONTROL, "max-age=300")
                .body(body)
        } else {
            response
                .status(404)
                .header(hyper::header::CONTENT_TYPE, "text/plain")
                .body(axum::body::Body::from("not found\n"))
        };
        response.ok()
    }
}
