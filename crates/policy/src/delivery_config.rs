//! Configuration objects for delivery: queues (`kumo.make_queue_config`),
//! egress paths (`kumo.make_egress_path`) and the resolver
//! (`kumo.dns.configure_resolver`).

use crate::cidr::CidrSet;
use crate::duration;
use ironpost_keysource::KeySource;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    #[serde(default)]
    pub smtp: SmtpProtocol,
    /// Deliver by calling the policy: the `constructor` event makes a
    /// connection object whose `send(message)` delivers one message.
    #[serde(default)]
    pub custom_lua: Option<CustomLuaProtocol>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CustomLuaProtocol {
    pub constructor: String,
    /// Only 1: batched sends are not implemented.
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub min_batch_size: Option<usize>,
    #[serde(default)]
    pub max_batch_latency: Option<String>,
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

impl QueueConfig {
    /// Options Ironpost parses but cannot honour yet are refused, never
    /// ignored.
    pub fn check_supported(&self) -> Result<(), String> {
        if self.egress_pool.as_deref() == Some("") {
            return Err("key 'egress_pool': must not be empty".into());
        }
        if let Some(c) = self.protocol.as_ref().and_then(|p| p.custom_lua.as_ref()) {
            if c.batch_size.is_some_and(|b| b != 1)
                || c.min_batch_size.is_some()
                || c.max_batch_latency.is_some()
            {
                return Err(
                    "key 'protocol.custom_lua': Ironpost does not support batched \
                            custom_lua delivery yet (batch_size must be 1)"
                        .into(),
                );
            }
            if !self
                .protocol
                .as_ref()
                .is_some_and(|p| p.smtp == SmtpProtocol::default())
            {
                return Err("key 'protocol': custom_lua and smtp cannot both be set".into());
            }
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
fn default_connection_limit() -> crate::throttle::Count {
    crate::throttle::Count {
        n: 32,
        local: false,
    }
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
    /// EHLO name; takes precedence over the egress source's.
    #[serde(default)]
    pub ehlo_domain: Option<String>,
    #[serde(default = "default_connection_limit")]
    pub connection_limit: crate::throttle::Count,
    /// Messages per period to the site from this source (GCRA, local).
    #[serde(default, deserialize_with = "crate::throttle::deserialize_opt")]
    pub max_message_rate: Option<crate::throttle::ThrottleSpec>,
    /// New connections per period to the site from this source.
    #[serde(default, deserialize_with = "crate::throttle::deserialize_opt")]
    pub max_connection_rate: Option<crate::throttle::ThrottleSpec>,
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
    /// Connections shared with every other path naming the same limit
    /// (for example a provider's, across all its sites): name → count.
    #[serde(default)]
    pub additional_connection_limits: BTreeMap<String, crate::throttle::Count>,
    /// Message rates shared with every other path naming the same throttle.
    #[serde(default, deserialize_with = "crate::throttle::deserialize_map")]
    pub additional_message_rate_throttles: BTreeMap<String, crate::throttle::ThrottleSpec>,
    /// How often this source may be chosen for the site (IP warm-up); a
    /// pool passes over a source whose rate is spent.
    #[serde(default, deserialize_with = "crate::throttle::deserialize_opt")]
    pub source_selection_rate: Option<crate::throttle::ThrottleSpec>,
    /// Selection rates shared by name (a provider's, across its sites).
    #[serde(default, deserialize_with = "crate::throttle::deserialize_map")]
    pub additional_source_selection_rates: BTreeMap<String, crate::throttle::ThrottleSpec>,
    /// Parts in one ready queue at most; more wait in their scheduled
    /// queue for up to a minute.
    #[serde(
        default = "default_max_ready",
        deserialize_with = "crate::throttle::deserialize_count"
    )]
    pub max_ready: usize,
    /// After this many connection attempts in a row that reach no host,
    /// every part in the ready queue is deferred at once.
    #[serde(
        default = "default_failures_before_delay",
        deserialize_with = "crate::throttle::deserialize_count"
    )]
    pub consecutive_connection_failures_before_delay: usize,
    /// Remember a site whose TLS handshake failed, for this long. Only
    /// `OpportunisticInsecure` acts on it (cleartext without another
    /// handshake); Ironpost never downgrades the validating modes.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub remember_broken_tls: Option<Duration>,
    /// How long a delivery in progress may run on at shutdown.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub system_shutdown_timeout: Option<Duration>,
    /// Set by the shaping helper when a `[provider."x"]` table applies.
    #[serde(default)]
    pub provider_name: Option<String>,
}

