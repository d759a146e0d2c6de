//! Rates and connection limits by name: a ready queue's own
//! (`max_message_rate`, `max_connection_rate`, `source_selection_rate`,
//! `connection_limit`, keyed by source and site) and the named ones every
//! path that lists them shares (`additional_*`, a provider's). Rates are a
//! generic cell rate algorithm (GCRA): up to `max_burst` events may pass at
//! once, then they are spaced `period / limit` apart.
//!
//! They are this node's, in memory, unless the policy configured Redis
//! (`kumo.configure_redis_throttles`): then every one not written `local:`
//! is shared by the nodes on that Redis (rates as server-side GCRA,
//! connection limits as expiring leases). When Redis cannot answer, what
//! depends on it waits, logged and counted; it never goes unthrottled.

use ironpost_cluster::{Gcra, Lease, Redis};
use ironpost_policy::throttle::ThrottleSpec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Duration;

/// How long a shared connection lease lives unless renewed (a third of it
/// between renewals): a node that dies frees its slots this long after.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a full shared limit is asked again.
const LEASE_POLL: Duration = Duration::from_millis(100);
/// The least time shared-rate slots taken in a batch stay usable.
const RESERVE_FOR: Duration = Duration::from_millis(100);
/// How long to wait before asking an unavailable Redis again.
const REDIS_RETRY: Duration = Duration::from_millis(500);

/// The named rates and limits of this node.
#[derive(Default)]
pub struct Registry {
    /// By name and spec: a changed spec (an automation override) starts a
    /// throttle of its own.
    rates: Mutex<HashMap<(String, ThrottleSpec), Arc<Rate>>>,
    limits: Mutex<HashMap<String, (usize, Arc<Limit>)>>,
    shared: Option<Redis>,
}

impl Registry {
    pub fn new(shared: Option<Redis>) -> Registry {
        Registry {
            shared,
            ..Default::default()
        }
    }

    pub fn shared(&self) -> Option<&Redis> {
        self.shared.as_ref()
    }

    pub fn rate(&self, name: &str, spec: &ThrottleSpec) -> Arc<Rate> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        rates
            .entry((name.to_string(), spec.clone()))
            .or_insert_with(|| {
                Arc::new(match (&self.shared, spec.local) {
                    (Some(redis), false) => Rate::Shared {
                        name: name.to_string(),
                        interval: spec.interval(),
                        burst: spec.max_burst,
                        redis: redis.clone(),
                        batch: batch_for(spec),
                        reserved: Mutex::new((0, std::time::Instant::now())),
                    },
                    _ => Rate::Local(Gcra::new(spec.interval(), spec.max_burst)),
                })
            })
            .clone()
    }

    /// A named connection limit; a new count replaces the old one
    /// (connections under the old drain as they close).
    pub fn limit(&self, name: &str, count: ironpost_policy::throttle::Count) -> Arc<Limit> {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, l)) = limits.get_mut(name) {
            if let Limit::Local(sem, size) = &**l {
                // Resized in place, so connections held under the old
                // count still count (a smaller count takes effect as they
                // close).
                if count.n > *n {
                    sem.add_permits(count.n - *n);
                } else if count.n < *n {
                    let want = *n - count.n;
                    let gone = sem.forget_permits(want);
                    if gone < want {
                        // The rest are in use: taken as they come back.
                        let sem = sem.clone();
                        tokio::spawn(async move {
                            if let Ok(p) = sem.acquire_many_owned((want - gone) as u32).await {
                                p.forget();
                            }
                        });
                    }
                }
                size.store(count.n as u64, Ordering::Relaxed);
                *n = count.n;
                return l.clone();
            }
        }
        match limits.get(name) {
            Some((n, l)) if *n == count.n => l.clone(),
            _ => {
                let l = Arc::new(match (&self.shared, count.local) {
                    (Some(redis), false) => Limit::Shared {
                        name: name.to_string(),
                        limit: count.n,
                        redis: redis.clone(),
                        held: AtomicU64::new(0),
                    },
                    _ => Limit::Local(
                        Arc::new(Semaphore::new(count.n)),
                        AtomicU64::new(count.n as u64),
                    ),
                });
                limits.insert(name.to_string(), (count.n, l.clone()));
                l
            }
        }
    }

    /// Connections this node holds under each named limit, for the metrics.
    pub fn limits_in_use(&self) -> Vec<(String, usize)> {
        let limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = limits
            .iter()
            .map(|(k, (_, l))| (k.clone(), l.in_use()))
            .collect();
        v.sort();
        v
    }

    /// Every named limit with its count and whether it is shared.
    pub fn limits(&self) -> Vec<(String, usize, bool)> {
        let limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = limits
            .iter()
            .map(|(k, (n, l))| (k.clone(), *n, matches!(**l, Limit::Shared { .. })))
            .collect();
        v.sort();
        v
    }
}

