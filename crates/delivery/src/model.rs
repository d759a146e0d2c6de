//! What the queue keeps per message: only the envelope, the labels routing
//! needs and where the message lies in the spool. Content and the policy's
//! metadata stay on disk until delivery reads them. Measured with
//! bench/rss_million.sh; bench/E2E.md has the history.

use crate::queue_manager::lock;
pub use ironpost_policy::QueueName;
use ironpost_spool::{Location, SpoolId, SpoolMeta, FORMAT_VERSION};
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
///
/// Kept small (128 bytes with its reference counts, a jemalloc size class):
/// a million of these may wait in memory. The policy's
/// metadata is not here: reception wrote it into the message's spool record
/// and nothing changes it afterwards, so it is read back with the content
/// when delivery needs it ([`crate::dispatch::read_stored`]), as KumoMTA
/// shrinks a waiting message to its spool reference.
#[derive(Debug)]
pub struct SharedMessage {
    pub id: SpoolId,
    pub location: Location,
    /// The envelope sender, one allocation shared by the messages queued
    /// from the same one.
    pub sender: Arc<str>,
    pub created: u64,
    /// Routing labels, one allocation shared by every message with the
    /// same ones.
    pub labels: Arc<RouteLabels>,
    /// How it arrived: an index into `KNOWN_PROTOCOLS`, or `u8::MAX`.
    reception_protocol: u8,
    /// When it arrived, in Unix nanoseconds (the RFC 3339 text is rebuilt
    /// on demand); `i64::MIN` when the record had no valid time.
    received_at: i64,
    /// Recipients not yet finished (delivered, bounced or expired), when
    /// the message is split into several parts. A single part's own
    /// recipients are its pending list, so it keeps no second copy.
    pending: Option<Box<Mutex<Vec<String>>>>,
    /// Parts still queued; the spool record is removed when this hits 0.
    pub parts: AtomicUsize,
}

/// The metadata labels that decide a message's queue.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    pub tenant: Option<Box<str>>,
    pub campaign: Option<Box<str>>,
    /// The `queue` meta: the scheduled queue's full name, replacing the one
    /// made from the recipient's domain.
    pub queue: Option<Box<str>>,
    /// The `routing_domain` meta: whose MX the mail goes to.
    pub routing_domain: Option<Box<str>>,
}

impl SharedMessage {
    pub fn new(
        id: SpoolId,
        location: Location,
        meta: SpoolMeta,
        shared: (Arc<str>, Arc<RouteLabels>),
        created: u64,
        parts: usize,
    ) -> SharedMessage {
        let (sender, labels) = shared;
        SharedMessage {
            id,
            location,
            sender,
            created,
            labels,
            reception_protocol: meta
                .reception_protocol
                .as_deref()
                .and_then(|p| KNOWN_PROTOCOLS.iter().position(|k| *k == p))
                .map_or(u8::MAX, |i| i as u8),
            received_at: meta
                .received_at
                .as_deref()
                .and_then(|r| chrono::DateTime::parse_from_rfc3339(r).ok())
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(i64::MIN),
            pending: (parts > 1).then(|| Box::new(Mutex::new(meta.recipients))),
            parts: AtomicUsize::new(parts),
        }
    }

    /// Mark recipients finished.
    pub fn finish(&self, done: &[String]) {
        if let Some(p) = &self.pending {
            lock(p).retain(|r| !done.contains(r));
        }
    }

    /// One part is finished; true when it was the last.
    pub fn part_done(&self) -> bool {
        self.parts.fetch_sub(1, Ordering::AcqRel) == 1
    }

    pub fn tenant(&self) -> Option<String> {
        self.labels.tenant.as_deref().map(str::to_string)
    }

    pub fn campaign(&self) -> Option<String> {
        self.labels.campaign.as_deref().map(str::to_string)
    }

    pub fn routing_domain(&self) -> Option<String> {
        self.labels.routing_domain.as_deref().map(str::to_string)
    }

