//! Restarts with messages in the queue: nothing is lost, and nothing is
//! delivered twice, except a message whose delivery the remote never
//! acknowledged.
//!
//! Copies are counted at the sink by the sending daemon's spool id, which
//! its `Received:` header carries.

use std::net::SocketAddr;
use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, SinkHandle, SinkRecord, Stage};

const WAIT: Duration = Duration::from_secs(20);

/// A loopback port with nothing listening on it (for now).
async fn free_port() -> SocketAddr {
    let s = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let addr = s.addr();
    s.stop();
    addr
}

fn copies(rec: &SinkRecord, id: &str) -> usize {
    rec.messages_containing(&spool_id_marker(id)).len()
}

async fn restart_mid_queue(kill: bool) {
    let pki = Pki::new();
    let addr = free_port().await;
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route(
            "restart.test",
            queue_to(&[&addr.to_string()]),
            pki.egress(""),
        )
        .start();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            inject(
                &d,
                "a@origin.test",
                &[&format!("u{i}@restart.test")],
                &format!("r{i}"),
            )
            .await,
        );
    }
    for id in &ids {
        let t = wait_kind(&d, "TransientFailure", id, WAIT).await;
        assert!(
            t["response"]["content"]
                .as_str()
                .unwrap()
                .contains("onnect"),
            "{t}"
        );
    }
    if kill {
        d.kill9();
    } else {
        d.stop();
        assert!(
            d.exit_status().is_some_and(|s| s.success()),
            "clean exit on SIGTERM"
        );
    }
    let sink = Sink::start(addr, SinkConfig::new()).await.unwrap();
    d.restart().expect("restart");
    assert_eq!(d.recovered, Some(5), "all five recovered from the spool");
    for id in &ids {
        let rec = wait_kind(&d, "Delivery", id, WAIT).await;
        assert!(
            rec["num_attempts"].as_u64().unwrap() >= 2,
            "attempts survive the restart: {rec}"
        );
    }
    sleep(Duration::from_millis(2500)).await;
    let seen = sink.snapshot();
    for id in &ids {
        assert_eq!(copies(&seen, id), 1, "message {id} delivered exactly once");
        assert_eq!(records_for(&d, "Delivery", id).len(), 1);
    }
    assert_eq!(seen.messages().len(), 5);
    // A third start finds nothing left to do.
    d.restart().expect("restart");
    assert_eq!(d.recovered, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_delivers_each_message_once() {
    restart_mid_queue(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_delivers_each_message_once() {
    restart_mid_queue(false).await;
}

/// The one allowed duplicate: the sink took the whole message but never
/// answered the final dot when the daemon died, so the daemon cannot know
/// and sends it again. A message acknowledged earlier is not resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_unacknowledged_delivery_is_repeated() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let h: SinkHandle = sink.handle();
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route(
            "ack.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(""),
        )
        .start();
    let acked = inject(&d, "a@origin.test", &["u@ack.test"], "acked").await;
    wait_kind(&d, "Delivery", &acked, WAIT).await;

    h.set_rules(vec![Rule::hang(Stage::DataDot)]);
    let unacked = inject(&d, "a@origin.test", &["v@ack.test"], "unacked").await;
    let marker = spool_id_marker(&unacked);
    assert!(
        h.wait_until(WAIT, |r| r
            .transactions
            .iter()
            .any(|m| m.text().contains(&marker)))
            .await,
        "the sink never got the second message"
    );
    d.kill9();
    h.set_rules(Vec::new());
    d.restart().expect("restart");
    assert_eq!(
        d.recovered,
        Some(1),
        "only the unacknowledged message is left"
    );
    wait_kind(&d, "Delivery", &unacked, WAIT).await;
    sleep(Duration::from_millis(2000)).await;

    let seen = sink.snapshot();
    assert_eq!(copies(&seen, &acked), 1, "acknowledged: never resent");
    let tries: Vec<_> = seen
        .transactions
        .iter()
        .filter(|m| m.text().contains(&marker))
        .collect();
    assert_eq!(tries.len(), 2, "sent, unacknowledged, sent again");
    assert!(!tries[0].accepted && tries[1].accepted);
    assert_eq!(copies(&seen, &unacked), 1);
}

/// A message for two domains: one part is delivered while the other waits
/// for its retry; after a crash only the waiting part is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_part_is_not_resent_after_a_crash() {
    let pki = Pki::new();
    // Answers the final dot after a while, so the other part's deferral
    // (and its spool update) comes first.
    let up = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(
            Rule::new(Stage::DataDot, "250 2.0.0 Ok, slowly").delay(Duration::from_millis(1500)),
        ),
    )
    .await
    .unwrap();
    let down_addr = free_port().await;
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route(
            "up.test",
            queue_to(&[&up.addr().to_string()]),
            pki.egress(""),
        )
        .route(
            "down.test",
            format!(
                "retry_interval = '4s', max_age = '1h', \
                 protocol = {{ smtp = {{ mx_list = {{ '{down_addr}' }} }} }},"
            ),
            pki.egress(""),
        )
        .start();
    let id = inject(
        &d,
        "a@origin.test",
        &["x@up.test", "y@down.test"],
        "two-parts",
    )
    .await;
    wait_kind(&d, "TransientFailure", &id, WAIT).await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["recipients"], serde_json::json!(["x@up.test"]));
    d.kill9();
    let down = Sink::start(down_addr, SinkConfig::new()).await.unwrap();
    d.restart().expect("restart");
    assert_eq!(d.recovered, Some(1));
    wait_record(&d, WAIT, "delivery to down.test", |r| {
        is(r, "Delivery") && r["id"] == id.as_str() && has_rcpt(r, "y@down.test")
    })
    .await;
    sleep(Duration::from_millis(2000)).await;
    let seen_down = down.snapshot();
    assert_eq!(copies(&seen_down, &id), 1);
    assert_eq!(
        seen_down.messages()[0].rcpt_to,
        vec!["y@down.test".to_string()]
    );
    let seen_up = up.snapshot();
    assert_eq!(
        copies(&seen_up, &id),
        1,
        "x@up.test was delivered before the crash and must not be sent again; records:\n{}",
        dump(&d)
    );
}

