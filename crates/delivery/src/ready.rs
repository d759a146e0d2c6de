//! Ready queues: due parts routed to a destination site, waiting for a
//! connection. Each queue is one site under one set of egress settings, and
//! up to `connection_limit` workers drain it over reused connections.
//!
//! A worker whose queue runs dry keeps its connection open for the egress
//! path's `idle_timeout` (KumoMTA's default, 60 s, when unset), waiting for
//! more parts; parts added meanwhile wake it instead of starting new
//! workers. A worker without an open connection does not wait.

use crate::bounce::FailedRecipient;
use crate::dispatch::{self, Connection};
use crate::egress::EgressPath;
use crate::model::{EgressChoice, QueuedPart};
use crate::queue_manager::{lock, QueueManager};
use crate::route::{self, RouteError, Site};
use ironpost_policy::QueueConfig;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// `idle_timeout` when the egress path leaves it unset, as KumoMTA
/// documents it (docs/reference/kumo/make_egress_path/idle_timeout.md; its
/// source, `SmtpClientTimeouts::default_idle_timeout`, says 5 s).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a connection holding a slot of a shared (cluster-wide)
/// connection limit stays open idle.
const SHARED_IDLE: Duration = Duration::from_secs(1);

/// How soon a rolled-up shaping domain whose MX lookup failed is asked
/// again.
const SITE_RETRY: Duration = Duration::from_secs(30);

/// How often mail held by a suspension looks at it again.
const SUSPENSION_RECHECK: Duration = Duration::from_secs(5);

struct ReadyQueue {
    site: Arc<Site>,
    path: Arc<EgressPath>,
    msgs: VecDeque<QueuedPart>,
    /// Workers draining this queue, idle ones included.
    active: usize,
    /// Wakes the workers waiting on an idle connection when parts arrive.
    wake: Arc<Notify>,
    /// Connection attempts in a row that reached no host.
    failures: usize,
}

/// What a worker gets from its queue.
enum Take {
    Part(QueuedPart, Arc<Site>, Arc<EgressPath>),
    /// Nothing queued: wait on `wake` (enabled before checking the queue
    /// again) for up to `idle_timeout`, under the queue's current settings.
    Idle {
        wake: Arc<Notify>,
        idle_timeout: Duration,
        path: Arc<EgressPath>,
    },
    /// Nothing queued and the worker has retired.
    Retired,
}

#[derive(Default)]
pub(crate) struct ReadyQueues(Mutex<HashMap<String, ReadyQueue>>);

impl ReadyQueues {
    pub fn len(&self) -> usize {
        lock(&self.0).values().map(|r| r.msgs.len()).sum()
    }

    /// Add parts for `site` under `path`; returns the queue's key, how
    /// many workers to start, and the parts past `max_ready` (not added).
    fn join(
        &self,
        domain: &str,
        site: Arc<Site>,
        path: &Arc<EgressPath>,
        mut parts: Vec<QueuedPart>,
    ) -> (String, usize, Vec<QueuedPart>) {
        let mut queues = lock(&self.0);
        // A ready queue's connections are shared by its parts, so every
        // part in it must have equal egress path settings (TLS mode, AUTH
        // credentials, ...): the key is the site and the settings' hash, and
        // a domain whose settings merely share the hash gets a queue of its
        // own.
        let mut key = format!(
            "{}\u{0}{}\u{0}{:016x}",
            path.source.name, site.name, path.fingerprint
        );
        if queues
            .get(&key)
            .is_some_and(|rq| !rq.path.same_settings(path))
        {
            key = format!("{key}\u{0}{domain}");
        }
        let rq = queues.entry(key.clone()).or_insert_with(|| ReadyQueue {
            site: site.clone(),
            path: path.clone(),
            msgs: VecDeque::new(),
            active: 0,
            wake: Arc::new(Notify::new()),
            failures: 0,
        });
        if !rq.path.same_settings(path) {
            // Only this domain's own queue can get here: its settings
            // changed, and the newest apply to all its parts.
            rq.path = path.clone();
        }
        rq.site = site;
        let room = rq.path.cfg.max_ready.saturating_sub(rq.msgs.len());
        let over = parts.split_off(room.min(parts.len()));
        rq.msgs.extend(parts);
        // Idle workers count in `active`: wake them rather than start more.
        // Every worker checks the queue again (under this lock) before it
        // retires, so a part added here is never left without one.
        rq.wake.notify_waiters();
        let limit = rq.path.cfg.connection_limit.n;
        let want = rq.msgs.len().min(limit).saturating_sub(rq.active);
        rq.active += want;
        (key, want, over)
    }

