//! The outbound TLS matrix: every `enable_tls` value against sinks that
//! offer no STARTTLS, have it stripped by a man in the middle, present a
//! valid certificate (test CA, trusted through `tls_extra_ca`), a
//! certificate from an untrusted CA, a trusted certificate for the wrong
//! name, or break the handshake (garbage, or a close after the 220).
//!
//! Each case is its own recipient domain routed to its own sink, so what a
//! sink saw belongs to exactly one case. Deferred cases are watched over at
//! least two attempts, to show that retries do not fall back either.

use std::time::{Duration, Instant};

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig, SinkTls};

const MX: &str = "mx.tls.test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Stripped,
    Valid,
    UntrustedCa,
    WrongName,
    BrokenGarbage,
    BrokenClose,
}

const KINDS: [Kind; 7] = [
    Kind::Plain,
    Kind::Stripped,
    Kind::Valid,
    Kind::UntrustedCa,
    Kind::WrongName,
    Kind::BrokenGarbage,
    Kind::BrokenClose,
];

impl Kind {
    fn slug(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Stripped => "stripped",
            Kind::Valid => "valid",
            Kind::UntrustedCa => "untrusted",
            Kind::WrongName => "wrongname",
            Kind::BrokenGarbage => "garbage",
            Kind::BrokenClose => "close",
        }
    }

    fn sink_tls(self, pki: &Pki) -> SinkTls {
        let offer = |(c, k): (String, String)| SinkTls::offer(c, k);
        match self {
            Kind::Plain => SinkTls::None,
            Kind::Stripped => SinkTls::Stripped,
            Kind::Valid => offer(pki.valid(&[MX])),
            Kind::UntrustedCa => offer(pki.untrusted(&[MX])),
            Kind::WrongName => offer(pki.valid(&["not-the-mx.tls.test"])),
            Kind::BrokenGarbage => SinkTls::BreakWithGarbage,
            Kind::BrokenClose => SinkTls::BreakWithClose,
        }
    }

    fn bad_certificate(self) -> bool {
        matches!(self, Kind::UntrustedCa | Kind::WrongName)
    }

    fn broken(self) -> bool {
        matches!(self, Kind::BrokenGarbage | Kind::BrokenClose)
    }

    fn no_starttls(self) -> bool {
        matches!(self, Kind::Plain | Kind::Stripped)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Delivered without TLS.
    Clear,
    /// Delivered over TLS; whether the certificate validated.
    Tls { validated: bool },
    /// Not delivered: TransientFailure records, nothing sent to the sink.
    Deferred,
    /// The handshake failed, then the same host was used in cleartext.
    ClearAfterFailedHandshake,
}

fn expected(mode: &str, kind: Kind) -> Expect {
    use Expect::*;
    match mode {
        "Disabled" => Clear,
        "Opportunistic" if kind.no_starttls() => Clear,
        "Opportunistic" if kind == Kind::Valid => Tls { validated: true },
        "Opportunistic" => Deferred,
        "OpportunisticInsecure" if kind.no_starttls() => Clear,
        "OpportunisticInsecure" if kind.broken() => ClearAfterFailedHandshake,
        "OpportunisticInsecure" => Tls {
            validated: kind == Kind::Valid,
        },
        "Required" if kind == Kind::Valid => Tls { validated: true },
        "Required" => Deferred,
        "RequiredInsecure" if kind.no_starttls() || kind.broken() => Deferred,
        "RequiredInsecure" => Tls {
            validated: kind == Kind::Valid,
        },
        other => panic!("unknown mode {other}"),
    }
}

struct Case {
    kind: Kind,
    expect: Expect,
    rcpt: String,
    sink: Sink,
    id: String,
}