    pub fn reception_protocol(&self) -> Option<&'static str> {
        KNOWN_PROTOCOLS
            .get(usize::from(self.reception_protocol))
            .copied()
    }

    /// When the message arrived.
    pub fn received_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        (self.received_at != i64::MIN)
            .then(|| chrono::DateTime::from_timestamp_nanos(self.received_at))
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EgressChoice {
    pub pool: String,
    pub source: String,
}

impl QueuedPart {
    /// The scheduled queue this part is in: the message's `queue` meta when
    /// set, else made from its campaign, tenant, this part's domain and its
    /// routing domain.
    pub fn queue(&self) -> QueueName {
        match &self.msg.labels.queue {
            Some(q) => QueueName::parse(q),
            None => QueueName {
                campaign: self.msg.campaign(),
                tenant: self.msg.tenant(),
                domain: self.domain.to_string(),
                routing_domain: self.msg.routing_domain(),
            },
        }
    }

    /// The retry state of this part's message as a spool update: the
    /// recipients still pending (this part's, or every part's when the
    /// message is split), this part's attempts and the given due time. The
    /// policy's metadata is left out: the message's own record keeps it.
    pub fn record(&self, due: Option<u64>) -> SpoolMeta {
        let m = &self.msg;
        let owned = |s: &Option<Box<str>>| s.as_deref().map(str::to_string);
        SpoolMeta {
            version: FORMAT_VERSION,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            recipients: match &m.pending {
                Some(p) => lock(p).clone(),
                None => self.recipients.clone(),
            },
            tenant: owned(&m.labels.tenant),
            campaign: owned(&m.labels.campaign),
            queue: owned(&m.labels.queue),
            routing_domain: owned(&m.labels.routing_domain),
            reception_protocol: m.reception_protocol().map(str::to_string),
            meta: None,
            received_at: m.received_at().map(|t| t.to_rfc3339()),
            attempts: self.attempts,
            due,
            created: Some(m.created),
        }
    }

    pub fn queue_name(&self) -> String {
        self.queue().to_string()
    }
}

/// The reception protocols Ironpost writes. Another name is not kept for
/// delivery records.
const KNOWN_PROTOCOLS: &[&str] = &[
    "SMTP",
    "ESMTP",
    "ESMTPS",
    "ESMTPA",
    "ESMTPSA",
    "HTTP",
    "HTTPS",
    "LogRecord",
];

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
    fn a_queued_message_fits_its_size_class() {
        // With the Arc's two counts: 128 bytes, not the next class (160).
        assert!(std::mem::size_of::<SharedMessage>() + 16 <= 128);
    }

    #[test]
    fn the_retry_record_keeps_what_reception_wrote() {
        let at = "2026-12-07T13:27:42.064684238+00:00";
        let rcpt = vec!["r@a.test".to_string()];
        let mut meta = SpoolMeta::new("x".into(), "s@a.test".into(), rcpt.clone(), None, at.into());
        meta.reception_protocol = Some("ESMTPS".into());
        let loc = Location {
            segment: 1,
            offset: 0,
            len: 0,
        };
        let shared = ("s@a.test".into(), Arc::new(RouteLabels::default()));
        let msg = SharedMessage::new(SpoolId::new(), loc, meta, shared, 7, 1);
        let part = QueuedPart {
            msg: Arc::new(msg),
            domain: "a.test".into(),
            recipients: rcpt.clone(),
            attempts: 2,
            egress: None,
        };
        let r = part.record(Some(99));
        assert_eq!(r.received_at.as_deref(), Some(at));
        assert_eq!(r.reception_protocol.as_deref(), Some("ESMTPS"));
        assert_eq!(
            (r.recipients, r.attempts, r.due, r.created),
            (rcpt, 2, Some(99), Some(7))
        );
        assert!(r.meta.is_none());
    }

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
