//! A run of the load generator: `concurrency` workers, each with its own
//! connection, take message numbers from a shared budget (a count, a
//! deadline, or both) until it is spent or the run is stopped.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{After, ClientSettings, Connection};
use crate::error::Error;
use crate::message::{date_now, Addressing, MessageTemplate};
use crate::report::{Report, RunInfo, Totals};
use crate::stats::{Counters, Stats, Timing};
use crate::tls::ClientTls;

/// After a connection could not be set up, a worker waits this long before
/// the next attempt (so that a dead target is not hammered in a loop).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// When the progress line is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// Only when stderr is a terminal.
    #[default]
    Auto,
    Always,
    Never,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// `host:port` (`[v6]:port` for IPv6 literals).
    pub target: String,
    pub concurrency: usize,
    /// Stop after this many messages…
    pub messages: Option<u64>,
    /// …or after this long, whichever comes first. With neither, the run
    /// goes on until stopped.
    pub duration: Option<Duration>,
    /// Message size in bytes (headers included).
    pub size: usize,
    pub addressing: Addressing,
    pub ehlo_name: String,
    pub starttls: Option<ClientTls>,
    /// AUTH PLAIN (user, password), after STARTTLS only.
    pub auth: Option<(String, String)>,
    /// Messages per connection before a new one (None: unlimited).
    pub messages_per_connection: Option<u64>,
    /// Limit of each step of the session.
    pub timeout: Duration,
    pub progress: Progress,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            target: "127.0.0.1:25".into(),
            concurrency: 10,
            messages: Some(1000),
            duration: None,
            size: 10 * 1024,
            addressing: Addressing::default(),
            ehlo_name: "traffic-gen.test".into(),
            starttls: None,
            auth: None,
            messages_per_connection: None,
            timeout: Duration::from_secs(60),
            progress: Progress::Never,
        }
    }
}

/// Message numbers for the workers, until the count or time is spent.
struct Budget {
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    stopped: AtomicBool,
}

impl Budget {
    fn claim(&self) -> Option<u64> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|l| n >= l) {
            return None;
        }
        Some(n)
    }
}

struct Shared {
    settings: ClientSettings,
    template: MessageTemplate,
    addressing: Addressing,
    budget: Budget,
    counters: Counters,
    per_connection: Option<u64>,
    /// Workers share these by index: one lock per record, few workers per
    /// lock, and bounded memory for the histograms whatever the concurrency.
    shards: Vec<Mutex<Stats>>,
}

impl Shared {
    fn flush(&self, shard: usize, samples: &mut Vec<(Timing, Duration)>, error: Option<&Error>) {
        let mut stats = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        for (t, d) in samples.drain(..) {
            stats.record(t, d);
        }
        if let Some(e) = error {
            stats.error(e);
        }
    }
}

/// Splits `host:port`; the host without brackets.
pub fn split_target(target: &str) -> Result<(&str, u16), Error> {
    let bad = || Error::Config(format!("target {target:?} is not HOST:PORT"));
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

async fn resolve(target: &str) -> Result<SocketAddr, Error> {
    split_target(target)?;
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| Error::Config(format!("target {target}: {e}")))?
        .next()
        .ok_or_else(|| Error::Config(format!("target {target}: no address")))
}

fn check(cfg: &GenConfig) -> Result<(), Error> {
    if cfg.concurrency == 0 {
        return Err(Error::Config("concurrency must be at least 1".into()));
    }
    if cfg.messages_per_connection == Some(0) {
        return Err(Error::Config(
            "messages per connection must be at least 1".into(),
        ));
    }
    if cfg.auth.is_some() && cfg.starttls.is_none() {
        return Err(Error::Config(
            "AUTH is only sent over TLS: add --starttls".into(),
        ));
    }
    if cfg.ehlo_name.is_empty() || !cfg.ehlo_name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Config(format!(
            "EHLO name {:?} is not a domain",
            cfg.ehlo_name
        )));
    }
    cfg.addressing.validate()
}

