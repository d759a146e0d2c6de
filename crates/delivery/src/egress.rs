//! Egress configuration: the policy's answers for a queue
//! (`get_queue_config`) and for a destination (`get_egress_path_config`),
//! parsed once and reused for [`CONFIG_TTL`].

use crate::model::QueuedPart;
use crate::queue_manager::{lock, QueueManager};
use crate::route::Site;
use ironpost_policy::{CidrSet, EgressPathConfig, QueueConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long policy answers (queue and egress path configs) are reused
/// before asking again.
const CONFIG_TTL: Duration = Duration::from_secs(60);

/// An egress path config with its parsed parts.
pub struct EgressPath {
    pub cfg: EgressPathConfig,
    /// A hash of `cfg`, so domains with equal settings for the same hosts
    /// share a ready queue (equality is still checked: the hash is only a
    /// key).
    pub fingerprint: u64,
    pub prohibited: CidrSet,
    /// Built on first use, off the async threads (it reads keysources).
    pub tls: tokio::sync::OnceCell<Result<Arc<crate::dispatch::TlsMaterial>, String>>,
}

struct Cached<T> {
    value: T,
    at: Instant,
}

impl<T: Clone> Cached<T> {
    fn fresh(map: &Mutex<HashMap<String, Cached<T>>>, key: &str) -> Option<T> {
        lock(map)
            .get(key)
            .filter(|c| c.at.elapsed() < CONFIG_TTL)
            .map(|c| c.value.clone())
    }

    fn store(map: &Mutex<HashMap<String, Cached<T>>>, key: String, value: T) {
        lock(map).insert(
            key,
            Cached {
                value,
                at: Instant::now(),
            },
        );
    }
}

#[derive(Default)]
pub(crate) struct EgressCache {
    /// By queue name.
    queue_cfgs: Mutex<HashMap<String, Cached<Arc<QueueConfig>>>>,
    /// By `domain|site`.
    paths: Mutex<HashMap<String, Cached<Arc<EgressPath>>>>,
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

    pub(crate) async fn egress_path(
        &self,
        domain: &str,
        site: &Site,
    ) -> Result<Arc<EgressPath>, String> {
        let key = format!("{domain}|{}", site.name);
        let cache = &self.0.egress.paths;
        if let Some(p) = Cached::fresh(cache, &key) {
            return Ok(p);
        }
        let cfg = self
            .0
            .policy
            .egress_path(domain.to_string(), "unspecified".into(), site.name.clone())
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
            h.finish()
        };
        let path = Arc::new(EgressPath {
            cfg,
            fingerprint,
            prohibited,
            tls: tokio::sync::OnceCell::new(),
        });
        Cached::store(cache, key, path.clone());
        Ok(path)
    }
}
