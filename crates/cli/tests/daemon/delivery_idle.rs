//! An idle connection waits up to the egress path's `idle_timeout` for more
//! mail for its ready queue before QUIT (KumoMTA's `make_egress_path{
//! idle_timeout }`), and `configure_local_logs` called twice writes two
//! logs.

use std::time::{Duration, Instant};

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig, SinkRecord};
use serde_json::Value;

/// Two messages 2 s apart for one site, under `idle_timeout`; returns what
/// the sink saw and the daemon (for its records).
async fn two_messages_apart(
    idle_timeout: &str,
    sink_cfg: SinkConfig,
) -> (SinkRecord, ironpost_testkit::Daemon, Vec<String>) {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), sink_cfg).await.unwrap();
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "idle.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(&format!("idle_timeout = '{idle_timeout}'")),
        )
        .start();
    let first = inject(&d, "a@origin.test", &["u1@idle.test"], "m1").await;
    wait_kind(&d, "Delivery", &first, Duration::from_secs(15)).await;
    sleep(Duration::from_secs(2)).await;
    let second = inject(&d, "a@origin.test", &["u2@idle.test"], "m2").await;
    wait_kind(&d, "Delivery", &second, Duration::from_secs(15)).await;
    let seen = sink.snapshot();
    for id in [&first, &second] {
        assert_eq!(
            seen.messages_containing(&spool_id_marker(id)).len(),
            1,
            "{}",
            describe_sink(&seen)
        );
    }
    (seen, d, vec![first, second])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_carries_the_next_message() {
    let (seen, d, ids) = two_messages_apart("10s", SinkConfig::new()).await;
    assert_eq!(seen.sessions.len(), 1, "{}", describe_sink(&seen));
    assert!(seen.sessions[0].ended.is_none(), "still open, idle");
    for id in &ids {
        let rec = wait_kind(&d, "Delivery", id, Duration::from_secs(1)).await;
        assert_eq!(rec["num_attempts"], 1, "{rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_timeout_each_message_gets_its_own_connection() {
    let (seen, _d, _) = two_messages_apart("0s", SinkConfig::new()).await;
    assert_eq!(seen.sessions.len(), 2, "{}", describe_sink(&seen));
    let first = &seen.sessions[0];
    assert_eq!(
        first.commands.last().map(|c| c.verb()).as_deref(),
        Some("QUIT"),
        "the first connection was closed with QUIT"
    );
    assert!(first.commands.last().unwrap().at <= seen.sessions[1].started);
}

/// A connection the server closed while it waited is replaced when the
/// next message comes: no failed attempt, no TransientFailure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_peer_while_idle_is_replaced() {
    let mut cfg = SinkConfig::new();
    cfg.io_timeout = Duration::from_millis(500);
    let (seen, d, ids) = two_messages_apart("10s", cfg).await;
    assert_eq!(seen.sessions.len(), 2, "{}", describe_sink(&seen));
    assert!(
        records_of(&d, "TransientFailure").is_empty(),
        "{}",
        dump(&d)
    );
    for id in &ids {
        let rec = wait_kind(&d, "Delivery", id, Duration::from_secs(1)).await;
        assert_eq!(rec["num_attempts"], 1, "{rec}");
    }
}

/// Records in every `*.jsonl` under `dir`.
fn records_in(dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
    }
    out
}

/// `configure_local_logs` twice: two logs, each with every record and its
/// own header selection; start-up names both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_local_logs_twice_writes_both_logs() {
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .init("kumo.configure_local_logs { log_dir = './second-logs', headers = { 'X-Second' } }")
        .start();
    let (mut c, _) = ironpost_testkit::SmtpClient::connect(d.smtp_addr())
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_message(
            "a@origin.test",
            &["u@[127.0.0.1]"],
            b"From: <a@origin.test>\r\nSubject: two logs\r\nX-Second: yes\r\n\r\nHi.\r\n",
        )
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    let id = r.text().strip_prefix("2.0.0 OK id=").unwrap().to_string();
    let _ = c.quit().await;

    let first = d.log_dir();
    let second = first
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("second-logs");
    assert!(
        d.stdout().contains("logs 2: ./second-logs"),
        "{}",
        d.stdout()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let find = |dir: &std::path::Path| {
        records_in(dir)
            .into_iter()
            .find(|r| r["type"] == "Reception" && r["id"] == id.as_str())
    };
    let (a, b) = loop {
        match (find(&first), find(&second)) {
            (Some(a), Some(b)) => break (a, b),
            other => assert!(
                Instant::now() < deadline,
                "Reception of {id} in {}: {:?}, in {}: {:?}",
                first.display(),
                other.0,
                second.display(),
                other.1
            ),
        }
        sleep(Duration::from_millis(50)).await;
    };
    // Each log keeps the headers it names.
    assert_eq!(a["headers"]["Subject"], "two logs", "{a}");
    assert!(a["headers"]["X-Second"].is_null(), "{a}");
    assert_eq!(b["headers"]["X-Second"], "yes", "{b}");
    assert!(b["headers"]["Subject"].is_null(), "{b}");
}
