use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Resolver settings from `kumo.dns.configure_resolver` or
/// `kumo.dns.configure_unbound_resolver`.
#[derive(Clone, Debug, Default)]
pub struct DnsConfig {
    /// Empty: use the system configuration (/etc/resolv.conf).
    pub name_servers: Vec<SocketAddr>,
    pub timeout: Option<Duration>,
    pub attempts: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist: a permanent failure.
    #[error("{0}: domain does not exist (NXDOMAIN)")]
    NxDomain(String),
    /// The name exists but has no usable records of the type asked for.
    #[error("{0}: no {1} records")]
    NoRecords(String, &'static str),
    /// SERVFAIL, timeouts, network errors: try again later.
    #[error("{0}: temporary DNS failure: {1}")]
    Temporary(String, String),
    #[error("resolver configuration: {0}")]
    Config(String),
}

impl DnsError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DnsError::NxDomain(_) | DnsError::NoRecords(..))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Lower-case, without the trailing dot.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// RFC 7505: the domain accepts no mail.
    Null,
    /// Hosts sorted by preference. `implicit` when the domain had no MX and
    /// its own name is used (RFC 5321 §5.1).
    Hosts { hosts: Vec<MxHost>, implicit: bool },
}

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn classify(name: &str, e: hickory_resolver::net::NetError, what: &'static str) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain(name.to_string())
    } else if e.is_no_records_found() {
        DnsError::NoRecords(name.to_string(), what)
    } else {
        DnsError::Temporary(name.to_string(), e.to_string())
    }
}

impl Dns {
    pub fn new(cfg: &DnsConfig) -> Result<Dns, DnsError> {
        let mut builder = if cfg.name_servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::Config(e.to_string()))?
        } else {
            let servers = cfg
                .name_servers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        if let Some(t) = cfg.timeout {
            opts.timeout = t;
        }
        if let Some(a) = cfg.attempts {
            opts.attempts = a;
        }
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        Ok(Dns { resolver })
    }

    /// MX hosts for `domain`, sorted by preference (ties keep DNS order; the
    /// caller may shuffle equal preferences).
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let name = fqdn(domain);
        match self.resolver.lookup(name.as_str(), RecordType::MX).await {
            Ok(lookup) => {
                let mut hosts: Vec<MxHost> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some(MxHost {
                            preference: mx.preference,
                            name: mx
                                .exchange
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        }),
                        _ => None,
                    })
                    .collect();
                if hosts.iter().any(|h| h.name.is_empty()) {
                    // A "." exchange anywhere means null MX (RFC 7505 §3).
                    return Ok(MxAnswer::Null);
                }
                if hosts.is_empty() {
                    return Ok(implicit(domain));
                }
                hosts.sort_by_key(|h| h.preference);
                Ok(MxAnswer::Hosts {
                    hosts,
                    implicit: false,
                })
            }
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Ok(implicit(domain)),
            Err(e) => Err(classify(domain, e, "MX")),
        }
    }

    /// A and AAAA addresses of `host`.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = fqdn(host);
        match self.resolver.lookup_ip(name.as_str()).await {
            Ok(l) => {
                let ips: Vec<IpAddr> = l.iter().collect();
                if ips.is_empty() {
                    Err(DnsError::NoRecords(host.to_string(), "A/AAAA"))
                } else {
                    Ok(ips)
                }
            }
            Err(e) => Err(classify(host, e, "A/AAAA")),
        }
    }
}

fn implicit(domain: &str) -> MxAnswer {
    MxAnswer::Hosts {
        hosts: vec![MxHost {
            preference: 0,
            name: domain.trim_end_matches('.').to_ascii_lowercase(),
        }],
        implicit: true,
    }
}
