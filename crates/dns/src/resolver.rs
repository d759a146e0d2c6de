use hickory_proto::dnssec::{Proof, TrustAnchors};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryError, NetError};
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Resolver settings from `kumo.dns.configure_resolver` or
/// `kumo.dns.configure_unbound_resolver`.
#[derive(Clone, Debug, Default)]
pub struct DnsConfig {
    /// Empty: use the system configuration (/etc/resolv.conf).
    pub name_servers: Vec<NameServer>,
    /// Appended to names that are not fully qualified (every lookup here
    /// is); with `search`, replaces the system configuration's.
    pub domain: Option<String>,
    /// Search domains after `domain`.
    pub search: Vec<String>,
    pub timeout: Option<Duration>,
    pub attempts: Option<usize>,
    /// Validate DNSSEC locally, so that answers carry a trustworthy secure
    /// flag (DANE needs it) and forged answers fail as `Bogus`.
    pub validate: bool,
    /// DNSKEY records in zone-file format to trust instead of the built-in
    /// root keys. Only read when `validate` is set.
    pub trust_anchor_file: Option<PathBuf>,
    /// The remaining resolver options.
    pub tuning: ResolverTuning,
}

/// How a name server is queried (KumoMTA's `protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// UDP, and TCP on the same server when an answer is truncated.
    #[default]
    UdpThenTcp,
}

/// One upstream name server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameServer {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// An NXDOMAIN from this server is final; when false the other servers
    /// are asked.
    pub trust_negative_responses: bool,
    /// The local address queries to this server are sent from.
    pub bind_addr: Option<SocketAddr>,
}

impl From<SocketAddr> for NameServer {
    /// UDP then TCP, negative answers trusted: KumoMTA's `'IP:PORT'`.
    fn from(addr: SocketAddr) -> Self {
        NameServer {
            addr,
            transport: Transport::UdpThenTcp,
            trust_negative_responses: true,
            bind_addr: None,
        }
    }
}

/// Whether /etc/hosts answers address lookups before DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostsFile {
    Always,
    Auto,
    Never,
}

/// Which name server is asked first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerOrdering {
    /// By recent latency and failures.
    QueryStatistics,
    RoundRobin,
    /// In the configured order.
    UserProvidedOrder,
}

/// Resolver options with their KumoMTA names; `None` keeps the resolver's
/// default (or the system configuration's, without `name_servers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolverTuning {
    pub ndots: Option<usize>,
    pub edns0: Option<bool>,
    /// Responses kept in the cache.
    pub cache_size: Option<u64>,
    /// Default: read (hickory's and KumoMTA's `Auto`).
    pub use_hosts_file: Option<HostsFile>,
    pub positive_min_ttl: Option<Duration>,
    pub negative_min_ttl: Option<Duration>,
    pub positive_max_ttl: Option<Duration>,
    pub negative_max_ttl: Option<Duration>,
    /// Servers asked in parallel for one query.
    pub num_concurrent_reqs: Option<usize>,
    pub server_ordering: Option<ServerOrdering>,
    /// The RD bit.
    pub recursion_desired: Option<bool>,
    /// 0x20 query-name case randomization over UDP.
    pub case_randomization: Option<bool>,
}

fn name_server_config(ns: &NameServer) -> NameServerConfig {
    let connection = |protocol| {
        let mut c = ConnectionConfig::new(protocol);
        c.port = ns.addr.port();
        c.bind_addr = ns.bind_addr;
        c
    };
    let connections = match ns.transport {
        Transport::Udp => vec![connection(ProtocolConfig::Udp)],
        Transport::Tcp => vec![connection(ProtocolConfig::Tcp)],
        Transport::UdpThenTcp => vec![
            connection(ProtocolConfig::Udp),
            connection(ProtocolConfig::Tcp),
        ],
    };
    NameServerConfig::new(ns.addr.ip(), ns.trust_negative_responses, connections)
}

fn dns_name(key: &str, text: &str) -> Result<Name, DnsError> {
    Name::from_str_relaxed(text)
        .map_err(|e| DnsError::Config(format!("{key}: {text:?} is not a domain name: {e}")))
}

