//! The queue manager: scheduled messages waiting for their time, routing
//! into ready queues per destination site, connection workers, and what
//! happens after each attempt (delivered, retried, bounced, expired).

use crate::bounce::{build_dsn, FailedRecipient};
use crate::dispatch::{self, Attempt, Connection};
use crate::model::{
    split_by_domain, to_system_time, unix_now, QueuedPart, SharedMessage, SpoolMeta,
};
use crate::records;
use crate::route::Site;
use crate::route::{self, RouteError};
use ironpost_dns::Dns;
use ironpost_logs::Logger;
use ironpost_policy::{CidrSet, EgressPathConfig, PolicyEngine, QueueConfig};
use ironpost_spool::{Location, Spool, SpoolId};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

mod admin;

/// How long policy answers (queue and egress path configs) and routes are
/// reused before asking again.
const CONFIG_TTL: Duration = Duration::from_secs(60);

pub struct DeliveryOptions {
    pub hostname: String,
    pub dns: Dns,
    /// MTA-STS policy discovery and cache; `None` disables MTA-STS whatever
    /// the egress paths say (tools and tests without a cache directory).
    pub mta_sts: Option<Arc<ironpost_mta_sts::StsResolver>>,
}

/// A ready queue: messages whose destination resolved to one site, sharing
/// connections.
struct ReadyQueue {
    site: Arc<Site>,
    path: Arc<EgressPath>,
    msgs: VecDeque<QueuedPart>,
    active: usize,
}

/// An egress path config with its parsed parts.
pub struct EgressPath {
    pub cfg: EgressPathConfig,
    /// A hash of `cfg`, so domains with equal settings for the same hosts
    /// share a ready queue (equality is still checked: the hash is only a
    /// key).
    pub fingerprint: u64,
    pub prohibited: CidrSet,
    /// Built on first use, off the async threads (it reads keysources).
    pub tls: tokio::sync::OnceCell<Result<Arc<dispatch::TlsMaterial>, String>>,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    waiting: HashMap<u64, QueuedPart>,
    seq: u64,
    ready: HashMap<String, ReadyQueue>,
    suspensions: Vec<admin::Suspension>,
}

struct Cached<T> {
    value: T,
    at: Instant,
}

pub(crate) struct Inner {
    pub spool: Spool,
    pub policy: PolicyEngine,
    pub logger: Logger,
    pub dns: Dns,
    pub sts: Option<Arc<ironpost_mta_sts::StsResolver>>,
    pub hostname: String,
    state: Mutex<State>,
    wake: Notify,
    queue_cfgs: Mutex<HashMap<String, Cached<Arc<QueueConfig>>>>,
    paths: Mutex<HashMap<String, Cached<Arc<EgressPath>>>>,
}