    /// A connection attempt of queue `key` reached no host: after
    /// `consecutive_connection_failures_before_delay` in a row, every part
    /// waiting in it is handed back to be deferred.
    fn connect_failed(&self, key: &str) -> Vec<QueuedPart> {
        let mut queues = lock(&self.0);
        let Some(rq) = queues.get_mut(key) else {
            return Vec::new();
        };
        rq.failures += 1;
        if rq.failures > rq.path.cfg.consecutive_connection_failures_before_delay {
            rq.failures = 0;
            return rq.msgs.drain(..).collect();
        }
        Vec::new()
    }

    fn connected(&self, key: &str) {
        if let Some(rq) = lock(&self.0).get_mut(key) {
            rq.failures = 0;
        }
    }

    /// Takes the parts that `pick(source, site, part)` selects.
    pub fn take_where(&self, pick: impl Fn(&str, &str, &QueuedPart) -> bool) -> Vec<QueuedPart> {
        let mut out = Vec::new();
        for rq in lock(&self.0).values_mut() {
            let (source, site) = (rq.path.source.name.clone(), rq.site.name.clone());
            let (take, keep): (Vec<_>, Vec<_>) =
                rq.msgs.drain(..).partition(|p| pick(&source, &site, p));
            rq.msgs = keep.into();
            out.extend(take);
        }
        out
    }

    /// Takes the parts waiting for `source`'s path to `site`.
    pub fn take_path(&self, source: &str, site: &str) -> Vec<QueuedPart> {
        let mut out = Vec::new();
        for rq in lock(&self.0).values_mut() {
            if rq.path.source.name == source && rq.site.name == site {
                out.extend(rq.msgs.drain(..));
            }
        }
        out
    }

    /// The next part for a worker of queue `key`. When there is none, a
    /// worker that may `linger` (it holds an open connection) is told to
    /// wait; otherwise it retires, and the last one out removes the queue.
    fn take(&self, key: &str, linger: bool) -> Take {
        let mut queues = lock(&self.0);
        let Some(rq) = queues.get_mut(key) else {
            return Take::Retired;
        };
        if let Some(p) = rq.msgs.pop_front() {
            return Take::Part(p, rq.site.clone(), rq.path.clone());
        }
        let idle_timeout = rq.path.cfg.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
        if linger && !idle_timeout.is_zero() {
            return Take::Idle {
                wake: rq.wake.clone(),
                idle_timeout,
                path: rq.path.clone(),
            };
        }
        rq.active -= 1;
        if rq.active == 0 {
            queues.remove(key);
        }
        Take::Retired
    }

    fn has_parts(&self, key: &str) -> bool {
        lock(&self.0).get(key).is_some_and(|rq| !rq.msgs.is_empty())
    }

    /// Takes the queued parts that `pick` selects.
    pub fn take_matching(&self, pick: impl Fn(&QueuedPart) -> bool) -> Vec<QueuedPart> {
        let mut out = Vec::new();
        for rq in lock(&self.0).values_mut() {
            let (take, keep): (Vec<_>, Vec<_>) = rq.msgs.drain(..).partition(&pick);
            rq.msgs = keep.into();
            out.extend(take);
        }
        out
    }

    /// Parts waiting per (egress source, site), for the metrics.
    pub fn sizes(&self) -> Vec<((String, String), usize)> {
        let mut sizes: HashMap<(String, String), usize> = HashMap::new();
        for rq in lock(&self.0).values() {
            *sizes
                .entry((rq.path.source.name.clone(), rq.site.name.clone()))
                .or_default() += rq.msgs.len();
        }
        let mut v: Vec<_> = sizes.into_iter().collect();
        v.sort();
        v
    }

    /// Calls `f` on every queued part.
    pub fn for_each(&self, mut f: impl FnMut(&QueuedPart)) {
        for rq in lock(&self.0).values() {
            rq.msgs.iter().for_each(&mut f);
        }
    }
}

