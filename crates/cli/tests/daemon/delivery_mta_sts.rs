//! MTA-STS (RFC 8461) end to end: the daemon looks up `_mta-sts.<domain>`
//! in the loopback test DNS, fetches the policy over HTTPS from a loopback
//! server whose certificate comes from a test CA (trusted through the
//! test-only `IRONPOST_TEST_MTA_STS_CA`), and delivers to capture sinks.
//!
//! Each case is its own recipient domain with its own MX host and sink, so
//! what a sink saw belongs to one case. The egress paths say
//! `OpportunisticInsecure` (what many operators run) so the tests show a
//! policy raising it; `testing` mode must never lower it either.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use ironpost_testkit::https::{HttpResponse, PolicyServer};
use ironpost_testkit::sink::{Sink, SinkConfig, SinkTls};
use ironpost_testkit::Daemon;

const PARENT: &str = "sts.test";

fn domain(case: &str) -> String {
    format!("{case}.{PARENT}")
}

fn mx(case: &str) -> String {
    format!("mx.{}", domain(case))
}

fn policy_host(case: &str) -> String {
    format!("mta-sts.{}", domain(case))
}

fn enforce(mx: &str) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

fn testing(mx: &str) -> String {
    format!("version: STSv1\nmode: testing\nmx: {mx}\nmax_age: 86400\n")
}

/// How a case's sink does TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SinkKind {
    Valid,
    Untrusted,
    Stripped,
}

struct Case {
    name: &'static str,
    sink: SinkKind,
    /// The policy server's answer; `None`: no TXT record at all.
    response: Option<HttpResponse>,
    /// Extra MX pattern override (for a policy that names another host).
    expect: Expect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// Delivered; (tls_policy, tls_result, validated TLS?).
    Delivered(&'static str, &'static str, bool),
    /// Deferred (at least twice), never sent; (tls_policy, tls_result).
    Deferred(&'static str, &'static str),
}

struct World {
    pki: Pki,
    zone: TestZone,
    dns: TestDnsServer,
    https: PolicyServer,
    sinks: Vec<(String, Sink)>,
}

