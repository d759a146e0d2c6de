//! Holds shared between nodes: with Redis configured, every suspension,
//! automation override and automation bounce made on one node is stored in
//! Redis under a cluster-wide name, and every node merges what Redis holds
//! into its own durable copy (`suspensions.json`) every
//! [`SYNC_INTERVAL`]. A `Suspend` fired by a reply on node A thus pauses
//! node B's deliveries to that site within a second. A cancellation leaves
//! a tombstone in Redis until the hold would have ended: every node drops
//! the hold, and none can put it back. A hold missing from Redis without a
//! tombstone (Redis lost it) is put back by the nodes that have it; an
//! entry a node cannot read is left alone. Each node keeps its own ids for
//! the admin API. While Redis is down each node keeps what it has.

use crate::queue_manager::{lock, QueueManager};
use crate::suspensions::{BounceHold, ConfigOverride, Suspension, Suspensions};
use ironpost_cluster::Redis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

/// Ended holds stay in Redis this long, for nodes whose clocks lag.
const GRACE: u64 = 60;

impl QueueManager {
    /// Keep this node's holds and Redis's in step (runs for the daemon's
    /// life).
    pub(crate) async fn share_holds(self, redis: Redis) {
        let s = &self.0.suspensions;
        let mut version: Option<u64> = None;
        loop {
            tokio::time::sleep(SYNC_INTERVAL).await;
            // Cancellations first, then what changed here.
            let deleted: Vec<(String, u64)> = std::mem::take(&mut *lock(&s.deleted));
            for (k, until) in deleted {
                if redis
                    .cancel_hold(&k, until.saturating_add(GRACE))
                    .await
                    .is_err()
                {
                    lock(&s.deleted).push((k, until));
                }
            }
            let pending: Vec<String> = lock(&s.pending).drain().collect();
            if !pending.is_empty() {
                let out: HashMap<String, String> = s.outgoing().into_iter().collect();
                for k in pending {
                    let Some(json) = out.get(&k) else { continue };
                    match redis.put_hold(&k, json).await {
                        Ok(_) => {}
                        Err(_) => s.to_publish(k),
                    }
                }
            }
            let Ok(v) = redis.holds_version().await else {
                continue;
            };
            // Also looked at now and then when nothing changed, so a hold
            // Redis lost is noticed and put back.
            let stale = version.is_some_and(|old| old == v);
            if stale && !resync_due() {
                continue;
            }
            let Ok((remote, tombstones)) = redis.holds().await else {
                continue;
            };
            version = Some(v);
            let t = now();
            let mut live: HashMap<String, Shared> = HashMap::new();
            let mut ended = Vec::new();
            for (k, json) in remote {
                match serde_json::from_str::<Shared>(&json) {
                    Ok(h) if h.until().saturating_add(GRACE) > t => {
                        live.insert(k, h);
                    }
                    Ok(_) => ended.push(k),
                    // Perhaps a newer node's: not ours to judge.
                    Err(e) => tracing::warn!("shared hold {k}: cannot read it ({e}); leaving it"),
                }
            }
            let cancelled: HashMap<String, u64> = tombstones.into_iter().collect();
            let old_tombstones: Vec<String> = cancelled
                .iter()
                .filter(|(_, until)| **until <= t)
                .map(|(k, _)| k.clone())
                .collect();
            let _ = redis.forget_holds(&ended, &old_tombstones).await;
            match s.merge(&live, &cancelled) {
                Ok((changed, missing)) => {
                    // Ours, and Redis has neither it nor its tombstone.
                    for k in missing {
                        s.to_publish(k);
                    }
                    if changed {
                        self.holds_changed();
                    }
                }
                Err(e) => tracing::error!("shared holds: {e}"),
            }
        }
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

/// About every 10 s (with a 250 ms loop): look at Redis even when its
/// version says nothing changed.
fn resync_due() -> bool {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_millis() % 10_000 < SYNC_INTERVAL.as_millis()
}

impl Suspensions {
    /// Merge Redis's holds: import new ones, renew extended ones, drop the
    /// cancelled ones. Returns whether anything changed here, and the
    /// shared holds here that Redis has lost (to put back).
    fn merge(
        &self,
        live: &HashMap<String, Shared>,
        cancelled: &HashMap<String, u64>,
    ) -> Result<(bool, Vec<String>), String> {
        let mut missing = Vec::new();
        let changed = self.merge_with(|f| {
            let before = f.suspensions.len() + f.overrides.len() + f.bounces.len();
            let kept = |k: &Option<String>| k.as_ref().is_none_or(|k| !cancelled.contains_key(k));
            f.suspensions.retain(|x| kept(&x.shared_key));
            f.overrides.retain(|x| kept(&x.shared_key));
            f.bounces.retain(|x| kept(&x.shared_key));
            let mut changed = before != f.suspensions.len() + f.overrides.len() + f.bounces.len();
            let here: Vec<String> = f
                .suspensions
                .iter()
                .filter_map(|x| x.shared_key.clone())
                .chain(f.overrides.iter().filter_map(|x| x.shared_key.clone()))
                .chain(f.bounces.iter().filter_map(|x| x.shared_key.clone()))
                .collect();
            missing.extend(here.iter().filter(|k| !live.contains_key(*k)).cloned());
            for (k, h) in live {
                if cancelled.contains_key(k) {
                    continue;
                }
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
                    Some(u) if *u < until => {
                        *u = until;
                        changed = true;
                    }
                    Some(_) => {}
                    None if until > now() => {
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
                    None => {}
                }
            }
            changed
        })?;
        Ok((changed, missing))
    }
}
