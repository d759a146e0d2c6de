//! Shared throttles between Ironpost nodes, through a real `redis-server`
//! on loopback (`kumo.configure_redis_throttles` in `init`), with two real
//! daemons (separate spools and logs, the same policy) delivering to one
//! capture sink:
//!
//! - A `max_message_rate` holds for the cluster: two nodes together go at
//!   the rate, not twice it (without Redis each node has its own, and
//!   together they go at twice the rate).
//! - A `connection_limit` holds for the cluster: the sink never sees more
//!   sessions at once than the limit, across both nodes; written
//!   `local:3`, it stays per node (more than 3 at once across both).
//! - Redis down: the daemon keeps receiving, deliveries that depend on a
//!   shared limit wait (and say so), and once Redis is back everything is
//!   delivered, nothing bounced or expired.
//! - A node killed with SIGKILL while it holds a shared connection slot
//!   frees it when its lease expires (10 s after its last renewal), not
//!   before and not never; the admin API of the other node lists the limit
//!   as shared, with the dead node's lease.
//!
//! - A lease that Redis lost (restarted without persistence) still binds
//!   the connection that held it.
//! - Suspensions are shared: made on one node, they hold the other's mail
//!   within a second; cancelled on either, they end on both.
//! - An automation `Suspend` fired by a reply on one node holds the other
//!   node's mail within a second; cancelled there, it ends on both.
//! - A `max_message_rate` written `local:` stays per node with Redis
//!   configured: two nodes together go at twice the rate.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::delivery_common::*;
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use ironpost_testkit::redis::RedisServer;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, SinkRecord, SinkSession, Stage};
use ironpost_testkit::{Daemon, SmtpClient};
use serde_json::Value;

const DOMAIN: &str = "cluster.test";

const HTTP: &str =
    "kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }";

/// The policy of every node: all mail to `sink`, the egress path carrying
/// `egress` (Lua fields), limits shared through `redis` when given, and an
/// HTTP listener for the admin API. `pki` must outlive the nodes.
fn policy(
    pki: &Pki,
    dns: &TestDnsServer,
    sink: &Sink,
    redis: Option<&RedisServer>,
    egress: &str,
) -> Policy {
    let mut p = Policy::new(dns.addr).init(HTTP).route(
        "*",
        queue_to(&[&sink.addr().to_string()]),
        pki.egress(egress),
    );
    if let Some(r) = redis {
        p = p.init(&format!(
            "kumo.configure_redis_throttles {{ node = '{}' }}",
            r.url()
        ));
    }
    p
}

/// Two nodes on the same policy text, each in its own temp dir.
fn two_nodes(p: &Policy) -> (Daemon, Daemon) {
    (p.start(), p.start())
}

/// Submits `n` messages to `{tag}{i}@cluster.test`, with Subject `{tag}{i}`,
/// over one SMTP session, as fast as the daemon takes them.
async fn inject_many(d: &Daemon, tag: &str, n: usize) {
    let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.expect("connect");
    assert_eq!(greeting.code, 220, "{greeting}");
    c.ehlo("client.test").await.expect("EHLO");
    for i in 0..n {
        let to = format!("{tag}{i}@{DOMAIN}");
        let body = message("a@origin.test", &[&to], &format!("{tag}{i}"));
        let r = c
            .send_message("a@origin.test", &[&to], &body)
            .await
            .expect("message accepted");
        assert_eq!(r.code, 250, "{r}");
    }
    let _ = c.quit().await;
}

