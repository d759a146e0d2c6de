//! The DNS the crate needs, as a trait, so it does not depend on the
//! project's resolver; and the adapter that makes reqwest use it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a TXT lookup produced no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtError {
    /// NXDOMAIN or no TXT records: the domain publishes no policy.
    NotFound,
    /// SERVFAIL, timeout and the like: keep using a cached policy.
    Temporary(String),
}

/// DNS lookups on behalf of MTA-STS.
///
/// The implementation should be the same (ideally DNSSEC-aware) resolver
/// the delivery engine uses, so that the policy host is resolved with the
/// same view as the MX hosts.
pub trait StsDns: Send + Sync {
    /// TXT records at `name`, one string per record with its
    /// character-strings concatenated.
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<String>, TxtError>> + Send;
    /// A and AAAA addresses of `host`.
    fn ips(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, String>> + Send;
}

/// A `reqwest` resolver that only answers with addresses looked up
/// beforehand through [`StsDns`].
///
/// reqwest's resolver must be `'static` and is fixed when the client is
/// built, while `StsDns` is borrowed per call; so the fetcher resolves
/// first, pins the answer here for the duration of the request, and the
/// client (shared, so the system roots are read once) picks it up. A host
/// with no pinned answer fails: the system resolver is never consulted.
#[derive(Default)]
pub(crate) struct PinnedResolve {
    next: AtomicU64,
    // host -> (token, addresses); a list so that overlapping fetches of
    // the same host each keep their own entry until they finish.
    pins: Mutex<HashMap<String, Vec<PinEntry>>>,
}

/// A pinned answer and the token of the fetch that pinned it.
type PinEntry = (u64, Vec<IpAddr>);

/// Removes its pin when dropped (also when the fetch is cancelled).
pub(crate) struct Pin<'a> {
    owner: &'a PinnedResolve,
    host: String,
    token: u64,
}

impl PinnedResolve {
    pub(crate) fn pin(&self, host: &str, ips: Vec<IpAddr>) -> Pin<'_> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let host = host.to_ascii_lowercase();
        self.pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.clone())
            .or_default()
            .push((token, ips));
        Pin {
            owner: self,
            host,
            token,
        }
    }

    fn lookup(&self, host: &str) -> Option<Vec<IpAddr>> {
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.get(&host.to_ascii_lowercase())
            .and_then(|v| v.last())
            .map(|(_, ips)| ips.clone())
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut pins = self.owner.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = pins.get_mut(&self.host) {
            list.retain(|(t, _)| *t != self.token);
            if list.is_empty() {
                pins.remove(&self.host);
            }
        }
    }
}

/// A resolver handle for reqwest that shares the pins with the fetcher.
pub(crate) struct PinnedHandle(pub(crate) Arc<PinnedResolve>);

impl reqwest::dns::Resolve for PinnedHandle {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found = self.0.lookup(name.as_str());
        let host = name.as_str().to_string();
        Box::pin(async move {
            match found {
                // Port 0 is replaced by the URL's port.
                Some(ips) => Ok(Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)))
                    as reqwest::dns::Addrs),
                None => Err(format!("{host}: no address resolved through StsDns").into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_scoped() {
        let r = PinnedResolve::default();
        assert!(r.lookup("a.test").is_none());
        let ip1: IpAddr = "127.0.0.1".parse().unwrap();
        let ip2: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = r.pin("A.test", vec![ip1]);
        assert_eq!(r.lookup("a.test"), Some(vec![ip1]));
        let p2 = r.pin("a.test", vec![ip2]);
        drop(p1);
        assert_eq!(r.lookup("a.test"), Some(vec![ip2]));
        drop(p2);
        assert!(r.lookup("a.test").is_none());
        assert!(r.pins.lock().unwrap().is_empty());
    }
}