/// hickory's upper TTL bound when none is configured.
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(hickory_resolver::MAX_TTL as u64);

/// `base` (hickory's defaults or the system's) with `cfg` applied.
fn resolver_opts(mut opts: ResolverOpts, cfg: &DnsConfig) -> Result<ResolverOpts, DnsError> {
    if let Some(t) = cfg.timeout {
        opts.timeout = t;
    }
    if let Some(a) = cfg.attempts {
        opts.attempts = a;
    }
    opts.validate = cfg.validate;
    // Keep CNAMEs in answers: the secure flag must cover every hop.
    opts.preserve_intermediates = true;
    let t = &cfg.tuning;
    if let Some(v) = t.ndots {
        opts.ndots = v;
    }
    if let Some(v) = t.edns0 {
        opts.edns0 = v;
    }
    if let Some(v) = t.cache_size {
        opts.cache_size = v;
    }
    if let Some(v) = t.use_hosts_file {
        opts.use_hosts_file = match v {
            HostsFile::Always => ResolveHosts::Always,
            HostsFile::Auto => ResolveHosts::Auto,
            HostsFile::Never => ResolveHosts::Never,
        };
    }
    // hickory clamps TTLs with these bounds and would panic on min > max.
    for (what, min, max) in [
        ("positive", t.positive_min_ttl, t.positive_max_ttl),
        ("negative", t.negative_min_ttl, t.negative_max_ttl),
    ] {
        if let Some(min) = min {
            let max = max.unwrap_or(DEFAULT_MAX_TTL);
            if min > max {
                return Err(DnsError::Config(format!(
                    "{what}_min_ttl ({min:?}) is more than {what}_max_ttl ({max:?}{})",
                    if max == DEFAULT_MAX_TTL {
                        ", the default"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    opts.positive_min_ttl = t.positive_min_ttl.or(opts.positive_min_ttl);
    opts.negative_min_ttl = t.negative_min_ttl.or(opts.negative_min_ttl);
    opts.positive_max_ttl = t.positive_max_ttl.or(opts.positive_max_ttl);
    opts.negative_max_ttl = t.negative_max_ttl.or(opts.negative_max_ttl);
    if let Some(v) = t.num_concurrent_reqs {
        opts.num_concurrent_reqs = v;
    }
    if let Some(v) = t.server_ordering {
        opts.server_ordering_strategy = match v {
            ServerOrdering::QueryStatistics => ServerOrderingStrategy::QueryStatistics,
            ServerOrdering::RoundRobin => ServerOrderingStrategy::RoundRobin,
            ServerOrdering::UserProvidedOrder => ServerOrderingStrategy::UserProvidedOrder,
        };
    }
    if let Some(v) = t.recursion_desired {
        opts.recursion_desired = v;
    }
    if let Some(v) = t.case_randomization {
        opts.case_randomization = v;
    }
    Ok(opts)
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
    /// The answer failed DNSSEC validation (bad or missing signatures, an
    /// unproven denial). Possibly an attack or a broken zone: defer, never
    /// treat as an answer.
    #[error("{0}: DNSSEC validation failed (bogus): {1}")]
    Bogus(String, String),
    #[error("resolver configuration: {0}")]
    Config(String),
}

impl DnsError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DnsError::NxDomain(_) | DnsError::NoRecords(..))
    }
}

/// An answer with its DNSSEC status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secured<T> {
    pub value: T,
    /// True only when validating and every RRset the answer depends on (or,
    /// for a negative answer, the denial of existence) was proven Secure.
    pub secure: bool,
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

/// The addresses of a host and, when its A/AAAA answers went through
/// CNAMEs, the name they lead to (RFC 7672 §2.2.2: DANE looks for TLSA
/// records at that name first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddresses {
    pub ips: Vec<IpAddr>,
    /// The fully CNAME-expanded name, lower-case, without the trailing dot;
    /// `None` when the host is not an alias (or A and AAAA disagree).
    pub canonical: Option<String>,
}

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaRecord {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    validate: bool,
}

/// The outcome of one query once DNSSEC has been accounted for; every
/// failure (including Bogus) is an `Err` before this is built.
enum Answer {
    /// The answer section without RRSIGs (CNAMEs kept, so their proof counts).
    Records { records: Vec<Record>, secure: bool },
    /// `canonical`: for negative answers, where CNAMEs led (see
    /// [`canonical_name`]).
    NoData {
        secure: bool,
        canonical: Option<String>,
    },
    NxDomain {
        secure: bool,
        canonical: Option<String>,
    },
}

impl Answer {
    /// The fully CNAME-expanded name of the answer to a query for `name`,
    /// if it differs from `name`.
    fn canonical(&self, name: &str) -> Option<String> {
        match self {
            Answer::Records { records, .. } => canonical_name(name, records),
            Answer::NoData { canonical, .. } | Answer::NxDomain { canonical, .. } => {
                canonical.clone()
            }
        }
    }
}

/// Lower-case, without the trailing dot.
fn name_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Where the CNAME chain in `records` leads from `name` (None when there
/// is no CNAME at `name`). Bounded by the number of records, so a loop
/// cannot hang it.
fn canonical_name(name: &str, records: &[Record]) -> Option<String> {
    let start = name_key(name);
    let mut cur = start.clone();
    for _ in 0..records.len() {
        let next = records.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if name_key(&r.name.to_ascii()) == cur => {
                Some(name_key(&c.0.to_ascii()))
            }
            _ => None,
        });
        match next {
            Some(next) => cur = next,
            None => break,
        }
    }
    (cur != start).then_some(cur)
}

/// For a negative answer reached through CNAMEs: the final query hickory
/// made (its CNAME chain is gone by then), or the chain in `records`.
fn negative_canonical(name: &str, final_query: &Name, records: &[Record]) -> Option<String> {
    canonical_name(name, records).or_else(|| {
        let last = name_key(&final_query.to_ascii());
        (!last.is_empty() && last != name_key(name)).then_some(last)
    })
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A negative answer is proven only if it carries at least one validated
/// NSEC/NSEC3 and nothing in the authority section is less than Secure; the
/// validator lets unproven denials through as long as it can show the zone
/// is insecure, so "no error" alone proves nothing.
fn denial_proven(authorities: Option<&[Record]>) -> bool {
    let Some(records) = authorities else {
        return false;
    };
    let mut nsec = false;
    for r in records
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
    {
        if r.proof != Proof::Secure {
            return false;
        }
        nsec |= matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3);
    }
    nsec
}

fn load_trust_anchors(path: Option<&Path>) -> Result<TrustAnchors, DnsError> {
    let Some(path) = path else {
        return Ok(TrustAnchors::default());
    };
    let bad =
        |what: String| DnsError::Config(format!("trust anchor file {}: {what}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // An empty anchor set would make every signed answer Bogus; refuse it
    // rather than fail every delivery at run time.
    if !text.to_ascii_uppercase().contains("DNSKEY") {
        return Err(bad("no DNSKEY records".to_string()));
    }
    text.parse::<TrustAnchors>()
        .map_err(|e| bad(format!("not DNSKEY records in zone-file format: {e}")))
}

impl Dns {
    pub fn new(cfg: &DnsConfig) -> Result<Dns, DnsError> {
        let (config, base) = if cfg.name_servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DnsError::Config(e.to_string()))?
        } else {
            let servers = cfg.name_servers.iter().map(name_server_config).collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        let (mut domain, mut search, servers) = config.into_parts();
        if cfg.domain.is_some() || !cfg.search.is_empty() {
            // As KumoMTA builds it: the domain first, then the search list.
            domain = cfg
                .domain
                .as_deref()
                .map(|d| dns_name("domain", d))
                .transpose()?;
            search = domain.iter().cloned().collect();
            for s in &cfg.search {
                search.push(dns_name("search", s)?);
            }
        }
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(domain, search, servers),
            TokioRuntimeProvider::default(),
        );
        if cfg.validate {
            let anchors = load_trust_anchors(cfg.trust_anchor_file.as_deref())?;
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        *builder.options_mut() = resolver_opts(base, cfg)?;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        Ok(Dns {
            resolver,
            validate: cfg.validate,
        })
    }

    /// Whether answers are DNSSEC-validated (and `secure` can be true).
    /// The underlying hickory resolver, for libraries that take one
    /// (`mail-auth`): their lookups then use this configuration, its
    /// name servers, timeouts and cache.
    pub fn hickory(&self) -> TokioResolver {
        self.resolver.clone()
    }

    pub fn validating(&self) -> bool {
        self.validate
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        match self.resolver.lookup(fqdn(name).as_str(), rtype).await {
            Ok(lookup) => {
                let records: Vec<Record> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() != RecordType::RRSIG)
                    .cloned()
                    .collect();
                // hickory already turns Bogus answers into DnssecBogus; this
                // guards against that ever changing.
                if self.validate && records.iter().any(|r| r.proof == Proof::Bogus) {
                    return Err(DnsError::Bogus(
                        name.to_string(),
                        format!("{rtype} answer has a bad signature"),
                    ));
                }
                let secure = self.validate
                    && !records.is_empty()
                    && records.iter().all(|r| r.proof == Proof::Secure);
                Ok(Answer::Records { records, secure })
            }
            Err(e) => self.failure(name, e),
        }
    }

    /// Sort a hickory error into a negative answer or one of our errors.
    fn failure(&self, name: &str, e: NetError) -> Result<Answer, DnsError> {
        match e {
            NetError::Dns(HickoryError::NoRecordsFound(nr)) => {
                let secure = self.validate && denial_proven(nr.authorities.as_deref());
                let canonical = negative_canonical(name, nr.query.name(), &[]);
                match nr.response_code {
                    ResponseCode::NXDomain => Ok(Answer::NxDomain { secure, canonical }),
                    ResponseCode::NoError => Ok(Answer::NoData { secure, canonical }),
                    code => Err(DnsError::Temporary(name.to_string(), code.to_string())),
                }
            }
            // The validator's verdict on a denial it could not prove secure.
            // Only Insecure (e.g. NSEC3 over the soft iteration limit) is an
            // answer; anything else is a failed proof.
            NetError::Dns(HickoryError::Nsec {
                query,
                response,
                proof,
                ..
            }) => {
                if proof != Proof::Insecure {
                    return Err(DnsError::Bogus(
                        name.to_string(),
                        format!("denial of existence is {proof}"),
                    ));
                }
                let records: Vec<Record> = response
                    .answers
                    .iter()
                    .filter(|r| r.record_type() != RecordType::RRSIG)
                    .cloned()
                    .collect();
                let canonical = negative_canonical(name, query.name(), &records);
                if !records.is_empty() {
                    Ok(Answer::Records {
                        records,
                        secure: false,
                    })
                } else if response.response_code == ResponseCode::NXDomain {
                    Ok(Answer::NxDomain {
                        secure: false,
                        canonical,
                    })
                } else {
                    Ok(Answer::NoData {
                        secure: false,
                        canonical,
                    })
                }
            }
            NetError::Dns(HickoryError::DnssecBogus) => Err(DnsError::Bogus(
                name.to_string(),
                "DNSSEC validation failed".to_string(),
            )),
            e => Err(DnsError::Temporary(name.to_string(), e.to_string())),
        }
    }

    /// MX hosts for `domain`, sorted by preference (ties keep DNS order; the
    /// caller may shuffle equal preferences).
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        self.mx_secure(domain).await.map(|s| s.value)
    }

    /// `mx` with the DNSSEC status of the MX RRset (for an implicit MX: of
    /// the proof that there is no MX RRset).
    pub async fn mx_secure(&self, domain: &str) -> Result<Secured<MxAnswer>, DnsError> {
        let (records, secure) = match self.query(domain, RecordType::MX).await? {
            Answer::Records { records, secure } => (records, secure),
            Answer::NoData { secure, .. } => {
                return Ok(Secured {
                    value: implicit(domain),
                    secure,
                })
            }
            Answer::NxDomain { .. } => return Err(DnsError::NxDomain(domain.to_string())),
        };
        let mut hosts: Vec<MxHost> = records
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
        let value = if hosts.iter().any(|h| h.name.is_empty()) {
            // A "." exchange anywhere means null MX (RFC 7505 §3).
            MxAnswer::Null
        } else if hosts.is_empty() {
            implicit(domain)
        } else {
            hosts.sort_by_key(|h| h.preference);
            MxAnswer::Hosts {
                hosts,
                implicit: false,
            }
        };
        Ok(Secured { value, secure })
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
            Err(e) => match self.failure(host, e)? {
                Answer::NxDomain { .. } => Err(DnsError::NxDomain(host.to_string())),
                _ => Err(DnsError::NoRecords(host.to_string(), "A/AAAA")),
            },
        }
    }

    /// A then AAAA addresses of `host`, both always queried. Secure only if
    /// both answers (positive or NODATA) were proven. A Bogus answer in
    /// either family fails the lookup; a temporary failure of one family
    /// while the other has addresses yields those addresses, not secure.
    /// An IP literal is returned as is, not secure (nothing was proven).
    pub async fn ips_secure(&self, host: &str) -> Result<Secured<Vec<IpAddr>>, DnsError> {
        let s = self.addresses_secure(host).await?;
        Ok(Secured {
            value: s.value.ips,
            secure: s.secure,
        })
    }

    /// [`ips_secure`](Self::ips_secure) that also reports where CNAMEs led:
    /// `canonical` is the fully expanded name when the answers went
    /// through one or more CNAMEs. Secure only if every CNAME in the chain
    /// and the address RRsets (or their denials) are. Should A and AAAA
    /// lead to different names, the answer is not secure and `canonical`
    /// is None.
    pub async fn addresses_secure(&self, host: &str) -> Result<Secured<HostAddresses>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Secured {
                value: HostAddresses {
                    ips: vec![ip],
                    canonical: None,
                },
                secure: false,
            });
        }
        let (a, aaaa) = tokio::join!(
            self.query(host, RecordType::A),
            self.query(host, RecordType::AAAA)
        );
        for r in [&a, &aaaa] {
            if let Err(e @ DnsError::Bogus(..)) = r {
                return Err(e.clone());
            }
        }
        let mut ips = Vec::new();
        let mut secure = true;
        let mut nxdomain = false;
        let mut failure = None;
        // Where each family that answered was led.
        let mut canonicals = Vec::new();
        for r in [a, aaaa] {
            if let Ok(answer) = &r {
                canonicals.push(answer.canonical(host));
            }
            match r {
                Ok(Answer::Records { records, secure: s }) => {
                    secure &= s;
                    ips.extend(records.iter().filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    }));
                }
                Ok(Answer::NoData { secure: s, .. }) => secure &= s,
                Ok(Answer::NxDomain { secure: s, .. }) => {
                    secure &= s;
                    nxdomain = true;
                }
                // Under validation a family that failed could be an attacker
                // blocking it to strip DANE: the whole answer fails.
                Err(e) if self.validating() => return Err(e),
                Err(e) => {
                    secure = false;
                    failure = Some(e);
                }
            }
        }
        let mut canonical = canonicals.first().cloned().flatten();
        if canonicals.windows(2).any(|w| w[0] != w[1]) {
            secure = false;
            canonical = None;
        }
        if !ips.is_empty() {
            return Ok(Secured {
                value: HostAddresses { ips, canonical },
                secure,
            });
        }
        Err(match failure {
            Some(e) => e,
            None if nxdomain => DnsError::NxDomain(host.to_string()),
            None => DnsError::NoRecords(host.to_string(), "A/AAAA"),
        })
    }

    /// TLSA records at `_<port>._tcp.<host>`. No such name or no TLSA
    /// records is an empty list; `secure` then says whether that absence
    /// was proven.
    pub async fn tlsa(&self, port: u16, host: &str) -> Result<Secured<Vec<TlsaRecord>>, DnsError> {
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        match self.query(&name, RecordType::TLSA).await? {
            Answer::Records { records, secure } => Ok(Secured {
                value: records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TLSA(t) => Some(TlsaRecord {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data.clone(),
                        }),
                        _ => None,
                    })
                    .collect(),
                secure,
            }),
            Answer::NoData { secure, .. } | Answer::NxDomain { secure, .. } => Ok(Secured {
                value: Vec::new(),
                secure,
            }),
        }
    }

    /// TXT records of `name`, each record's character-strings joined into
    /// one string (invalid UTF-8 replaced).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let records = match self.query(name, RecordType::TXT).await? {
            Answer::Records { records, .. } => records,
            Answer::NoData { .. } => return Err(DnsError::NoRecords(name.to_string(), "TXT")),
            Answer::NxDomain { .. } => return Err(DnsError::NxDomain(name.to_string())),
        };
        let texts: Vec<String> = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(String::from_utf8_lossy(&t.txt_data.concat()).into_owned()),
                _ => None,
            })
            .collect();
        if texts.is_empty() {
            return Err(DnsError::NoRecords(name.to_string(), "TXT"));
        }
        Ok(texts)
    }

    /// [`txt`](Self::txt) with its DNSSEC status, for judging whether a
    /// zone is signed. As for [`tlsa`](Self::tlsa), no such name or no TXT
    /// records is an empty list, and `secure` then says whether that
    /// absence was proven; a Bogus answer is an error.
    pub async fn txt_secure(&self, name: &str) -> Result<Secured<Vec<String>>, DnsError> {
        match self.query(name, RecordType::TXT).await? {
            Answer::Records { records, secure } => Ok(Secured {
                value: records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(t) => {
                            Some(String::from_utf8_lossy(&t.txt_data.concat()).into_owned())
                        }
                        _ => None,
                    })
                    .collect(),
                secure,
            }),
            Answer::NoData { secure, .. } | Answer::NxDomain { secure, .. } => Ok(Secured {
                value: Vec::new(),
                secure,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME};
    use std::str::FromStr;

    fn cname(from: &str, to: &str) -> Record {
        Record::from_rdata(
            Name::from_str(from).unwrap(),
            60,
            RData::CNAME(CNAME(Name::from_str(to).unwrap())),
        )
    }

    #[test]
    fn canonical_names() {
        let a = Record::from_rdata(
            Name::from_str("c.test.").unwrap(),
            60,
            RData::A(A::new(127, 0, 0, 1)),
        );
        let chain = [cname("B.test.", "C.Test."), cname("a.test.", "b.test."), a];
        assert_eq!(canonical_name("A.test", &chain).as_deref(), Some("c.test"));
        assert_eq!(canonical_name("b.test.", &chain).as_deref(), Some("c.test"));
        assert_eq!(canonical_name("c.test", &chain), None);
        assert_eq!(canonical_name("other.test", &chain), None);
        let looped = [cname("x.test.", "y.test."), cname("y.test.", "x.test.")];
        // Terminates.
        let _ = canonical_name("x.test", &looped);

        let target = Name::from_str("t.test.").unwrap();
        assert_eq!(
            negative_canonical("a.test", &target, &[]).as_deref(),
            Some("t.test")
        );
        assert_eq!(negative_canonical("T.Test.", &target, &[]), None);
        assert_eq!(negative_canonical("a.test", &Name::root(), &[]), None);
    }
}