/// Waits until the nodes together logged `n` Delivery records.
async fn wait_deliveries(nodes: &[&Daemon], n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    let count = || -> usize { nodes.iter().map(|d| records_of(d, "Delivery").len()).sum() };
    while count() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} delivered within {limit:?}; records:\n{}\nstderr:\n{}",
            count(),
            nodes
                .iter()
                .map(|d| dump(d))
                .collect::<Vec<_>>()
                .join("\n--\n"),
            nodes
                .iter()
                .map(|d| d.stderr())
                .collect::<Vec<_>>()
                .join("\n--\n"),
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Arrival times at the sink of the accepted messages whose Subject starts
/// with `tag`, in order.
fn arrivals(seen: &SinkRecord, tag: &str) -> Vec<Instant> {
    let mut at: Vec<Instant> = seen
        .messages_containing(&format!("Subject: {tag}"))
        .iter()
        .map(|m| m.at)
        .collect();
    at.sort();
    at
}

/// Messages per second from the first arrival to the last.
fn rate_of(at: &[Instant]) -> f64 {
    let span = at[at.len() - 1].duration_since(at[0]);
    (at.len() - 1) as f64 / span.as_secs_f64()
}

/// When a session was over: its QUIT arrived (the daemon waits for the
/// reply before it gives its slot back), else the sink closed it.
fn session_end(s: &SinkSession) -> Instant {
    s.commands
        .iter()
        .find(|c| c.verb() == "QUIT")
        .map(|c| c.at)
        .or(s.ended)
        .unwrap_or_else(Instant::now)
}

/// The most sessions open at once: for each session's start, itself and
/// the others that had started and were not yet over. One that ended
/// within `SLACK` of the start is not counted as open then (the sink
/// timestamps the two ends of a handover on different tasks).
fn peak_concurrency(sessions: &[&SinkSession]) -> usize {
    const SLACK: Duration = Duration::from_millis(50);
    sessions
        .iter()
        .map(|s| {
            sessions
                .iter()
                .filter(|o| {
                    o.id == s.id || (o.started <= s.started && session_end(o) > s.started + SLACK)
                })
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Sessions that carried an accepted message.
fn sessions_with_mail(seen: &SinkRecord) -> Vec<&SinkSession> {
    seen.sessions
        .iter()
        .filter(|s| seen.messages().iter().any(|m| m.session == s.id))
        .collect()
}

/// `GET` on the admin API: (status, JSON body).
fn admin_get(d: &Daemon, path: &str) -> (u16, Value) {
    let url = format!("http://{}{path}", d.http[0]);
    // The blocking client lives and dies inside block_in_place.
    tokio::task::block_in_place(|| {
        let r = reqwest::blocking::get(&url).expect("admin request");
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or_default())
    })
}

const SHARED_LIMITS: &str = "/api/admin/shared-limits/v1";

/// 30 messages into each of two nodes at once, at a shared
/// `10/s,max_burst=1`: together they arrive at 10/s (±15 %), one every
/// 100 ms from the first. Without Redis, the same policy lets each node go
/// at 10/s of its own: about 20/s together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_rate_holds_for_the_cluster() {
    const EACH: usize = 30;
    const RATE: &str = "max_message_rate = '10/s,max_burst=1',";
    let redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;

    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let (a, b) = two_nodes(&policy(&pki, &dns, &sink, Some(&redis), RATE));
    tokio::join!(
        inject_many(&a, "shared", EACH),
        inject_many(&b, "shared", EACH)
    );
    wait_deliveries(&[&a, &b], 2 * EACH, Duration::from_secs(30)).await;
    let at = arrivals(&sink.snapshot(), "shared");
    assert_eq!(at.len(), 2 * EACH);
    let shared = rate_of(&at);
    let first_5s = at
        .iter()
        .filter(|t| t.duration_since(at[0]) < Duration::from_secs(5))
        .count();
    eprintln!(
        "shared 10/s: {} messages over {:?}: {shared:.2}/s; {first_5s} in the first 5 s",
        at.len(),
        at[at.len() - 1].duration_since(at[0])
    );
    // Both nodes took part.
    assert_eq!(records_of(&a, "Delivery").len(), EACH);
    assert_eq!(records_of(&b, "Delivery").len(), EACH);
    assert!(
        (8.5..=11.5).contains(&shared),
        "two nodes at a shared 10/s went at {shared:.2}/s"
    );
    assert!(
        (45..=58).contains(&first_5s),
        "{first_5s} arrived in the first 5 s at a shared 10/s"
    );
    drop((a, b));

    // The same without Redis: each node its own 10/s.
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let (a, b) = two_nodes(&policy(&pki, &dns, &sink, None, RATE));
    tokio::join!(
        inject_many(&a, "alone", EACH),
        inject_many(&b, "alone", EACH)
    );
    wait_deliveries(&[&a, &b], 2 * EACH, Duration::from_secs(30)).await;
    let at = arrivals(&sink.snapshot(), "alone");
    assert_eq!(at.len(), 2 * EACH);
    let alone = rate_of(&at);
    eprintln!(
        "per node 10/s: {} messages over {:?}: {alone:.2}/s",
        at.len(),
        at[at.len() - 1].duration_since(at[0])
    );
    assert!(
        alone >= 16.0,
        "two nodes with a rate of their own each went at {alone:.2}/s together"
    );
}

/// Runs 15 messages through each of two nodes with `connection_limit`
/// given as `limit`, one message per connection, the sink answering each
/// after 400 ms; returns the most sessions the sink saw at once.
async fn peak_sessions(dns: &TestDnsServer, redis: &RedisServer, limit: &str, tag: &str) -> usize {
    const EACH: usize = 15;
    let pki = Pki::new();
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(
            Rule::new(Stage::DataDot, "250 2.0.0 Ok, slowly").delay(Duration::from_millis(400)),
        ),
    )
    .await
    .unwrap();
    let egress = format!("connection_limit = {limit}, max_deliveries_per_connection = 1,");
    let (a, b) = two_nodes(&policy(&pki, dns, &sink, Some(redis), &egress));
    let started = Instant::now();
    tokio::join!(inject_many(&a, tag, EACH), inject_many(&b, tag, EACH));
    wait_deliveries(&[&a, &b], 2 * EACH, Duration::from_secs(30)).await;
    let took = started.elapsed();

    let seen = sink.snapshot();
    assert_eq!(
        seen.messages_containing(&format!("Subject: {tag}")).len(),
        2 * EACH
    );
    let sessions = sessions_with_mail(&seen);
    assert_eq!(
        sessions.len(),
        2 * EACH,
        "one session per message:\n{}",
        describe_sink(&seen)
    );
    let from = |d: &Daemon| records_of(d, "Delivery").len();
    assert_eq!((from(&a), from(&b)), (EACH, EACH));
    let peak = peak_concurrency(&sessions);
    eprintln!(
        "connection_limit = {limit}: {} sessions in {took:?}, at most {peak} at once",
        sessions.len()
    );
    peak
}

