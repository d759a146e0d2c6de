//! Downgrade-resistant TLS for one destination: which MX hosts may be used
//! and what each one requires, from DANE (RFC 7672) and MTA-STS (RFC 8461).
//!
//! Runs after routing, once per batch of a domain's due messages:
//! - DANE (`enable_dane`, and only with a validating resolver): when the MX
//!   answer is DNSSEC-secure, each host whose address answers are secure
//!   gets its TLSA records from `_<port>._tcp.<host>`. A host whose address
//!   or TLSA lookup fails (SERVFAIL, timeout, bogus) is unreachable, never
//!   downgraded; when no host is left the message waits.
//! - MTA-STS (`enable_mta_sts`): the domain's policy from the resolver's
//!   cache or a fetch. `enforce` keeps only the MX hosts the policy names and
//!   requires TLS with a valid certificate for them; `testing` changes
//!   nothing but the report.
//!
//! A host with usable secure TLSA records follows DANE whatever MTA-STS
//! says; the other hosts follow MTA-STS (for a host whose TLSA records are
//! all unusable, an `enforce` policy replaces "encrypt without
//! authentication" with its stricter rule). Neither ever lowers the egress path's own
//! `enable_tls` (see [`crate::dispatch`]).

use crate::egress::EgressPath;
use crate::queue_manager::Context;
use crate::route::{RouteError, Site};
use ironpost_dns::{Dns, DnsError};
use ironpost_mta_sts::{Mode, StsDns, TxtError};
use ironpost_smtp_client::dane::{self, Tlsa};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What one MX host requires beyond the egress path's `enable_tls`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostPolicy {
    /// No MTA-STS or DANE policy: `enable_tls` alone decides.
    #[default]
    None,
    /// MTA-STS `testing`: deliver as `enable_tls` says and report what
    /// enforcement would have refused. `mx_match`: the policy names the host.
    StsTesting { mx_match: bool },
    /// MTA-STS `enforce`: TLS with a certificate valid for the MX name.
    StsEnforce,
    /// Usable TLSA records: TLS authenticated by them, nothing else.
    Dane(Arc<DaneSpec>),
    /// Secure TLSA records exist but none is usable for SMTP: TLS is still
    /// mandatory, without authentication (RFC 7672 §2.2).
    DaneUnusable,
}

impl HostPolicy {
    /// The policy name written to delivery records.
    pub fn name(&self) -> &'static str {
        match self {
            HostPolicy::None => "none",
            HostPolicy::StsTesting { .. } => "mta-sts-testing",
            HostPolicy::StsEnforce => "mta-sts-enforce",
            HostPolicy::Dane(_) | HostPolicy::DaneUnusable => "dane",
        }
    }

    /// Part of the site name: destinations whose policies differ must not
    /// share a ready queue (and its connections). DANE tags carry a hash of
    /// the records, so a TLSA change (a key rollover, a revoked key) starts
    /// a new queue instead of being checked against the old records.
    fn tag(&self) -> Option<String> {
        Some(match self {
            HostPolicy::None => return None,
            HostPolicy::StsTesting { mx_match: true } => "sts-testing".into(),
            HostPolicy::StsTesting { mx_match: false } => "sts-testing-nomatch".into(),
            HostPolicy::StsEnforce => "sts-enforce".into(),
            HostPolicy::Dane(spec) => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for r in &spec.records {
                    (r.usage, r.selector, r.matching, &r.data).hash(&mut h);
                }
                spec.names.hash(&mut h);
                format!("dane-{:016x}", h.finish())
            }
            HostPolicy::DaneUnusable => "dane-unusable".into(),
        })
    }
}

/// What authenticates a DANE host: its usable TLSA records, and the names a
/// DANE-TA certificate may carry (the MX name, and the CNAME-expanded name
/// when the records were found there, RFC 7672 §2.2.2 and §3.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneSpec {
    pub records: Vec<Tlsa>,
    pub names: Vec<String>,
    /// The TLSA base domain, sent as SNI (RFC 7672 §8.1).
    pub base: String,
}

