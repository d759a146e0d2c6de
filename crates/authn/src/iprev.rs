//! iprev (RFC 8601 §3): the client's PTR names, forward-confirmed. As
//! KumoMTA's `policy-extras.mail_auth` `iprev`: `pass` when a PTR name
//! resolves back to the address (`ip X <-> name.`), `permerror` when there
//! is no PTR (`ip X has no PTR`), `temperror` when the PTR lookup, or an
//! address lookup no later name made up for, failed; `fail` otherwise
//! (`name N has no A/AAAA`). Property `policy.iprev` is the address (an
//! IPv4-mapped IPv6 address as IPv4).

use crate::dns::{self, unmap, Failure};
use crate::{AuthResult, Authenticator, AuthnError};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// PTR names looked at (as SPF's limit, RFC 7208 §4.6.4).
const MAX_NAMES: usize = 10;

impl Authenticator {
    /// iprev for the client address `ip`; bounded by
    /// [`Limits::timeout`](crate::Limits::timeout) (`temperror` past it).
    pub async fn iprev(&self, ip: IpAddr) -> AuthResult {
        let ip = unmap(ip);
        let limit = self.inner.limits.timeout;
        let (result, reason) = match tokio::time::timeout(limit, self.iprev_inner(ip)).await {
            Ok(r) => r,
            Err(_) => ("temperror", AuthnError::Timeout(limit).to_string()),
        };
        AuthResult {
            method: "iprev".into(),
            method_version: None,
            result: result.into(),
            reason: Some(reason),
            props: BTreeMap::from([("policy.iprev".to_string(), ip.to_string())]),
        }
    }

    async fn iprev_inner(&self, ip: IpAddr) -> (&'static str, String) {
        let names = match self.inner.ptr(ip).await {
            Ok(n) => n,
            Err(f) if f.is_void() => return ("permerror", format!("ip {ip} has no PTR")),
            Err(f) => {
                return (
                    "temperror",
                    format!("ip {ip} failed to resolve PTR: {}", failure(&f)),
                )
            }
        };
        let mut result = ("fail", format!("ip {ip} has no PTR that resolves to it"));
        for name in names.iter().take(MAX_NAMES) {
            let addrs = match dns::name_from_fqdn(name) {
                Some(q) => self.inner.addresses(&q, ip).await,
                None => Err(Failure::BadName),
            };
            match addrs {
                Ok(addrs) if addrs.contains(&ip) => {
                    return ("pass", format!("ip {ip} <-> {name}"));
                }
                Ok(_) => {
                    if result.0 == "fail" {
                        result.1 = format!("name {name} does not resolve to {ip}");
                    }
                }
                Err(f) if f.is_void() => {
                    if result.0 == "fail" {
                        result.1 = format!("name {name} has no A/AAAA");
                    }
                }
                Err(f) => {
                    result = (
                        "temperror",
                        format!("failed to resolve {name}: {}", failure(&f)),
                    );
                }
            }
        }
        result
    }
}

fn failure(f: &Failure) -> String {
    match f {
        Failure::Temp(e) => e.clone(),
        other => format!("{other:?}"),
    }
}