/// `connection_limit = 3` shared by two nodes, each with 15 messages to
/// send one per connection to a slow sink: never more than 3 sessions at
/// once across both, and 3 is reached. Written `"local:3"` (Redis still
/// configured), each node has 3 of its own: more than 3 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_connection_limit_holds_for_the_cluster() {
    let redis = RedisServer::start();
    let dns = start_dns(TestZone::new()).await;

    let shared = peak_sessions(&dns, &redis, "3", "shared").await;
    assert!(
        shared <= 3,
        "shared connection_limit 3 exceeded: {shared} at once"
    );
    assert_eq!(shared, 3, "the shared limit was never reached");

    let local = peak_sessions(&dns, &redis, "'local:3'", "local").await;
    assert!(
        local > 3,
        "local:3 on each of two nodes: only {local} sessions at once"
    );
    assert!(local <= 6, "local:3 on each of two nodes: {local} at once");
}

/// A shared `10/s,max_burst=1`; one message delivered, then Redis is
/// killed: ten more are received (250 each) but none is delivered in 3 s,
/// and the node says it is waiting. Redis comes back (empty) and the ten
/// arrive, once each, with no Bounce or Expiration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_delays_but_loses_nothing() {
    const N: usize = 10;
    let mut redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let a = policy(
        &pki,
        &dns,
        &sink,
        Some(&redis),
        "max_message_rate = '10/s,max_burst=1',",
    )
    .start();

    // Connected and shared: one goes through.
    let warm = inject(&a, "a@origin.test", &[&format!("warm@{DOMAIN}")], "warm").await;
    wait_kind(&a, "Delivery", &warm, Duration::from_secs(20)).await;

    tokio::task::block_in_place(|| redis.kill());
    let killed = Instant::now();
    inject_many(&a, "out", N).await;
    sleep(Duration::from_secs(3)).await;
    let seen = sink.snapshot();
    assert!(
        arrivals(&seen, "out").is_empty(),
        "delivered while Redis was down:\n{}",
        describe_sink(&seen)
    );
    assert_eq!(records_of(&a, "Delivery").len(), 1, "{}", dump(&a));
    let stderr = a.stderr();
    let waiting = stderr
        .lines()
        .filter(|l| {
            l.contains("waiting")
                && (l.contains("shared rate") || l.contains("shared connection limit"))
        })
        .count();
    eprintln!(
        "Redis down for {:?}: {waiting} 'waiting' lines, e.g. {:?}",
        killed.elapsed(),
        stderr.lines().find(|l| l.contains("waiting"))
    );
    assert!(waiting > 0, "the wait is not logged:\n{stderr}");

    tokio::task::block_in_place(|| redis.restart());
    let back = Instant::now();
    wait_deliveries(&[&a], N + 1, Duration::from_secs(20)).await;
    let took = back.elapsed();
    let at = arrivals(&sink.snapshot(), "out");
    eprintln!(
        "Redis back: {N} delivered {took:?} after the restart, over {:?}",
        at[at.len() - 1].duration_since(at[0])
    );
    assert_eq!(at.len(), N, "each once");
    assert!(records_of(&a, "Bounce").is_empty(), "{}", dump(&a));
    assert!(records_of(&a, "Expiration").is_empty(), "{}", dump(&a));
    eprintln!(
        "TransientFailure records: {}",
        records_of(&a, "TransientFailure").len()
    );
}