/// A waiting message keeps no policy metadata in memory: a log that asks
/// for metadata gets it from the message's spool record, on a retry and
/// after a restart (when the retry state in the spool carries none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_metadata_is_read_back_from_the_spool_across_a_restart() {
    let pki = Pki::new();
    let addr = free_port().await;
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route("meta.test", queue_to(&[&addr.to_string()]), pki.egress(""))
        // Metadata and no headers: only the head of the spool record is
        // read for the log.
        .logs(
            "kumo.configure_local_logs { log_dir = './ironpost-data/logs', \
             meta = { 'x_note', 'tenant' } }",
        )
        .extra(
            "kumo.on('smtp_server_message_received', function(msg)\n\
             msg:set_meta('x_note', 'kept')\n\
             msg:set_meta('tenant', 'acme')\n\
             end)\n",
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@meta.test"], "meta").await;
    let with_meta = |d: &ironpost_testkit::Daemon, kind: &str| {
        records_for(d, kind, &id)
            .into_iter()
            .find(|r| r["meta"]["x_note"] == "kept")
    };
    let deadline = std::time::Instant::now() + WAIT;
    while with_meta(&d, "TransientFailure").is_none() {
        assert!(std::time::Instant::now() < deadline, "{}", dump(&d));
        sleep(Duration::from_millis(50)).await;
    }
    d.stop();
    let _sink = Sink::start(addr, SinkConfig::new()).await.unwrap();
    d.restart().expect("restart");
    assert_eq!(d.recovered, Some(1));
    let delivered = loop {
        if let Some(r) = with_meta(&d, "Delivery") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline + WAIT, "{}", dump(&d));
        sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered["meta"]["tenant"], "acme", "{delivered}");
    assert!(
        delivered["num_attempts"].as_u64().unwrap() >= 2,
        "{delivered}"
    );
}