#[derive(Clone)]
pub struct QueueManager(pub(crate) Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Exponential backoff from `retry_interval`, capped by `max_retry_interval`.
pub fn backoff(cfg: &QueueConfig, attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    let d = cfg.retry_interval.saturating_mul(factor);
    match cfg.max_retry_interval {
        Some(max) => d.min(max),
        None => d,
    }
}

impl QueueManager {
    pub fn new(
        spool: Spool,
        policy: PolicyEngine,
        logger: Logger,
        opts: DeliveryOptions,
    ) -> QueueManager {
        QueueManager(Arc::new(Inner {
            spool,
            policy,
            logger,
            dns: opts.dns,
            sts: opts.mta_sts,
            hostname: opts.hostname,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            queue_cfgs: Mutex::new(HashMap::new()),
            paths: Mutex::new(HashMap::new()),
        }))
    }

    /// Start the scheduler. Call once, inside the runtime.
    pub fn start(&self) {
        let me = self.clone();
        tokio::spawn(async move { me.scheduler().await });
    }

    /// Messages queued or in flight.
    pub fn len(&self) -> usize {
        let s = lock(&self.0.state);
        s.waiting.len() + s.ready.values().map(|r| r.msgs.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A message just stored in the spool (or recovered from it).
    pub fn enqueue(&self, id: SpoolId, location: Location, meta: &[u8]) {
        let meta: SpoolMeta = match serde_json::from_slice(meta) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(%id, "cannot queue message: unreadable spool metadata: {e}");
                return;
            }
        };
        if meta.recipients.is_empty() {
            let spool = self.0.spool.clone();
            tokio::spawn(async move { spool.remove(id).await });
            return;
        }
        let created = meta
            .created
            .or_else(|| {
                meta.received_at
                    .as_deref()
                    .and_then(|r| chrono::DateTime::parse_from_rfc3339(r).ok())
                    .map(|t| t.timestamp().max(0) as u64)
            })
            .unwrap_or_else(unix_now);
        let parts = split_by_domain(&meta.recipients);
        let (tenant, campaign) = crate::model::labels(meta.meta.as_deref());
        let shared = Arc::new(SharedMessage {
            id,
            location,
            sender: meta.sender.as_str().into(),
            created,
            meta: meta.meta,
            tenant,
            campaign,
            received_at: meta.received_at.map(String::into_boxed_str),
            pending: Mutex::new(meta.recipients.clone()),
            parts: AtomicUsize::new(parts.len()),
        });
        let delay = meta
            .due
            .map(|d| {
                to_system_time(d)
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        for (domain, recipients) in parts {
            self.schedule(
                QueuedPart {
                    msg: shared.clone(),
                    domain: domain.into(),
                    recipients,
                    attempts: meta.attempts,
                },
                delay,
            );
        }
    }

    fn schedule(&self, part: QueuedPart, delay: Duration) {
        let due = Instant::now() + delay;
        let mut s = lock(&self.0.state);
        s.seq += 1;
        let seq = s.seq;
        s.waiting.insert(seq, part);
        let earliest = s.heap.peek().map(|Reverse((t, _))| *t);
        s.heap.push(Reverse((due, seq)));
        drop(s);
        if earliest.is_none_or(|t| due < t) {
            self.0.wake.notify_one();
        }
    }

    async fn scheduler(self) {
        loop {
            let (due, next) = {
                let mut s = lock(&self.0.state);
                let now = Instant::now();
                let mut due: HashMap<String, Vec<QueuedPart>> = HashMap::new();
                while let Some(Reverse((t, seq))) = s.heap.peek().copied() {
                    if t > now {
                        break;
                    }
                    s.heap.pop();
                    if let Some(part) = s.waiting.remove(&seq) {
                        due.entry(part.queue_name()).or_default().push(part);
                    }
                }
                (due, s.heap.peek().map(|Reverse((t, _))| *t))
            };
            for (_, parts) in due {
                let me = self.clone();
                tokio::spawn(async move { me.route(parts).await });
            }
            match next {
                Some(t) => {
                    let _ = tokio::time::timeout_at(t.into(), self.0.wake.notified()).await;
                }
                None => self.0.wake.notified().await,
            }
        }
    }

    async fn queue_config(&self, part: &QueuedPart) -> Arc<QueueConfig> {
        let name = part.queue_name();
        if let Some(c) = lock(&self.0.queue_cfgs)
            .get(&name)
            .filter(|c| c.at.elapsed() < CONFIG_TTL)
        {
            return c.value.clone();
        }
        let cfg = match self
            .0
            .policy
            .queue_config(
                part.domain.to_string(),
                part.msg.tenant(),
                part.msg.campaign(),
                None,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(queue = %name, "get_queue_config failed, using defaults: {e}");
                QueueConfig::default()
            }
        };
        let cfg = Arc::new(cfg);
        lock(&self.0.queue_cfgs).insert(
            name,
            Cached {
                value: cfg.clone(),
                at: Instant::now(),
            },
        );
        cfg
    }

    async fn egress_path(&self, domain: &str, site: &Site) -> Result<Arc<EgressPath>, String> {
        let key = format!("{domain}|{}", site.name);
        if let Some(c) = lock(&self.0.paths)
            .get(&key)
            .filter(|c| c.at.elapsed() < CONFIG_TTL)
        {
            return Ok(c.value.clone());
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
        lock(&self.0.paths).insert(
            key,
            Cached {
                value: path.clone(),
                at: Instant::now(),
            },
        );
        Ok(path)
    }

    /// Resolve where a batch of due parts (one queue) goes, and hand them to
    /// that site's ready queue.
    async fn route(&self, parts: Vec<QueuedPart>) {
        let Some(first) = parts.first() else { return };
        if let Some(until) = self.suspended_until(first) {
            // Suspended by an operator: wait, without counting an attempt.
            let delay = until.saturating_duration_since(Instant::now());
            for p in parts {
                self.schedule(p, delay);
            }
            return;
        }
        let qcfg = self.queue_config(first).await;
        let domain = first.domain.to_string();
        let site = match route::resolve(&self.0.dns, &domain, &qcfg).await {
            Ok(site) => site,
            Err(RouteError::Permanent { status, text }) => {
                for p in parts {
                    let failed = p
                        .recipients
                        .iter()
                        .map(|r| FailedRecipient {
                            recipient: r.clone(),
                            status: status.clone(),
                            diagnostic: text.clone(),
                            remote_mta: None,
                        })
                        .collect();
                    self.bounce(p, failed, None).await;
                }
                return;
            }
            Err(e) => {
                self.defer_all(parts, e, &qcfg).await;
                return;
            }
        };
        let path = match self.egress_path(&domain, &site).await {
            Ok(p) => p,
            Err(reason) => {
                tracing::error!(domain, "{reason}");
                for p in parts {
                    let attempt = Attempt::local(&reason);
                    self.defer(p.clone(), p.recipients.clone(), &attempt, &qcfg)
                        .await;
                }
                return;
            }
        };
        let site = match crate::tls_policy::apply(&self.0, &domain, site, &path).await {
            Ok(site) => Arc::new(site),
            Err(e) => {
                self.defer_all(parts, e, &qcfg).await;
                return;
            }
        };
        let (spawn, key) = {
            let mut s = lock(&self.0.state);
            // A ready queue's connections are shared by its parts, so every
            // part in it must have equal egress path settings (TLS mode,
            // AUTH credentials, ...): the key is the site and the settings'
            // hash, and a domain whose settings merely share the hash gets a
            // queue of its own.
            let mut key = format!("{}\u{0}{:016x}", site.name, path.fingerprint);
            if s.ready.get(&key).is_some_and(|rq| rq.path.cfg != path.cfg) {
                key = format!("{key}\u{0}{domain}");
            }
            let rq = s.ready.entry(key.clone()).or_insert_with(|| ReadyQueue {
                site: site.clone(),
                path: path.clone(),
                msgs: VecDeque::new(),
                active: 0,
            });
            if rq.path.cfg != path.cfg {
                // Only this domain's own queue can get here: its settings
                // changed, and the newest apply to all its parts.
                rq.path = path.clone();
            }
            rq.site = site.clone();
            rq.msgs.extend(parts);
            let limit = rq.path.cfg.connection_limit;
            let want = rq.msgs.len().min(limit).saturating_sub(rq.active);
            rq.active += want;
            (want, key)
        };
        for _ in 0..spawn {
            let me = self.clone();
            let name = key.clone();
            tokio::spawn(async move { me.worker(name).await });
        }
    }

    /// Defer a batch for a temporary routing or TLS policy failure.
    async fn defer_all(&self, parts: Vec<QueuedPart>, e: RouteError, qcfg: &QueueConfig) {
        let attempt = match e {
            RouteError::Policy {
                policy,
                result,
                reason,
            } => Attempt::policy_failure(policy, result, &reason),
            RouteError::Transient(reason) | RouteError::Permanent { text: reason, .. } => {
                Attempt::local(&reason)
            }
        };
        for p in parts {
            self.defer(p.clone(), p.recipients.clone(), &attempt, qcfg)
                .await;
        }
    }

    fn next_for(&self, site: &str) -> Option<(QueuedPart, Arc<Site>, Arc<EgressPath>)> {
        let mut s = lock(&self.0.state);
        let rq = s.ready.get_mut(site)?;
        match rq.msgs.pop_front() {
            Some(p) => Some((p, rq.site.clone(), rq.path.clone())),
            None => {
                rq.active -= 1;
                if rq.active == 0 {
                    s.ready.remove(site);
                }
                None
            }
        }
    }

    /// One connection's worth of work for a site: keep taking messages from
    /// its ready queue, reusing the connection up to
    /// `max_deliveries_per_connection`.
    async fn worker(self, site_name: String) {
        let mut conn: Option<Connection> = None;
        // The settings the open connection was made with (TLS mode, AUTH):
        // when the queue's change, the connection is not reused.
        let mut conn_path: Option<Arc<EgressPath>> = None;
        let mut sent_on_conn = 0usize;
        while let Some((part, site, path)) = self.next_for(&site_name) {
            let qcfg = self.queue_config(&part).await;
            let stale = conn_path.as_ref().is_some_and(|p| !Arc::ptr_eq(p, &path));
            if conn.is_some() && (stale || sent_on_conn >= path.cfg.max_deliveries_per_connection) {
                if let Some(c) = conn.take() {
                    c.quit().await;
                }
            }
            if conn.is_none() {
                match dispatch::connect(&self.0, &site, &path).await {
                    Ok(c) => {
                        conn = Some(c);
                        conn_path = Some(path.clone());
                        sent_on_conn = 0;
                    }
                    Err(attempt) => {
                        self.defer(part.clone(), part.recipients.clone(), &attempt, &qcfg)
                            .await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            sent_on_conn += 1;
            let result = dispatch::deliver(&self.0, c, &part).await;
            if !result.connection_usable {
                conn = None;
            }
            self.settle(part, result, &site, &qcfg).await;
        }
        if let Some(c) = conn.take() {
            c.quit().await;
        }
    }

    /// Apply the outcome of one attempt to a part.
    async fn settle(
        &self,
        part: QueuedPart,
        result: dispatch::Outcome,
        site: &Site,
        qcfg: &QueueConfig,
    ) {
        if !result.delivered.is_empty() {
            let rec = records::attempt_record(
                &part,
                &result.delivered,
                &result.attempt,
                Some(site),
                part.attempts + 1,
            );
            self.0.logger.log("Delivery", rec);
        }
        let mut finished = result.delivered.clone();
        if !result.failed.is_empty() {
            finished.extend(result.failed.iter().map(|f| f.recipient.clone()));
        }
        let failed = result.failed;
        let deferred = result.deferred;
        if !failed.is_empty() {
            let mut p = part.clone();
            p.recipients = failed.iter().map(|f| f.recipient.clone()).collect();
            self.log_bounce(&p, &failed, Some(&result.failed_attempt), Some(site));
            self.send_dsn(&p, &failed, false).await;
        }
        let remaining = part.msg.finish(&finished);
        if deferred.is_empty() {
            self.part_finished(&part).await;
        } else {
            let mut p = part;
            p.recipients = deferred.clone();
            let _ = remaining;
            self.defer(p, deferred, &result.deferred_attempt, qcfg)
                .await;
        }
    }

    async fn part_finished(&self, part: &QueuedPart) {
        if part.msg.part_done() {
            if let Err(e) = self.0.spool.remove(part.msg.id).await {
                tracing::error!(id = %part.msg.id, "cannot remove delivered message from the spool: {e}");
            }
            return;
        }
        // Other parts are still queued. Record that this part's recipients
        // are done, or a restart would deliver them again.
        let meta = SpoolMeta {
            id: part.msg.id.to_string(),
            sender: part.msg.sender.to_string(),
            recipients: lock(&part.msg.pending).clone(),
            meta: part.msg.meta.clone(),
            received_at: part.msg.received_at.as_deref().map(str::to_string),
            attempts: part.attempts,
            due: None,
            created: Some(part.msg.created),
        };
        if let Ok(bytes) = serde_json::to_vec(&meta) {
            if let Err(e) = self.0.spool.update_meta(part.msg.id, bytes).await {
                tracing::warn!(id = %part.msg.id, "cannot record finished recipients: {e}");
            }
        }
    }

    /// A temporary failure: retry later, or expire after `max_age`.
    async fn defer(
        &self,
        mut part: QueuedPart,
        recipients: Vec<String>,
        attempt: &Attempt,
        qcfg: &QueueConfig,
    ) {
        part.attempts += 1;
        part.recipients = recipients;
        let delay = backoff(qcfg, part.attempts);
        let deadline = part.msg.created + qcfg.max_age.as_secs();
        if unix_now() + delay.as_secs() > deadline {
            self.expire(part, attempt).await;
            return;
        }
        let rec = records::attempt_record(&part, &part.recipients, attempt, None, part.attempts);
        let meta = SpoolMeta {
            id: part.msg.id.to_string(),
            sender: part.msg.sender.to_string(),
            recipients: lock(&part.msg.pending).clone(),
            meta: part.msg.meta.clone(),
            received_at: part.msg.received_at.as_deref().map(str::to_string),
            attempts: part.attempts,
            due: Some(unix_now() + delay.as_secs()),
            created: Some(part.msg.created),
        };
        if let Ok(bytes) = serde_json::to_vec(&meta) {
            if let Err(e) = self.0.spool.update_meta(part.msg.id, bytes).await {
                tracing::warn!(id = %part.msg.id, "cannot record retry state: {e}");
            }
        }
        // Logged once the retry state is durable, so a record never claims
        // more than a restart would remember.
        self.0.logger.log("TransientFailure", rec);
        self.schedule(part, delay);
    }

    async fn expire(&self, part: QueuedPart, last: &Attempt) {
        let failed: Vec<FailedRecipient> = part
            .recipients
            .iter()
            .map(|r| FailedRecipient {
                recipient: r.clone(),
                status: "4.4.7".into(),
                diagnostic: format!("delivery time expired; last error: {}", last.describe()),
                remote_mta: last.host.clone(),
            })
            .collect();
        let mut rec = records::attempt_record(&part, &part.recipients, last, None, part.attempts);
        rec.insert(
            "reason".into(),
            Value::String("message expired (max_age)".into()),
        );
        self.0.logger.log("Expiration", rec);
        part.msg.finish(&part.recipients);
        self.send_dsn(&part, &failed, true).await;
        self.part_finished(&part).await;
    }

    async fn bounce(
        &self,
        part: QueuedPart,
        failed: Vec<FailedRecipient>,
        attempt: Option<&Attempt>,
    ) {
        self.log_bounce(&part, &failed, attempt, None);
        self.send_dsn(&part, &failed, false).await;
        part.msg.finish(&part.recipients);
        self.part_finished(&part).await;
    }

    fn log_bounce(
        &self,
        part: &QueuedPart,
        failed: &[FailedRecipient],
        attempt: Option<&Attempt>,
        site: Option<&Site>,
    ) {
        let local;
        let attempt = match attempt {
            Some(a) => a,
            None => {
                local = Attempt::local(
                    failed
                        .first()
                        .map(|f| f.diagnostic.as_str())
                        .unwrap_or("failed"),
                );
                &local
            }
        };
        let rcpts: Vec<String> = failed.iter().map(|f| f.recipient.clone()).collect();
        let rec = records::attempt_record(part, &rcpts, attempt, site, part.attempts + 1);
        self.0.logger.log("Bounce", rec);
    }

    /// Send a DSN to the envelope sender. Never for a null sender, so a
    /// bounce can never bounce.
    async fn send_dsn(&self, part: &QueuedPart, failed: &[FailedRecipient], expired: bool) {
        if part.msg.sender.is_empty() || failed.is_empty() {
            return;
        }
        let spool = self.0.spool.clone();
        let loc = part.msg.location;
        let original = tokio::task::spawn_blocking(move || spool.read(&loc)).await;
        let headers = match original {
            Ok(Ok((_, data))) => {
                let n = ironpost_policy::headers::header_block_len(&data);
                data[..n].to_vec()
            }
            _ => Vec::new(),
        };
        let dsn = build_dsn(&self.0.hostname, &part.msg, failed, &headers, expired);
        let id = SpoolId::new();
        let meta = SpoolMeta {
            id: id.to_string(),
            sender: String::new(),
            recipients: vec![part.msg.sender.to_string()],
            meta: None,
            received_at: Some(chrono::Utc::now().to_rfc3339()),
            attempts: 0,
            due: None,
            created: Some(unix_now()),
        };
        let Ok(meta_bytes) = serde_json::to_vec(&meta) else {
            return;
        };
        match self.0.spool.store(id, meta_bytes.clone(), dsn).await {
            Ok(loc) => self.enqueue(id, loc, &meta_bytes),
            Err(e) => tracing::error!(original = %part.msg.id, "cannot store DSN: {e}"),
        }
    }
}
