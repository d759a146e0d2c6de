//! The lookups our own checks make (SPF, DKIM keys, DMARC, iprev): through
//! the daemon's hickory resolver, with the TTL caches of [`crate::cache`],
//! telling "no such name" and "no such record" (SPF's void lookups) from
//! failures (`temperror`).

use crate::authenticator::Inner;
use crate::cache::RawTxt;
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};
use mail_auth::{DnssecStatus, RecordSet, ResolverCache, MX};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

/// Why a lookup has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// NXDOMAIN.
    NxDomain,
    /// The name exists without records of the type (or the answer held
    /// none of it).
    NoData,
    /// The name cannot be put in a query: an empty label, a label over 63
    /// octets, over 253 octets in all.
    BadName,
    /// Anything else: SERVFAIL, REFUSED, a timeout, a bogus answer.
    Temp(String),
}

impl Failure {
    /// NXDOMAIN or NODATA (RFC 7208 §4.6.4's "void lookup").
    pub(crate) fn is_void(&self) -> bool {
        matches!(self, Failure::NxDomain | Failure::NoData | Failure::BadName)
    }
}

/// `text` as a query name: its labels as raw octets (SPF macros can put
/// any visible character in a name), one trailing dot allowed.
pub(crate) fn name(text: &str) -> Option<Name> {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() || text.len() > 253 {
        return None;
    }
    let labels: Vec<&[u8]> = text.split('.').map(str::as_bytes).collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return None;
    }
    Name::from_labels(labels).ok()
}

/// A name in the escaped text form [`fqdn`] (and hickory) write, as MX
/// exchanges and PTR names come back from lookups.
pub(crate) fn name_from_fqdn(text: &str) -> Option<Name> {
    // hickory's own parser refuses labels with characters a hostname
    // cannot have, even escaped; undo its escapes here: `\X`, and `\DDD`
    // in octal (hickory writes and reads them so, not in decimal).
    let b = text.strip_suffix('.').unwrap_or(text).as_bytes();
    let mut labels: Vec<Vec<u8>> = vec![Vec::new()];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => labels.push(Vec::new()),
            b'\\' => {
                let digits = b
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                let byte = match digits {
                    Some(d) => {
                        i += 3;
                        u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()?
                    }
                    None => {
                        i += 1;
                        *b.get(i)?
                    }
                };
                labels.last_mut()?.push(byte);
            }
            c => labels.last_mut()?.push(c),
        }
        i += 1;
    }
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return None;
    }
    Name::from_labels(labels.iter().map(Vec::as_slice)).ok()
}

/// The cache key of a name: lower case, fully qualified (mail-auth's form).
fn key(name: &Name) -> Box<str> {
    name.to_lowercase().to_ascii().into_boxed_str()
}

/// A name as text, fully qualified, lower case.
pub(crate) fn fqdn(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// The reverse-lookup name of `ip` (in-addr.arpa or ip6.arpa).
pub(crate) fn reverse_name(ip: IpAddr) -> Name {
    let text = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    };
    name(&text).expect("reverse names are valid")
}