/// A rate, this node's or shared.
pub enum Rate {
    Local(Gcra),
    Shared {
        name: String,
        interval: Duration,
        burst: u64,
        redis: Redis,
        /// Slots asked of Redis at once (see [`batch_for`]).
        batch: u64,
        /// Slots Redis granted this node and not used yet, and until when
        /// they are good (the time they span at the rate).
        reserved: Mutex<(u64, std::time::Instant)>,
    },
}

/// How many slots of a shared rate to take per Redis call: one for slow
/// rates (exact), up to 64 for fast ones (where a hundredth of a second's
/// worth is nothing), so a fast rate costs a Redis call per batch rather
/// than per message. Slots Redis granted count for the cluster whether
/// used or not: unused ones only leave the rate unfilled.
fn batch_for(spec: &ThrottleSpec) -> u64 {
    let per_sec = spec.limit as f64 / spec.period.as_secs_f64().max(1e-9);
    ((per_sec / 100.0) as u64)
        .clamp(1, 64)
        .min(spec.max_burst.max(1))
}

impl Rate {
    /// Takes a slot now, or says how long to wait before asking again.
    /// Redis unavailable: a wait (never a slot).
    pub async fn try_take(&self) -> Result<(), Duration> {
        match self {
            Rate::Local(g) => g.try_take(std::time::Instant::now()),
            Rate::Shared {
                name,
                interval,
                burst,
                redis,
                batch,
                reserved,
            } => {
                {
                    let mut r = reserved.lock().unwrap_or_else(|p| p.into_inner());
                    if r.0 > 0 && std::time::Instant::now() < r.1 {
                        r.0 -= 1;
                        return Ok(());
                    }
                }
                match redis.gcra_take(name, *interval, *burst, *batch).await {
                    Ok(Ok(granted)) => {
                        let mut r = reserved.lock().unwrap_or_else(|p| p.into_inner());
                        // Good for the time they span, but at least a
                        // tenth of a second: a batch is at most a
                        // hundredth of a second's worth, so using it a
                        // little late bunches few events.
                        let span = interval
                            .saturating_mul(granted.min(u32::MAX as u64) as u32)
                            .max(RESERVE_FOR);
                        *r = (granted - 1, std::time::Instant::now() + span);
                        Ok(())
                    }
                    Ok(Err(wait)) => Err(wait),
                    Err(e) => {
                        tracing::warn!("shared rate {name}: {e}; waiting");
                        Err(REDIS_RETRY)
                    }
                }
            }
        }
    }

    /// Waits for a slot; whether it had to.
    pub async fn wait(&self) -> bool {
        let mut waited = false;
        while let Err(d) = self.try_take().await {
            waited = true;
            tokio::time::sleep(d).await;
        }
        waited
    }
}

/// A connection limit, this node's or shared.
pub enum Limit {
    /// The semaphore, and the count it stands for now.
    Local(Arc<Semaphore>, AtomicU64),
    Shared {
        name: String,
        limit: usize,
        redis: Redis,
        /// Leases this node holds now.
        held: AtomicU64,
    },
}

impl Limit {
    fn in_use(&self) -> usize {
        match self {
            Limit::Local(s, n) => {
                (n.load(Ordering::Relaxed) as usize).saturating_sub(s.available_permits())
            }
            Limit::Shared { held, .. } => held.load(Ordering::Relaxed) as usize,
        }
    }

    /// A slot: waits until one is free (or Redis answers again).
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        match &**self {
            // A semaphore is never closed here, so acquiring only waits.
            Limit::Local(s, _) => match s.clone().acquire_owned().await {
                Ok(p) => Permit::Local(p),
                Err(_) => Permit::None,
            },
            Limit::Shared {
                name,
                limit,
                redis,
                held,
            } => loop {
                match redis.lease(name, *limit, LEASE_TTL).await {
                    Ok(Some(lease)) => {
                        held.fetch_add(1, Ordering::Relaxed);
                        return Permit::Shared(lease, self.clone());
                    }
                    Ok(None) => tokio::time::sleep(LEASE_POLL).await,
                    Err(e) => {
                        tracing::warn!("shared connection limit {name}: {e}; waiting");
                        tokio::time::sleep(REDIS_RETRY).await;
                    }
                }
            },
        }
    }
}

/// A slot under a connection limit, given back when dropped (the fields
/// are held for their own `Drop`).
pub enum Permit {
    Local(#[allow(dead_code)] OwnedSemaphorePermit),
    Shared(#[allow(dead_code)] Lease, Arc<Limit>),
    None,
}

impl Permit {
    /// A slot of a limit shared between nodes.
    pub fn is_shared(&self) -> bool {
        matches!(self, Permit::Shared(..))
    }

    /// A shared slot Redis no longer counts for this node.
    pub fn lost(&self) -> bool {
        matches!(self, Permit::Shared(lease, _) if lease.lost())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Permit::Shared(_, l) = self {
            if let Limit::Shared { held, .. } = &**l {
                held.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Slots held under named connection limits while a connection is open.
pub type Permits = Vec<Permit>;

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
