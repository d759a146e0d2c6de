//! `kumo.start_http_listener{...}`: the listener's configuration.

use ironpost_keysource::KeySource;
use ironpost_policy::CidrSet;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;

/// Default `request_body_limit`: 2 MB, as in KumoMTA.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerConfig {
    /// `host:port` to bind; an IP literal, never a name (no DNS at start).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The name this listener is known by: the `hostname` metadata and
    /// `Received:` host of injected messages, and a name in its self-signed
    /// certificate. Default: the SMTP listener's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub use_tls: bool,
    #[serde(default)]
    pub tls_certificate: Option<KeySource>,
    #[serde(default)]
    pub tls_private_key: Option<KeySource>,
    /// Peers in these CIDR blocks are authorized without credentials.
    /// Parsed strictly: one malformed entry is a start-up error.
    #[serde(default = "default_trusted_hosts")]
    pub trusted_hosts: Vec<String>,
    /// Largest request body in bytes; a number, or a string such as
    /// `"2MB"`, `"512KiB"`, `"1048576"`.
    #[serde(default = "default_body_limit", deserialize_with = "deserialize_size")]
    pub request_body_limit: usize,
}

impl Default for HttpListenerConfig {
    fn default() -> Self {
        HttpListenerConfig {
            listen: default_listen(),
            hostname: None,
            use_tls: false,
            tls_certificate: None,
            tls_private_key: None,
            trusted_hosts: default_trusted_hosts(),
            request_body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8000".to_string()
}

fn default_trusted_hosts() -> Vec<String> {
    vec!["127.0.0.1".to_string(), "::1".to_string()]
}

fn default_body_limit() -> usize {
    DEFAULT_BODY_LIMIT
}

/// What [`HttpListenerConfig::validate`] yields.
#[derive(Clone, Debug)]
pub struct ValidatedConfig {
    pub listen: SocketAddr,
    pub trusted_hosts: CidrSet,
}

impl HttpListenerConfig {
    /// Every rule that can be checked without touching the network or the
    /// key sources.
    pub fn validate(&self) -> Result<ValidatedConfig, String> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "listen {:?} is not an IP address and port such as \"127.0.0.1:8000\"",
                self.listen
            )
        })?;
        let trusted_hosts =
            CidrSet::parse(&self.trusted_hosts).map_err(|e| format!("trusted_hosts: {e}"))?;
        if self.request_body_limit == 0 {
            return Err("request_body_limit must be greater than zero".into());
        }
        match (&self.tls_certificate, &self.tls_private_key) {
            (Some(_), None) => {
                return Err("tls_certificate is set but tls_private_key is not".into())
            }
            (None, Some(_)) => {
                return Err("tls_private_key is set but tls_certificate is not".into())
            }
            (Some(_), Some(_)) if !self.use_tls => {
                return Err(
                    "tls_certificate and tls_private_key are set but use_tls is false".into(),
                )
            }
            _ => {}
        }
        Ok(ValidatedConfig {
            listen,
            trusted_hosts,
        })
    }
}

/// A byte size: an integer, or a string of digits with an optional unit
/// (`B`, `KB`/`K`, `MB`/`M`, `GB`/`G` are powers of 1000; `KiB`, `MiB`,
/// `GiB` powers of 1024), case-insensitive, spaces allowed before the unit.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("{text:?} is not a size such as \"2MB\" or 2097152"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000 * 1000,
        "g" | "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("{text:?}: unknown size unit {other:?}")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{text:?}: size too large"))?;
    usize::try_from(bytes).map_err(|_| format!("{text:?}: size too large"))
}

fn deserialize_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Int(u64),
        // Lua numbers can arrive as floats (2 * 1024 * 1024 is an integer
        // in Lua 5.4, but 2e6 is not).
        Float(f64),
        Text(String),
    }
    let err = |m: String| serde::de::Error::custom(format!("request_body_limit: {m}"));
    match Size::deserialize(d)? {
        Size::Int(n) => usize::try_from(n).map_err(|_| err("too large".into())),
        Size::Float(f) => {
            if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= usize::MAX as f64 {
                Ok(f as usize)
            } else {
                Err(err(format!("{f} is not a whole number of bytes")))
            }
        }
        Size::Text(s) => parse_size(&s).map_err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c: HttpListenerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, HttpListenerConfig::default());
        let v = c.validate().unwrap();
        assert_eq!(v.listen.to_string(), "127.0.0.1:8000");
        assert!(v.trusted_hosts.contains("127.0.0.1".parse().unwrap()));
        assert!(v.trusted_hosts.contains("::1".parse().unwrap()));
        assert!(!v.trusted_hosts.contains("127.0.0.2".parse().unwrap()));
        assert_eq!(c.request_body_limit, 2 * 1024 * 1024);
    }

    #[test]
    fn strict() {
        assert!(serde_json::from_str::<HttpListenerConfig>(r#"{"lisen":"x"}"#).is_err());
        let c: HttpListenerConfig =
            serde_json::from_str(r#"{"trusted_hosts":["10.0.0.1/8"]}"#).unwrap();
        assert!(c.validate().unwrap_err().contains("host bits"));
        let c: HttpListenerConfig = serde_json::from_str(r#"{"listen":"localhost:8000"}"#).unwrap();
        assert!(c.validate().is_err());
        let c: HttpListenerConfig =
            serde_json::from_str(r#"{"tls_certificate":"/x.pem"}"#).unwrap();
        assert!(c.validate().unwrap_err().contains("tls_private_key"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("2 MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert!(parse_size("MB").is_err());
        assert!(parse_size("2XB").is_err());
        assert!(parse_size("-1").is_err());
        let c: HttpListenerConfig =
            serde_json::from_str(r#"{"request_body_limit":"1KiB"}"#).unwrap();
        assert_eq!(c.request_body_limit, 1024);
        let c: HttpListenerConfig = serde_json::from_str(r#"{"request_body_limit":4096}"#).unwrap();
        assert_eq!(c.request_body_limit, 4096);
        let c: HttpListenerConfig =
            serde_json::from_str(r#"{"request_body_limit":4096.0}"#).unwrap();
        assert_eq!(c.request_body_limit, 4096);
        assert!(
            serde_json::from_str::<HttpListenerConfig>(r#"{"request_body_limit":1.5}"#).is_err()
        );
    }
}