impl QueueManager {
    /// Route a batch of due parts (one queue) and hand them to their site's
    /// ready queue: suspension, `get_queue_config`, MX or `mx_list`,
    /// `get_egress_path_config`, then the destination's DANE and MTA-STS.
    pub(crate) async fn make_ready(&self, parts: Vec<QueuedPart>) {
        // An automation bounce in force takes its parts first.
        let (held, parts): (Vec<_>, Vec<_>) = parts
            .into_iter()
            .partition(|p| self.0.suspensions.bounce_reason(p).is_some());
        for p in held {
            let reason = self.0.suspensions.bounce_reason(&p).unwrap_or_default();
            self.bounce_now(p, &reason).await;
        }
        let Some(first) = parts.first() else { return };
        if let Some(left) = self.0.suspensions.part_remaining(first) {
            // Suspended by an operator: wait, without counting an attempt,
            // looking again now and then so a cancellation takes effect.
            let delay = left.min(SUSPENSION_RECHECK);
            for p in parts {
                self.schedule(p, delay);
            }
            return;
        }
        let qcfg = match self.queue_config(first).await {
            Ok(c) => c,
            Err(reason) => return self.hold(parts, &reason).await,
        };
        if let Some(sink) = self.custom_sink(first, &qcfg) {
            let me = self.clone();
            tokio::spawn(async move { me.deliver_custom(parts, sink, qcfg).await });
            return;
        }
        // The routing domain's MX, or the queue's own domain's.
        let domain = first.queue().destination().to_string();
        let site = match route::resolve(&self.0.ctx.dns, &domain, &qcfg).await {
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
        let pool = match self.egress_pool(&qcfg).await {
            Ok(p) => p,
            Err(reason) => return self.hold(parts, &reason).await,
        };
        // Shaping tables that roll up by MX apply by site: know the sites.
        self.refresh_rollup_sites().await;
        let queue = first.queue_name();
        // Sources suspended as a whole are passed over (weight 0, so the
        // rotation keeps its place); when every source is, the parts wait
        // for the first to come back.
        let mut wait: Option<Duration> = None;
        let mut usable = (*pool).clone();
        for e in usable.entries.iter_mut() {
            if let (Some(left), true) = (self.0.suspensions.source_remaining(&e.name), e.weight > 0)
            {
                wait = Some(wait.map_or(left, |w| w.min(left)));
                e.weight = 0;
            }
        }
        if let (Some(left), false) = (wait, usable.entries.iter().any(|e| e.weight > 0)) {
            let delay = left.min(SUSPENSION_RECHECK);
            for p in parts {
                self.schedule(p, delay);
            }
            return;
        }
        // Each part takes the pool's next source, by weight, passing over
        // one whose path to this site is suspended or whose selection rate
        // is spent; parts with the same source travel together.
        let mut by_source: Vec<(Arc<EgressPath>, Vec<QueuedPart>)> = Vec::new();
        for mut p in parts {
            let path = match self.choose_path(&queue, &usable, &domain, &site).await {
                Choice::Path(path) => path,
                Choice::Wait(delay) => {
                    self.schedule(p, delay);
                    continue;
                }
                Choice::Hold(reason) => {
                    self.hold(vec![p], &reason).await;
                    continue;
                }
            };
            p.egress = Some(self.0.interned.egress.value(EgressChoice {
                pool: pool.name.clone(),
                source: path.source.name.clone(),
            }));
            match by_source.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &path)) {
                Some((_, group)) => group.push(p),
                None => by_source.push((path, vec![p])),
            }
        }
        for (path, parts) in by_source {
            self.join_ready(&domain, &site, path, parts, &qcfg).await;
        }
    }

    /// A source of `pool` for one part going to `site`, with its egress
    /// path.
    async fn choose_path(
        &self,
        queue: &str,
        pool: &ironpost_policy::EgressPool,
        domain: &str,
        site: &Site,
    ) -> Choice {
        let mut candidates = pool.clone();
        let mut wait: Option<Duration> = None;
        loop {
            let Some(name) = self.pick_source(queue, &candidates) else {
                return match wait {
                    Some(d) => Choice::Wait(d),
                    None => {
                        Choice::Hold(format!("egress pool '{}' has no usable source", pool.name))
                    }
                };
            };
            let mut pass_over = |candidates: &mut ironpost_policy::EgressPool, d: Duration| {
                wait = Some(wait.map_or(d, |w| w.min(d)));
                for e in candidates.entries.iter_mut().filter(|e| e.name == name) {
                    e.weight = 0;
                }
            };
            if let Some(left) = self.0.suspensions.path_remaining(&name, &site.name) {
                pass_over(&mut candidates, left.min(SUSPENSION_RECHECK));
                continue;
            }
            let source = match self.egress_source(&name).await {
                Ok(s) => s,
                Err(reason) => return Choice::Hold(reason),
            };
            let path = match self.egress_path(domain, &source, site).await {
                Ok(p) => p,
                Err(reason) => return Choice::Hold(reason),
            };
            let mut spent = None;
            for r in &path.selection_rates {
                if let Err(d) = r.try_take().await {
                    spent = Some(d);
                    break;
                }
            }
            if let Some(d) = spent {
                pass_over(&mut candidates, d);
                continue;
            }
            return Choice::Path(path);
        }
    }

    /// Parts leaving on one egress path: the destination's DANE and
    /// MTA-STS, then the ready queue for that source and site. Parts past
    /// the queue's `max_ready` go back to wait up to a minute.
    async fn join_ready(
        &self,
        domain: &str,
        site: &Site,
        path: Arc<EgressPath>,
        parts: Vec<QueuedPart>,
        qcfg: &QueueConfig,
    ) {
        // Our own TLS reports are not counted in TLS reports.
        let reports_only = self
            .0
            .ctx
            .tls_reports
            .as_ref()
            .is_some_and(|r| parts.iter().all(|p| r.exempt(&p.msg.sender)));
        let site =
            match crate::tls_policy::apply(&self.0.ctx, domain, site.clone(), &path, !reports_only)
                .await
            {
                Ok(site) => Arc::new(site),
                Err(e) => {
                    self.defer_all(parts, e, qcfg).await;
                    return;
                }
            };
        let (key, workers, over) = self.0.ready.join(domain, site, &path, parts);
        for p in over {
            let jitter = Duration::from_millis(rand_below(60_000));
            self.schedule(p, jitter);
        }
        for _ in 0..workers {
            let me = self.clone();
            let key = key.clone();
            tokio::spawn(async move { me.worker(key).await });
        }
    }

    /// Look up the MX sites of the shaping tables that roll up, when they
    /// are unknown or old. One batch at a time; the others wait for it, so
    /// no part is shaped without the tables that apply to it.
    async fn refresh_rollup_sites(&self) {
        let reg = self.0.policy.shaping();
        if !reg.is_active() {
            return;
        }
        let _one = self.0.egress.site_refresh.lock().await;
        let due = reg.sites_due(ironpost_policy::helpers::shaping::SITE_TTL);
        if due.is_empty() {
            return;
        }
        let mut lookups = tokio::task::JoinSet::new();
        for d in due {
            let dns = self.0.ctx.dns.clone();
            lookups.spawn(async move {
                let site = tokio::time::timeout(
                    Duration::from_secs(5),
                    route::resolve(&dns, &d, &QueueConfig::default()),
                )
                .await;
                (d, site)
            });
        }
        while let Some(done) = lookups.join_next().await {
            match done {
                Ok((d, Ok(Ok(site)))) => reg.set_site(&d, Some(site.name)),
                // A definite answer: the domain has no site.
                Ok((d, Ok(Err(RouteError::Permanent { .. })))) => reg.set_site(&d, None),
                // Timeouts and temporary failures keep the last site known.
                Ok((d, _)) => reg.site_lookup_failed(&d, SITE_RETRY),
                Err(_) => {}
            }
        }
    }

    /// One connection's worth of work for a ready queue: keep taking parts
    /// from it, reusing the connection up to `max_deliveries_per_connection`,
    /// and keeping it open for up to `idle_timeout` while the queue is empty.
    async fn worker(self, key: String) {
        let ctx = &self.0.ctx;
        let ready = &self.0.ready;
        let mut conn: Option<Connection> = None;
        // The settings the open connection was made with (TLS mode, AUTH):
        // when the queue's change, the connection is not reused.
        let mut conn_path: Option<Arc<EgressPath>> = None;
        let mut sent_on_conn = 0usize;
        // Slots under the path's shared connection limits, held while a
        // connection is open (or being opened).
        let mut permits: crate::throttle::Permits = Vec::new();
        // When the open connection began waiting for parts; a delivery
        // ends the wait.
        let mut idle_since: Option<tokio::time::Instant> = None;
        // The wait ran out: retire as soon as the queue is empty.
        let mut idle_over = false;
        let mut gauge: Option<crate::throttle::OpenGauge> = None;
        loop {
            if let Some(g) = gauge.as_mut() {
                g.set(conn.is_some());
            }
            let (part, site, path) = match ready.take(&key, conn.is_some() && !idle_over) {
                Take::Part(part, site, path) => (part, site, path),
                Take::Retired => break,
                Take::Idle {
                    wake,
                    idle_timeout,
                    path,
                } => {
                    if conn_path.as_ref().is_some_and(|p| !Arc::ptr_eq(p, &path))
                        || permits.iter().any(|p| p.lost())
                    {
                        // Made under settings the queue no longer has (it
                        // would not be reused), or over a shared limit
                        // whose slot lapsed: it does not wait.
                        if let Some(c) = conn.take() {
                            c.quit().await;
                        }
                        permits.clear();
                        continue;
                    }
                    // A slot of a limit shared between nodes is not kept
                    // idle for long: another node may have mail waiting
                    // for it.
                    let idle_timeout = if permits.iter().any(|p| p.is_shared()) {
                        idle_timeout.min(SHARED_IDLE)
                    } else {
                        idle_timeout
                    };
                    let deadline =
                        *idle_since.get_or_insert_with(tokio::time::Instant::now) + idle_timeout;
                    // Registered before the queue is looked at again, so a
                    // part added in between still wakes this worker.
                    let notified = wake.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if !ready.has_parts(&key)
                        && tokio::time::timeout_at(deadline, notified).await.is_err()
                    {
                        idle_over = true;
                    }
                    continue;
                }
            };
            let after_idle = idle_since.take().is_some();
            idle_over = false;
            let qcfg = match self.queue_config(&part).await {
                Ok(c) => c,
                Err(reason) => {
                    self.hold(vec![part], &reason).await;
                    continue;
                }
            };
            let stale = conn_path.as_ref().is_some_and(|p| !Arc::ptr_eq(p, &path))
                // A shared slot that lapsed: this connection is over the limit.
                || permits.iter().any(|p| p.lost());
            if conn.is_some() && (stale || sent_on_conn >= path.cfg.max_deliveries_per_connection) {
                if let Some(c) = conn.take() {
                    c.quit().await;
                }
                permits.clear();
            }
            let g = gauge.get_or_insert_with(|| {
                crate::throttle::OpenGauge::new(&self.0.path_stats, &path.source.name, &site.name)
            });
            let reused_after_idle = after_idle && conn.is_some();
            if conn.is_none() {
                // A slot under every shared limit first, held while the
                // connection is open.
                permits.clear();
                permits = acquire(&path.limits).await;
                if let Some(rate) = &path.connection_rate {
                    if rate.wait().await {
                        self.0.path_stats.throttled(g.key());
                    }
                }
                match dispatch::connect(ctx, &site, &path, &part.msg.sender).await {
                    Ok(c) => {
                        ready.connected(&key);
                        g.set(true);
                        conn = Some(c);
                        conn_path = Some(path.clone());
                        sent_on_conn = 0;
                    }
                    Err(mut attempt) => {
                        attempt.site = Some(site.name.clone());
                        permits.clear();
                        let mut parts = vec![part];
                        parts.extend(ready.connect_failed(&key));
                        for p in parts {
                            self.defer(p.clone(), p.recipients.clone(), &attempt, &qcfg)
                                .await;
                        }
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            // A rate that would keep the connection open idle for longer
            // than `idle_timeout` sends the part back to its schedule
            // instead (as KumoMTA delays the queue), without an attempt.
            let longest = path.cfg.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
            match wait_for_rates(&path.message_rates, longest).await {
                RateWait::Now { waited } => {
                    if waited {
                        self.0
                            .path_stats
                            .throttled(&(path.source.name.clone(), site.name.clone()));
                    }
                }
                RateWait::Later(d) => {
                    self.0
                        .path_stats
                        .throttled(&(path.source.name.clone(), site.name.clone()));
                    self.schedule(part, d);
                    if let Some(c) = conn.take() {
                        c.quit().await;
                    }
                    permits.clear();
                    continue;
                }
            }
            // A hold made while this part waited (a suspension, an
            // automation bounce) applies to it: back through routing.
            let held = {
                let s = &self.0.suspensions;
                s.path_remaining(&path.source.name, &site.name).is_some()
                    || s.part_remaining(&part).is_some()
                    || s.bounce_reason(&part).is_some()
            };
            if held {
                self.schedule(part, Duration::ZERO);
                continue;
            }
            // Counted in flight before looking at `stopping`, so a drain
            // that saw none in flight cannot miss this one.
            let _in_flight = self.0.draining.begin(dispatch::shutdown_timeout(&path));
            if self
                .0
                .draining
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                // Stopping: the part stays in the spool for the restart.
                break;
            }
            sent_on_conn += 1;
            let mut result = dispatch::deliver(ctx, c, &part).await;
            if !result.connection_usable {
                conn = None;
            }
            if reused_after_idle && closed_while_idle(&result) {
                // The peer closed the connection while it waited (a server's
                // own idle timeout): not an attempt at this message, which
                // gets one on a new connection.
                tracing::debug!(
                    id = %part.msg.id,
                    "idle connection to {} was closed by the peer; reconnecting",
                    site.name
                );
                if let Some(rate) = &path.connection_rate {
                    rate.wait().await;
                }
                if permits.is_empty() {
                    permits = acquire(&path.limits).await;
                }
                match dispatch::connect(ctx, &site, &path, &part.msg.sender).await {
                    Ok(mut c) => {
                        conn_path = Some(path.clone());
                        sent_on_conn = 1;
                        result = dispatch::deliver(ctx, &mut c, &part).await;
                        conn = result.connection_usable.then_some(c);
                    }
                    Err(mut attempt) => {
                        attempt.site = Some(site.name.clone());
                        permits.clear();
                        self.defer(part.clone(), part.recipients.clone(), &attempt, &qcfg)
                            .await;
                        continue;
                    }
                }
            }
            if conn.is_none() {
                permits.clear();
            }
            self.settle(part, result, &site, &qcfg).await;
            if sent_on_conn >= path.cfg.max_deliveries_per_connection {
                // Used up: close it now rather than keep it open idle.
                if let Some(c) = conn.take() {
                    c.quit().await;
                }
                permits.clear();
            }
        }
        if let Some(c) = conn.take() {
            c.quit().await;
        }
    }
}

/// One slot under each limit, in order; waits for each in turn.
async fn acquire(limits: &[Arc<crate::throttle::Limit>]) -> crate::throttle::Permits {
    let mut held = Vec::with_capacity(limits.len());
    for l in limits {
        held.push(l.acquire().await);
    }
    held
}

enum RateWait {
    /// Every rate gave a slot (after waiting, or not).
    Now { waited: bool },
    /// A rate asks for a wait of at least this long: come back then.
    Later(Duration),
}

/// Wait for a slot of every rate, unless one asks for `longest` or more.
async fn wait_for_rates(rates: &[Arc<crate::throttle::Rate>], longest: Duration) -> RateWait {
    let mut waited = false;
    for r in rates {
        loop {
            match r.try_take().await {
                Ok(()) => break,
                Err(d) if d >= longest => return RateWait::Later(d),
                Err(d) => {
                    waited = true;
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
    RateWait::Now { waited }
}

enum Choice {
    Path(Arc<EgressPath>),
    /// Every source is suspended for the site or spent: look again then.
    Wait(Duration),
    /// The policy could not say (fails closed: the part waits, logged).
    Hold(String),
}

/// A number below `n`, from the clock: spreads parts put back by
/// `max_ready` over a minute, as KumoMTA does.
fn rand_below(n: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() as u64 ^ t.as_secs().wrapping_mul(0x9e37_79b9)) % n.max(1)
}

/// A transaction on a reused connection that failed before the server
/// said anything about it (no reply, or a 421 closing the session) and
/// left the connection unusable: what a connection closed by the peer
/// while it sat idle looks like.
fn closed_while_idle(o: &dispatch::Outcome) -> bool {
    !o.connection_usable
        && o.delivered.is_empty()
        && o.failed.is_empty()
        && o.attempt
            .reply
            .as_ref()
            .is_none_or(|(code, _, _)| *code == 421)
}
