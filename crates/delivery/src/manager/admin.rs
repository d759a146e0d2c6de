//! Operator actions on the queues: summaries, suspensions, bounces and
//! message inspection (the HTTP admin API).

use super::{lock, QueueManager};
use crate::bounce::FailedRecipient;
use crate::model::QueuedPart;
use ironpost_spool::SpoolId;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(super) struct Suspension {
    domain: Option<String>,
    tenant: Option<String>,
    until: Instant,
    reason: String,
}

fn matches(part: &QueuedPart, domain: Option<&str>, tenant: Option<&str>) -> bool {
    domain.is_none_or(|d| part.domain.eq_ignore_ascii_case(d))
        && tenant.is_none_or(|t| part.msg.tenant().as_deref() == Some(t))
}

impl QueueManager {
    /// Messages per queue (`tenant@domain` or `domain`), waiting or ready.
    pub fn summary(&self) -> Vec<(String, usize)> {
        let s = lock(&self.0.state);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in s
            .waiting
            .values()
            .chain(s.ready.values().flat_map(|r| r.msgs.iter()))
        {
            *counts.entry(p.queue_name()).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    pub fn suspend(
        &self,
        domain: Option<String>,
        tenant: Option<String>,
        duration: Duration,
        reason: String,
    ) {
        let mut s = lock(&self.0.state);
        s.suspensions.retain(|x| x.until > Instant::now());
        s.suspensions.push(Suspension {
            domain: domain.map(|d| d.to_ascii_lowercase()),
            tenant,
            until: Instant::now() + duration,
            reason,
        });
    }

    pub fn suspensions(&self) -> Value {
        let s = lock(&self.0.state);
        let now = Instant::now();
        Value::Array(
            s.suspensions
                .iter()
                .filter(|x| x.until > now)
                .map(|x| json!({ "domain": x.domain, "tenant": x.tenant, "reason": x.reason, "remaining_secs": (x.until - now).as_secs() }))
                .collect(),
        )
    }

    /// When a part's queue is suspended: until when.
    pub(super) fn suspended_until(&self, part: &QueuedPart) -> Option<Instant> {
        let s = lock(&self.0.state);
        let now = Instant::now();
        s.suspensions
            .iter()
            .filter(|x| x.until > now && matches(part, x.domain.as_deref(), x.tenant.as_deref()))
            .map(|x| x.until)
            .max()
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
        let parts: Vec<QueuedPart> = {
            let mut s = lock(&self.0.state);
            let keys: Vec<u64> = s
                .waiting
                .iter()
                .filter(|(_, p)| matches(p, domain, tenant))
                .map(|(k, _)| *k)
                .collect();
            let mut out: Vec<QueuedPart> =
                keys.iter().filter_map(|k| s.waiting.remove(k)).collect();
            for rq in s.ready.values_mut() {
                let (take, keep): (Vec<_>, Vec<_>) =
                    rq.msgs.drain(..).partition(|p| matches(p, domain, tenant));
                rq.msgs = keep.into();
                out.extend(take);
            }
            out
        };
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
    pub async fn inspect(&self, id: SpoolId) -> Option<Value> {
        let part = {
            let s = lock(&self.0.state);
            s.waiting
                .values()
                .chain(s.ready.values().flat_map(|r| r.msgs.iter()))
                .find(|p| p.msg.id == id)
                .cloned()
        }?;
        let spool = self.0.spool.clone();
        let loc = part.msg.location;
        let (meta, data) = tokio::task::spawn_blocking(move || spool.read(&loc))
            .await
            .ok()?
            .ok()?;
        let headers_len = ironpost_policy::headers::header_block_len(&data);
        Some(json!({
            "id": id.to_string(),
            "queue": part.queue_name(),
            "attempts": part.attempts,
            "recipients": part.recipients,
            "meta": serde_json::from_slice::<Value>(&meta).unwrap_or(Value::Null),
            "size": data.len(),
            "headers": String::from_utf8_lossy(&data[..headers_len]),
        }))
    }
}
