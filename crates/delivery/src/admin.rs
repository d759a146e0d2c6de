//! Operator actions on the queues: summaries, suspensions, bounces and
//! message inspection (the HTTP admin API).

use crate::bounce::FailedRecipient;
use crate::model::QueuedPart;
use crate::queue_manager::QueueManager;
use ironpost_spool::SpoolId;
use std::collections::HashMap;
use std::time::Duration;

/// A queued message as the admin API shows it: this part, and the spool
/// record as it now stands.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub id: String,
    pub queue: String,
    pub attempts: u32,
    /// This part's recipients.
    pub recipients: Vec<String>,
    pub meta: ironpost_spool::SpoolMeta,
    pub size: usize,
    pub headers: String,
}

fn matches(part: &QueuedPart, domain: Option<&str>, tenant: Option<&str>) -> bool {
    domain.is_none_or(|d| part.domain.eq_ignore_ascii_case(d))
        && tenant.is_none_or(|t| part.msg.tenant().as_deref() == Some(t))
}

impl QueueManager {
    /// Messages per queue (`tenant@domain` or `domain`), waiting or ready.
    pub fn summary(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut count = |p: &QueuedPart| *counts.entry(p.queue_name()).or_default() += 1;
        self.0.schedule.for_each(&mut count);
        self.0.ready.for_each(&mut count);
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    /// Holds delivery for a scope until `duration` has passed; on disk
    /// before it is in force.
    /// Parts in ready queues per (egress source, site).
    pub fn ready_summary(&self) -> Vec<((String, String), usize)> {
        self.0.ready.sizes()
    }

    pub fn suspend(
        &self,
        scope: crate::suspensions::Scope,
        duration: Duration,
        reason: String,
        requested_by: String,
    ) -> Result<crate::suspensions::Suspension, String> {
        self.0
            .suspensions
            .add(scope, duration, reason, requested_by)
    }

    pub fn suspensions(&self) -> Vec<crate::suspensions::Suspension> {
        self.0.suspensions.active()
    }

    /// Ends a suspension, or an automation override or bounce, early;
    /// false when there is no such id.
    pub fn cancel_suspension(&self, id: u64) -> Result<bool, String> {
        let done = self.0.suspensions.cancel(id)?;
        if done {
            self.push_overrides();
        }
        Ok(done)
    }

    /// What traffic-shaping automation holds now: its suspensions, its
    /// egress path overrides and its bounces.
    pub fn automation(&self) -> serde_json::Value {
        let s = &self.0.suspensions;
        serde_json::json!({
            "suspensions": s.active().into_iter().filter(|x| x.rule.is_some()).collect::<Vec<_>>(),
            "overrides": s.overrides(),
            "bounces": s.bounces(),
        })
    }

    /// Per (egress source, site): connections open, and waits for a rate.
    pub fn path_stats(&self) -> Vec<((String, String), (usize, u64))> {
        self.0.path_stats.snapshot()
    }

    /// The connection limits in use, each with its count, whether it is
    /// shared between nodes, the slots this node holds and, when shared,
    /// every lease holder (node and lease) with its expiry; and the Redis
    /// counters.
    pub async fn shared_limits(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let t = &self.0.throttles;
        let held: std::collections::HashMap<String, usize> =
            t.limits_in_use().into_iter().collect();
        let mut limits = Vec::new();
        for (name, n, shared) in t.limits() {
            let holders = match (shared, t.shared()) {
                (true, Some(r)) => match r.holders(&name).await {
                    Ok(h) => serde_json::json!(h
                        .into_iter()
                        .map(|(id, until_ms)| serde_json::json!({ "lease": id, "expires_unix_ms": until_ms }))
                        .collect::<Vec<_>>()),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                },
                _ => serde_json::Value::Null,
            };
            limits.push(serde_json::json!({
                "name": name,
                "limit": n,
                "shared": shared,
                "held_here": held.get(&name).copied().unwrap_or(0),
                "holders": holders,
            }));
        }
        let redis = t.shared().map(|r| {
            let s = r.stats();
            serde_json::json!({
                "node": r.node(),
                "ops": s.ops.load(Relaxed),
                "errors": s.errors.load(Relaxed),
                "rate_decisions_allowed": s.allowed.load(Relaxed),
                "rate_decisions_delayed": s.delayed.load(Relaxed),
            })
        });
        serde_json::json!({ "redis": redis, "limits": limits })
    }

    /// Redis counters for `/metrics` (none when nothing is shared).
    pub fn redis_stats(&self) -> Option<[(&'static str, u64); 5]> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.0.throttles.shared()?.stats();
        Some([
            ("ops", s.ops.load(Relaxed)),
            ("errors", s.errors.load(Relaxed)),
            ("rtt_us", s.rtt_us.load(Relaxed)),
            ("allowed", s.allowed.load(Relaxed)),
            ("delayed", s.delayed.load(Relaxed)),
        ])
    }

    /// Connections open under each shared connection limit.
    pub fn limits_in_use(&self) -> Vec<(String, usize)> {
        self.0.throttles.limits_in_use()
    }

    /// Bounce every queued part for a domain and/or tenant now.
    pub async fn admin_bounce(
        &self,
        domain: Option<&str>,
        tenant: Option<&str>,
        reason: &str,
    ) -> usize {
        if domain.is_none() && tenant.is_none() {
            return 0;
        }
        let pick = |p: &QueuedPart| matches(p, domain, tenant);
        let mut parts = self.0.schedule.take_matching(pick);
        parts.extend(self.0.ready.take_matching(pick));
        let n = parts.len();
        for p in parts {
            let failed = p
                .recipients
                .iter()
                .map(|r| FailedRecipient {
                    recipient: r.clone(),
                    status: "5.0.0".into(),
                    diagnostic: format!("local; administratively bounced: {reason}"),
                    remote_mta: None,
                })
                .collect();
            self.bounce(p, failed, None).await;
        }
        n
    }

    /// A queued message's metadata and headers.
    pub async fn inspect(&self, id: SpoolId) -> Option<Inspection> {
        let mut found = None;
        let mut look = |p: &QueuedPart| {
            if found.is_none() && p.msg.id == id {
                found = Some(p.clone());
            }
        };
        self.0.schedule.for_each(&mut look);
        self.0.ready.for_each(&mut look);
        let part = found?;
        let (stored_meta, data) = crate::dispatch::read_stored(&self.0.ctx, &part)
            .await
            .ok()?;
        let mut meta = part.record(None);
        meta.meta = stored_meta;
        let headers_len = ironpost_policy::headers::header_block_len(&data);
        Some(Inspection {
            id: id.to_string(),
            queue: part.queue_name(),
            attempts: part.attempts,
            recipients: part.recipients.clone(),
            meta,
            size: data.len(),
            headers: String::from_utf8_lossy(&data[..headers_len]).into_owned(),
        })
    }
}