async fn run_matrix(mode: &str) {
    let pki = Pki::new();
    let zone = TestZone::new();
    zone.ip(MX, LOCALHOST);
    let dns = start_dns(zone).await;

    let mut policy = Policy::new(dns.addr);
    let mut cases = Vec::new();
    for kind in KINDS {
        let sink = Sink::start(
            any_port(LOCALHOST),
            SinkConfig::new().hostname(MX).tls(kind.sink_tls(&pki)),
        )
        .await
        .expect("sink");
        let domain = format!("{}-{}.test", mode.to_ascii_lowercase(), kind.slug());
        policy = policy.route(
            &domain,
            queue_to(&[&format!("{MX}:{}", sink.port())]),
            pki.egress(&format!("enable_tls = '{mode}'")),
        );
        cases.push(Case {
            kind,
            expect: expected(mode, kind),
            rcpt: format!("rcpt@{domain}"),
            sink,
            id: String::new(),
        });
    }
    let d = policy.start();
    for c in &mut cases {
        c.id = inject(&d, "sender@origin.test", &[&c.rcpt], c.rcpt.as_str()).await;
    }

    // Wait until every case reached its end: a Delivery, or a second
    // TransientFailure (so a retry was watched too).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = d.read_log_records();
        let pending: Vec<&str> = cases
            .iter()
            .filter(|c| {
                let delivered = !for_rcpt(&records, "Delivery", &c.rcpt).is_empty();
                let deferred = for_rcpt(&records, "TransientFailure", &c.rcpt).len() >= 2;
                match c.expect {
                    Expect::Deferred => !deferred && !delivered,
                    _ => !delivered && !deferred,
                }
            })
            .map(|c| c.rcpt.as_str())
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: no outcome for {pending:?}; records:\n{}",
            dump(&d)
        );
        sleep(Duration::from_millis(100)).await;
    }
    // Give a wrong fallback time to show up before judging.
    sleep(Duration::from_millis(500)).await;
    let records = d.read_log_records();

    for c in &cases {
        let seen = c.sink.snapshot();
        let ctx = format!(
            "{mode} x {:?} (expected {:?})\nsink saw:\n{}records:\n{}",
            c.kind,
            c.expect,
            describe_sink(&seen),
            dump(&d)
        );
        let deliveries = for_rcpt(&records, "Delivery", &c.rcpt);
        let failures = for_rcpt(&records, "TransientFailure", &c.rcpt);
        match c.expect {
            Expect::Deferred => {
                assert!(deliveries.is_empty(), "delivered: {ctx}");
                assert!(failures.len() >= 2, "{ctx}");
                let attempts: Vec<u64> = failures
                    .iter()
                    .map(|r| r["num_attempts"].as_u64().unwrap())
                    .collect();
                assert_eq!(&attempts[..2], &[1, 2], "{ctx}");
                for f in &failures {
                    assert_eq!(f["peer_address"]["name"], MX, "{ctx}");
                    let why = f["response"]["content"].as_str().unwrap_or("");
                    if c.kind.bad_certificate() {
                        assert!(
                            why.to_ascii_lowercase().contains("certificate"),
                            "{why}: {ctx}"
                        );
                    }
                    if c.kind.no_starttls() {
                        assert!(why.contains("STARTTLS"), "{why}: {ctx}");
                    }
                }
                assert!(seen.transactions.is_empty(), "message sent: {ctx}");
                // Nothing past EHLO/STARTTLS/QUIT in clear, on any session,
                // including the retries after a certificate failure.
                assert!(!seen.any_in_clear("MAIL"), "MAIL in clear: {ctx}");
                assert!(!seen.any_in_clear("RCPT"), "RCPT in clear: {ctx}");
                assert!(!seen.any_in_clear("DATA"), "DATA in clear: {ctx}");
                assert!(!seen.received_contains(b"This is rcpt@"), "{ctx}");
                assert!(seen.sessions.len() >= 2, "retried: {ctx}");
                if !c.kind.no_starttls() {
                    // Every attempt tried STARTTLS and nothing came after.
                    for s in &seen.sessions {
                        assert!(s.starttls_requested, "{ctx}");
                        assert!(s.tls.is_none() || !s.has_command("MAIL"), "{ctx}");
                    }
                }
            }
            Expect::Clear | Expect::ClearAfterFailedHandshake => {
                assert_eq!(deliveries.len(), 1, "{ctx}");
                assert!(failures.is_empty(), "{ctx}");
                let rec = deliveries[0];
                assert!(rec.get("tls_protocol_version").is_none(), "{ctx}");
                assert!(rec.get("tls_validated").is_none(), "{ctx}");
                assert_eq!(rec["num_attempts"], 1, "{ctx}");
                let msgs = seen.messages();
                assert_eq!(msgs.len(), 1, "{ctx}");
                assert!(!msgs[0].tls, "{ctx}");
                if mode == "Disabled" {
                    assert!(
                        seen.sessions.iter().all(|s| !s.starttls_requested),
                        "Disabled never sends STARTTLS: {ctx}"
                    );
                }
                if c.expect == Expect::ClearAfterFailedHandshake {
                    assert_eq!(seen.sessions.len(), 2, "{ctx}");
                    let (first, second) = (&seen.sessions[0], &seen.sessions[1]);
                    assert!(first.starttls_requested && first.tls.is_none(), "{ctx}");
                    assert!(!first.has_command("MAIL"), "{ctx}");
                    assert!(!second.starttls_requested, "{ctx}");
                    assert!(second.sent_in_clear("MAIL"), "{ctx}");
                    assert_eq!(msgs[0].session, 1, "{ctx}");
                } else {
                    assert_eq!(seen.sessions.len(), 1, "{ctx}");
                }
            }
            Expect::Tls { validated } => {
                assert_eq!(deliveries.len(), 1, "{ctx}");
                assert!(failures.is_empty(), "{ctx}");
                let rec = deliveries[0];
                assert_eq!(rec["tls_validated"], validated, "{ctx}");
                assert_eq!(rec["tls_protocol_version"], "TLSv1_3", "{ctx}");
                assert!(rec["tls_cipher"].is_string(), "{ctx}");
                assert_eq!(rec["peer_address"]["name"], MX, "{ctx}");
                assert_eq!(rec["num_attempts"], 1, "{ctx}");
                let msgs = seen.messages();
                assert_eq!(msgs.len(), 1, "{ctx}");
                assert!(msgs[0].tls, "{ctx}");
                assert_eq!(seen.sessions.len(), 1, "{ctx}");
                assert!(!seen.any_in_clear("MAIL"), "{ctx}");
                assert!(seen.sessions[0].injected_after_starttls.is_empty());
                assert!(msgs[0].text().contains(&spool_id_marker(&c.id)), "{ctx}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_disabled() {
    run_matrix("Disabled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_opportunistic() {
    run_matrix("Opportunistic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_opportunistic_insecure() {
    run_matrix("OpportunisticInsecure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required() {
    run_matrix("Required").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_insecure() {
    run_matrix("RequiredInsecure").await;
}

/// Opportunistic with two MX hosts: the first presents a certificate that
/// does not validate. The message goes to the second host, over TLS, and
/// the first never sees a cleartext transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_certificate_failure_moves_to_the_next_mx_not_to_cleartext() {
    let pki = Pki::new();
    let bad = Sink::start(
        any_port(loopback(2)),
        SinkConfig::new().tls(SinkTls::offer_pair(pki.untrusted(&["mx1.two.test"]))),
    )
    .await
    .unwrap();
    let port = bad.port();
    let good = Sink::start(
        std::net::SocketAddr::new(loopback(3), port),
        SinkConfig::new().tls(SinkTls::offer_pair(pki.valid(&["mx2.two.test"]))),
    )
    .await
    .unwrap();
    let zone = TestZone::new();
    zone.mx("two.test", 10, "mx1.two.test")
        .mx("two.test", 20, "mx2.two.test")
        .ip("mx1.two.test", loopback(2))
        .ip("mx2.two.test", loopback(3));
    let dns = start_dns(zone).await;
    let d = Policy::new(dns.addr)
        .route(
            "two.test",
            queue("1h"),
            pki.egress(&format!("enable_tls = 'Opportunistic', smtp_port = {port}")),
        )
        .start();
    let id = inject(&d, "a@origin.test", &["b@two.test"], "two-mx").await;
    let rec = wait_kind(&d, "Delivery", &id, Duration::from_secs(10)).await;
    assert_eq!(rec["peer_address"]["name"], "mx2.two.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.3", "{rec}");
    assert_eq!(rec["tls_validated"], true, "{rec}");
    let seen_bad = bad.snapshot();
    assert_eq!(seen_bad.sessions.len(), 1, "{}", describe_sink(&seen_bad));
    assert!(seen_bad.sessions[0].starttls_requested);
    assert!(
        !seen_bad.any_in_clear("MAIL"),
        "{}",
        describe_sink(&seen_bad)
    );
    assert!(seen_bad.transactions.is_empty());
    let seen_good = good.snapshot();
    assert_eq!(
        seen_good.messages().len(),
        1,
        "{}",
        describe_sink(&seen_good)
    );
    assert!(seen_good.messages()[0].tls);
}
