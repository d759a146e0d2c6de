//! Where a domain's mail goes: the queue's `mx_list` when the policy gives
//! one, otherwise the MX records (RFC 7505 null MX, RFC 5321 implicit MX).

use ironpost_dns::{Dns, DnsError, MxAnswer};
use ironpost_policy::QueueConfig;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    /// `None`: the egress path's `smtp_port`.
    pub port: Option<u16>,
}

/// The set of hosts one ready queue delivers to ("MX rollup": domains with
/// the same MX hosts share a site, and so share connections).
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    pub hosts: Vec<Target>,
}

#[derive(Debug)]
pub enum RouteError {
    Permanent { status: String, text: String },
    Transient(String),
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
        return Ok(Target {
            host: ip.to_string(),
            port,
        });
    }
    if e.parse::<IpAddr>().is_ok() {
        return Ok(Target {
            host: e.to_string(),
            port: None,
        });
    }
    match e.rsplit_once(':') {
        Some((h, p)) => Ok(Target {
            host: h.to_ascii_lowercase(),
            port: Some(p.parse().map_err(|_| format!("{entry:?}: bad port"))?),
        }),
        None if !e.is_empty() => Ok(Target {
            host: e.to_ascii_lowercase(),
            port: None,
        }),
        None => Err("empty mx_list entry".into()),
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
            .map(|e| parse_target(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RouteError::Transient(format!("queue config mx_list: {e}")))?;
        return Ok(Site {
            name: list.join(","),
            hosts,
        });
    }
    // Address literal recipient domains route straight to the address.
    if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip = lit.trim_start_matches("ipv6:").trim_start_matches("IPv6:");
        let ip: IpAddr = ip.parse().map_err(|_| RouteError::Permanent {
            status: "5.1.2".into(),
            text: format!("bad address literal {domain}"),
        })?;
        return Ok(Site {
            name: ip.to_string(),
            hosts: vec![Target {
                host: ip.to_string(),
                port: None,
            }],
        });
    }
    match dns.mx(domain).await {
        Ok(MxAnswer::Null) => Err(RouteError::Permanent {
            status: "5.1.10".into(),
            text: format!("556 5.1.10 {domain} does not accept mail (null MX)"),
        }),
        Ok(MxAnswer::Hosts { hosts, .. }) => Ok(Site {
            name: hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            hosts: hosts
                .into_iter()
                .map(|h| Target {
                    host: h.name,
                    port: None,
                })
                .collect(),
        }),
        Err(DnsError::NxDomain(_)) => Err(RouteError::Permanent {
            status: "5.1.2".into(),
            text: format!("550 5.1.2 {domain}: domain does not exist"),
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
            Target {
                host: "127.0.0.1".into(),
                port: Some(2526)
            }
        );
        assert_eq!(
            parse_target("[::1]:25").unwrap(),
            Target {
                host: "::1".into(),
                port: Some(25)
            }
        );
        assert_eq!(
            parse_target("MX.test").unwrap(),
            Target {
                host: "mx.test".into(),
                port: None
            }
        );
        assert_eq!(
            parse_target("10.0.0.1").unwrap(),
            Target {
                host: "10.0.0.1".into(),
                port: None
            }
        );
        assert!(parse_target("mx.test:x").is_err());
    }
}
