//! What the queue keeps per message: only the envelope and where the body
//! lies in the spool. Bodies stay on disk until a connection is ready for
//! them. The policy's metadata is kept as the JSON text it was stored as
//! ([`MetaObject`]); the labels routing needs are fields of the spool
//! record. A parsed map cost about 1 KB per queued message. Measured with
//! bench/rss_million.sh: 1,000,000 queued in 846 MiB (was 1,614 MiB).

pub use ironpost_policy::QueueName;
use ironpost_spool::{Location, MetaObject, SpoolId, SpoolMeta, FORMAT_VERSION};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    pub meta: Option<MetaObject>,
    pub tenant: Option<Box<str>>,
    pub campaign: Option<Box<str>>,
    /// The `queue` meta: the scheduled queue's full name, replacing the one
    /// made from the recipient's domain.
    pub queue: Option<Box<str>>,
    /// The `routing_domain` meta: whose MX the mail goes to.
    pub routing_domain: Option<Box<str>>,
    /// How it arrived, for delivery records (a known protocol name, so no
    /// allocation per message).
    pub reception_protocol: Option<&'static str>,
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

    pub fn routing_domain(&self) -> Option<String> {
        self.routing_domain.as_deref().map(str::to_string)
    }

    /// The spool record for this message as it stands: the recipients still
    /// pending and the given retry state.
    pub fn record(&self, attempts: u32, due: Option<u64>) -> SpoolMeta {
        let owned = |s: &Option<Box<str>>| s.as_deref().map(str::to_string);
        SpoolMeta {
            version: FORMAT_VERSION,
            id: self.id.to_string(),
            sender: self.sender.to_string(),
            recipients: self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            tenant: owned(&self.tenant),
            campaign: owned(&self.campaign),
            queue: owned(&self.queue),
            routing_domain: owned(&self.routing_domain),
            reception_protocol: self.reception_protocol.map(str::to_string),
            meta: self.meta.clone(),
            received_at: owned(&self.received_at),
            attempts,
            due,
            created: Some(self.created),
        }
    }
}

/// One domain's share of a message: the unit the queues move around.
#[derive(Clone, Debug)]
pub struct QueuedPart {
    pub msg: Arc<SharedMessage>,
    pub domain: Arc<str>,
    pub recipients: Vec<String>,
    pub attempts: u32,
    /// The pool and source chosen when the part was last made ready.
    pub egress: Option<Arc<EgressChoice>>,
}

/// Where a part leaves from: its queue's pool and the source picked in it.
#[derive(Debug, PartialEq, Eq)]
pub struct EgressChoice {
    pub pool: String,
    pub source: String,
}

impl QueuedPart {
    /// The scheduled queue this part is in: the message's `queue` meta when
    /// set, else made from its campaign, tenant, this part's domain and its
    /// routing domain.
    pub fn queue(&self) -> QueueName {
        match &self.msg.queue {
            Some(q) => QueueName::parse(q),
            None => QueueName {
                campaign: self.msg.campaign(),
                tenant: self.msg.tenant(),
                domain: self.domain.to_string(),
                routing_domain: self.msg.routing_domain(),
            },
        }
    }

    pub fn queue_name(&self) -> String {
        self.queue().to_string()
    }
}

/// The reception protocols Ironpost writes, as static names.
pub fn known_protocol(p: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "SMTP",
        "ESMTP",
        "ESMTPS",
        "ESMTPA",
        "ESMTPSA",
        "HTTP",
        "HTTPS",
        "LogRecord",
    ];
    KNOWN.iter().find(|k| **k == p).copied()
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
