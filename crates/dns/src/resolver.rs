use hickory_proto::dnssec::{Proof, TrustAnchors};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
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
    pub name_servers: Vec<SocketAddr>,
    pub timeout: Option<Duration>,
    pub attempts: Option<usize>,
    /// Validate DNSSEC locally, so that answers carry a trustworthy secure
    /// flag (DANE needs it) and forged answers fail as `Bogus`.
    pub validate: bool,
    /// DNSKEY records in zone-file format to trust instead of the built-in
    /// root keys. Only read when `validate` is set.
    pub trust_anchor_file: Option<PathBuf>,
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
        if cfg.validate {
            let anchors = load_trust_anchors(cfg.trust_anchor_file.as_deref())?;
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        let opts = builder.options_mut();
        if let Some(t) = cfg.timeout {
            opts.timeout = t;
        }
        if let Some(a) = cfg.attempts {
            opts.attempts = a;
        }
        opts.validate = cfg.validate;
        // Keep CNAMEs in answers: the secure flag must cover every hop.
        opts.preserve_intermediates = true;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        Ok(Dns {
            resolver,
            validate: cfg.validate,
        })
    }

    /// Whether answers are DNSSEC-validated (and `secure` can be true).
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