/// The resolver as the MTA-STS crate needs it.
struct StsLookups<'a>(&'a Dns);

impl StsDns for StsLookups<'_> {
    async fn txt(&self, name: &str) -> Result<Vec<String>, TxtError> {
        match self.0.txt(name).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_permanent() => Err(TxtError::NotFound),
            Err(e) => Err(TxtError::Temporary(e.to_string())),
        }
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.0.ips(host).await.map_err(|e| e.to_string())
    }
}

static DANE_WITHOUT_VALIDATION: AtomicBool = AtomicBool::new(false);

/// Set each host's policy, drop the hosts a policy forbids, and give the
/// site a name that keeps destinations with different policies apart.
pub(crate) async fn apply(
    ctx: &Context,
    domain: &str,
    mut site: Site,
    path: &EgressPath,
    count_refusals: bool,
) -> Result<Site, RouteError> {
    let reporter = ctx.tls_reports.as_ref().filter(|_| count_refusals);
    if site.configured {
        return Ok(site);
    }
    site.report_domain = Some(domain.to_string());
    let cfg = &path.cfg;
    if cfg.enable_dane {
        if !ctx.dns.validating() {
            if !DANE_WITHOUT_VALIDATION.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "enable_dane is set but the resolver does not validate DNSSEC \
                     (kumo.dns.configure_resolver{{ options = {{ validate = true }} }}): DANE is not applied"
                );
            }
        } else if site.mx_secure {
            if let Err(e) = dane_hosts(ctx, domain, &mut site, cfg.smtp_port).await {
                if let (Some(r), RouteError::Policy { result, reason, .. }) = (reporter, &e) {
                    r.refused(domain, &site, result, reason);
                }
                return Err(e);
            }
        }
    }
    if cfg.enable_mta_sts {
        if let Some(sts) = &ctx.sts {
            let out = sts.policy_for(&StsLookups(&ctx.dns), domain).await;
            if let Some(f) = &out.failure {
                tracing::warn!(domain, "MTA-STS policy discovery: {f}");
                site.discovery_failure = Some((f.kind.result_type(), f.detail.clone()));
            }
            if let Some(policy) = out.policy {
                site.sts_report = Some(crate::tls_reports::sts_policy(domain, &policy));
                // Usable TLSA records take precedence over MTA-STS. Unusable
                // ones don't: a host that publishes only PKIX records still
                // has to satisfy an enforce policy.
                let is_dane = |p: &HostPolicy| matches!(p, HostPolicy::Dane(_));
                match policy.mode {
                    Mode::Enforce => {
                        let before: Vec<String> =
                            site.hosts.iter().map(|t| t.host.clone()).collect();
                        site.hosts.retain_mut(|t| {
                            if is_dane(&t.policy) {
                                true
                            } else if policy.matches_mx(&t.host) {
                                t.policy = HostPolicy::StsEnforce;
                                true
                            } else {
                                tracing::info!(domain, host = %t.host, "MX host not in the MTA-STS policy (enforce): skipped");
                                false
                            }
                        });
                        if site.hosts.is_empty() {
                            let reason = format!(
                                "MTA-STS policy of {domain} (enforce) allows mx {} but the MX hosts are {}",
                                policy.mx.join(", "),
                                before.join(", ")
                            );
                            if let Some(r) = reporter {
                                r.refused(domain, &site, "validation-failure", &reason);
                            }
                            return Err(RouteError::Policy {
                                policy: "mta-sts-enforce",
                                result: "validation-failure",
                                reason,
                            });
                        }
                    }
                    Mode::Testing => {
                        // Testing never changes a host that DANE already
                        // makes stricter.
                        for t in site.hosts.iter_mut().filter(|t| {
                            !matches!(t.policy, HostPolicy::Dane(_) | HostPolicy::DaneUnusable)
                        }) {
                            let mx_match = policy.matches_mx(&t.host);
                            if !mx_match {
                                tracing::warn!(domain, host = %t.host, "MX host not in the MTA-STS policy (testing mode: delivering anyway)");
                            }
                            t.policy = HostPolicy::StsTesting { mx_match };
                        }
                    }
                    Mode::None => {}
                }
            }
        }
    }
    let tags: Vec<String> = site
        .hosts
        .iter()
        .filter_map(|t| t.policy.tag().map(|tag| format!("{}={tag}", t.host)))
        .collect();
    if !tags.is_empty() || site.discovery_failure.is_some() {
        let hosts: Vec<&str> = site.hosts.iter().map(|t| t.host.as_str()).collect();
        site.name = format!("{}|tls:{}", hosts.join(","), tags.join(";"));
        if site.discovery_failure.is_some() {
            site.name.push_str("|discovery-failure");
        }
    }
    Ok(site)
}

