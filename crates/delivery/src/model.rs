//! What the queue keeps per message: only the envelope and where the body
//! lies in the spool. Bodies stay on disk until a connection is ready for
//! them. The message metadata is kept as the JSON text it was stored as: the
//! queue reads only the tenant and campaign from it (extracted once), and a
//! parsed map cost about 1 KB per queued message. Measured with
//! bench/rss_million.sh: 1,000,000 queued in 846 MiB (was 1,614 MiB).

use ironpost_spool::{Location, SpoolId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
    /// Connection and message metadata (a JSON object), carried verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<RawValue>>,
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
    pub meta: Option<Box<RawValue>>,
    pub tenant: Option<Box<str>>,
    pub campaign: Option<Box<str>>,
    pub received_at: Option<Box<str>>,
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
        self.tenant.as_deref().map(str::to_string)
    }

    pub fn campaign(&self) -> Option<String> {
        self.campaign.as_deref().map(str::to_string)
    }
}

/// `tenant` and `campaign` (string values only) from the metadata JSON,
/// read once at enqueue time. Parsed as a map so a repeated key behaves as
/// it did when the queue kept the map (the last one wins).
pub fn labels(meta: Option<&RawValue>) -> (Option<Box<str>>, Option<Box<str>>) {
    let Some(map) = meta.and_then(|m| serde_json::from_str::<Map<String, Value>>(m.get()).ok())
    else {
        return (None, None);
    };
    let s = |k: &str| map.get(k).and_then(Value::as_str).map(Box::from);
    (s("tenant"), s("campaign"))
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

    #[test]
    fn labels_and_round_trip() {
        let json = br#"{"id":"x","sender":"a@b","recipients":["c@d"],"meta":{"tenant":"t1","campaign":7,"other":{"k":[1,2]}}}"#;
        let m: SpoolMeta = serde_json::from_slice(json).unwrap();
        let (tenant, campaign) = labels(m.meta.as_deref());
        assert_eq!(tenant.as_deref(), Some("t1"));
        assert_eq!(campaign, None);
        let again: Value = serde_json::to_value(&m).unwrap();
        assert_eq!(again["meta"]["other"]["k"][1], 2);
        let bare: SpoolMeta =
            serde_json::from_slice(br#"{"id":"x","sender":"","recipients":[]}"#).unwrap();
        assert!(bare.meta.is_none());
        assert_eq!(labels(None), (None, None));
        let twice: SpoolMeta = serde_json::from_slice(
            br#"{"id":"x","sender":"","recipients":[],"meta":{"tenant":"a","tenant":"b"}}"#,
        )
        .unwrap();
        assert_eq!(labels(twice.meta.as_deref()).0.as_deref(), Some("b"));
    }
}
