//! Egress configuration: the policy's answers for a queue
//! (`get_queue_config`), for its pool and sources (`get_egress_pool`,
//! `get_egress_source`, reused for their own `ttl`) and for a destination
//! from a source (`get_egress_path_config`), parsed once and reused for
//! [`CONFIG_TTL`]. Each queue spreads its mail over its pool's sources by
//! weight.

use crate::model::QueuedPart;
use crate::queue_manager::{lock, QueueManager};
use crate::route::Site;
use crate::throttle::{Limit, Rate};
use ironpost_policy::egress_source::UNSPECIFIED;
use ironpost_policy::{
    CidrSet, EgressPathConfig, EgressPool, EgressSource, QueueConfig, RoundRobin,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long policy answers (queue and egress path configs) are reused
/// before asking again.
const CONFIG_TTL: Duration = Duration::from_secs(60);

/// An egress path config with its parsed parts.
pub struct EgressPath {
    pub cfg: EgressPathConfig,
    /// The source connections are made from.
    pub source: Arc<EgressSource>,
    /// A hash of `cfg`, so domains with equal settings for the same hosts
    /// share a ready queue (equality is still checked: the hash is only a
    /// key).
    pub fingerprint: u64,
    pub prohibited: CidrSet,
    /// Every rate a message on this path waits for: `max_message_rate`
    /// (this source to this site) and `additional_message_rate_throttles`.
    pub message_rates: Vec<Arc<Rate>>,
    /// `max_connection_rate`, this source to this site.
    pub connection_rate: Option<Arc<Rate>>,
    /// `source_selection_rate` and `additional_source_selection_rates`: a
    /// pool passes this source over while one is spent.
    pub selection_rates: Vec<Arc<Rate>>,
    /// `additional_connection_limits`, in name order (so two workers never
    /// wait on each other's half-taken sets), and, when limits are shared
    /// between nodes, `connection_limit` (this source to this site).
    pub limits: Vec<Arc<Limit>>,
    /// Built on first use, off the async threads (it reads keysources).
    pub tls: tokio::sync::OnceCell<Result<Arc<crate::dispatch::TlsMaterial>, String>>,
}

impl EgressPath {
    /// Parts under equal settings may share connections.
    pub fn same_settings(&self, other: &EgressPath) -> bool {
        self.cfg == other.cfg && self.source == other.source
    }

    /// EHLO name: the path's, else the source's, else the host name.
    pub fn ehlo_name<'a>(&'a self, hostname: &'a str) -> &'a str {
        self.cfg
            .ehlo_domain
            .as_deref()
            .or(self.source.ehlo_domain.as_deref())
            .unwrap_or(hostname)
    }
}

struct Cached<T> {
    value: T,
    until: Instant,
}

impl<T: Clone> Cached<T> {
    fn fresh(map: &Mutex<HashMap<String, Cached<T>>>, key: &str) -> Option<T> {
        lock(map)
            .get(key)
            .filter(|c| Instant::now() < c.until)
            .map(|c| c.value.clone())
    }

    fn store(map: &Mutex<HashMap<String, Cached<T>>>, key: String, value: T) {
        Cached::store_for(map, key, value, CONFIG_TTL)
    }

    fn store_for(map: &Mutex<HashMap<String, Cached<T>>>, key: String, value: T, ttl: Duration) {
        lock(map).insert(
            key,
            Cached {
                value,
                until: Instant::now() + ttl,
            },
        );
    }
}

#[derive(Default)]
pub(crate) struct EgressCache {
    /// By queue name.
    queue_cfgs: Mutex<HashMap<String, Cached<Arc<QueueConfig>>>>,
    /// By `domain|source|site`.
    paths: Mutex<HashMap<String, Cached<Arc<EgressPath>>>>,
    pools: Mutex<HashMap<String, Cached<Arc<EgressPool>>>>,
    sources: Mutex<HashMap<String, Cached<Arc<EgressSource>>>>,
    /// Weighted round-robin state by scheduled queue.
    rotation: Mutex<HashMap<String, RoundRobin>>,
    /// Held while the MX sites of rolled-up shaping tables are looked up.
    pub site_refresh: tokio::sync::Mutex<()>,
}

impl QueueManager {
    /// The part's queue config. An error in `get_queue_config` is returned,
    /// never replaced by defaults: routing with defaults would send mail
    /// meant for a smart host to the recipient's MX.
    pub(crate) async fn queue_config(&self, part: &QueuedPart) -> Result<Arc<QueueConfig>, String> {
        let queue = part.queue();
        // A log hook's queue is answered by the hook, not the policy.
        if let Some((_, cfg, _)) = self
            .0
            .log_hook_queues
            .iter()
            .find(|(d, _, _)| *d == queue.domain)
        {
            return Ok(cfg.clone());
        }
        let name = queue.to_string();
        let cache = &self.0.egress.queue_cfgs;
        if let Some(c) = Cached::fresh(cache, &name) {
            return Ok(c);
        }
        let cfg = self
            .0
            .policy
            .queue_config(
                queue.domain,
                queue.tenant,
                queue.campaign,
                queue.routing_domain,
            )
            .await
            .map_err(|e| format!("get_queue_config: {e}"))?;
        let cfg = Arc::new(cfg);
        Cached::store(cache, name, cfg.clone());
        Ok(cfg)
    }

    /// The pool a queue config names (`unspecified` when none).
    pub(crate) async fn egress_pool(&self, qcfg: &QueueConfig) -> Result<Arc<EgressPool>, String> {
        let name = qcfg.egress_pool.as_deref().unwrap_or(UNSPECIFIED);
        let cache = &self.0.egress.pools;
        if let Some(p) = Cached::fresh(cache, name) {
            return Ok(p);
        }
        let pool = self
            .0
            .policy
            .egress_pool(name.to_string())
            .await
            .map_err(|e| format!("get_egress_pool: {e}"))?;
        pool.check_supported()
            .map_err(|e| format!("get_egress_pool: {e}"))?;
        let ttl = pool.ttl();
        let pool = Arc::new(pool);
        Cached::store_for(cache, name.to_string(), pool.clone(), ttl);
        Ok(pool)
    }

    pub(crate) async fn egress_source(&self, name: &str) -> Result<Arc<EgressSource>, String> {
        let cache = &self.0.egress.sources;
        if let Some(s) = Cached::fresh(cache, name) {
            return Ok(s);
        }
        let source = self
            .0
            .policy
            .egress_source(name.to_string())
            .await
            .map_err(|e| format!("get_egress_source: {e}"))?;
        source
            .check_supported()
            .map_err(|e| format!("get_egress_source: {e}"))?;
        let ttl = source.ttl();
        let source = Arc::new(source);
        Cached::store_for(cache, name.to_string(), source.clone(), ttl);
        Ok(source)
    }

    /// The next source of `pool` for scheduled queue `queue`, by weight.
    pub(crate) fn pick_source(&self, queue: &str, pool: &EgressPool) -> Option<String> {
        let mut rotation = lock(&self.0.egress.rotation);
        let rr = rotation
            .entry(format!("{queue}\u{0}{}", pool.name))
            .or_default();
        rr.next(&pool.entries).map(|i| pool.entries[i].name.clone())
    }

    /// The policy was reloaded: forget every answer it gave (queue configs,
    /// pools, sources, egress paths), so the next parts ask the new one.
    pub fn policy_reloaded(&self) {
        let e = &self.0.egress;
        lock(&e.queue_cfgs).clear();
        lock(&e.pools).clear();
        lock(&e.sources).clear();
        lock(&e.paths).clear();
    }

    /// Forget the egress paths, so the next parts ask the policy again
    /// (an automation override began or ended).
    pub(crate) fn forget_paths(&self) {
        lock(&self.0.egress.paths).clear();
    }

    pub(crate) async fn egress_path(
        &self,
        domain: &str,
        source: &Arc<EgressSource>,
        site: &Site,
    ) -> Result<Arc<EgressPath>, String> {
        let key = format!("{domain}|{}|{}", source.name, site.name);
        let cache = &self.0.egress.paths;
        if let Some(p) = Cached::fresh(cache, &key) {
            return Ok(p);
        }
        let cfg = self
            .0
            .policy
            .egress_path(domain.to_string(), source.name.clone(), site.name.clone())
            .await
            .map_err(|e| format!("get_egress_path_config: {e}"))?;
        let prohibited = cfg
            .validate()
            .map_err(|e| format!("get_egress_path_config: {e}"))?;
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            // Debug covers every field; secrets print redacted, which only
            // makes collisions possible, and those are caught by `==`.
            format!("{cfg:?}").hash(&mut h);
            format!("{source:?}").hash(&mut h);
            h.finish()
        };
        let throttles = &self.0.throttles;
        let here = format!("{}->{}", source.name, site.name);
        let mut message_rates: Vec<Arc<Rate>> = cfg
            .max_message_rate
            .iter()
            .map(|r| throttles.rate(&format!("message-rate:{here}"), r))
            .collect();
        message_rates.extend(
            cfg.additional_message_rate_throttles
                .iter()
                .map(|(name, r)| throttles.rate(name, r)),
        );
        let mut selection_rates: Vec<Arc<Rate>> = cfg
            .source_selection_rate
            .iter()
            .map(|r| throttles.rate(&format!("selection-rate:{here}"), r))
            .collect();
        selection_rates.extend(
            cfg.additional_source_selection_rates
                .iter()
                .map(|(name, r)| throttles.rate(name, r)),
        );
        let path = Arc::new(EgressPath {
            message_rates,
            connection_rate: cfg
                .max_connection_rate
                .as_ref()
                .map(|r| throttles.rate(&format!("connection-rate:{here}"), r)),
            selection_rates,
            limits: {
                // The ready queue's workers keep `connection_limit` on this
                // node; shared, it must also hold across the nodes.
                let own = (throttles.shared().is_some() && !cfg.connection_limit.local)
                    .then(|| (format!("connection-limit:{here}"), cfg.connection_limit));
                let mut named: Vec<(String, ironpost_policy::throttle::Count)> = cfg
                    .additional_connection_limits
                    .iter()
                    .map(|(k, c)| (k.clone(), *c))
                    .chain(own)
                    .collect();
                named.sort_by(|a, b| a.0.cmp(&b.0));
                named
                    .iter()
                    .map(|(name, c)| throttles.limit(name, *c))
                    .collect()
            },
            cfg,
            source: source.clone(),
            fingerprint,
            prohibited,
            tls: tokio::sync::OnceCell::new(),
        });
        Cached::store(cache, key, path.clone());
        Ok(path)
    }
}
