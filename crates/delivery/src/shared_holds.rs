//! Holds shared between nodes: with Redis configured, every suspension,
//! automation override and automation bounce made on one node is stored in
//! Redis under a cluster-wide name, and every node merges what Redis holds
//! into its own durable copy (`suspensions.json`) every
//! [`SYNC_INTERVAL`]. A `Suspend` fired by a reply on node A thus pauses
//! node B's deliveries to that site within a second, and a cancellation on
//! any node ends it everywhere. Each node keeps its own ids for the admin
//! API. While Redis is down each node keeps what it has, and publishes its
//! changes once Redis is back.

use crate::queue_manager::{lock, QueueManager};
use crate::suspensions::{BounceHold, ConfigOverride, Suspension, Suspensions};
use ironpost_cluster::Redis;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// A hold as Redis stores it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Shared {
    Suspension(Suspension),
    Override(ConfigOverride),
    Bounce(BounceHold),
}

impl Shared {
    fn until(&self) -> u64 {
        match self {
            Shared::Suspension(s) => s.until,
            Shared::Override(o) => o.until,
            Shared::Bounce(b) => b.until,
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Suspensions {
    /// Every hold with a shared name, as Redis should have it.
    fn outgoing(&self) -> Vec<(String, String)> {
        let f = self.snapshot();
        let mut out = Vec::new();
        for s in f.0 {
            if let Some(k) = s.shared_key.clone() {
                out.push((k, Shared::Suspension(s)));
            }
        }
        for o in f.1 {
            if let Some(k) = o.shared_key.clone() {
                out.push((k, Shared::Override(o)));
            }
        }
        for b in f.2 {
            if let Some(k) = b.shared_key.clone() {
                out.push((k, Shared::Bounce(b)));
            }
        }
        out.into_iter()
            .filter_map(|(k, v)| serde_json::to_string(&v).ok().map(|j| (k, j)))
            .collect()
    }
}

impl QueueManager {
    /// Keep this node's holds and Redis's in step (runs for the daemon's
    /// life).
    pub(crate) async fn share_holds(self, redis: Redis) {
        let s = &self.0.suspensions;
        // Names this node has seen in Redis or put there: one of them
        // missing from Redis later was cancelled (or ended) elsewhere.
        let mut known: HashSet<String> = HashSet::new();
        let mut version: Option<u64> = None;
        let mut epoch: Option<String> = None;
        loop {
            tokio::time::sleep(SYNC_INTERVAL).await;
            if s.dirty.swap(false, Ordering::SeqCst) {
                let deleted: Vec<String> = std::mem::take(&mut *lock(&s.deleted));
                let mut failed = false;
                for k in &deleted {
                    if redis.delete_hold(k).await.is_err() {
                        lock(&s.deleted).push(k.clone());
                        failed = true;
                    }
                    known.remove(k);
                }
                for (k, json) in s.outgoing() {
                    match redis.put_hold(&k, &json).await {
                        Ok(()) => {
                            known.insert(k);
                        }
                        Err(_) => failed = true,
                    }
                }
                if failed {
                    // Redis is away: try again next round, keep what is here.
                    s.dirty.store(true, Ordering::SeqCst);
                    continue;
                }
            }
            let Ok(e) = redis.holds_epoch().await else {
                continue;
            };
            if epoch.as_ref().is_some_and(|old| *old != e) {
                // Redis lost its data (restarted without persistence): what
                // is missing there was not cancelled. Publish it again.
                tracing::warn!("shared holds: Redis lost them; publishing this node's again");
                known.clear();
                version = None;
                epoch = Some(e);
                s.dirty.store(true, Ordering::SeqCst);
                continue;
            }
            epoch = Some(e);
            let Ok(v) = redis.holds_version().await else {
                continue;
            };
            if version == Some(v) {
                continue;
            }
            let Ok(remote) = redis.holds().await else {
                continue;
            };
            version = Some(v);
            let t = now();
            let mut live: HashMap<String, Shared> = HashMap::new();
            for (k, json) in remote {
                match serde_json::from_str::<Shared>(&json) {
                    Ok(h) if h.until() > t => {
                        live.insert(k, h);
                    }
                    // Ended, or unreadable: nobody needs it any more.
                    _ => {
                        let _ = redis.delete_hold(&k).await;
                    }
                }
            }
            match self.merge_holds(live, &mut known) {
                Ok(true) => self.holds_changed(),
                Ok(false) => {}
                Err(e) => tracing::error!("shared holds: {e}"),
            }
        }
    }

    /// Apply Redis's holds here: import new ones, renew extended ones, drop
    /// those cancelled elsewhere. True when anything changed.
    fn merge_holds(
        &self,
        mut live: HashMap<String, Shared>,
        known: &mut HashSet<String>,
    ) -> Result<bool, String> {
        let s = &self.0.suspensions;
        let gone: HashSet<String> = known
            .iter()
            .filter(|k| !live.contains_key(*k))
            .cloned()
            .collect();
        let changed = s.merge(&mut live, &gone)?;
        known.retain(|k| !gone.contains(k));
        known.extend(live.keys().cloned());
        Ok(changed)
    }

    /// New holds arrived: the overrides in force change, and parts already
    /// waiting for a connection go back through routing, where the new
    /// holds apply to them.
    fn holds_changed(&self) {
        self.push_overrides();
        let s = &self.0.suspensions;
        let back = self.0.ready.take_where(|source, site, p| {
            s.path_remaining(source, site).is_some()
                || s.part_remaining(p).is_some()
                || s.bounce_reason(p).is_some()
        });
        for p in back {
            self.schedule(p, Duration::ZERO);
        }
        self.0.automation.bounce_now();
    }
}

impl Suspensions {
    /// Merge `live` (Redis's holds by name) and drop the holds named in
    /// `gone`; `live` keeps only what was imported. True when anything
    /// changed.
    fn merge(
        &self,
        live: &mut HashMap<String, Shared>,
        gone: &HashSet<String>,
    ) -> Result<bool, String> {
        self.merge_with(|f| {
            let mut changed = false;
            let before = f.suspensions.len() + f.overrides.len() + f.bounces.len();
            let kept = |k: &Option<String>| k.as_ref().is_none_or(|k| !gone.contains(k));
            f.suspensions.retain(|x| kept(&x.shared_key));
            f.overrides.retain(|x| kept(&x.shared_key));
            f.bounces.retain(|x| kept(&x.shared_key));
            changed |= before != f.suspensions.len() + f.overrides.len() + f.bounces.len();
            for (k, h) in live.iter() {
                let same = |x: &Option<String>| x.as_deref() == Some(k.as_str());
                let until = h.until();
                let local = f
                    .suspensions
                    .iter_mut()
                    .find(|x| same(&x.shared_key))
                    .map(|x| &mut x.until)
                    .or_else(|| {
                        f.overrides
                            .iter_mut()
                            .find(|x| same(&x.shared_key))
                            .map(|x| &mut x.until)
                    })
                    .or_else(|| {
                        f.bounces
                            .iter_mut()
                            .find(|x| same(&x.shared_key))
                            .map(|x| &mut x.until)
                    });
                match local {
                    Some(u) => {
                        if *u < until {
                            *u = until;
                            changed = true;
                        }
                    }
                    None => {
                        f.next_id += 1;
                        let id = f.next_id;
                        match h {
                            Shared::Suspension(x) => f.suspensions.push(Suspension {
                                id,
                                shared_key: Some(k.clone()),
                                ..x.clone()
                            }),
                            Shared::Override(x) => f.overrides.push(ConfigOverride {
                                id,
                                shared_key: Some(k.clone()),
                                ..x.clone()
                            }),
                            Shared::Bounce(x) => f.bounces.push(BounceHold {
                                id,
                                shared_key: Some(k.clone()),
                                ..x.clone()
                            }),
                        }
                        changed = true;
                    }
                }
            }
            changed
        })
    }
}
