//! The queue manager: the handle the rest of the daemon holds. A message
//! moves through the modules named here, in order:
//!
//! 1. [`QueueManager::enqueue`] splits it into per-domain parts and puts
//!    them on the time-ordered [`crate::schedule`].
//! 2. When a part is due, [`crate::ready`] routes it (queue config, MX or
//!    `mx_list`, egress path, TLS policy) into the ready queue of its site,
//!    whose workers deliver over shared connections ([`crate::dispatch`]).
//! 3. [`crate::outcome`] applies each attempt's result: delivered, retried,
//!    expired or bounced, with the spool record kept in step.
//!
//! Policy answers are cached by [`crate::egress`]; operator actions live in
//! [`crate::admin`].

use crate::egress::EgressCache;
use crate::model::{
    split_by_domain, to_system_time, unix_now, QueueName, QueuedPart, RouteLabels, SharedMessage,
};
use crate::ready::ReadyQueues;
use crate::schedule::Schedule;
use crate::suspensions::Suspensions;
use ironpost_dns::Dns;
use ironpost_logs::Logger;
use ironpost_policy::{PolicyEngine, QueueConfig};
use ironpost_spool::{Location, Spool, SpoolId, SpoolMeta};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct DeliveryOptions {
    pub hostname: String,
    pub dns: Dns,
    /// MTA-STS policy discovery and cache; `None` disables MTA-STS whatever
    /// the egress paths say (tools and tests without a cache directory).
    pub mta_sts: Option<Arc<ironpost_mta_sts::StsResolver>>,
    /// Message meta keys and headers named by `configure_local_logs`, put
    /// into every delivery record.
    pub log_meta: Vec<String>,
    pub log_headers: Vec<String>,
    /// The queues `policy-extras.log_hooks` answers for, by queue domain
    /// (`<name>.log_hook`).
    pub log_hook_queues: Vec<(String, Arc<QueueConfig>, crate::custom::HookSink)>,
    /// Operator suspensions, loaded from their file.
    pub suspensions: Suspensions,
    /// Redis, when the policy shares rates, limits and holds between nodes.
    pub shared: Option<ironpost_cluster::Redis>,
    /// Where RFC 8460 session counts go (`None`: not kept).
    pub tls_reports: Option<Arc<crate::tls_reports::TlsReporter>>,
}

/// What a delivery attempt needs from the daemon, and no more: the
/// connection code ([`crate::dispatch`]) and the TLS policy
/// ([`crate::tls_policy`]) get this instead of the manager.
pub(crate) struct Context {
    pub spool: Spool,
    pub dns: Dns,
    pub sts: Option<Arc<ironpost_mta_sts::StsResolver>>,
    /// Our name in EHLO and DSNs.
    pub hostname: String,
    /// For `smtp_client_rewrite_delivery_status`.
    pub policy: PolicyEngine,
    pub broken_tls: crate::dispatch::BrokenTls,
    /// RFC 8460 session counts, when the daemon keeps them.
    pub tls_reports: Option<Arc<crate::tls_reports::TlsReporter>>,
}

pub(crate) struct Inner {
    pub ctx: Context,
    pub policy: PolicyEngine,
    pub logger: Logger,
    pub schedule: Schedule,
    pub ready: ReadyQueues,
    pub egress: EgressCache,
    /// Shared copies of domains, labels and egress choices.
    pub interned: crate::intern::Interned,
    pub suspensions: Suspensions,
    pub log_meta: Vec<String>,
    pub log_headers: Vec<String>,
    pub log_hook_queues: Vec<(String, Arc<QueueConfig>, crate::custom::HookSink)>,
    /// Named rates and connection limits.
    pub throttles: crate::throttle::Registry,
    pub path_stats: crate::throttle::PathStats,
    /// Threshold counts of the automation rules.
    pub automation: crate::automation::Counts,
    /// Transactions in progress, for a graceful stop.
    pub draining: Drain,
}

/// What a graceful stop waits for: transactions in progress, each for at
/// most its path's `system_shutdown_timeout`.
#[derive(Default)]
pub(crate) struct Drain {
    pub stopping: std::sync::atomic::AtomicBool,
    in_flight: AtomicUsize,
    /// The longest shutdown timeout of a transaction begun, in ms.
    longest_ms: std::sync::atomic::AtomicU64,
    idle: tokio::sync::Notify,
}

/// Held for one transaction.
pub(crate) struct InFlight<'a>(&'a Drain);