fn default_max_ready() -> usize {
    1024
}
fn default_failures_before_delay() -> usize {
    100
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
        if self.additional_connection_limits.values().any(|c| c.n == 0) || self.max_ready == 0 {
            return Err("additional_connection_limits and max_ready must be at least 1".into());
        }
        if self.connection_limit.n == 0 || self.max_deliveries_per_connection == 0 {
            return Err(
                "connection_limit and max_deliveries_per_connection must be at least 1".into(),
            );
        }
        CidrSet::parse(&self.prohibited_hosts).map_err(|e| format!("prohibited_hosts: {e}"))
    }
}

/// `kumo.dns.configure_resolver{...}` / `configure_unbound_resolver{...}`
/// in KumoMTA's schema: `name_servers`, `domain`, `search` and `options`,
/// also accepted wrapped as `{ Hickory = {...} }` or `{ Unbound = {...} }`,
/// and `'HickorySystemConfig'` (the system configuration). KumoMTA's
/// `Test` and `Aggregate` resolvers and the options Ironpost cannot honour
/// are refused by name (see [`ResolverOptions`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolverSettings {
    /// Empty: the system configuration (/etc/resolv.conf).
    pub name_servers: Vec<NameServer>,
    /// Appended to names that are not fully qualified; Ironpost's own
    /// lookups always are, as KumoMTA's MX lookups are.
    pub domain: Option<String>,
    /// Further search domains, after `domain`.
    pub search: Vec<String>,
    pub options: ResolverOptions,
}

/// One `name_servers` entry: `'IP:PORT'` (or just `'IP'`, port 53), or
/// `{ socket_addr = 'IP:PORT', protocol = ..., trust_negative_responses =
/// ..., bind_addr = 'IP:PORT' }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameServer {
    pub socket_addr: std::net::SocketAddr,
    /// The simple form is `UdpThenTcp`, as in KumoMTA.
    pub protocol: NameServerProtocol,
    /// An NXDOMAIN from this server is final rather than retried on the
    /// other servers. Default true.
    pub trust_negative_responses: bool,
    /// The local address queries to this server are sent from.
    pub bind_addr: Option<std::net::SocketAddr>,
}

/// `protocol`: 'udp', 'tcp' or 'udp_then_tcp' (UDP, and TCP on the same
/// server for truncated answers; the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameServerProtocol {
    Udp,
    Tcp,
    #[default]
    UdpThenTcp,
}

/// `options.use_hosts_file`: whether /etc/hosts answers A/AAAA lookups
/// before DNS. `Always` and `Auto` both read it (Auto is the default, as
/// in KumoMTA), `Never` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseHostsFile {
    Always,
    Auto,
    Never,
}

/// `options.server_ordering_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerOrderingStrategy {
    QueryStatistics,
    RoundRobin,
    UserProvidedOrder,
}

/// `options`, as KumoMTA documents them (docs/reference/kumo.dns/
/// resolver_options). `None`: the resolver's default (hickory's, or the
/// system configuration's when there are no `name_servers`).
///
/// Accepted only at the value that is Ironpost's behaviour, anything else
/// refused at start: `ip_strategy` (only `'Ipv6AndIpv4'`: it steers the
/// lookup Ironpost resolves MX host addresses with, which KumoMTA does not),
/// `preserve_intermediates` (only `true`: DANE needs the CNAME chain),
/// `try_tcp_on_error` (only `false`: hickory 0.26 has no such retry).
/// Refused: `trust_anchor_file = { managed = ... }` (RFC 5011), and the
/// raw hickory names older KumoMTA releases passed through
/// (`avoid_local_udp_ports`, `os_port_selection`, `trust_anchor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolverOptions {
    /// DNSSEC validation (needed for DANE). Set when `trust_anchor_file`
    /// is, as a trust anchor turns validation on in KumoMTA.
    pub validate: Option<bool>,
    /// DNSKEY records to trust instead of the built-in root keys.
    pub trust_anchor_file: Option<String>,
    pub timeout: Option<Duration>,
    pub attempts: Option<usize>,
    pub ndots: Option<usize>,
    pub edns0: Option<bool>,
    pub cache_size: Option<u64>,
    pub use_hosts_file: Option<UseHostsFile>,
    pub positive_min_ttl: Option<Duration>,
    pub negative_min_ttl: Option<Duration>,
    pub positive_max_ttl: Option<Duration>,
    pub negative_max_ttl: Option<Duration>,
    pub num_concurrent_reqs: Option<usize>,
    pub server_ordering_strategy: Option<ServerOrderingStrategy>,
    pub recursion_desired: Option<bool>,
    pub case_randomization: Option<bool>,
}

