//! Strict CIDR lists for `relay_hosts`, `relay_from` and `trusted_hosts`.
//! A bare address means a host route; anything else malformed is an error,
//! never silently ignored (an ignored entry could widen or narrow relaying).

use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrSet(Vec<IpNet>);

impl CidrSet {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<CidrSet, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_ref().trim();
            let net = if e.contains('/') {
                let net: IpNet = e
                    .parse()
                    .map_err(|_| format!("{e:?} is not a valid CIDR block"))?;
                if net.trunc() != net {
                    return Err(format!(
                        "{e:?} has host bits set; did you mean {}?",
                        net.trunc()
                    ));
                }
                net
            } else {
                let ip: IpAddr = e
                    .parse()
                    .map_err(|_| format!("{e:?} is not a valid IP address or CIDR block"))?;
                IpNet::from(ip)
            };
            nets.push(net);
        }
        Ok(CidrSet(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn loopback() -> CidrSet {
        CidrSet::parse(&["127.0.0.1", "::1"]).expect("static")
    }
}

/// IPv4-mapped IPv6 peers (dual-stack sockets) match IPv4 entries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict() {
        let s = CidrSet::parse(&["127.0.0.1", "10.0.0.0/8", "::1"]).unwrap();
        assert!(s.contains("10.1.2.3".parse().unwrap()));
        assert!(s.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!s.contains("127.0.0.2".parse().unwrap()));
        assert!(CidrSet::parse(&["10.0.0.1/8"]).is_err());
        assert!(CidrSet::parse(&["localhost"]).is_err());
        assert!(CidrSet::parse(&["10.0.0.0/33"]).is_err());
    }
}
