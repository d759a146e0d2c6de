//! Egress sources and pools: where outbound mail leaves from.
//! `kumo.make_egress_source` / `kumo.make_egress_pool`, returned by the
//! `get_egress_source` / `get_egress_pool` events (or the
//! `policy-extras.sources` helper). The name `unspecified` is built in for
//! both, as in KumoMTA: one source with the kernel's choice of address.

use crate::duration;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// The pool (and its one source) of a queue that names none.
pub const UNSPECIFIED: &str = "unspecified";

/// How long a source or pool definition is reused when it sets no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EgressSource {
    pub name: String,
    /// The local address connections are made from (none: the kernel's
    /// choice).
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// EHLO name, unless the egress path sets one.
    #[serde(default)]
    pub ehlo_domain: Option<String>,
    /// Overrides the destination port (the egress path's `smtp_port` and an
    /// `mx_list` entry's port).
    #[serde(default)]
    pub remote_port: Option<u16>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub ttl: Option<Duration>,
    // KumoMTA options Ironpost cannot honour: parsed only to be refused by
    // name (a proxy ignored would send mail from the wrong address).
    #[serde(default)]
    ha_proxy_server: Option<serde_json::Value>,
    #[serde(default)]
    ha_proxy_source_address: Option<serde_json::Value>,
    #[serde(default)]
    socks5_proxy_server: Option<serde_json::Value>,
    #[serde(default)]
    socks5_proxy_source_address: Option<serde_json::Value>,
    #[serde(default)]
    suspend_when_proxy_unhealthy: Option<serde_json::Value>,
    #[serde(default)]
    suspend_when_unplumbed: Option<serde_json::Value>,
}

impl EgressSource {
    pub fn unspecified() -> EgressSource {
        EgressSource::named(UNSPECIFIED)
    }

    pub fn named(name: &str) -> EgressSource {
        EgressSource {
            name: name.to_string(),
            source_address: None,
            ehlo_domain: None,
            remote_port: None,
            ttl: None,
            ha_proxy_server: None,
            ha_proxy_source_address: None,
            socks5_proxy_server: None,
            socks5_proxy_source_address: None,
            suspend_when_proxy_unhealthy: None,
            suspend_when_unplumbed: None,
        }
    }

    /// Options parsed but not supported are refused, never ignored.
    pub fn check_supported(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("key 'name': must not be empty".into());
        }
        let refused = [
            ("ha_proxy_server", self.ha_proxy_server.is_some()),
            (
                "ha_proxy_source_address",
                self.ha_proxy_source_address.is_some(),
            ),
            ("socks5_proxy_server", self.socks5_proxy_server.is_some()),
            (
                "socks5_proxy_source_address",
                self.socks5_proxy_source_address.is_some(),
            ),
            (
                "suspend_when_proxy_unhealthy",
                self.suspend_when_proxy_unhealthy.is_some(),
            ),
        ];
        if let Some((key, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(format!(
                "key '{key}': Ironpost does not support sending through HAProxy or SOCKS5 \
                 proxies; mail would leave from a different address than configured"
            ));
        }
        if self.suspend_when_unplumbed.is_some() {
            return Err(
                "key 'suspend_when_unplumbed': not supported by Ironpost; a source \
                        whose address cannot be bound makes its mail wait"
                    .into(),
            );
        }
        if self.ehlo_domain.as_deref().is_some_and(|d| {
            d.is_empty() || d.contains(|c: char| c.is_whitespace() || c.is_control())
        }) {
            return Err("key 'ehlo_domain': must be a host name".into());
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl.unwrap_or(DEFAULT_TTL)
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub name: String,
    /// A missing weight is 1; 0 excludes the source.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EgressPool {
    pub name: String,
    pub entries: Vec<PoolEntry>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub ttl: Option<Duration>,
}

impl EgressPool {
    pub fn unspecified() -> EgressPool {
        EgressPool {
            name: UNSPECIFIED.into(),
            entries: vec![PoolEntry {
                name: UNSPECIFIED.into(),
                weight: 1,
            }],
            ttl: None,
        }
    }

    pub fn check_supported(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("key 'name': must not be empty".into());
        }
        if let Some(e) = self.entries.iter().find(|e| e.name.is_empty()) {
            return Err(format!("key 'entries': an entry has an empty name ({e:?})"));
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl.unwrap_or(DEFAULT_TTL)
    }
}

/// Smooth weighted round-robin over a pool's entries (the algorithm nginx
/// uses): over any run of `sum of weights` picks, each source is chosen
/// exactly its weight's times, interleaved rather than in bursts.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    /// The index of the next entry to use (entries of weight 0 never are).
    /// State for a pool whose entries changed is started afresh.
    pub fn next(&mut self, entries: &[PoolEntry]) -> Option<usize> {
        if self.current.len() != entries.len() {
            self.current = vec![0; entries.len()];
        }
        let total: i64 = entries.iter().map(|e| i64::from(e.weight)).sum();
        let mut best: Option<usize> = None;
        for (i, e) in entries.iter().enumerate() {
            if e.weight == 0 {
                continue;
            }
            self.current[i] += i64::from(e.weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(w: &[u32]) -> Vec<PoolEntry> {
        w.iter()
            .enumerate()
            .map(|(i, w)| PoolEntry {
                name: format!("s{i}"),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn weights_are_honoured_exactly_and_interleaved() {
        let e = entries(&[2, 1, 0]);
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..300).map(|_| rr.next(&e).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 200);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 100);
        assert!(!picks.contains(&2), "weight 0 is never picked");
        // Never three in a row from the heavier source.
        assert!(picks
            .windows(3)
            .all(|w| !(w[0] == 0 && w[1] == 0 && w[2] == 0)));
        assert_eq!(RoundRobin::default().next(&entries(&[0, 0])), None);
    }

    #[test]
    fn proxies_are_refused_by_name() {
        let s: EgressSource = serde_json::from_value(serde_json::json!({
            "name": "ip-1", "source_address": "10.0.0.1", "socks5_proxy_server": "10.0.0.9:1080"
        }))
        .unwrap();
        let e = s.check_supported().unwrap_err();
        assert!(e.contains("socks5_proxy_server"), "{e}");
        let bad: Result<EgressSource, _> =
            serde_json::from_value(serde_json::json!({ "name": "x", "source_adress": "10.0.0.1" }));
        assert!(bad.is_err(), "a misspelt key is an error");
        // A pool with nothing usable in it is valid (its mail waits), as
        // in KumoMTA.
        let p: EgressPool = serde_json::from_value(serde_json::json!({
            "name": "p", "entries": [{ "name": "a", "weight": 0 }]
        }))
        .unwrap();
        p.check_supported().unwrap();
    }
}