#[cfg(test)]
mod anchor_file_tests {
    use super::load_trust_anchors;

    const KSK_2017: &str = "AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=";

    fn parse(text: &str) -> Result<usize, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        std::fs::write(&p, text).unwrap();
        load_trust_anchors(Some(&p))
            .map(|a| a.len())
            .map_err(|e| e.to_string())
    }

    /// The formats operators point `trust_anchor_file` at.
    #[test]
    fn common_root_key_files_parse() {
        // Debian's dns-root-data /usr/share/dns/root.key.
        let debian = format!(". IN DNSKEY 257 3 8 {KSK_2017} ; keytag 20326\n");
        assert_eq!(parse(&debian), Ok(1));
        // unbound-anchor's auto-trust-anchor-file.
        let unbound = format!(
            "; autotrust trust anchor file\n;;id: . 1\n;;last_queried: 1700000000 ;;Tue Nov 14 22:13:20 2023\n\
             ;;query_failed: 0\n;;query_interval: 43200\n;;retry_time: 8640\n\
             .\t172800\tIN\tDNSKEY\t257 3 8 {KSK_2017} ;{{id = 20326 (ksk), size = 2048b}} ;;state=2 [  VALID  ] ;;count=0 ;;lastchange=1683248477 ;;Fri May  5 01:01:17 2023\n"
        );
        assert_eq!(parse(&unbound), Ok(1));
    }

    #[test]
    fn ds_only_file_is_refused_with_a_reason() {
        let e = parse(
            ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n",
        )
        .unwrap_err();
        assert!(e.contains("root.key") && e.contains("DNSKEY"), "{e}");
    }
}

