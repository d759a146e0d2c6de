//! Rates and connection limits shared by name: a ready queue's own
//! (`max_message_rate`, `max_connection_rate`, `source_selection_rate`,
//! keyed by source and site) and the named ones every path that lists them
//! shares (`additional_*`, a provider's). Rates are a generic cell rate
//! algorithm (GCRA): up to `max_burst` events may pass at once, then they
//! are spaced `period / limit` apart. All are kept in memory, per node.

use ironpost_policy::throttle::ThrottleSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

/// The named rates and limits of one node.
#[derive(Default)]
pub struct Registry {
    /// By name and spec: a changed spec (an automation override) starts a
    /// throttle of its own.
    rates: Mutex<HashMap<(String, ThrottleSpec), Arc<Gcra>>>,
    limits: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

impl Registry {
    pub fn rate(&self, name: &str, spec: &ThrottleSpec) -> Arc<Gcra> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        rates
            .entry((name.to_string(), spec.clone()))
            .or_insert_with(|| Arc::new(Gcra::new(spec)))
            .clone()
    }

    /// The semaphore of a named connection limit; a new limit replaces the
    /// old one (connections under the old drain as they close).
    pub fn limit(&self, name: &str, limit: usize) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        match limits.get(name) {
            Some((n, s)) if *n == limit => s.clone(),
            _ => {
                let s = Arc::new(Semaphore::new(limit));
                limits.insert(name.to_string(), (limit, s.clone()));
                s
            }
        }
    }

    /// Connections open under each named limit, for the metrics.
    pub fn limits_in_use(&self) -> Vec<(String, usize)> {
        let limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = limits
            .iter()
            .map(|(k, (n, s))| (k.clone(), n.saturating_sub(s.available_permits())))
            .collect();
        v.sort();
        v
    }
}

/// Slots held under named connection limits while a connection is open.
pub type Permits = Vec<OwnedSemaphorePermit>;

/// Per (egress source, site): connections open now, and how often a
/// message or connection had to wait for a rate.
#[derive(Default)]
pub struct PathStats(Mutex<HashMap<(String, String), (usize, u64)>>);

impl PathStats {
    fn with(&self, key: &(String, String), f: impl FnOnce(&mut (usize, u64))) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(key) {
            Some(v) => f(v),
            None => {
                let mut v = (0, 0);
                f(&mut v);
                m.insert(key.clone(), v);
            }
        }
    }

    pub fn throttled(&self, key: &(String, String)) {
        self.with(key, |v| v.1 += 1);
    }

    /// `(source, site) → (connections open, throttled waits)`.
    pub fn snapshot(&self) -> Vec<((String, String), (usize, u64))> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }
}

/// Counts one open connection while held (set when the worker's
/// connection opens or closes).
pub struct OpenGauge<'a> {
    stats: &'a PathStats,
    key: (String, String),
    open: bool,
}

impl<'a> OpenGauge<'a> {
    pub fn new(stats: &'a PathStats, source: &str, site: &str) -> Self {
        OpenGauge {
            stats,
            key: (source.to_string(), site.to_string()),
            open: false,
        }
    }

    pub fn key(&self) -> &(String, String) {
        &self.key
    }

    pub fn set(&mut self, open: bool) {
        if open != self.open {
            self.open = open;
            self.stats.with(&self.key, |v| {
                v.0 = if open { v.0 + 1 } else { v.0.saturating_sub(1) }
            });
        }
    }
}

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[derive(Debug)]
pub struct Gcra {
    interval: Duration,
    burst_offset: Duration,
    /// Theoretical arrival time of the next event.
    tat: Mutex<Option<Instant>>,
}

impl Gcra {
    pub fn new(spec: &ThrottleSpec) -> Gcra {
        let interval = spec.interval();
        Gcra {
            interval,
            burst_offset: interval.saturating_mul(spec.max_burst.min(u32::MAX as u64) as u32),
            tat: Mutex::new(None),
        }
    }

    /// Takes a slot now, or says how long to wait before asking again.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let current = tat.map_or(now, |t| t.max(now));
        let next = current + self.interval;
        let allow_at = next.checked_sub(self.burst_offset).unwrap_or(now);
        if allow_at <= now {
            *tat = Some(next);
            Ok(())
        } else {
            Err(allow_at - now)
        }
    }

    /// Waits for a slot.
    /// Waits for a slot; whether it had to.
    pub async fn wait(&self) -> bool {
        let mut waited = false;
        while let Err(d) = self.try_take(Instant::now()) {
            waited = true;
            tokio::time::sleep(d).await;
        }
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_steady_rate() {
        let g = Gcra::new(&ThrottleSpec::parse("5/s").unwrap());
        let start = Instant::now();
        for _ in 0..5 {
            assert!(g.try_take(start).is_ok(), "the burst passes at once");
        }
        assert_eq!(g.try_take(start), Err(Duration::from_millis(200)));
        for _ in 0..15 {
            g.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // No burst: evenly spaced from the first.
        let g = Gcra::new(&ThrottleSpec::parse("5/s,max_burst=1").unwrap());
        let start = Instant::now();
        for _ in 0..20 {
            g.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(3800));
    }
}
