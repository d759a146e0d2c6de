//! Brute-force throttling of authentication: failures are counted per key
//! (client IP, user name) across all connections of every listener that
//! shares the throttle; once a key has `limit` failures inside `window`,
//! further attempts are refused until enough of them leave the window.
//! What "refused" looks like is the listener's business: SMTP answers
//! `421 4.7.0`, HTTP `429` with `Retry-After` from [`AuthThrottle::retry_after`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before a sweep drops every key without a failure inside the
/// window, which bounds memory under a flood of distinct keys.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct AuthThrottle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Redis, when failures are counted across the cluster.
    shared: std::sync::OnceLock<ironpost_cluster::Redis>,
    /// The cluster's counts, as last read: key → (count, when read).
    cluster: Mutex<HashMap<String, (u64, Instant)>>,
}

impl AuthThrottle {
    /// Count failures across every node on this Redis as well. When Redis
    /// cannot answer, this node's own counts still apply.
    pub fn share(&self, redis: ironpost_cluster::Redis) {
        let _ = self.shared.set(redis);
    }

    /// Read the cluster's counts of `keys` (before deciding on them); a
    /// Redis error leaves the node-local counts to decide.
    pub async fn refresh(&self, keys: &[&str]) {
        let Some(redis) = self.shared.get() else {
            return;
        };
        for k in keys {
            match redis.counted(&format!("auth:{k}")).await {
                Ok(n) => {
                    let mut c = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
                    if n == 0 {
                        c.remove(*k);
                    } else {
                        c.insert(k.to_string(), (n, Instant::now()));
                    }
                    if c.len() > MAX_KEYS {
                        c.clear();
                    }
                }
                Err(e) => {
                    tracing::warn!("AUTH failure counts: {e}; this node's own counts decide");
                    return;
                }
            }
        }
    }

    /// The cluster's count of `key` as last read, while fresh.
    fn cluster_count(&self, key: &str, window: Duration) -> u64 {
        let c = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        c.get(key)
            .filter(|(_, at)| at.elapsed() < window)
            .map_or(0, |(n, _)| *n)
    }

    fn prune(q: &mut VecDeque<Instant>, window: Duration) {
        while q.front().is_some_and(|t| t.elapsed() > window) {
            q.pop_front();
        }
    }

    /// `Some(retry_after)` when `key` has at least `limit` failures inside
    /// `window` (a `limit` of 0 allows none: any failure in the window
    /// blocks), with the time until enough of them have left the window for
    /// the count to drop below the limit. `None` when an attempt may go ahead.
    pub fn retry_after(&self, key: &str, limit: usize, window: Duration) -> Option<Duration> {
        let local = self.local_retry_after(key, limit, window);
        if local.is_some() {
            return local;
        }
        // Counted across the cluster in windows that start at the first
        // failure: the lockout lasts a window from when it was read.
        (self.cluster_count(key, window) >= limit.max(1) as u64).then_some(window)
    }

    fn local_retry_after(&self, key: &str, limit: usize, window: Duration) -> Option<Duration> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = f.get_mut(key)?;
        Self::prune(q, window);
        let out = if !q.is_empty() && q.len() >= limit {
            // Unblocked once this failure (the one that makes the count
            // reach the limit; the newest when the limit is 0) leaves.
            let last_to_leave = q[q.len() - limit.max(1)];
            Some(window.saturating_sub(last_to_leave.elapsed()))
        } else {
            None
        };
        if q.is_empty() {
            f.remove(key);
        }
        out
    }

    /// True when `key` has reached `limit` failures within `window`.
    pub fn blocked(&self, key: &str, limit: usize, window: Duration) -> bool {
        self.retry_after(key, limit, window).is_some()
    }

    /// Failures of `key` inside `window`.
    pub fn failures_within(&self, key: &str, window: Duration) -> usize {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = f.get_mut(key) else { return 0 };
        Self::prune(q, window);
        let n = q.len();
        if n == 0 {
            f.remove(key);
        }
        n
    }

    /// How long to hold an attempt on `key` once it has `limit` failures
    /// inside `window`: one second, doubling with each further failure, at
    /// most 30 s. `None` below the limit.
    pub fn slowdown(&self, key: &str, limit: usize, window: Duration) -> Option<Duration> {
        let failures = self.failures_within(key, window);
        if failures < limit.max(1) {
            return None;
        }
        let doublings = (failures - limit.max(1)).min(5) as u32;
        Some(Duration::from_secs(1u64 << doublings).min(Duration::from_secs(30)))
    }

    pub fn record_failure(&self, key: &str, window: Duration) {
        if let (Some(redis), Ok(rt)) = (self.shared.get(), tokio::runtime::Handle::try_current()) {
            let (redis, k) = (redis.clone(), format!("auth:{key}"));
            rt.spawn(async move {
                if let Err(e) = redis.count(&k, window).await {
                    tracing::warn!("AUTH failure not counted in Redis: {e}");
                }
            });
        }
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = f.entry(key.to_string()).or_default();
        Self::prune(q, window);
        q.push_back(Instant::now());
        if f.len() > MAX_KEYS {
            f.retain(|_, q| q.back().is_some_and(|t| t.elapsed() <= window));
        }
    }
}