#[cfg(test)]
mod options_tests {
    use super::*;

    /// Every option reaches hickory's options; unset ones keep the base.
    #[test]
    fn tuning_maps_onto_hickory_options() {
        let cfg = DnsConfig {
            timeout: Some(Duration::from_secs(3)),
            attempts: Some(4),
            validate: true,
            tuning: ResolverTuning {
                ndots: Some(3),
                edns0: Some(false),
                cache_size: Some(10),
                use_hosts_file: Some(HostsFile::Never),
                positive_min_ttl: Some(Duration::from_secs(1)),
                negative_min_ttl: Some(Duration::from_secs(2)),
                positive_max_ttl: Some(Duration::from_secs(30)),
                negative_max_ttl: Some(Duration::from_secs(40)),
                num_concurrent_reqs: Some(1),
                server_ordering: Some(ServerOrdering::RoundRobin),
                recursion_desired: Some(false),
                case_randomization: Some(true),
            },
            ..Default::default()
        };
        let o = resolver_opts(ResolverOpts::default(), &cfg).unwrap();
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.attempts, 4);
        assert!(o.validate && o.preserve_intermediates);
        assert_eq!(o.ndots, 3);
        assert!(!o.edns0);
        assert_eq!(o.cache_size, 10);
        assert_eq!(o.use_hosts_file, ResolveHosts::Never);
        assert_eq!(o.positive_min_ttl, Some(Duration::from_secs(1)));
        assert_eq!(o.negative_min_ttl, Some(Duration::from_secs(2)));
        assert_eq!(o.positive_max_ttl, Some(Duration::from_secs(30)));
        assert_eq!(o.negative_max_ttl, Some(Duration::from_secs(40)));
        assert_eq!(o.num_concurrent_reqs, 1);
        assert_eq!(
            o.server_ordering_strategy,
            ServerOrderingStrategy::RoundRobin
        );
        assert!(!o.recursion_desired);
        assert!(o.case_randomization);