/// A name server in either of its forms: a string is parsed as `'IP:PORT'`
/// or `'IP'` (port 53), UDP then TCP, negative answers trusted.
pub trait NameServerSpec {
    fn to_name_server(&self) -> Result<NameServer, String>;
}

impl NameServerSpec for str {
    fn to_name_server(&self) -> Result<NameServer, String> {
        Ok(NameServer {
            socket_addr: parse_socket_addr(self)?,
            protocol: NameServerProtocol::UdpThenTcp,
            trust_negative_responses: true,
            bind_addr: None,
        })
    }
}

impl NameServerSpec for String {
    fn to_name_server(&self) -> Result<NameServer, String> {
        self.as_str().to_name_server()
    }
}

impl NameServerSpec for NameServer {
    fn to_name_server(&self) -> Result<NameServer, String> {
        Ok(self.clone())
    }
}

/// A `name_servers` entry as a [`NameServer`].
pub fn parse_name_server<S: NameServerSpec + ?Sized>(spec: &S) -> Result<NameServer, String> {
    spec.to_name_server()
}

/// "ip" (port 53) or "ip:port" / "[ipv6]:port".
fn parse_socket_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Ok(sa);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an ip or ip:port"))
}

const RESOLVER_UNSUPPORTED: &str = "Ironpost does not support this resolver option";

/// A string naming one of `choices`.
fn named_choice<'de, D: serde::Deserializer<'de>, T: Copy>(
    d: D,
    choices: &[(&str, T)],
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("'{n}'")).collect();
            serde::de::Error::custom(format!("{text:?} is not one of {}", names.join(", ")))
        })
}

impl<'de> Deserialize<'de> for NameServerProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named_choice(
            d,
            &[
                ("udp", Self::Udp),
                ("tcp", Self::Tcp),
                ("udp_then_tcp", Self::UdpThenTcp),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for UseHostsFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named_choice(
            d,
            &[
                ("Always", Self::Always),
                ("Auto", Self::Auto),
                ("Never", Self::Never),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for ServerOrderingStrategy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named_choice(
            d,
            &[
                ("QueryStatistics", Self::QueryStatistics),
                ("RoundRobin", Self::RoundRobin),
                ("UserProvidedOrder", Self::UserProvidedOrder),
            ],
        )
    }
}

/// `options.ip_strategy`, parsed so that a bad value is a type error; only
/// the default is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IpStrategy {
    Ipv4Only,
    Ipv6Only,
    Ipv4AndIpv6,
    Ipv6AndIpv4,
    Ipv6thenIpv4,
    Ipv4thenIpv6,
}

impl<'de> Deserialize<'de> for IpStrategy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named_choice(
            d,
            &[
                ("Ipv4Only", Self::Ipv4Only),
                ("Ipv6Only", Self::Ipv6Only),
                ("Ipv4AndIpv6", Self::Ipv4AndIpv6),
                ("Ipv6AndIpv4", Self::Ipv6AndIpv4),
                ("Ipv6thenIpv4", Self::Ipv6thenIpv4),
                ("Ipv4thenIpv6", Self::Ipv4thenIpv6),
            ],
        )
    }
}

/// `trust_anchor_file`: a file name, or KumoMTA's `{ managed = 'path' }`.
enum TrustAnchorFile {
    Static(String),
    Managed,
}

