//! What the queue keeps per message: only the envelope and where the body
//! lies in the spool. Bodies stay on disk until a connection is ready for
//! them. Measured: about 1.6 KB of memory per queued message (bench/rss_million.sh),
//! mostly the per-message meta map and recipient strings; to be shrunk.

use ironpost_spool::{Location, SpoolId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The metadata record stored with each message in the spool. The server
/// writes the first version; the queue rewrites it (UpdateMeta) as
/// recipients are delivered and attempts are made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpoolMeta {
    pub id: String,
    pub sender: String,
    /// Recipients still to be delivered.
    pub recipients: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default)]
    pub received_at: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    #[serde(default)]
    pub due: Option<u64>,
    /// Unix seconds when first queued; expiry counts from here.
    #[serde(default)]
    pub created: Option<u64>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn to_system_time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// State shared by the per-domain parts of one spooled message.
#[derive(Debug)]
pub struct SharedMessage {
    pub id: SpoolId,
    pub location: Location,
    pub sender: Arc<str>,
    pub created: u64,
    pub meta: Map<String, Value>,
    pub received_at: Option<String>,
    /// Recipients not yet finished (delivered, bounced or expired).
    pub pending: Mutex<Vec<String>>,
    /// Parts still queued; the spool record is removed when this hits 0.
    pub parts: AtomicUsize,
}

impl SharedMessage {
    /// Mark recipients finished. Returns the remaining list.
    pub fn finish(&self, done: &[String]) -> Vec<String> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|r| !done.contains(r));
        p.clone()
    }

    /// One part is finished; true when it was the last.
    pub fn part_done(&self) -> bool {
        self.parts.fetch_sub(1, Ordering::AcqRel) == 1
    }

    pub fn tenant(&self) -> Option<String> {
        self.meta
            .get("tenant")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    pub fn campaign(&self) -> Option<String> {
        self.meta
            .get("campaign")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// One domain's share of a message: the unit the queues move around.
#[derive(Clone, Debug)]
pub struct QueuedPart {
    pub msg: Arc<SharedMessage>,
    pub domain: Arc<str>,
    pub recipients: Vec<String>,
    pub attempts: u32,
}

impl QueuedPart {
    /// Queue name as KumoMTA writes it: `tenant@domain` or `domain`.
    pub fn queue_name(&self) -> String {
        match self.msg.tenant() {
            Some(t) => format!("{t}@{}", self.domain),
            None => self.domain.to_string(),
        }
    }
}

/// Lower-cased domain of an address (after the last `@`).
pub fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(addr)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Split a message's recipients into per-domain parts, in first-seen order.
pub fn split_by_domain(recipients: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in recipients {
        let d = domain_of(r);
        match out.iter_mut().find(|(k, _)| *k == d) {
            Some((_, v)) => v.push(r.clone()),
            None => out.push((d, vec![r.clone()])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let r: Vec<String> = ["a@X.test", "b@y.test", "c@x.test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parts = split_by_domain(&r);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "x.test");
        assert_eq!(parts[0].1, vec!["a@X.test", "c@x.test"]);
    }
}
