//! Where a domain's mail goes: the queue's `mx_list` when the policy gives
//! one, otherwise the MX records (RFC 7505 null MX, RFC 5321 implicit MX).

use crate::tls_policy::HostPolicy;
use ironpost_dns::{Dns, DnsError, MxAnswer};
use ironpost_policy::{MxEntry, QueueConfig};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    /// `None`: the egress path's `smtp_port`.
    pub port: Option<u16>,
    /// A fixed address (`mx_list = { { name, addr } }`): `host` is not
    /// looked up.
    pub addr: Option<IpAddr>,
    /// MTA-STS or DANE requirements for this host, set after routing.
    pub policy: HostPolicy,
}

impl Target {
    fn new(host: String, port: Option<u16>) -> Target {
        Target {
            host,
            port,
            addr: None,
            policy: HostPolicy::None,
        }
    }
}

/// The set of hosts one ready queue delivers to ("MX rollup": domains with
/// the same MX hosts share a site, and so share connections).
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    pub hosts: Vec<Target>,
    /// The MX answer (or its denial, for an implicit MX) was DNSSEC-secure.
    pub mx_secure: bool,
    /// The hosts came from the policy's `mx_list` or an address literal, not
    /// from the recipient domain's MX: its MTA-STS and DANE don't apply.
    pub configured: bool,
    /// A policy-discovery problem to report with every attempt, as an
    /// RFC 8460 result type and detail (e.g. an MTA-STS fetch failure while
    /// a cached policy is in force).
    pub discovery_failure: Option<(&'static str, String)>,
    /// The domain whose MX these hosts are, for TLS reports (`None` for
    /// configured hosts: no domain's policy applies to them).
    pub report_domain: Option<String>,
    /// The MTA-STS policy that applied, as TLS reports describe it.
    pub sts_report: Option<Arc<ironpost_tls_report::SessionPolicy>>,
}

impl Site {
    fn new(name: String, hosts: Vec<Target>, mx_secure: bool, configured: bool) -> Site {
        Site {
            name,
            hosts,
            mx_secure,
            configured,
            discovery_failure: None,
            report_domain: None,
            sts_report: None,
        }
    }
}

#[derive(Debug)]
pub enum RouteError {
    Permanent {
        status: String,
        text: String,
    },
    Transient(String),
    /// A temporary failure that a TLS policy check caused, with its RFC 8460
    /// result type and the policy that applied, for the delivery log.
    Policy {
        policy: &'static str,
        result: &'static str,
        reason: String,
    },
}

/// "host", "host:port", "ip", "ip:port", "[v6]", "[v6]:port".
pub fn parse_target(entry: &str) -> Result<Target, String> {
    let e = entry.trim();
    if let Some(rest) = e.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{entry:?}: missing ]"))?;
        let ip: IpAddr = ip
            .trim_start_matches("IPv6:")
            .parse()
            .map_err(|_| format!("{entry:?}: bad address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("{entry:?}: bad port"))?),
            None if after.is_empty() => None,
            None => return Err(format!("{entry:?}: unexpected text after ]")),
        };
        return Ok(Target::new(ip.to_string(), port));
    }
    if e.parse::<IpAddr>().is_ok() {
        return Ok(Target::new(e.to_string(), None));
    }
    match e.rsplit_once(':') {
        Some((h, p)) => Ok(Target::new(
            h.to_ascii_lowercase(),
            Some(p.parse().map_err(|_| format!("{entry:?}: bad port"))?),
        )),
        None if !e.is_empty() => Ok(Target::new(e.to_ascii_lowercase(), None)),
        None => Err("empty mx_list entry".into()),
    }
}

fn mx_target(entry: &MxEntry) -> Result<Target, String> {
    match entry {
        MxEntry::Host(h) => parse_target(h),
        MxEntry::Pinned { name, addr } => {
            let at = parse_target(addr)?;
            let ip: IpAddr = at.host.parse().map_err(|_| {
                format!("{{ name = {name:?}, addr = {addr:?} }}: addr is not an IP address")
            })?;
            let mut t = Target::new(name.trim().to_ascii_lowercase(), at.port);
            t.addr = Some(ip);
            Ok(t)
        }
    }
}

pub async fn resolve(dns: &Dns, domain: &str, qcfg: &QueueConfig) -> Result<Site, RouteError> {
    if let Some(list) = qcfg
        .protocol
        .as_ref()
        .map(|p| &p.smtp.mx_list)
        .filter(|l| !l.is_empty())
    {
        let hosts = list
            .iter()
            .map(mx_target)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RouteError::Transient(format!("queue config mx_list: {e}")))?;
        let name = list
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(",");
        return Ok(Site::new(name, hosts, false, true));
    }
    // Address literal recipient domains route straight to the address.
    if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip = lit.trim_start_matches("ipv6:").trim_start_matches("IPv6:");
        let ip: IpAddr = ip.parse().map_err(|_| RouteError::Permanent {
            status: "5.1.2".into(),
            text: format!("bad address literal {domain}"),
        })?;
        return Ok(Site::new(
            ip.to_string(),
            vec![Target::new(ip.to_string(), None)],
            false,
            true,
        ));
    }
    match dns.mx_secure(domain).await.map(|s| (s.value, s.secure)) {
        Ok((MxAnswer::Null, _)) => Err(RouteError::Permanent {
            status: "5.1.10".into(),
            text: format!("556 5.1.10 {domain} does not accept mail (null MX)"),
        }),
        Ok((MxAnswer::Hosts { hosts, .. }, secure)) => Ok(Site::new(
            hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            hosts
                .into_iter()
                .map(|h| Target::new(h.name, None))
                .collect(),
            secure,
            false,
        )),
        Err(DnsError::NxDomain(_)) => Err(RouteError::Permanent {
            status: "5.1.2".into(),
            text: format!("550 5.1.2 {domain}: domain does not exist"),
        }),
        // A validating resolver says the answer was forged or broken: wait,
        // never fall back to an unvalidated route.
        Err(e @ DnsError::Bogus(..)) => Err(RouteError::Policy {
            policy: "none",
            result: "dnssec-invalid",
            reason: e.to_string(),
        }),
        Err(e) => Err(RouteError::Transient(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("127.0.0.1:2526").unwrap(),
            Target::new("127.0.0.1".into(), Some(2526))
        );
        assert_eq!(
            parse_target("[::1]:25").unwrap(),
            Target::new("::1".into(), Some(25))
        );
        assert_eq!(
            parse_target("MX.test").unwrap(),
            Target::new("mx.test".into(), None)
        );
        assert_eq!(
            parse_target("10.0.0.1").unwrap(),
            Target::new("10.0.0.1".into(), None)
        );
        assert!(parse_target("mx.test:x").is_err());
    }
}