impl<'de> Deserialize<'de> for TrustAnchorFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TrustAnchorFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file name, or { managed = 'path' }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TrustAnchorFile::Static(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(TrustAnchorFile::Managed)
            }
        }
        d.deserialize_any(V)
    }
}

/// The detailed form of a `name_servers` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailedNameServer {
    socket_addr: String,
    #[serde(default)]
    protocol: NameServerProtocol,
    #[serde(default)]
    trust_negative_responses: Option<bool>,
    #[serde(default)]
    bind_addr: Option<String>,
}

impl DetailedNameServer {
    fn check(self) -> Result<NameServer, String> {
        let socket_addr =
            parse_socket_addr(&self.socket_addr).map_err(|e| format!("socket_addr: {e}"))?;
        let bind_addr = match &self.bind_addr {
            None => None,
            Some(text) => {
                let addr = text
                    .parse::<std::net::SocketAddr>()
                    .map_err(|_| format!("bind_addr: {text:?} is not an ip:port"))?;
                if addr.is_ipv4() != socket_addr.is_ipv4() {
                    return Err(format!(
                        "bind_addr: {addr} and socket_addr {socket_addr} are not of the same address family"
                    ));
                }
                Some(addr)
            }
        };
        Ok(NameServer {
            socket_addr,
            protocol: self.protocol,
            trust_negative_responses: self.trust_negative_responses.unwrap_or(true),
            bind_addr,
        })
    }
}

impl<'de> Deserialize<'de> for NameServer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NameServer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("'IP:PORT' or { socket_addr = 'IP:PORT', protocol = ..., trust_negative_responses = ..., bind_addr = ... }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_name_server(v).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                DetailedNameServer::deserialize(serde::de::value::MapAccessDeserializer::new(map))?
                    .check()
                    .map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawResolverOptions {
    validate: Option<bool>,
    trust_anchor_file: Option<TrustAnchorFile>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    timeout: Option<Duration>,
    attempts: Option<usize>,
    ndots: Option<usize>,
    edns0: Option<bool>,
    ip_strategy: Option<IpStrategy>,
    cache_size: Option<u64>,
    use_hosts_file: Option<UseHostsFile>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    positive_min_ttl: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    negative_min_ttl: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    positive_max_ttl: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_opt")]
    negative_max_ttl: Option<Duration>,
    num_concurrent_reqs: Option<usize>,
    preserve_intermediates: Option<bool>,
    try_tcp_on_error: Option<bool>,
    server_ordering_strategy: Option<ServerOrderingStrategy>,
    recursion_desired: Option<bool>,
    case_randomization: Option<bool>,
    avoid_local_udp_ports: Option<serde::de::IgnoredAny>,
    os_port_selection: Option<serde::de::IgnoredAny>,
    trust_anchor: Option<serde::de::IgnoredAny>,
}

impl RawResolverOptions {
    /// `at`: where the options table is ("options" or "Hickory.options").
    fn check(self, at: &str) -> Result<ResolverOptions, String> {
        let refuse = |key: &str, why: &str| {
            Err(format!(
                "{at}.{key}: {RESOLVER_UNSUPPORTED}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ))
        };
        for (key, set) in [
            (
                "avoid_local_udp_ports",
                self.avoid_local_udp_ports.is_some(),
            ),
            ("os_port_selection", self.os_port_selection.is_some()),
            ("trust_anchor", self.trust_anchor.is_some()),
        ] {
            if set {
                return refuse(
                    key,
                    "a hickory option older KumoMTA releases passed through",
                );
            }
        }
        if self
            .ip_strategy
            .is_some_and(|s| s != IpStrategy::Ipv6AndIpv4)
        {
            return refuse(
                "ip_strategy",
                "only 'Ipv6AndIpv4', the default: in Ironpost it would change which addresses \
                 of an MX host mail is sent to, which it does not do in KumoMTA",
            );
        }
        if self.preserve_intermediates == Some(false) {
            return refuse(
                "preserve_intermediates",
                "only true: DANE needs the CNAME records an answer went through",
            );
        }
        if self.try_tcp_on_error == Some(true) {
            return refuse(
                "try_tcp_on_error",
                "only false: hickory 0.26, Ironpost's resolver, has no such retry",
            );
        }
        let trust_anchor_file = match self.trust_anchor_file {
            None => None,
            Some(TrustAnchorFile::Static(path)) => Some(path),
            Some(TrustAnchorFile::Managed) => {
                return refuse(
                    "trust_anchor_file",
                    "the { managed = ... } form, an RFC 5011 managed file; name a static file of DNSKEY records",
                )
            }
        };
        // In KumoMTA a trust anchor turns validation on (both backends).
        let validate = match (self.validate, &trust_anchor_file) {
            (Some(false), Some(_)) => {
                return Err(format!(
                    "{at}.trust_anchor_file: a trust anchor turns DNSSEC validation on; it cannot be combined with validate = false"
                ))
            }
            (None, Some(_)) => Some(true),
            (v, _) => v,
        };
        for (what, min, max) in [
            ("positive", self.positive_min_ttl, self.positive_max_ttl),
            ("negative", self.negative_min_ttl, self.negative_max_ttl),
        ] {
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return Err(format!(
                        "{at}.{what}_min_ttl ({min:?}) is more than {at}.{what}_max_ttl ({max:?})"
                    ));
                }
            }
        }
        Ok(ResolverOptions {
            validate,
            trust_anchor_file,
            timeout: self.timeout,
            attempts: self.attempts,
            ndots: self.ndots,
            edns0: self.edns0,
            cache_size: self.cache_size,
            use_hosts_file: self.use_hosts_file,
            positive_min_ttl: self.positive_min_ttl,
            negative_min_ttl: self.negative_min_ttl,
            positive_max_ttl: self.positive_max_ttl,
            negative_max_ttl: self.negative_max_ttl,
            num_concurrent_reqs: self.num_concurrent_reqs,
            server_ordering_strategy: self.server_ordering_strategy,
            recursion_desired: self.recursion_desired,
            case_randomization: self.case_randomization,
        })
    }
}

/// A DNS name for `domain` / `search`: labels of 1 to 63 octets, at most
/// 253 in all, an optional trailing dot.
fn check_dns_name(key: &str, name: &str) -> Result<String, String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.chars().any(char::is_whitespace));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!("{key}: {name:?} is not a domain name"))
    }
}