/// `connection_limit = 1` shared. Node A's connection hangs after the
/// message's final dot (the sink never answers), so A holds the only slot;
/// A is killed with SIGKILL. Node B, given a message, lists the limit as
/// shared with A's lease as its holder, and delivers only once that lease
/// has expired: 10 s after A last renewed it (every 3⅓ s), so 6⅔ to 10 s
/// after the kill, and well before the 30 s the sink would hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_leases_expire() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(Rule::hang(Stage::DataDot).matching("held@")),
    )
    .await
    .unwrap();
    let (mut a, b) = two_nodes(&policy(
        &pki,
        &dns,
        &sink,
        Some(&redis),
        "connection_limit = 1,",
    ));
    let limit_name = format!("connection-limit:unspecified->{}", sink.addr());

    inject(&a, "a@origin.test", &[&format!("held@{DOMAIN}")], "held").await;
    let hung = sink
        .wait_until(Duration::from_secs(20), |r| {
            r.transactions.iter().any(|m| m.reply == "(no reply: hang)")
        })
        .await;
    assert!(hung, "A's message never reached the dot:\n{}", dump(&a));

    // A holds the slot, and Redis knows it.
    let (status, v) = admin_get(&a, SHARED_LIMITS);
    assert_eq!(status, 200, "{v}");
    let a_node = v["redis"]["node"]
        .as_str()
        .expect("A's node name")
        .to_string();
    let mine = v["limits"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == limit_name.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no {limit_name} on A: {v}"));
    assert_eq!(mine["shared"], true, "{mine}");
    assert_eq!(mine["held_here"], 1, "{mine}");

    tokio::task::block_in_place(|| a.kill9());
    let killed = Instant::now();
    let late = inject(&b, "a@origin.test", &[&format!("late@{DOMAIN}")], "late").await;

    // B waits on the dead node's lease.
    sleep(Duration::from_secs(1)).await;
    let (status, v) = admin_get(&b, SHARED_LIMITS);
    assert_eq!(status, 200, "{v}");
    eprintln!("B's shared limits while it waits: {v}");
    let l = v["limits"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == limit_name.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no {limit_name} on B: {v}"));
    assert_eq!(l["shared"], true, "{l}");
    assert_eq!(l["limit"], 1, "{l}");
    assert_eq!(l["held_here"], 0, "{l}");
    let holders = l["holders"].as_array().cloned().unwrap_or_default();
    assert_eq!(holders.len(), 1, "{l}");
    assert!(
        holders[0]["lease"]
            .as_str()
            .is_some_and(|h| h.starts_with(&a_node)),
        "the holder is A ({a_node}): {l}"
    );
    assert_ne!(v["redis"]["node"].as_str(), Some(a_node.as_str()));
    assert!(records_for(&b, "Delivery", &late).is_empty());

    wait_kind(&b, "Delivery", &late, Duration::from_secs(25)).await;
    let arrived = sink
        .snapshot()
        .messages_containing("Subject: late")
        .first()
        .map(|m| m.at)
        .expect("B's message at the sink");
    let after = arrived.duration_since(killed);
    eprintln!("B delivered {after:?} after A was killed");
    assert!(
        after >= Duration::from_secs(6),
        "delivered {after:?} after the kill: before A's lease could expire"
    );
    assert!(
        after <= Duration::from_secs(15),
        "delivered {after:?} after the kill: the lease did not expire in time"
    );
}

/// `connection_limit = 1` shared, and Redis restarted (empty: no
/// persistence) while node A keeps an idle connection open under it. A's
/// lease is gone from Redis; A must not go on using that connection as if
/// it held the slot while node B takes the slot too: the sink must never
/// see two sessions at once. (A re-registering its lease, or closing the
/// connection when the lease lapses, would both do; with `idle_timeout =
/// '15s'` B then delivers within 15 s.) A's renewal takes the slot again
/// when Redis has room; a lease that cannot be taken again closes its
/// connection before the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_in_a_redis_restart_still_binds() {
    let mut redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let (a, b) = two_nodes(&policy(
        &pki,
        &dns,
        &sink,
        Some(&redis),
        "connection_limit = 1, idle_timeout = '15s',",
    ));
    let warm = inject(&a, "a@origin.test", &[&format!("warm@{DOMAIN}")], "warm").await;
    wait_kind(&a, "Delivery", &warm, Duration::from_secs(10)).await;

    // Redis loses its data; A's next renewal (every 3⅓ s) finds it.
    tokio::task::block_in_place(|| redis.restart());
    sleep(Duration::from_secs(4)).await;
    eprintln!("A after the restart: {}", admin_get(&a, SHARED_LIMITS).1);

    let other = inject(&b, "a@origin.test", &[&format!("other@{DOMAIN}")], "other").await;
    let again = inject(&a, "a@origin.test", &[&format!("again@{DOMAIN}")], "again").await;
    wait_kind(&b, "Delivery", &other, Duration::from_secs(25)).await;
    wait_kind(&a, "Delivery", &again, Duration::from_secs(25)).await;

    // Sessions still open count as open until now: let "now" be later.
    sleep(Duration::from_secs(1)).await;
    let seen = sink.snapshot();
    let sessions: Vec<&SinkSession> = seen.sessions.iter().collect();
    let peak = peak_concurrency(&sessions);
    assert!(
        peak <= 1,
        "shared connection_limit 1 exceeded after a Redis restart: {peak} sessions at once\n{}",
        describe_sink(&seen)
    );
}