        let mut base = ResolverOpts::default();
        base.ndots = 5;
        base.timeout = Duration::from_secs(9);
        let o = resolver_opts(base, &DnsConfig::default()).unwrap();
        assert_eq!((o.ndots, o.timeout), (5, Duration::from_secs(9)));
        let d = ResolverOpts::default();
        assert_eq!(o.use_hosts_file, d.use_hosts_file);
        assert_eq!(o.edns0, d.edns0);
        assert!(!o.validate && o.preserve_intermediates);
    }

    /// hickory would panic clamping a TTL with min above max.
    #[test]
    fn ttl_bounds_must_be_ordered() {
        let cfg = |min: u64, max: Option<u64>| DnsConfig {
            tuning: ResolverTuning {
                negative_min_ttl: Some(Duration::from_secs(min)),
                negative_max_ttl: max.map(Duration::from_secs),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(resolver_opts(ResolverOpts::default(), &cfg(60, Some(60))).is_ok());
        assert!(resolver_opts(ResolverOpts::default(), &cfg(3600, None)).is_ok());
        for bad in [cfg(61, Some(60)), cfg(86401, None)] {
            let Err(DnsError::Config(msg)) = resolver_opts(ResolverOpts::default(), &bad) else {
                panic!("accepted")
            };
            assert!(msg.contains("negative_min_ttl"), "{msg}");
        }
    }
}