impl Drain {
    pub(crate) fn begin(&self, limit: Duration) -> InFlight<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        self.in_flight.fetch_add(1, SeqCst);
        self.longest_ms
            .fetch_max(limit.as_millis().min(u64::MAX as u128) as u64, SeqCst);
        InFlight(self)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self
            .0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

#[derive(Clone)]
pub struct QueueManager(pub(crate) Arc<Inner>);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        if let Some(r) = &opts.shared {
            // Holds made from now on get cluster-wide names.
            *lock(&opts.suspensions.node) = Some(r.node().to_string());
        }
        QueueManager(Arc::new(Inner {
            ctx: Context {
                spool,
                dns: opts.dns,
                sts: opts.mta_sts,
                hostname: opts.hostname,
                policy: policy.clone(),
                broken_tls: Default::default(),
                tls_reports: opts.tls_reports,
            },
            policy,
            logger,
            schedule: Schedule::default(),
            ready: ReadyQueues::default(),
            egress: EgressCache::default(),
            interned: Default::default(),
            suspensions: opts.suspensions,
            log_meta: opts.log_meta,
            log_headers: opts.log_headers,
            log_hook_queues: opts.log_hook_queues,
            throttles: crate::throttle::Registry::new(opts.shared),
            path_stats: Default::default(),
            automation: Default::default(),
            draining: Default::default(),
        }))
    }

    /// Start the scheduler. Call once, inside the runtime.
    pub fn start(&self) {
        let me = self.clone();
        tokio::spawn(async move { me.scheduler().await });
        let me = self.clone();
        tokio::spawn(async move { me.watch_overrides().await });
        let me = self.clone();
        tokio::spawn(async move { me.bouncer().await });
        if let Some(redis) = self.0.throttles.shared().cloned() {
            let me = self.clone();
            tokio::spawn(async move { me.share_holds(redis).await });
        }
    }

    /// Stop starting deliveries, and wait for those in progress: each for
    /// at most its egress path's `system_shutdown_timeout`. What is cut off
    /// stays in the spool and is tried again after the restart.
    pub async fn drain(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let d = &self.0.draining;
        d.stopping.store(true, SeqCst);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(d.longest_ms.load(SeqCst));
        loop {
            let idle = d.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let n = d.in_flight.load(SeqCst);
            if n == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!("shutdown: {n} deliveries still in progress are cut off");
                break;
            }
        }
        self.release_shared_slots().await;
    }

    /// Hand this node's slots of shared connection limits back to the
    /// cluster now rather than when their leases expire.
    async fn release_shared_slots(&self) {
        let t = &self.0.throttles;
        let Some(redis) = t.shared() else { return };
        let names: Vec<String> = t
            .limits()
            .into_iter()
            .filter(|(_, _, shared)| *shared)
            .map(|(name, _, _)| name)
            .collect();
        match redis.release_all(&names).await {
            Ok(n) if n > 0 => tracing::info!("shutdown: {n} shared connection slots given back"),
            Ok(_) => {}
            Err(e) => tracing::warn!("shutdown: shared connection slots expire by themselves: {e}"),
        }
    }

    /// Messages queued or in flight.
    pub fn len(&self) -> usize {
        self.0.schedule.len() + self.0.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A message just stored in the spool (or recovered from it).
    pub fn enqueue(&self, id: SpoolId, location: Location, meta: SpoolMeta) {
        if meta.recipients.is_empty() {
            let spool = self.0.ctx.spool.clone();
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
        let parts = match meta.queue.as_deref() {
            // Discarded at reception; only a spool from before that could
            // hold one.
            Some("null") => {
                tracing::info!(%id, "discarding a message queued to 'null'");
                let spool = self.0.ctx.spool.clone();
                tokio::spawn(async move { spool.remove(id).await });
                return;
            }
            // The whole message goes to the named queue.
            Some(q) => vec![(QueueName::parse(q).domain, meta.recipients.clone())],
            None => split_by_domain(&meta.recipients),
        };
        let delay = meta
            .due
            .map(|d| {
                to_system_time(d)
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let boxed = |s: &Option<String>| s.as_deref().map(Box::from);
        let labels = self.0.interned.labels.value(RouteLabels {
            tenant: boxed(&meta.tenant),
            campaign: boxed(&meta.campaign),
            queue: boxed(&meta.queue),
            routing_domain: boxed(&meta.routing_domain),
        });
        let sender = self.0.interned.senders.str(&meta.sender);
        let attempts = meta.attempts;
        let shared = Arc::new(SharedMessage::new(
            id,
            location,
            meta,
            (sender, labels),
            created,
            parts.len(),
        ));
        for (domain, recipients) in parts {
            self.schedule(
                QueuedPart {
                    msg: shared.clone(),
                    domain: self.0.interned.domains.str(&domain),
                    recipients,
                    attempts,
                    egress: None,
                },
                delay,
            );
        }
    }
}