/// A JSON request on the admin API: (status, JSON body).
fn admin_send(d: &Daemon, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("http://{}{path}", d.http[0]);
    tokio::task::block_in_place(|| {
        let c = reqwest::blocking::Client::new();
        let req = match method {
            "POST" => c.post(&url),
            _ => c.delete(&url),
        };
        let r = req.json(&body).send().expect("admin request");
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or_default())
    })
}

/// The id node `d` gives its suspension of `domain`, if it has one.
fn suspension_of(d: &Daemon, domain: &str) -> Option<u64> {
    let (_, list) = admin_get(d, "/api/admin/suspend/v1");
    list.as_array()?
        .iter()
        .find(|s| s["domain"] == domain)
        .and_then(|s| s["id"].as_u64())
}

/// Holds are shared: a suspension made on node A holds node B's mail
/// within a second; cancelling it on B (by B's own id for it) ends it on A
/// too, the held mail goes out from both, and no node puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_shared_between_nodes() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let p = policy(&pki, &dns, &sink, Some(&redis), "");
    let (a, b) = two_nodes(&p);
    let (status, body) = admin_send(
        &a,
        "POST",
        "/api/admin/suspend/v1",
        serde_json::json!({ "domain": DOMAIN, "reason": "complaints", "duration": "1h" }),
    );
    assert_eq!(status, 200, "{body}");
    let made = Instant::now();
    let on_b = loop {
        if let Some(id) = suspension_of(&b, DOMAIN) {
            break id;
        }
        assert!(
            made.elapsed() < Duration::from_secs(1),
            "node B does not have A's suspension after 1 s"
        );
        sleep(Duration::from_millis(50)).await;
    };
    inject_many(&b, "heldb", 3).await;
    inject_many(&a, "helda", 2).await;
    sleep(Duration::from_secs(3)).await;
    let delivered = records_of(&a, "Delivery").len() + records_of(&b, "Delivery").len();
    assert_eq!(
        delivered,
        0,
        "held mail went out:\n{}\n{}",
        dump(&a),
        dump(&b)
    );
    let (status, body) = admin_send(
        &b,
        "DELETE",
        "/api/admin/suspend/v1",
        serde_json::json!({ "id": on_b }),
    );
    assert_eq!(status, 200, "{body}");
    wait_deliveries(&[&a, &b], 5, Duration::from_secs(20)).await;
    // Several sync rounds later, neither node has it back.
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        suspension_of(&a, DOMAIN),
        None,
        "cancelled on B, still on A"
    );
    assert_eq!(suspension_of(&b, DOMAIN), None, "put back on B");
}

