//! A blocking client for the admin API, used by the `ironpost` CLI
//! (`ironpost queue summary`, `bounce`, `suspend`, `inspect`).
//!
//! Credentials are sent only over https, or to a loopback endpoint
//! (127.0.0.0/8, ::1, `localhost`), mirroring the server's rule, so a
//! mistyped `http://` endpoint never puts a password on the network.
//! Redirects are not followed. Do not use it from inside a tokio runtime
//! (it is `reqwest::blocking`).

use crate::inject::InjectOutcome;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8000";

#[derive(Clone, Default)]
pub struct ClientOptions {
    /// `http://host:port` or `https://host:port`, no path.
    pub endpoint: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Extra PEM CA certificate(s) to trust for https.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (self-signed listeners). Prefer
    /// `ca_file`.
    pub insecure: bool,
    /// Whole-request timeout; 60 s when zero.
    pub timeout: Duration,
}

// The password stays out of debug output.
impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected response: {0}")]
    Decode(String),
}

pub struct AdminClient {
    http: reqwest::blocking::Client,
    base: reqwest::Url,
    credentials: Option<(String, String)>,
}

/// Is `url`'s host loopback (IP literal in 127/8 or ::1, or `localhost`)?
pub fn is_loopback_url(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(crate::auth::is_loopback),
        None => false,
    }
}

impl AdminClient {
    pub fn new(opts: ClientOptions) -> Result<AdminClient, ClientError> {
        let endpoint = if opts.endpoint.is_empty() {
            DEFAULT_ENDPOINT
        } else {
            opts.endpoint.as_str()
        };
        let base = reqwest::Url::parse(endpoint)
            .map_err(|e| ClientError::Config(format!("endpoint {endpoint:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(ClientError::Config(format!(
                "endpoint {endpoint:?} must be http://host:port or https://host:port"
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ClientError::Config(
                "put credentials in --user and --password-file, not in the endpoint URL".into(),
            ));
        }
        let credentials = match (opts.user, opts.password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(ClientError::Config(
                    "a user needs a password and a password needs a user".into(),
                ))
            }
        };
        if credentials.is_some() && base.scheme() != "https" && !is_loopback_url(&base) {
            return Err(ClientError::Config(format!(
                "refusing to send credentials in clear to {endpoint}: use https"
            )));
        }
        let timeout = if opts.timeout.is_zero() {
            Duration::from_secs(60)
        } else {
            opts.timeout
        };
        let mut b = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ironpost/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &opts.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ClientError::Config(format!(
                    "{}: no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if opts.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(AdminClient {
            http,
            base,
            credentials,
        })
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u.set_query(None);
        u
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let req = match &self.credentials {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        };
        let resp = req.send().map_err(|e| ClientError::Transport {
            endpoint: self.base.to_string(),
            message: error_chain(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        Err(ClientError::Status {
            status: status.as_u16(),
            body: body.trim().to_string(),
        })
    }

    fn json(&self, req: reqwest::blocking::RequestBuilder) -> Result<Value, ClientError> {
        self.send(req)?
            .json()
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub fn liveness(&self) -> Result<(), ClientError> {
        self.send(self.http.get(self.url("/api/check-liveness/v1")))
            .map(|_| ())
    }

    pub fn metrics(&self) -> Result<String, ClientError> {
        self.send(self.http.get(self.url("/metrics")))?
            .text()
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub fn queue_summary(&self) -> Result<Value, ClientError> {
        self.json(self.http.get(self.url("/api/admin/queue-summary/v1")))
    }

    pub fn bounce(
        &self,
        domain: Option<&str>,
        tenant: Option<&str>,
        reason: &str,
    ) -> Result<Value, ClientError> {
        let mut body = json!({ "reason": reason });
        if let Some(d) = domain {
            body["domain"] = d.into();
        }
        if let Some(t) = tenant {
            body["tenant"] = t.into();
        }
        self.json(self.http.post(self.url("/api/admin/bounce/v1")).json(&body))
    }

    /// `scope`: (key, value) pairs among `domain`, `tenant`, `campaign`
    /// and `source`.
    pub fn suspend(
        &self,
        scope: &[(&str, &str)],
        reason: &str,
        duration: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut body = json!({ "reason": reason });
        for (k, v) in scope {
            body[*k] = (*v).into();
        }
        if let Some(d) = duration {
            body["duration"] = d.into();
        }
        self.json(
            self.http
                .post(self.url("/api/admin/suspend/v1"))
                .json(&body),
        )
    }

    pub fn suspensions(&self) -> Result<Value, ClientError> {
        self.json(self.http.get(self.url("/api/admin/suspend/v1")))
    }

    /// `Ok(false)` when the server has no such suspension.
    pub fn cancel_suspension(&self, id: u64) -> Result<bool, ClientError> {
        let req = self
            .http
            .delete(self.url("/api/admin/suspend/v1"))
            .json(&json!({ "id": id }));
        match self.json(req) {
            Ok(_) => Ok(true),
            Err(ClientError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What traffic-shaping automation holds.
    pub fn automation(&self) -> Result<Value, ClientError> {
        self.json(self.http.get(self.url("/api/admin/automation/v1")))
    }

    /// `Ok(false)` when the server has no such id.
    pub fn cancel_automation(&self, id: u64) -> Result<bool, ClientError> {
        let req = self
            .http
            .delete(self.url("/api/admin/automation/v1"))
            .json(&json!({ "id": id }));
        match self.json(req) {
            Ok(_) => Ok(true),
            Err(ClientError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `Ok(None)` when the server has no such message.
    pub fn inspect(&self, id: &str) -> Result<Option<Value>, ClientError> {
        let mut url = self.url("/api/admin/inspect-message/v1");
        url.query_pairs_mut().append_pair("id", id);
        match self.json(self.http.get(url)) {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/inject/v1` with a request in KumoMTA's shape.
    pub fn inject(&self, request: &Value) -> Result<InjectOutcome, ClientError> {
        let v = self.json(self.http.post(self.url("/api/inject/v1")).json(request))?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(endpoint: &str, creds: bool) -> ClientOptions {
        ClientOptions {
            endpoint: endpoint.into(),
            user: creds.then(|| "u".to_string()),
            password: creds.then(|| "p".to_string()),
            ..ClientOptions::default()
        }
    }

    #[test]
    fn credentials_only_over_https_or_loopback() {
        for ok in [
            "http://127.0.0.1:8000",
            "http://127.0.0.2:8000",
            "http://[::1]:8000",
            "http://localhost:8000",
            "https://admin.example.com:8000",
        ] {
            assert!(AdminClient::new(opts(ok, true)).is_ok(), "{ok}");
        }
        for bad in ["http://192.0.2.1:8000", "http://admin.example.com:8000"] {
            let e = AdminClient::new(opts(bad, true)).err().unwrap();
            assert!(e.to_string().contains("use https"), "{bad}: {e}");
            assert!(AdminClient::new(opts(bad, false)).is_ok(), "{bad}");
        }
    }

    #[test]
    fn endpoint_checks() {
        assert!(AdminClient::new(opts("ftp://x", false)).is_err());
        assert!(AdminClient::new(opts("not a url", false)).is_err());
        assert!(AdminClient::new(opts("http://u:p@127.0.0.1:8000", false)).is_err());
        let mut o = opts("http://127.0.0.1:1", false);
        o.user = Some("u".into());
        assert!(AdminClient::new(o).is_err());
    }

    #[test]
    fn debug_redacts() {
        let s = format!("{:?}", opts("http://127.0.0.1:1", true));
        assert!(!s.contains("\"p\""));
        assert!(s.contains("redacted"));
    }
}
