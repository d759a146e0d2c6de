//! Two recipient domains whose mail goes to the same hosts share a site,
//! but not connections when their egress paths differ: one domain's
//! `enable_tls` or AUTH credentials must never carry the other's mail.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkAuth, SinkConfig, SinkTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_with_different_egress_paths_do_not_share_connections() {
    let pki = Pki::new();
    let host = "mx.shared.test";
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new()
            .hostname(host)
            .tls(SinkTls::offer_pair(pki.valid(&[host])))
            .auth(SinkAuth {
                required: false,
                ..SinkAuth::plain("tenant-a", "secret-a").always_offered()
            }),
    )
    .await
    .expect("sink");
    let zone = TestZone::new();
    zone.ip(host, LOCALHOST);
    let dns = start_dns(zone).await;
    let target = format!("{host}:{}", sink.port());
    let password = pki.write("a.pass", "secret-a");
    let d = Policy::new(dns.addr)
        .route(
            "a.test",
            queue_to(&[&target]),
            pki.egress(&format!(
                "enable_tls = 'Required', smtp_auth_plain_username = 'tenant-a', \
                 smtp_auth_plain_password = '{}'",
                password.display()
            )),
        )
        .route(
            "b.test",
            queue_to(&[&target]),
            pki.egress("enable_tls = 'Disabled'"),
        )
        .start();
    // Several rounds, interleaved, so both domains are routed while the
    // other's ready queue exists.
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(inject(&d, "s@origin.test", &["x@a.test"], &format!("a{i}")).await);
        ids.push(inject(&d, "s@origin.test", &["y@b.test"], &format!("b{i}")).await);
    }
    for id in &ids {
        wait_kind(&d, "Delivery", id, Duration::from_secs(20)).await;
    }
    let seen = sink.snapshot();
    assert_eq!(seen.transactions.len(), 8);
    for m in &seen.transactions {
        let to_a = m.rcpt_to.iter().any(|r| r == "x@a.test");
        if to_a {
            assert!(m.tls, "a.test mail sent without TLS");
            assert_eq!(m.auth_user.as_deref(), Some("tenant-a"));
        } else {
            assert!(!m.tls, "b.test mail used a.test's TLS connection");
            assert_eq!(
                m.auth_user, None,
                "b.test mail sent on a.test's AUTH session"
            );
        }
    }
}