async fn world(cases: &[&str]) -> World {
    let pki = Pki::new();
    let names: Vec<String> = cases.iter().map(|c| policy_host(c)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (cert, key) = pki.valid(&refs);
    let https = PolicyServer::start(&cert, &key).await.expect("https");
    let zone = TestZone::new();
    let dns = start_dns(zone.clone()).await;
    World {
        pki,
        zone,
        dns,
        https,
        sinks: Vec::new(),
    }
}

impl World {
    async fn add_sink(&mut self, case: &str, kind: SinkKind) -> u16 {
        let host = mx(case);
        let tls = match kind {
            SinkKind::Valid => SinkTls::offer_pair(self.pki.valid(&[&host])),
            SinkKind::Untrusted => SinkTls::offer_pair(self.pki.untrusted(&[&host])),
            SinkKind::Stripped => SinkTls::Stripped,
        };
        let sink = Sink::start(
            any_port(LOCALHOST),
            SinkConfig::new().hostname(&host).tls(tls),
        )
        .await
        .expect("sink");
        let port = sink.port();
        self.zone.mx(&domain(case), 10, &host).ip(&host, LOCALHOST);
        self.zone.ip(&policy_host(case), LOCALHOST);
        self.sinks.push((case.to_string(), sink));
        port
    }

    fn sink(&self, case: &str) -> &Sink {
        &self.sinks.iter().find(|(c, _)| c == case).expect("sink").1
    }

    fn policy(&self, ports: &[(&str, u16)]) -> Policy {
        let mut p = Policy::new(self.dns.addr);
        for (case, port) in ports {
            p = p.route(
                &domain(case),
                queue("1h"),
                self.pki.egress(&format!(
                    "enable_tls = 'OpportunisticInsecure', smtp_port = {port}"
                )),
            );
        }
        p
    }

    fn daemon(&self, policy: &Policy) -> Daemon {
        start_daemon(
            policy
                .options()
                .env(
                    "IRONPOST_TEST_MTA_STS_PORT",
                    self.https.addr.port().to_string(),
                )
                .env(
                    "IRONPOST_TEST_MTA_STS_CA",
                    self.pki.ca_path.display().to_string(),
                ),
        )
    }
}

fn check(d: &Daemon, w: &World, case: &str, rcpt: &str, expect: &Expect) {
    let records = d.read_log_records();
    let seen = w.sink(case).snapshot();
    let ctx = format!(
        "case {case}, expected {expect:?}\nsink saw:\n{}records:\n{}\nstderr:\n{}",
        describe_sink(&seen),
        dump(d),
        d.stderr()
    );
    let deliveries = for_rcpt(&records, "Delivery", rcpt);
    let failures = for_rcpt(&records, "TransientFailure", rcpt);
    match expect {
        Expect::Delivered(policy, result, validated) => {
            assert_eq!(deliveries.len(), 1, "{ctx}");
            let r = deliveries[0];
            assert_eq!(r["tls_policy"], *policy, "{ctx}");
            assert_eq!(r["tls_result"], *result, "{ctx}");
            assert_eq!(r["tls_validated"], *validated, "{ctx}");
            assert_eq!(seen.transactions.len(), 1, "{ctx}");
            assert!(seen.transactions[0].tls, "delivered in clear: {ctx}");
        }
        Expect::Deferred(policy, result) => {
            assert!(deliveries.is_empty(), "delivered: {ctx}");
            assert!(failures.len() >= 2, "{ctx}");
            for f in &failures {
                assert_eq!(f["tls_policy"], *policy, "{ctx}");
                assert_eq!(f["tls_result"], *result, "{ctx}");
            }
            assert!(seen.transactions.is_empty(), "message sent: {ctx}");
            assert!(!seen.any_in_clear("MAIL"), "MAIL in clear: {ctx}");
            assert!(!seen.any_in_clear("RCPT"), "RCPT in clear: {ctx}");
        }
    }
}

/// The matrix: one daemon, one domain per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_matrix() {
    let oversized = format!(
        "version: STSv1\nmode: enforce\nmx: x\nmax_age: 86400\n{}",
        "# padding\n".repeat(8000)
    );
    let cases = vec![
        Case {
            name: "enforce-match",
            sink: SinkKind::Valid,
            response: Some(HttpResponse::policy(&enforce(&mx("enforce-match")))),
            expect: Expect::Delivered("mta-sts-enforce", "success", true),
        },
        Case {
            name: "enforce-wildcard",
            sink: SinkKind::Valid,
            response: Some(HttpResponse::policy(&enforce(&format!(
                "*.{}",
                domain("enforce-wildcard")
            )))),
            expect: Expect::Delivered("mta-sts-enforce", "success", true),
        },
        Case {
            name: "enforce-nomatch",
            sink: SinkKind::Valid,
            response: Some(HttpResponse::policy(&enforce("mx.elsewhere.test"))),
            expect: Expect::Deferred("mta-sts-enforce", "validation-failure"),
        },
        Case {
            name: "enforce-badcert",
            sink: SinkKind::Untrusted,
            response: Some(HttpResponse::policy(&enforce(&mx("enforce-badcert")))),
            expect: Expect::Deferred("mta-sts-enforce", "certificate-not-trusted"),
        },
        // The on-path downgrade: STARTTLS stripped from the EHLO reply.
        Case {
            name: "enforce-stripped",
            sink: SinkKind::Stripped,
            response: Some(HttpResponse::policy(&enforce(&mx("enforce-stripped")))),
            expect: Expect::Deferred("mta-sts-enforce", "starttls-not-supported"),
        },
        Case {
            name: "testing-badcert",
            sink: SinkKind::Untrusted,
            response: Some(HttpResponse::policy(&testing(&mx("testing-badcert")))),
            expect: Expect::Delivered("mta-sts-testing", "certificate-not-trusted", false),
        },
        Case {
            name: "testing-nomatch",
            sink: SinkKind::Valid,
            response: Some(HttpResponse::policy(&testing("mx.elsewhere.test"))),
            expect: Expect::Delivered("mta-sts-testing", "validation-failure", true),
        },
        Case {
            name: "redirect",
            sink: SinkKind::Untrusted,
            response: Some(HttpResponse::redirect(
                "https://mta-sts.enforce-match.sts.test/.well-known/redirected.txt",
            )),
            expect: Expect::Delivered("none", "success", false),
        },
        Case {
            name: "oversized",
            sink: SinkKind::Untrusted,
            response: Some(HttpResponse::policy(&oversized)),
            expect: Expect::Delivered("none", "success", false),
        },
        Case {
            name: "malformed",
            sink: SinkKind::Untrusted,
            response: Some(HttpResponse::policy("version: STSv1\nmode: enforce\n")),
            expect: Expect::Delivered("none", "success", false),
        },
        Case {
            name: "none-mode",
            sink: SinkKind::Untrusted,
            response: Some(HttpResponse::policy(
                "version: STSv1\nmode: none\nmax_age: 86400\n",
            )),
            expect: Expect::Delivered("none", "success", false),
        },
        Case {
            name: "no-txt",
            sink: SinkKind::Untrusted,
            response: None,
            expect: Expect::Delivered("none", "success", false),
        },
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let mut w = world(&names).await;
    let mut ports = Vec::new();
    for c in &cases {
        let port = w.add_sink(c.name, c.sink).await;
        ports.push((c.name, port));
        if let Some(resp) = &c.response {
            w.zone.txt(
                &format!("_mta-sts.{}", domain(c.name)),
                "v=STSv1; id=20261122;",
            );
            w.https.set(&policy_host(c.name), resp.clone());
        }
    }
    let policy = w.policy(&ports).init(
        "kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }",
    );
    let d = w.daemon(&policy);
    let mut rcpts = Vec::new();
    for c in &cases {
        let rcpt = format!("user@{}", domain(c.name));
        inject(&d, "sender@origin.test", &[&rcpt], c.name).await;
        rcpts.push(rcpt);
    }
    settle(&d, &rcpts, Duration::from_secs(25)).await;
    sleep(Duration::from_millis(300)).await;
    for (c, rcpt) in cases.iter().zip(&rcpts) {
        check(&d, &w, c.name, rcpt, &c.expect);
    }
    // The fetch failures are reported with the attempt, in RFC 8460 terms.
    let records = d.read_log_records();
    for (case, kind) in [
        ("redirect", "sts-policy-fetch-error"),
        ("oversized", "sts-policy-fetch-error"),
        ("malformed", "sts-policy-invalid"),
    ] {
        let rcpt = format!("user@{}", domain(case));
        let r = for_rcpt(&records, "Delivery", &rcpt);
        assert_eq!(
            r[0]["tls_policy_discovery_failure"]["result"], kind,
            "{case}: {}",
            r[0]
        );
    }
    // A redirect is never followed.
    assert_eq!(
        w.https.hits_path("/.well-known/redirected.txt"),
        0,
        "redirect followed"
    );
    // Metrics count the outcomes.
    let url = format!("http://{}/metrics", d.http[0]);
    let metrics =
        tokio::task::spawn_blocking(move || reqwest::blocking::get(url).and_then(|r| r.text()))
            .await
            .unwrap()
            .expect("GET /metrics");
    for line in [
        "ironpost_tls_policy_results_total{policy=\"mta-sts-enforce\",result=\"success\"} 2",
        "ironpost_tls_policy_results_total{policy=\"mta-sts-testing\",result=\"certificate-not-trusted\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(
        metrics.contains("ironpost_tls_policy_results_total{policy=\"mta-sts-enforce\",result=\"starttls-not-supported\"}"),
        "{metrics}"
    );
}

/// A fetched policy is cached: an unchanged TXT id means no new fetch, a
/// new id means a fetch, a failed fetch keeps the cached policy in force,
/// and the cache survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_cache_lifecycle() {
    let case = "cached";
    let mut w = world(&[case]).await;
    w.zone.ttl(1);
    let port = w.add_sink(case, SinkKind::Valid).await;
    let txt_name = format!("_mta-sts.{}", domain(case));
    w.zone.txt(&txt_name, "v=STSv1; id=one;");
    w.https.set(
        &policy_host(case),
        HttpResponse::policy(&enforce(&mx(case))),
    );
    let policy = w.policy(&[(case, port)]);
    let mut d = w.daemon(&policy);
    let rcpt = format!("user@{}", domain(case));

    let id1 = inject(&d, "sender@origin.test", &[&rcpt], "first").await;
    let r = wait_kind(&d, "Delivery", &id1, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-enforce", "{r}");
    assert_eq!(w.https.hits(&policy_host(case)), 1);

    // Same id: the cached policy is used, no fetch.
    let id2 = inject(&d, "sender@origin.test", &[&rcpt], "second").await;
    let r = wait_kind(&d, "Delivery", &id2, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-enforce", "{r}");
    assert_eq!(w.https.hits(&policy_host(case)), 1, "refetched");

    // New id: fetched again; the new policy is testing mode.
    w.zone.remove(&txt_name);
    w.zone.txt(&txt_name, "v=STSv1; id=two;");
    w.https.set(
        &policy_host(case),
        HttpResponse::policy(&testing(&mx(case))),
    );
    sleep(Duration::from_millis(1500)).await;
    let id3 = inject(&d, "sender@origin.test", &[&rcpt], "third").await;
    let r = wait_kind(&d, "Delivery", &id3, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-testing", "{r}");
    assert_eq!(w.https.hits(&policy_host(case)), 2);

    // Back to enforce under id three, then the policy host breaks and the
    // id changes again: the cached enforce policy stays in force.
    w.zone.remove(&txt_name);
    w.zone.txt(&txt_name, "v=STSv1; id=three;");
    w.https.set(
        &policy_host(case),
        HttpResponse::policy(&enforce(&mx(case))),
    );
    sleep(Duration::from_millis(1500)).await;
    let id4 = inject(&d, "sender@origin.test", &[&rcpt], "fourth").await;
    let r = wait_kind(&d, "Delivery", &id4, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-enforce", "{r}");
    w.zone.remove(&txt_name);
    w.zone.txt(&txt_name, "v=STSv1; id=four;");
    w.https.set(&policy_host(case), HttpResponse::status(500));
    sleep(Duration::from_millis(1500)).await;
    let id5 = inject(&d, "sender@origin.test", &[&rcpt], "fifth").await;
    let r = wait_kind(&d, "Delivery", &id5, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-enforce", "{r}");
    assert_eq!(
        r["tls_policy_discovery_failure"]["result"], "sts-policy-fetch-error",
        "{r}"
    );

    // Restart: the policy comes from the disk cache. Point the TXT back to
    // the cached id and make the policy host unreachable for good.
    w.zone.remove(&txt_name);
    w.zone.txt(&txt_name, "v=STSv1; id=three;");
    let hits_before = w.https.hits(&policy_host(case));
    d.restart().expect("restart");
    let id6 = inject(&d, "sender@origin.test", &[&rcpt], "sixth").await;
    let r = wait_kind(&d, "Delivery", &id6, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-enforce", "{r}");
    assert_eq!(
        w.https.hits(&policy_host(case)),
        hits_before,
        "fetched although the cached policy's id is current"
    );
    // And the cached policy still enforces: an MX change to a host the
    // policy doesn't name (a DNS attacker's move) defers.
    let evil = format!("evil.{}", domain("attacker"));
    w.zone.remove(&domain(case));
    w.zone.mx(&domain(case), 10, &evil).ip(&evil, LOCALHOST);
    sleep(Duration::from_millis(1500)).await;
    let id7 = inject(&d, "sender@origin.test", &[&rcpt], "seventh").await;
    let r = wait_kind(&d, "TransientFailure", &id7, Duration::from_secs(15)).await;
    assert_eq!(r["tls_policy"], "mta-sts-enforce", "{r}");
    assert_eq!(r["tls_result"], "validation-failure", "{r}");
    let seen = w.sink(case).snapshot();
    assert_eq!(seen.transactions.len(), 6, "{}", describe_sink(&seen));
}
