//! Ready queues: messages for one site share connections, within
//! `connection_limit` and `max_deliveries_per_connection`.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, Stage};

/// One connection at a time, two messages per connection: five messages
/// queued behind a slow greeting go out over three sessions (2 + 2 + 1),
/// each message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_within_the_limits() {
    let pki = Pki::new();
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(
            Rule::new(Stage::Greeting, "220 sink.test ESMTP slow to greet")
                .delay(Duration::from_millis(1500))
                .times(1),
        ),
    )
    .await
    .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "reuse.test",
            queue_to(&[&sink.addr().to_string()]),
            // No idle wait after the last message, so its QUIT is seen.
            pki.egress(
                "connection_limit = 1, max_deliveries_per_connection = 2, idle_timeout = '0s'",
            ),
        )
        .start();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            inject(
                &d,
                "a@origin.test",
                &[&format!("u{i}@reuse.test")],
                &format!("m{i}"),
            )
            .await,
        );
    }
    for id in &ids {
        let rec = wait_kind(&d, "Delivery", id, Duration::from_secs(15)).await;
        assert_eq!(rec["num_attempts"], 1, "{rec}");
    }
    // The Delivery record is written before the worker QUITs: give the last
    // QUIT a moment to arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let seen = sink.snapshot();
        let quit = |s: &ironpost_testkit::sink::SinkSession| {
            s.commands.last().map(|c| c.verb()).as_deref() == Some("QUIT")
        };
        if seen.sessions.iter().all(quit) || std::time::Instant::now() > deadline {
            break seen;
        }
        sleep(Duration::from_millis(50)).await;
    };
    let per_session: Vec<usize> = seen
        .sessions
        .iter()
        .map(|s| {
            seen.transactions
                .iter()
                .filter(|m| m.session == s.id)
                .count()
        })
        .collect();
    assert_eq!(per_session, vec![2, 2, 1], "messages per session");
    for id in &ids {
        assert_eq!(seen.messages_containing(&spool_id_marker(id)).len(), 1);
    }
    // Each session ended with QUIT, and the next began only after it:
    // never two connections at once.
    for s in &seen.sessions {
        assert_eq!(s.commands.last().map(|c| c.verb()).as_deref(), Some("QUIT"));
    }
    for w in seen.sessions.windows(2) {
        let quit = w[0].commands.last().unwrap().at;
        assert!(quit <= w[1].started, "sessions overlapped");
    }
}