/// The policy of every node with its egress paths from the shaping helper
/// (`setup_with_automation`, no stock files) reading `file`, all mail to
/// `sink`, holds shared through `redis`, and the admin API.
fn shaping_policy(dns: &TestDnsServer, sink: &Sink, redis: &RedisServer, file: &Path) -> Policy {
    Policy::new(dns.addr)
        .init(HTTP)
        .init(&format!(
            "kumo.configure_redis_throttles {{ node = '{}' }}",
            redis.url()
        ))
        .route("*", queue_to(&[&sink.addr().to_string()]), "")
        .extra(&format!(
            "local shaping = require 'policy-extras.shaping'\n\
             local shaper = shaping:setup_with_automation {{ no_default_files = true, extra_files = {{ '{}' }} }}\n\
             kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n",
            file.display()
        ))
}

const AUTOMATION: &str = "/api/admin/automation/v1";

/// A shaping file with short timeouts and a `Suspend` rule on Yahoo's
/// `[TS04]` deferral for `cluster.test` (`trigger`: an extra rule line).
fn suspend_rule(pki: &Pki, name: &str, trigger: &str) -> std::path::PathBuf {
    pki.write(
        name,
        &format!(
            r#"["default"]
prohibited_hosts = []
connect_timeout = "2s"
banner_timeout = "5s"
ehlo_timeout = "5s"
mail_from_timeout = "5s"
rcpt_to_timeout = "5s"
data_timeout = "5s"
data_dot_timeout = "5s"

[["{DOMAIN}".automation]]
regex = "\\[TS0?4\\]"
action = "Suspend"
{trigger}
duration = "1h"
"#
        ),
    )
}

