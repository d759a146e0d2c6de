//! Who may use the admin API.
//!
//! 1. A peer inside `trusted_hosts` is authorized without credentials.
//! 2. Anyone else must send `Authorization: Basic`, which is passed to the
//!    policy (`http_server_validate_auth_basic`). This crate never compares
//!    a password itself and never logs one.
//! 3. Basic credentials are accepted only over TLS, or from a loopback peer
//!    (127.0.0.0/8, ::1): a password sent in clear over a network is refused
//!    without being checked, and over plain HTTP from a non-loopback peer
//!    the 401 carries no `WWW-Authenticate` challenge, so that browsers are
//!    not invited to send one.
//! 4. Failed checks are counted per client IP, per (user, IP) and per user,
//!    across connections, like SMTP AUTH: after [`FAILURE_LIMIT`] failures
//!    inside [`FAILURE_WINDOW`] the IP, or the user from that IP, is locked
//!    out and gets `429 Too Many Requests` with `Retry-After` without the
//!    policy being asked. Failures against a user from every address only
//!    slow its checks down (1 s, doubling, at most 30 s), so an attacker
//!    cannot lock the real user out.

use base64::Engine;
use ironpost_policy::cidr::canonical;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub const FAILURE_LIMIT: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// A boxed, sendable future, as returned by the hooks and the backend.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `http_server_validate_auth_basic(user, password)`: `Ok(true)` accepts,
/// `Ok(false)` refuses, `Err` is a policy failure (500, not counted as a
/// failed attempt, never authorizes).
pub type BasicAuthHook =
    Arc<dyn Fn(String, String) -> BoxFuture<Result<bool, String>> + Send + Sync>;

/// How a request was authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpAuth {
    TrustedHost(IpAddr),
    Basic { user: String },
}

impl HttpAuth {
    /// The `http_auth` value recorded on injected messages, as KumoMTA
    /// does: the user name for Basic, the peer's IP for a trusted host.
    pub fn summarize(&self) -> String {
        match self {
            HttpAuth::TrustedHost(ip) => ip.to_string(),
            HttpAuth::Basic { user } => user.clone(),
        }
    }
}

/// One Basic check, reported to [`crate::AdminBackend::auth_attempt`] for
/// logging (an AuthN record) and metrics. Carries no password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthAttempt {
    pub peer: IpAddr,
    pub user: String,
    pub tls: bool,
    pub success: bool,
    /// Why it failed, or `None` on success.
    pub reason: Option<String>,
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// Rule 3: may Basic credentials from `peer` be considered at all?
pub fn basic_allowed(tls: bool, peer: IpAddr) -> bool {
    tls || is_loopback(peer)
}

#[derive(Debug, PartialEq, Eq)]
pub enum BasicError {
    NotBasic,
    Malformed,
}

/// Decode `Basic base64(user:password)`. The user must not be empty and
/// neither part may contain control characters.
pub fn parse_basic(header: &str) -> Result<(String, String), BasicError> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').ok_or(BasicError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::NotBasic);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| BasicError::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| BasicError::Malformed)?;
    let (user, password) = text.split_once(':').ok_or(BasicError::Malformed)?;
    if user.is_empty()
        || user.len() > 256
        || user.chars().any(char::is_control)
        || password.chars().any(char::is_control)
    {
        return Err(BasicError::Malformed);
    }
    Ok((user.to_string(), password.to_string()))
}

pub use ironpost_listen::throttle::{ip_key, user_key};
/// Failure counting shared by every request of a listener: the same
/// throttle SMTP AUTH uses; [`AuthThrottle::retry_after`] gives the time to
/// put in `Retry-After`.
pub use ironpost_listen::AuthThrottle;

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_only_over_tls_unless_loopback() {
        let lo4: IpAddr = "127.0.0.1".parse().unwrap();
        let lo4b: IpAddr = "127.0.0.2".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let remote6: IpAddr = "2001:db8::1".parse().unwrap();
        let remote_mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for ip in [lo4, lo4b, lo6, mapped] {
            assert!(basic_allowed(false, ip), "{ip}");
            assert!(basic_allowed(true, ip), "{ip}");
        }
        for ip in [remote, remote6, remote_mapped] {
            assert!(!basic_allowed(false, ip), "{ip}");
            assert!(basic_allowed(true, ip), "{ip}");
        }
    }

    #[test]
    fn parse() {
        let h = format!("Basic {}", b64("scott:tiger:x"));
        assert_eq!(
            parse_basic(&h).unwrap(),
            ("scott".to_string(), "tiger:x".to_string())
        );
        let h = format!("basic   {}", b64("u:"));
        assert_eq!(parse_basic(&h).unwrap(), ("u".into(), "".into()));
        assert_eq!(parse_basic("Bearer abc"), Err(BasicError::NotBasic));
        assert_eq!(parse_basic("Basic"), Err(BasicError::NotBasic));
        assert_eq!(parse_basic("Basic !!!"), Err(BasicError::Malformed));
        let h = format!("Basic {}", b64("nocolon"));
        assert_eq!(parse_basic(&h), Err(BasicError::Malformed));
        let h = format!("Basic {}", b64(":pw"));
        assert_eq!(parse_basic(&h), Err(BasicError::Malformed));
        let h = format!("Basic {}", b64("a\r\nb:pw"));
        assert_eq!(parse_basic(&h), Err(BasicError::Malformed));
    }

    #[test]
    fn keys() {
        assert_eq!(ip_key("::ffff:10.0.0.1".parse().unwrap()), "ip:10.0.0.1");
        assert_eq!(user_key("Scott"), user_key("scott"));
    }

    #[test]
    fn summarize() {
        assert_eq!(
            HttpAuth::TrustedHost("127.0.0.1".parse().unwrap()).summarize(),
            "127.0.0.1"
        );
        assert_eq!(
            HttpAuth::Basic {
                user: "scott".into()
            }
            .summarize(),
            "scott"
        );
    }
}