/// Runs the load until the budget is spent or `stop` completes (then the
/// transactions under way finish and no new one starts).
pub async fn run(cfg: GenConfig, stop: impl Future<Output = ()>) -> Result<Report, Error> {
    check(&cfg)?;
    let addr = resolve(&cfg.target).await?;
    let (host, _) = split_target(&cfg.target)?;
    let starttls = cfg.starttls.as_ref().map(|t| t.build(host)).transpose()?;
    let auth_plain = match &cfg.auth {
        Some((user, password)) => Some(
            ironpost_smtp_client::command::auth_plain_response(user, password.as_bytes())
                .map_err(|e| Error::Config(e.to_string()))?
                .to_string(),
        ),
        None => None,
    };
    let settings = ClientSettings {
        addr,
        ehlo_name: cfg.ehlo_name.clone(),
        starttls,
        auth_plain,
        timeout: cfg.timeout,
    };
    let show_progress = match cfg.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    };
    let terminal = std::io::stderr().is_terminal();
    let shard_count = cfg.concurrency.clamp(1, 16);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        settings,
        template: MessageTemplate::new(cfg.size),
        addressing: cfg.addressing.clone(),
        budget: Budget {
            next: AtomicU64::new(0),
            limit: cfg.messages,
            deadline: cfg.duration.map(|d| start + d),
            stopped: AtomicBool::new(false),
        },
        counters: Counters::default(),
        per_connection: cfg.messages_per_connection,
        shards: (0..shard_count)
            .map(|_| Mutex::new(Stats::default()))
            .collect(),
    });
    let mut workers = JoinSet::new();
    for i in 0..cfg.concurrency {
        workers.spawn(worker(shared.clone(), i % shard_count));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = (start, 0u64);
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = workers.join_next() => match done {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            _ = &mut stop, if !stopping => {
                stopping = true;
                shared.budget.stopped.store(true, Ordering::Relaxed);
            }
            _ = tick.tick(), if show_progress => {
                let (sent, accepted, failed) = shared.counters.get();
                let now = Instant::now();
                let rate = (accepted - last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, accepted);
                let line = format!(
                    "{:>6.0}s  sent {sent}  accepted {accepted}  failed {failed}  {rate:.0} msg/s",
                    (now - start).as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = if terminal {
                    write!(err, "\r\x1b[2K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if show_progress && terminal {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
    let mut stats = Stats::default();
    for shard in &shared.shards {
        stats.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
    }
    let c = &shared.counters;
    let totals = Totals {
        sent: c.sent.load(Ordering::Relaxed),
        accepted: c.accepted.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        connections: c.connections.load(Ordering::Relaxed),
        connection_failures: c.connection_failures.load(Ordering::Relaxed),
    };
    let info = RunInfo {
        target: cfg.target.clone(),
        starttls: cfg.starttls.is_some(),
        auth: cfg.auth.is_some(),
        concurrency: cfg.concurrency,
        message_size: cfg.size,
    };
    Ok(Report::new(info, totals, elapsed, &stats))
}

async fn worker(shared: Arc<Shared>, shard: usize) {
    let c = &shared.counters;
    let mut conn: Option<Connection> = None;
    let mut used = 0u64;
    let (mut from, mut to) = (String::new(), String::new());
    let mut message = Vec::with_capacity(shared.template.size() + 1024);
    let mut samples = Vec::with_capacity(8);
    let mut date = (Instant::now(), date_now());
    while let Some(seq) = shared.budget.claim() {
        c.sent.fetch_add(1, Ordering::Relaxed);
        if conn.is_none() {
            match Connection::open(&shared.settings, &mut samples).await {
                Ok(opened) => {
                    c.connections.fetch_add(1, Ordering::Relaxed);
                    used = 0;
                    conn = Some(opened);
                }
                Err(e) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    c.connection_failures.fetch_add(1, Ordering::Relaxed);
                    shared.flush(shard, &mut samples, Some(&e));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        if date.0.elapsed() >= Duration::from_secs(1) {
            date = (Instant::now(), date_now());
        }
        shared.addressing.sender(seq, &mut from);
        shared.addressing.recipient(seq, &mut to);
        shared
            .template
            .render(seq, &from, &to, &date.1, &mut message);
        let t = Instant::now();
        let (result, after) = connection.send(&from, &to, &message).await;
        match &result {
            Ok(()) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                samples.push((Timing::Transaction, t.elapsed()));
            }
            Err(_) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        shared.flush(shard, &mut samples, result.as_ref().err());
        used += 1;
        if after == After::Close {
            conn = None;
        } else if shared.per_connection.is_some_and(|n| used >= n) {
            if let Some(old) = conn.take() {
                old.quit().await;
            }
        }
    }
    if let Some(old) = conn {
        old.quit().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("127.0.0.1:25").unwrap(), ("127.0.0.1", 25));
        assert_eq!(split_target("[::1]:2525").unwrap(), ("::1", 2525));
        assert_eq!(
            split_target("mx.example.test:587").unwrap(),
            ("mx.example.test", 587)
        );
        assert!(split_target("nohost").is_err());
        assert!(split_target(":25").is_err());
        assert!(split_target("h:99999").is_err());
    }

    #[test]
    fn budget_stops_at_count_or_flag() {
        let b = Budget {
            next: AtomicU64::new(0),
            limit: Some(3),
            deadline: None,
            stopped: AtomicBool::new(false),
        };
        assert_eq!(
            (0..5).map(|_| b.claim()).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2), None, None]
        );
        let b = Budget {
            next: AtomicU64::new(0),
            limit: None,
            deadline: Some(Instant::now()),
            stopped: AtomicBool::new(false),
        };
        assert_eq!(b.claim(), None);
        let b = Budget {
            next: AtomicU64::new(0),
            limit: None,
            deadline: None,
            stopped: AtomicBool::new(true),
        };
        assert_eq!(b.claim(), None);
    }
}