/// The automation suspensions node `d` lists.
fn automation_suspensions(d: &Daemon) -> Vec<Value> {
    let (status, v) = admin_get(d, AUTOMATION);
    assert_eq!(status, 200, "{v}");
    v["suspensions"].as_array().cloned().unwrap_or_default()
}

/// A `Suspend` rule on `cluster.test` (Yahoo's `[TS04]` deferral), the
/// sink answering the first MAIL FROM with it: node A's first attempt
/// suspends its path to the site, and node B lists the same suspension
/// (its own id) within a second of A's TransientFailure record. Three
/// messages into B are held; cancelled on B, the suspension ends on both,
/// all four messages go (held mail looks again every 5 s), and no node
/// lists it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automation_suspend_on_one_node_stops_the_other() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(
            Rule::new(
                Stage::Mail,
                "421 4.7.0 [TS04] Messages from 127.0.0.1 temporarily deferred",
            )
            .times(1),
        ),
    )
    .await
    .unwrap();
    let file = suspend_rule(&pki, "suspend.toml", "");
    let (a, b) = two_nodes(&shaping_policy(&dns, &sink, &redis, &file));
    // The site of an `mx_list` route is named by its entries.
    let site = sink.addr().to_string();

    let first = inject(&a, "a@origin.test", &[&format!("first@{DOMAIN}")], "first").await;
    let t = wait_kind(&a, "TransientFailure", &first, Duration::from_secs(20)).await;
    let failed = Instant::now();
    assert_eq!(t["response"]["code"], 421, "{t}");

    // B has it within a second, under an id of its own.
    let on_b = loop {
        if let Some(s) = automation_suspensions(&b).into_iter().next() {
            break s;
        }
        assert!(
            failed.elapsed() < Duration::from_secs(1),
            "node B does not have A's suspension 1 s after the deferral; A lists {:?}\nA:\n{}\nstderr A:\n{}\nstderr B:\n{}",
            automation_suspensions(&a),
            dump(&a),
            a.stderr(),
            b.stderr()
        );
        sleep(Duration::from_millis(50)).await;
    };
    let took = failed.elapsed();
    let on_a = automation_suspensions(&a);
    eprintln!("B listed A's suspension {took:?} after A's TransientFailure record: {on_b}");
    eprintln!("A lists: {}", Value::Array(on_a.clone()));
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    let s = &on_a[0];
    assert_eq!(s["site"], site.as_str(), "{s}");
    assert_eq!(s["source"], "unspecified", "{s}");
    assert!(
        s["reason"].as_str().is_some_and(|r| r.contains("[TS04]")),
        "{s}"
    );
    assert_eq!(automation_suspensions(&b).len(), 1);
    assert_eq!(on_b["site"], site.as_str(), "{on_b}");
    assert_eq!(on_b["source"], "unspecified", "{on_b}");
    assert_eq!(on_b["rule"], s["rule"], "{on_b}");
    assert_eq!(on_b["until"], s["until"], "{on_b}");
    let b_id = on_b["id"].as_u64().expect("B's id");

    // B's own mail is held.
    inject_many(&b, "heldb", 3).await;
    sleep(Duration::from_secs(3)).await;
    let delivered = records_of(&a, "Delivery").len() + records_of(&b, "Delivery").len();
    assert_eq!(
        delivered,
        0,
        "held mail went out:\n{}\n{}",
        dump(&a),
        dump(&b)
    );
    assert!(sink.snapshot().messages().is_empty());
    assert_eq!(
        records_for(&a, "TransientFailure", &first).len(),
        1,
        "held without another attempt:\n{}",
        dump(&a)
    );
    assert!(
        records_of(&b, "TransientFailure").is_empty(),
        "{}",
        dump(&b)
    );

    // Cancelled on B (by B's id): ended on both, everything goes.
    let (status, body) = admin_send(&b, "DELETE", AUTOMATION, serde_json::json!({ "id": b_id }));
    assert_eq!(status, 200, "{body}");
    let cancelled = Instant::now();
    wait_deliveries(&[&a, &b], 4, Duration::from_secs(22)).await;
    eprintln!(
        "all 4 delivered {:?} after the cancellation on B",
        cancelled.elapsed()
    );
    assert_eq!(records_of(&a, "Delivery").len(), 1, "{}", dump(&a));
    assert_eq!(records_of(&b, "Delivery").len(), 3, "{}", dump(&b));
    let seen = sink.snapshot();
    assert_eq!(seen.messages_containing("Subject: first").len(), 1);
    assert_eq!(arrivals(&seen, "heldb").len(), 3);
    // Several sync rounds later, neither node has it back.
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        automation_suspensions(&a),
        Vec::<Value>::new(),
        "cancelled on B, still on A"
    );
    assert_eq!(
        automation_suspensions(&b),
        Vec::<Value>::new(),
        "put back on B"
    );
}

