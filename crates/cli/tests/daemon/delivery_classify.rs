//! Bounce classification: delivery records carry `bounce_classification`,
//! from Ironpost's built-in rules when the policy configures none, and from
//! the policy's own rules files (KumoMTA's format) when it does.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, Stage};

const WAIT: Duration = Duration::from_secs(20);

async fn sink() -> Sink {
    Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new()
            .rule(Rule::new(Stage::Rcpt, "550 5.1.1 No such user here").matching("nobody@"))
            .rule(
                Rule::new(
                    Stage::Rcpt,
                    "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints",
                )
                .matching("busy@"),
            ),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_classified_by_the_built_in_rules() {
    let sink = sink().await;
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "c.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(""),
        )
        .start();
    let bounced = inject(&d, "a@origin.test", &["nobody@c.test"], "b1").await;
    let deferred = inject(&d, "a@origin.test", &["busy@c.test"], "t1").await;
    let delivered = inject(&d, "a@origin.test", &["fine@c.test"], "d1").await;
    let b = wait_kind(&d, "Bounce", &bounced, WAIT).await;
    assert_eq!(b["bounce_classification"], "InvalidRecipient", "{b}");
    let t = wait_kind(&d, "TransientFailure", &deferred, WAIT).await;
    assert_eq!(t["bounce_classification"], "SpamBlock", "{t}");
    let ok = wait_kind(&d, "Delivery", &delivered, WAIT).await;
    assert_eq!(ok["bounce_classification"], "Uncategorized", "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_rules_files_replace_the_built_in_ones() {
    let sink = sink().await;
    let pki = Pki::new();
    let rules = pki.write(
        "rules.toml",
        "[rules]\nYahooDeferral = ['\\[TSS04\\]']\nGone = ['^550 5\\.1\\.1 ']\n",
    );
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .init(&format!(
            "kumo.configure_bounce_classifier {{ files = {{ '{}' }}, cache_size = 10 }}",
            rules.display()
        ))
        .route(
            "c.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(""),
        )
        .start();
    let bounced = inject(&d, "a@origin.test", &["nobody@c.test"], "b2").await;
    let deferred = inject(&d, "a@origin.test", &["busy@c.test"], "t2").await;
    let b = wait_kind(&d, "Bounce", &bounced, WAIT).await;
    assert_eq!(b["bounce_classification"], "Gone", "{b}");
    let t = wait_kind(&d, "TransientFailure", &deferred, WAIT).await;
    assert_eq!(t["bounce_classification"], "YahooDeferral", "{t}");

    // A rules file that does not compile stops the start, naming it.
    let bad = pki.write("bad.toml", "[rules]\nBroken = ['(']\n");
    let (code, out) = ironpost_testkit::Daemon::try_start_expect_failure(
        Policy::new(dns.addr)
            .init(&format!(
                "kumo.configure_bounce_classifier {{ files = {{ '{}' }} }}",
                bad.display()
            ))
            .options(),
    )
    .unwrap();
    assert_ne!(code, 0);
    assert!(out.contains("bad.toml") && out.contains("Broken"), "{out}");
}