/// The fields of the flat form, also found inside `Hickory` / `Unbound`.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FlatResolverSettings {
    name_servers: Vec<NameServer>,
    domain: Option<String>,
    search: Vec<String>,
    options: RawResolverOptions,
}

impl FlatResolverSettings {
    /// `prefix`: "" or "Hickory." / "Unbound.".
    fn check(self, prefix: &str) -> Result<ResolverSettings, String> {
        let domain = self
            .domain
            .map(|d| check_dns_name(&format!("{prefix}domain"), &d))
            .transpose()?;
        let search = self
            .search
            .iter()
            .map(|s| check_dns_name(&format!("{prefix}search"), s))
            .collect::<Result<_, _>>()?;
        Ok(ResolverSettings {
            name_servers: self.name_servers,
            domain,
            search,
            options: self.options.check(&format!("{prefix}options"))?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolverSettings {
    #[serde(default)]
    name_servers: Option<Vec<NameServer>>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    search: Option<Vec<String>>,
    #[serde(default)]
    options: Option<RawResolverOptions>,
    #[serde(default, rename = "Hickory")]
    hickory: Option<FlatResolverSettings>,
    #[serde(default, rename = "Unbound")]
    unbound: Option<FlatResolverSettings>,
    #[serde(default, rename = "Test")]
    test: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "Aggregate")]
    aggregate: Option<serde::de::IgnoredAny>,
}

fn refused_resolver_form(form: &str) -> String {
    let what = match form {
        "Test" => "a resolver answering from zone data in the policy",
        _ => "a chain of resolvers",
    };
    format!(
        "{form}: Ironpost does not support this resolver form ({what}); give name_servers instead"
    )
}

impl RawResolverSettings {
    fn check(self) -> Result<ResolverSettings, String> {
        if self.test.is_some() {
            return Err(refused_resolver_form("Test"));
        }
        if self.aggregate.is_some() {
            return Err(refused_resolver_form("Aggregate"));
        }
        let flat_given = self.name_servers.is_some()
            || self.domain.is_some()
            || self.search.is_some()
            || self.options.is_some();
        match (self.hickory, self.unbound) {
            (Some(_), Some(_)) => Err("Hickory and Unbound: give one resolver, not both".into()),
            (Some(_), None) if flat_given => {
                Err("Hickory: give the settings inside Hickory = { ... } only".into())
            }
            (None, Some(_)) if flat_given => {
                Err("Unbound: give the settings inside Unbound = { ... } only".into())
            }
            (Some(inner), None) => inner.check("Hickory."),
            (None, Some(inner)) => inner.check("Unbound."),
            (None, None) => FlatResolverSettings {
                name_servers: self.name_servers.unwrap_or_default(),
                domain: self.domain,
                search: self.search.unwrap_or_default(),
                options: self.options.unwrap_or_default(),
            }
            .check(""),
        }
    }
}

impl<'de> Deserialize<'de> for ResolverSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ResolverSettings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of resolver settings, or 'HickorySystemConfig'")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    // KumoMTA's hickory resolver on the system configuration:
                    // what no `name_servers` gives.
                    "HickorySystemConfig" => Ok(ResolverSettings::default()),
                    "Test" | "Aggregate" => Err(E::custom(refused_resolver_form(v))),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawResolverSettings::deserialize(serde::de::value::MapAccessDeserializer::new(map))?
                    .check()
                    .map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `kumo.configure_redis_throttles{...}`: the parameters of KumoMTA's
/// `redis.open`. One node only; a Redis Cluster (several `node`s,
/// `cluster = true`, `read_from_replicas`) is refused by name. The pool
/// knobs (`pool_size`, `wait_timeout`, `recycle_timeout`) are accepted and
/// announced as having no effect: Ironpost multiplexes one connection.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisThrottles {
    pub node: RedisNodes,
    #[serde(default)]
    pub username: Option<String>,
    /// A string, or a keysource (`{ key_data = ... }`, `{ vault_path = ... }`).
    #[serde(default)]
    pub password: Option<RedisPassword>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub response_timeout: Option<Duration>,
    #[serde(default)]
    pub pool_size: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub wait_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub recycle_timeout: Option<Duration>,
    #[serde(default)]
    pub cluster: Option<bool>,
    #[serde(default)]
    pub read_from_replicas: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged, expecting = "a redis:// URL or a list of them")]
