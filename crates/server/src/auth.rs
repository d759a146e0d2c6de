//! Brute-force throttling of SMTP AUTH: failures are counted per client IP
//! and per user name across all connections; once either passes the limit
//! inside the window, further attempts are refused with `421 4.7.0`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct AuthThrottle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl AuthThrottle {
    fn prune(q: &mut VecDeque<Instant>, window: Duration) {
        while q.front().is_some_and(|t| t.elapsed() > window) {
            q.pop_front();
        }
    }

    /// True when `key` has reached `limit` failures within `window`.
    pub fn blocked(&self, key: &str, limit: usize, window: Duration) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match f.get_mut(key) {
            Some(q) => {
                Self::prune(q, window);
                let blocked = q.len() >= limit;
                if q.is_empty() {
                    f.remove(key);
                }
                blocked
            }
            None => false,
        }
    }

    pub fn record_failure(&self, key: &str, window: Duration) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = f.entry(key.to_string()).or_default();
        Self::prune(q, window);
        q.push_back(Instant::now());
        // Bound memory under a flood of distinct keys.
        if f.len() > 100_000 {
            f.retain(|_, q| q.back().is_some_and(|t| t.elapsed() <= window));
        }
    }
}

pub fn ip_key(ip: std::net::IpAddr) -> String {
    format!("ip:{ip}")
}

pub fn user_key(user: &str) -> String {
    format!("user:{}", user.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
