//! Where mail goes, from the test DNS: MX preference and fallback to the
//! next MX (connection refused, 421 greeting), null MX (RFC 7505: bounce
//! with 5.1.10, no connection), NXDOMAIN (bounce), SERVFAIL (defer), and
//! the default `prohibited_hosts` (loopback is never connected to).

use std::net::SocketAddr;
use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, Stage};

const WAIT: Duration = Duration::from_secs(15);

/// Two domains, each with two MX hosts (listed worst preference first, so
/// the daemon must sort): for one the preferred host refuses connections,
/// for the other it answers 421. Both messages go to the second host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_mx() {
    let pki = Pki::new();
    let good = Sink::start(any_port(loopback(3)), SinkConfig::new())
        .await
        .unwrap();
    let port = good.port();
    // Nothing listens on 127.0.0.2:port: connection refused.
    let busy = Sink::start(
        any_port(loopback(4)),
        SinkConfig::new()
            .rule(Rule::new(Stage::Greeting, "421 4.3.2 Too busy, try later").then_close()),
    )
    .await
    .unwrap();
    let port2 = busy.port();
    let good2 = Sink::start(SocketAddr::new(loopback(5), port2), SinkConfig::new())
        .await
        .unwrap();
    let zone = TestZone::new();
    zone.mx("fallback.test", 20, "mx2.fallback.test")
        .mx("fallback.test", 10, "mx1.fallback.test")
        .ip("mx1.fallback.test", loopback(2))
        .ip("mx2.fallback.test", loopback(3))
        .mx("busy.test", 20, "mx2.busy.test")
        .mx("busy.test", 10, "mx1.busy.test")
        .ip("mx1.busy.test", loopback(4))
        .ip("mx2.busy.test", loopback(5));
    let dns = start_dns(zone).await;
    let d = Policy::new(dns.addr)
        .route(
            "fallback.test",
            queue("1h"),
            pki.egress(&format!("smtp_port = {port}")),
        )
        .route(
            "busy.test",
            queue("1h"),
            pki.egress(&format!("smtp_port = {port2}")),
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@fallback.test"], "fallback").await;
    let id2 = inject(&d, "a@origin.test", &["u@busy.test"], "busy").await;

    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["peer_address"]["name"], "mx2.fallback.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.3", "{rec}");
    assert_eq!(rec["num_attempts"], 1, "{rec}");
    assert_eq!(rec["site"], "mx1.fallback.test,mx2.fallback.test", "{rec}");
    let rec = wait_kind(&d, "Delivery", &id2, WAIT).await;
    assert_eq!(rec["peer_address"]["name"], "mx2.busy.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.5", "{rec}");
    assert_eq!(rec["num_attempts"], 1, "{rec}");
    assert!(
        records_of(&d, "TransientFailure").is_empty(),
        "{}",
        dump(&d)
    );

    assert_eq!(good.snapshot().messages().len(), 1);
    assert_eq!(good2.snapshot().messages().len(), 1);
    let b = busy.snapshot();
    assert_eq!(b.sessions.len(), 1, "the 421 host was tried once");
    assert!(
        b.sessions[0].commands.is_empty(),
        "nothing sent after the 421"
    );
}