pub enum RedisNodes {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged, expecting = "a string or a keysource table")]
pub enum RedisPassword {
    Text(String),
    Source(KeySource),
}

/// The URL with any password hidden.
fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for RedisThrottles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = match &self.node {
            RedisNodes::One(u) => vec![redacted_url(u)],
            RedisNodes::Many(v) => v.iter().map(|u| redacted_url(u)).collect(),
        };
        f.debug_struct("RedisThrottles")
            .field("node", &nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisThrottles {
    /// The one node's URL; a cluster is refused.
    pub fn node_url(&self) -> Result<&str, String> {
        let url = match &self.node {
            RedisNodes::One(u) => u.as_str(),
            RedisNodes::Many(v) if v.len() == 1 => v[0].as_str(),
            RedisNodes::Many(_) => {
                return Err(
                    "key 'node': Ironpost does not support a Redis Cluster yet (give one node)"
                        .into(),
                )
            }
        };
        if self.cluster == Some(true) || self.read_from_replicas == Some(true) {
            return Err(
                "keys 'cluster' / 'read_from_replicas': Ironpost does not support a Redis Cluster yet"
                    .into(),
            );
        }
        if url.starts_with("rediss://") {
            return Err(
                "key 'node': Ironpost does not support TLS to Redis (rediss://) yet".into(),
            );
        }
        if !url.starts_with("redis://") {
            return Err(format!(
                "key 'node': expected a redis:// URL, got {:?}",
                redacted_url(url)
            ));
        }
        Ok(url)
    }

    /// The options accepted without effect, for the start-up notice.
    pub fn without_effect(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pool_size.is_some() {
            v.push("pool_size");
        }
        if self.wait_timeout.is_some() {
            v.push("wait_timeout");
        }
        if self.recycle_timeout.is_some() {
            v.push("recycle_timeout");
        }
        v
    }
}