impl Inner {
    /// The records of type `t` at `name` (after any CNAMEs) and when the
    /// answer expires.
    async fn query(&self, name: &Name, t: RecordType) -> Result<(Vec<RData>, Instant), Failure> {
        match self.auth.0.lookup(name.clone(), t).await {
            Ok(lookup) => {
                let data: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.data.record_type() == t)
                    .map(|r| r.data.clone())
                    .collect();
                if data.is_empty() {
                    Err(Failure::NoData)
                } else {
                    Ok((data, lookup.valid_until()))
                }
            }
            Err(e) if e.is_nx_domain() => Err(Failure::NxDomain),
            Err(e) if e.is_no_records_found() => Err(Failure::NoData),
            Err(e) => Err(Failure::Temp(e.to_string())),
        }
    }

    /// TXT records at `name`, each one's character-strings joined.
    pub(crate) async fn txt(&self, name: &Name) -> Result<RawTxt, Failure> {
        let k = key(name);
        if let Some(v) = self.caches.txt_raw.get(&*k) {
            return Ok(v);
        }
        let (data, until) = self.query(name, RecordType::TXT).await?;
        let records: RawTxt = data
            .iter()
            .filter_map(|rd| match rd {
                RData::TXT(txt) => Some(txt.txt_data.concat().into_boxed_slice()),
                _ => None,
            })
            .collect();
        self.caches.txt_raw.insert(k, records.clone(), until);
        Ok(records)
    }

    pub(crate) async fn ipv4(&self, name: &Name) -> Result<Arc<[Ipv4Addr]>, Failure> {
        let k = key(name);
        if let Some(v) = self.caches.ipv4.get(&*k) {
            return Ok(v.rrset);
        }
        let (data, until) = self.query(name, RecordType::A).await?;
        let rrset: Arc<[Ipv4Addr]> = data
            .iter()
            .filter_map(|rd| match rd {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        let set = RecordSet {
            rrset: rrset.clone(),
            dnssec_status: DnssecStatus::Indeterminate,
        };
        self.caches.ipv4.insert(k, set, until);
        Ok(rrset)
    }

    pub(crate) async fn ipv6(&self, name: &Name) -> Result<Arc<[Ipv6Addr]>, Failure> {
        let k = key(name);
        if let Some(v) = self.caches.ipv6.get(&*k) {
            return Ok(v.rrset);
        }
        let (data, until) = self.query(name, RecordType::AAAA).await?;
        let rrset: Arc<[Ipv6Addr]> = data
            .iter()
            .filter_map(|rd| match rd {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect();
        let set = RecordSet {
            rrset: rrset.clone(),
            dnssec_status: DnssecStatus::Indeterminate,
        };
        self.caches.ipv6.insert(k, set, until);
        Ok(rrset)
    }

    /// The addresses of `name` in `ip`'s family (A for IPv4, AAAA for IPv6).
    pub(crate) async fn addresses(&self, name: &Name, ip: IpAddr) -> Result<Vec<IpAddr>, Failure> {
        Ok(match ip {
            IpAddr::V4(_) => self.ipv4(name).await?.iter().map(|a| (*a).into()).collect(),
            IpAddr::V6(_) => self.ipv6(name).await?.iter().map(|a| (*a).into()).collect(),
        })
    }

    /// MX records at `name` as (preference, exchange), by preference; the
    /// exchange is fully qualified, lower case ("." for a null MX).
    pub(crate) async fn mx(&self, name: &Name) -> Result<Vec<(u16, Box<str>)>, Failure> {
        let k = key(name);
        let set = match self.caches.mx.get(&*k) {
            Some(set) => set,
            None => {
                let (data, until) = self.query(name, RecordType::MX).await?;
                let mut groups: Vec<MX> = Vec::new();
                for rd in &data {
                    let RData::MX(mx) = rd else { continue };
                    let exchange = fqdn(&mx.exchange).into_boxed_str();
                    match groups.iter_mut().find(|g| g.preference == mx.preference) {
                        Some(g) => {
                            let mut v = std::mem::take(&mut g.exchanges).into_vec();
                            v.push(exchange);
                            g.exchanges = v.into_boxed_slice();
                        }
                        None => groups.push(MX {
                            exchanges: vec![exchange].into_boxed_slice(),
                            preference: mx.preference,
                        }),
                    }
                }
                groups.sort_by_key(|g| g.preference);
                let set = RecordSet {
                    rrset: groups.into(),
                    dnssec_status: DnssecStatus::Indeterminate,
                };
                self.caches.mx.insert(k, set.clone(), until);
                set
            }
        };
        Ok(set
            .rrset
            .iter()
            .flat_map(|g| g.exchanges.iter().map(|e| (g.preference, e.clone())))
            .collect())
    }

    /// The PTR names of `ip`, fully qualified, lower case, in answer order.
    pub(crate) async fn ptr(&self, ip: IpAddr) -> Result<Arc<[Box<str>]>, Failure> {
        if let Some(v) = self.caches.ptr.get(&ip) {
            return Ok(v.rrset);
        }
        let (data, until) = self.query(&reverse_name(ip), RecordType::PTR).await?;
        let rrset: Arc<[Box<str>]> = data
            .iter()
            .filter_map(|rd| match rd {
                RData::PTR(p) => Some(fqdn(&p.0).into_boxed_str()),
                _ => None,
            })
            .collect();
        let set = RecordSet {
            rrset: rrset.clone(),
            dnssec_status: DnssecStatus::Indeterminate,
        };
        self.caches.ptr.insert(ip, set, until);
        Ok(rrset)
    }
}

/// An IPv4-mapped IPv6 address is its IPv4 address (RFC 7208 §5).
pub(crate) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("example.com").is_some());
        assert!(name("example.com.").is_some());
        assert!(name("foo:bar/baz.example.com").is_some());
        assert!(name("a..b").is_none());
        assert!(name("").is_none());
        assert!(name(".").is_none());
        assert!(name(&format!("{}.com", "a".repeat(64))).is_none());
        assert_eq!(
            fqdn(&reverse_name("192.0.2.1".parse().unwrap())),
            "1.2.0.192.in-addr.arpa."
        );
        assert_eq!(
            fqdn(&reverse_name("2001:db8::1".parse().unwrap())),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        let odd = name("foo:bar/baz x.example.com").unwrap();
        assert_eq!(name_from_fqdn(&fqdn(&odd)), Some(odd));
        assert_eq!(
            name_from_fqdn("mail.example.com."),
            name("mail.example.com")
        );
        assert_eq!(name_from_fqdn("."), None);
        assert_eq!(
            unmap("::ffff:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