/// The key for a client address. An IPv4-mapped IPv6 address (a dual-stack
/// socket's view of an IPv4 client) counts as the IPv4 address.
pub fn ip_key(ip: IpAddr) -> String {
    format!("ip:{}", ip.to_canonical())
}

/// The key for a user name; case does not make a new user.
pub fn user_key(user: &str) -> String {
    format!("user:{}", user.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    // From crates/server/src/auth.rs.
    #[test]
    fn limit_and_window() {
        let t = AuthThrottle::default();
        let w = Duration::from_millis(200);
        for _ in 0..4 {
            t.record_failure("ip:1", w);
        }
        assert!(!t.blocked("ip:1", 5, w));
        t.record_failure("ip:1", w);
        assert!(t.blocked("ip:1", 5, w));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!t.blocked("ip:1", 5, w));
    }

    // From crates/admin/src/auth.rs.
    #[test]
    fn throttle_limit_window_retry_after() {
        let t = AuthThrottle::default();
        let w = Duration::from_millis(300);
        for _ in 0..4 {
            t.record_failure("ip:1", w);
        }
        assert!(t.retry_after("ip:1", 5, w).is_none());
        t.record_failure("ip:1", w);
        let retry = t.retry_after("ip:1", 5, w).unwrap();
        assert!(retry <= w && retry > Duration::ZERO);
        assert!(t.retry_after("ip:2", 5, w).is_none());
        std::thread::sleep(Duration::from_millis(350));
        assert!(t.retry_after("ip:1", 5, w).is_none());
    }

    /// `auth_failure_limit = 0` allows no failure at all: fail closed.
    #[test]
    fn zero_limit_blocks_after_any_failure() {
        let t = AuthThrottle::default();
        let w = Duration::from_millis(200);
        assert!(!t.blocked("user:a", 0, w));
        t.record_failure("user:a", w);
        let retry = t.retry_after("user:a", 0, w).unwrap();
        assert!(retry <= w && retry > Duration::ZERO);
        assert!(t.blocked("user:a", 1, w));
        assert!(!t.blocked("user:a", 2, w));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!t.blocked("user:a", 0, w));
    }

    /// The wait is until the count drops below the limit, not until the
    /// oldest failure leaves.
    #[test]
    fn retry_after_counts_from_the_limit() {
        let t = AuthThrottle::default();
        let w = Duration::from_millis(400);
        t.record_failure("k", w);
        std::thread::sleep(Duration::from_millis(200));
        t.record_failure("k", w);
        t.record_failure("k", w);
        // Three failures, limit 2: blocked until the second one leaves,
        // roughly 400 ms from now, not the first (roughly 200 ms).
        let retry = t.retry_after("k", 2, w).unwrap();
        assert!(retry > Duration::from_millis(300), "{retry:?}");
        // Limit 3: the first one's departure is enough.
        let retry = t.retry_after("k", 3, w).unwrap();
        assert!(retry <= Duration::from_millis(200), "{retry:?}");
    }

    // From crates/admin/src/auth.rs.
    #[test]
    fn keys() {
        assert_eq!(ip_key("::ffff:10.0.0.1".parse().unwrap()), "ip:10.0.0.1");
        assert_eq!(ip_key("2001:db8::1".parse().unwrap()), "ip:2001:db8::1");
        assert_eq!(user_key("Scott"), user_key("scott"));
    }

    #[test]
    fn slowdown_grows_and_is_capped() {
        let t = AuthThrottle::default();
        let w = Duration::from_secs(60);
        for _ in 0..2 {
            t.record_failure("user:a", w);
        }
        assert_eq!(t.slowdown("user:a", 3, w), None);
        t.record_failure("user:a", w);
        assert_eq!(t.slowdown("user:a", 3, w), Some(Duration::from_secs(1)));
        t.record_failure("user:a", w);
        assert_eq!(t.slowdown("user:a", 3, w), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            t.record_failure("user:a", w);
        }
        assert_eq!(t.slowdown("user:a", 3, w), Some(Duration::from_secs(30)));
    }
}
