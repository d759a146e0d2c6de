//! Configuration objects for delivery: queues (`kumo.make_queue_config`),
//! egress paths (`kumo.make_egress_path`) and the resolver
//! (`kumo.dns.configure_resolver`).

use crate::cidr::CidrSet;
use crate::duration;
use ironpost_keysource::KeySource;
use serde::Deserialize;
use std::time::Duration;

fn d20m() -> Duration {
    Duration::from_secs(20 * 60)
}
fn d7d() -> Duration {
    Duration::from_secs(7 * 86400)
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpProtocol {
    /// Route to these hosts, in order, instead of an MX lookup.
    #[serde(default)]
    pub mx_list: Vec<MxEntry>,
}

/// One `mx_list` entry, in either of KumoMTA's forms.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "a host name, 'host:port', '[ip]', '[ip]:port', or { name = 'host', addr = 'ip' or 'ip:port' }"
)]
pub enum MxEntry {
    /// "host", "host:port", "ip", "ip:port", "[ip]", "[ipv6]:port": names
    /// are resolved for A and AAAA.
    Host(String),
    /// A host name (for TLS and logs) at a fixed address: no lookup.
    Pinned { name: String, addr: String },
}

impl std::fmt::Display for MxEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MxEntry::Host(h) => f.write_str(h),
            MxEntry::Pinned { name, addr } => write!(f, "{name}={addr}"),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueProtocol {
    pub smtp: SmtpProtocol,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default)]
    pub egress_pool: Option<String>,
    #[serde(default = "d20m", deserialize_with = "duration::deserialize")]
    pub retry_interval: Duration,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_retry_interval: Option<Duration>,
    #[serde(default = "d7d", deserialize_with = "duration::deserialize")]
    pub max_age: Duration,
    #[serde(default)]
    pub protocol: Option<QueueProtocol>,
}

/// Why `egress_pool` is refused rather than ignored.
pub const EGRESS_POOL_UNSUPPORTED: &str = "egress pools are not implemented in Ironpost yet, \
     and mail would leave from the host's default address instead of the pool's; remove the key";

impl QueueConfig {
    /// Options Ironpost parses but cannot honour yet are refused, never
    /// ignored.
    pub fn check_supported(&self) -> Result<(), String> {
        if self.egress_pool.is_some() {
            return Err(format!("key 'egress_pool': {EGRESS_POOL_UNSUPPORTED}"));
        }
        Ok(())
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            egress_pool: None,
            retry_interval: d20m(),
            max_retry_interval: None,
            max_age: d7d(),
            protocol: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Use TLS when offered, only with a certificate that validates; a
    /// validation failure fails this host (never a cleartext retry).
    #[default]
    Opportunistic,
    /// Use TLS when offered without validating; fall back to cleartext on
    /// this host if the handshake fails.
    OpportunisticInsecure,
    Required,
    RequiredInsecure,
    Disabled,
}

fn default_port() -> u16 {
    25
}
fn default_connection_limit() -> usize {
    32
}
fn default_max_deliveries() -> usize {
    1024
}
fn default_true() -> bool {
    true
}
fn default_prohibited() -> Vec<String> {
    vec![
        "127.0.0.0/8".into(),
        "::1".into(),
        "0.0.0.0".into(),
        "::".into(),
    ]
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EgressPathConfig {
    #[serde(default)]
    pub enable_tls: TlsMode,
    #[serde(default = "default_true")]
    pub enable_mta_sts: bool,
    #[serde(default)]
    pub enable_dane: bool,
    #[serde(default)]
    pub smtp_auth_plain_username: Option<String>,
    #[serde(default)]
    pub smtp_auth_plain_password: Option<KeySource>,
    #[serde(default)]
    pub allow_smtp_auth_plain_without_tls: bool,
    /// Client certificate presented to the receiving server.
    #[serde(default)]
    pub tls_certificate: Option<KeySource>,
    #[serde(default)]
    pub tls_private_key: Option<KeySource>,
    /// **Ironpost:** extra trusted CA certificates (PEM) on top of the
    /// system roots, e.g. a private CA or a test CA.
    #[serde(default)]
    pub tls_extra_ca: Option<KeySource>,
    #[serde(default = "default_port")]
    pub smtp_port: u16,
    #[serde(default = "default_connection_limit")]
    pub connection_limit: usize,
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries_per_connection: usize,
    #[serde(default = "default_prohibited")]
    pub prohibited_hosts: Vec<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub banner_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub ehlo_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub starttls_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub auth_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub mail_from_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub rcpt_to_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub data_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub data_dot_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub idle_timeout: Option<Duration>,
}

impl Default for EgressPathConfig {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("defaults deserialize")
    }
}

impl EgressPathConfig {
    pub fn validate(&self) -> Result<CidrSet, String> {
        if self.smtp_auth_plain_username.is_some() != self.smtp_auth_plain_password.is_some() {
            return Err(
                "smtp_auth_plain_username and smtp_auth_plain_password must be given together"
                    .into(),
            );
        }
        if self.tls_certificate.is_some() != self.tls_private_key.is_some() {
            return Err("tls_certificate and tls_private_key must be given together".into());
        }
        if self.connection_limit == 0 || self.max_deliveries_per_connection == 0 {
            return Err(
                "connection_limit and max_deliveries_per_connection must be at least 1".into(),
            );
        }
        CidrSet::parse(&self.prohibited_hosts).map_err(|e| format!("prohibited_hosts: {e}"))
    }
}

/// `kumo.dns.configure_resolver{...}` / `configure_unbound_resolver{...}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverSettings {
    #[serde(default)]
    pub name_servers: Vec<String>,
    #[serde(default)]
    pub options: ResolverOptions,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverOptions {
    /// DNSSEC validation (needed for DANE).
    #[serde(default)]
    pub validate: Option<bool>,
    #[serde(default)]
    pub trust_anchor_file: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub attempts: Option<usize>,
}

/// A resolver address: "ip" (port 53) or "ip:port" / "[ipv6]:port".
pub fn parse_name_server(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Ok(sa);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an ip or ip:port"))
}