/// 30 messages into each of two nodes at once, at `local:10/s,max_burst=1`
/// with Redis configured: the rate is each node's own, so together they go
/// at about 20/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_rate_stays_per_node() {
    const EACH: usize = 30;
    let redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let (a, b) = two_nodes(&policy(
        &pki,
        &dns,
        &sink,
        Some(&redis),
        "max_message_rate = 'local:10/s,max_burst=1',",
    ));
    tokio::join!(
        inject_many(&a, "local", EACH),
        inject_many(&b, "local", EACH)
    );
    wait_deliveries(&[&a, &b], 2 * EACH, Duration::from_secs(30)).await;
    let at = arrivals(&sink.snapshot(), "local");
    assert_eq!(at.len(), 2 * EACH);
    let local = rate_of(&at);
    eprintln!(
        "local:10/s with Redis: {} messages over {:?}: {local:.2}/s",
        at.len(),
        at[at.len() - 1].duration_since(at[0])
    );
    assert_eq!(records_of(&a, "Delivery").len(), EACH);
    assert_eq!(records_of(&b, "Delivery").len(), EACH);
    assert!(
        local >= 16.0,
        "two nodes with a local:10/s each went at {local:.2}/s together"
    );
}

/// A threshold counts the matches of every node: with
/// `{Threshold = "2/h"}`, one `[TS04]` deferral on node A and one on node
/// B suspend the path (each node alone has seen one, below the threshold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automation_thresholds_count_across_nodes() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(
            Rule::new(
                Stage::Mail,
                "421 4.7.0 [TS04] Messages from 127.0.0.1 temporarily deferred",
            )
            .times(2),
        ),
    )
    .await
    .unwrap();
    let file = suspend_rule(&pki, "threshold.toml", "trigger = { Threshold = \"2/h\" }");
    let (a, b) = two_nodes(&shaping_policy(&dns, &sink, &redis, &file));
    let first = inject(&a, "a@origin.test", &[&format!("first@{DOMAIN}")], "first").await;
    wait_kind(&a, "TransientFailure", &first, Duration::from_secs(20)).await;
    sleep(Duration::from_millis(500)).await;
    assert!(
        automation_suspensions(&a).is_empty(),
        "one match, below the threshold"
    );
    let second = inject(
        &b,
        "a@origin.test",
        &[&format!("second@{DOMAIN}")],
        "second",
    )
    .await;
    wait_kind(&b, "TransientFailure", &second, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while automation_suspensions(&a).is_empty() || automation_suspensions(&b).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the second match (on the other node) did not suspend"
        );
        sleep(Duration::from_millis(100)).await;
    }
}