/// Null MX bounces at once with 5.1.10 and a DSN, without connecting to
/// the domain's own address (an implicit-MX mistake would reach the sink);
/// a domain that does not exist bounces; SERVFAIL defers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_nxdomain_and_servfail() {
    let pki = Pki::new();
    let trap = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let dsn = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let zone = TestZone::new();
    zone.null_mx("nullmx.test")
        .ip("nullmx.test", LOCALHOST)
        .servfail("servfail.test");
    let dns = start_dns(zone).await;
    let egress = pki.egress(&format!("smtp_port = {}", trap.port()));
    let d = Policy::new(dns.addr)
        .route("nullmx.test", queue("1h"), egress.clone())
        .route("nx.test", queue("1h"), egress.clone())
        .route("servfail.test", queue("1h"), egress)
        .route(
            "origin.test",
            queue_to(&[&dsn.addr().to_string()]),
            pki.egress(""),
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@nullmx.test"], "null-mx").await;
    let nx = inject(&d, "b@origin.test", &["u@nx.test"], "nx").await;
    let sf = inject(&d, "c@origin.test", &["u@servfail.test"], "servfail").await;

    let b = wait_kind(&d, "Bounce", &id, WAIT).await;
    let why = b["response"]["content"].as_str().unwrap();
    assert!(why.contains("5.1.10") && why.contains("null MX"), "{b}");
    assert!(
        b.get("peer_address").is_none(),
        "no host was contacted: {b}"
    );
    let b = wait_kind(&d, "Bounce", &nx, WAIT).await;
    let why = b["response"]["content"].as_str().unwrap();
    assert!(
        why.contains("5.1.2") && why.contains("does not exist"),
        "{b}"
    );
    let t = wait_kind(&d, "TransientFailure", &sf, WAIT).await;
    let why = t["response"]["content"].as_str().unwrap();
    assert!(why.contains("servfail.test"), "{t}");

    assert!(
        dsn.wait_until(WAIT, |r| r.messages().len() >= 2).await,
        "{}",
        dump(&d)
    );
    sleep(Duration::from_millis(1500)).await;
    let seen = dsn.snapshot();
    assert_eq!(seen.messages().len(), 2);
    let null_dsn = seen
        .messages()
        .into_iter()
        .find(|m| m.rcpt_to == ["a@origin.test"])
        .expect("DSN for the null MX message");
    let text = null_dsn.text();
    assert!(
        text.contains("Final-Recipient: rfc822; u@nullmx.test"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.10"), "{text}");
    assert_eq!(records_for(&d, "Bounce", &id).len(), 1);
    assert!(records_for(&d, "TransientFailure", &id).is_empty());
    assert!(records_for(&d, "Delivery", &sf).is_empty());
    assert!(records_for(&d, "Bounce", &sf).is_empty());
    assert!(
        trap.snapshot().sessions.is_empty(),
        "a null MX domain's address was contacted"
    );
}

/// The default `prohibited_hosts` (loopback and unspecified addresses):
/// an MX resolving to 127.0.0.1, or an mx_list entry on loopback, is never
/// connected to; the message is deferred with a reason naming the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_prohibited_hosts_are_never_contacted() {
    let pki = Pki::new();
    let trap = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let zone = TestZone::new();
    zone.mx("prohibited.test", 10, "mx.prohibited.test")
        .ip("mx.prohibited.test", LOCALHOST);
    let dns = start_dns(zone).await;
    let ca = pki.ca_path.display().to_string();
    let d = Policy::new(dns.addr)
        .route(
            "prohibited.test",
            queue("1h"),
            format!(
                "tls_extra_ca = '{ca}', {TIMEOUTS} smtp_port = {}",
                trap.port()
            ),
        )
        .route(
            "listed.test",
            queue_to(&[&trap.addr().to_string()]),
            format!("tls_extra_ca = '{ca}', {TIMEOUTS}"),
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@prohibited.test"], "prohibited").await;
    let id2 = inject(&d, "a@origin.test", &["u@listed.test"], "listed").await;
    for id in [&id, &id2] {
        let t = wait_record(&d, WAIT, "second TransientFailure", |r| {
            is(r, "TransientFailure") && r["id"] == id.as_str() && r["num_attempts"] == 2
        })
        .await;
        let why = t["response"]["content"].as_str().unwrap();
        assert!(why.contains("127.0.0.1 is in prohibited_hosts"), "{t}");
        assert_eq!(t["peer_address"]["addr"], "127.0.0.1", "{t}");
        assert!(records_for(&d, "Delivery", id).is_empty());
    }
    assert!(
        trap.snapshot().sessions.is_empty(),
        "a prohibited host was contacted"
    );
}