async fn dane_hosts(
    ctx: &Context,
    domain: &str,
    site: &mut Site,
    default_port: u16,
) -> Result<(), RouteError> {
    let mut failures = Vec::new();
    let mut kept = Vec::with_capacity(site.hosts.len());
    for mut t in std::mem::take(&mut site.hosts) {
        let port = t.port.unwrap_or(default_port);
        match dane_for_host(&ctx.dns, &t.host, port).await {
            Ok(p) => {
                t.policy = p;
                kept.push(t);
            }
            Err(reason) => {
                tracing::warn!(domain, host = %t.host, "DANE: host skipped: {reason}");
                failures.push(reason);
            }
        }
    }
    site.hosts = kept;
    if site.hosts.is_empty() {
        return Err(RouteError::Policy {
            policy: "dane",
            result: "dnssec-invalid",
            reason: format!(
                "DANE: no MX host of {domain} could be checked: {}",
                failures.join("; ")
            ),
        });
    }
    Ok(())
}

/// RFC 7672 §2.2: TLSA records count only when the host's addresses are
/// DNSSEC-secure too; a failed lookup makes the host unusable. §2.2.2: for
/// an MX name that is a (secure) CNAME alias, records at the expanded name
/// come first, then those at the MX name; a DANE-TA certificate may carry
/// either name.
async fn dane_for_host(dns: &Dns, host: &str, port: u16) -> Result<HostPolicy, String> {
    let addrs = match dns.addresses_secure(host).await {
        Ok(a) => a,
        // No address at all: the connection step reports it like any other
        // host without addresses.
        Err(DnsError::NxDomain(_) | DnsError::NoRecords(..)) => return Ok(HostPolicy::None),
        Err(e) => return Err(format!("address lookup: {e}")),
    };
    if !addrs.secure {
        return Ok(HostPolicy::None);
    }
    let lookup = |name: String| async move {
        dns.tlsa(port, &name)
            .await
            .map_err(|e| format!("TLSA lookup: {e}"))
    };
    let mut names = vec![host.to_string()];
    let mut base = host.to_string();
    let mut tlsa = None;
    if let Some(expanded) = addrs.value.canonical.filter(|c| c != host) {
        let found = lookup(expanded.clone()).await?;
        if found.secure && !found.value.is_empty() {
            // Records at the expanded name: it is the TLSA base domain
            // (and the SNI name), and certificates may carry either name.
            names.push(expanded.clone());
            base = expanded;
            tlsa = Some(found);
        }
    }
    let tlsa = match tlsa {
        Some(t) => t,
        None => lookup(host.to_string()).await?,
    };
    if !tlsa.secure || tlsa.value.is_empty() {
        return Ok(HostPolicy::None);
    }
    let records: Vec<Tlsa> = tlsa
        .value
        .into_iter()
        .map(|r| Tlsa {
            usage: r.usage,
            selector: r.selector,
            matching: r.matching,
            data: r.data,
        })
        .collect();
    let usable = dane::usable(&records);
    Ok(if usable.is_empty() {
        HostPolicy::DaneUnusable
    } else {
        HostPolicy::Dane(Arc::new(DaneSpec {
            records: usable,
            names,
            base,
        }))
    })
}
