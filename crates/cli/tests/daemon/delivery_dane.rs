//! DANE (RFC 7672) end to end: a DNSSEC-signed zone served on loopback
//! (the in-process test server signs the root zone with one key, which the
//! daemon trusts through `trust_anchor_file`), MX hosts pointing at capture
//! sinks on 127.0.0.1 with rcgen certificates, and TLSA records at
//! `_<port>._tcp.<mx>`.
//!
//! Every egress path says `OpportunisticInsecure`, so each case shows what
//! DANE changes: usable records make TLS mandatory and authenticated by the
//! records alone, unusable records make it mandatory without
//! authentication, and any doubt in DNS (bogus, SERVFAIL) defers.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::{RecordType, TestDnsServer, TestZone};
use ironpost_testkit::sink::{Sink, SinkConfig, SinkTls};
use ring::digest::{digest, SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

const PARENT: &str = "dane.test";

fn domain(case: &str) -> String {
    format!("{case}.{PARENT}")
}

fn mx(case: &str) -> String {
    format!("mx.{}", domain(case))
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    digest(&SHA256, data).as_ref().to_vec()
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo (selector 1).
fn spki_sha256(pem: &str) -> Vec<u8> {
    let der = der(pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
    sha256(cert.tbs_certificate.subject_pki.raw)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Delivered over TLS authenticated by TLSA records.
    Authenticated,
    /// Delivered over TLS whose certificate was not authenticated.
    Encrypted,
    /// Delivered in clear (no DANE policy, no STARTTLS offered).
    Clear,
    /// Never sent; deferred with this RFC 8460 result.
    Deferred(&'static str),
}

struct Case {
    name: &'static str,
    expect: Expect,
    /// The policy the records must name.
    policy: &'static str,
    sink: Sink,
    rcpt: String,
}

struct Fixture {
    pki: Pki,
    zone: TestZone,
    dns: TestDnsServer,
    anchor: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let pki = Pki::new();
    let zone = TestZone::signed();
    let anchor = pki.write("root.key", &zone.trust_anchor());
    let dns = start_dns(zone.clone()).await;
    Fixture {
        pki,
        zone,
        dns,
        anchor,
    }
}

fn resolver(f: &Fixture) -> String {
    format!(
        "kumo.dns.configure_unbound_resolver {{ options = {{ validate = true, trust_anchor_file = '{}' }}, name_servers = {{ '{}' }} }}",
        f.anchor.display(),
        f.dns.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_matrix() {
    let f = fixture().await;
    let pki = &f.pki;
    let zone = &f.zone;
    zone.insecure(&format!("insecure.{PARENT}"));
    // Chains with the CA certificate included, so DANE-TA digests of the CA
    // can match a certificate the server presents.
    let chain = |names: &[&str]| {
        let (cert, key) = pki.valid(names);
        (format!("{cert}{}", pki.ca.cert_pem), key)
    };

    struct Spec {
        name: &'static str,
        sink: SinkTls,
        /// (usage, selector, matching, data) records at the TLSA name.
        tlsa: Vec<(u8, u8, u8, Vec<u8>)>,
        expect: Expect,
        policy: &'static str,
        /// Extra zone setup after the MX/A/TLSA records.
        tweak: fn(&TestZone, &str, &str),
        /// Put the domain under the unsigned child zone.
        insecure: bool,
        /// The MX name is a CNAME alias of `real.<domain>`, where the
        /// address and the TLSA records are.
        alias: bool,
    }
    fn none(_: &TestZone, _: &str, _: &str) {}

    // A certificate from an untrusted CA for a name that isn't the MX:
    // DANE-EE pins it anyway, with no PKIX or name check.
    let (ee_cert, ee_key) = pki.untrusted(&["not-the-mx.example"]);
    let ee_digest = spki_sha256(&ee_cert);
    let ca_spki = spki_sha256(&pki.ca.cert_pem);
    let ca_full = sha256(&der(&pki.ca.cert_pem));
    let (other_cert, other_key) = pki.valid(&["mx.no-starttls.dane.test"]);

    let specs = vec![
        Spec {
            name: "ee-match",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, ee_digest.clone())],
            expect: Expect::Authenticated,
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        Spec {
            name: "ta-match",
            sink: SinkTls::offer_pair(chain(&["mx.ta-match.dane.test"])),
            tlsa: vec![(2, 1, 1, ca_spki.clone()), (2, 0, 1, ca_full.clone())],
            expect: Expect::Authenticated,
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        Spec {
            name: "ta-wrong-name",
            sink: SinkTls::offer_pair(chain(&["somewhere-else.example"])),
            tlsa: vec![(2, 1, 1, ca_spki.clone())],
            expect: Expect::Deferred("certificate-host-mismatch"),
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        Spec {
            name: "wrong-digest",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, vec![0xAB; 32])],
            expect: Expect::Deferred("tlsa-invalid"),
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        // PKIX-TA/EE records are unusable for SMTP: TLS stays mandatory,
        // without authentication.
        Spec {
            name: "pkix-only",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(1, 1, 1, ee_digest.clone()), (0, 0, 1, ca_full.clone())],
            expect: Expect::Encrypted,
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        Spec {
            name: "pkix-only-no-starttls",
            sink: SinkTls::None,
            tlsa: vec![(1, 1, 1, ee_digest.clone())],
            expect: Expect::Deferred("starttls-not-supported"),
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        // No TLSA records, proven by NSEC: no DANE; opportunistic as
        // configured (this sink has no TLS at all).
        Spec {
            name: "no-tlsa",
            sink: SinkTls::None,
            tlsa: vec![],
            expect: Expect::Clear,
            policy: "none",
            tweak: none,
            insecure: false,
            alias: false,
        },
        // An unsigned zone: its TLSA records (deliberately wrong) carry no
        // weight.
        Spec {
            name: "unsigned",
            sink: SinkTls::None,
            tlsa: vec![(3, 1, 1, vec![0xCD; 32])],
            expect: Expect::Clear,
            policy: "none",
            tweak: none,
            insecure: true,
            alias: false,
        },
        Spec {
            name: "bogus-tlsa",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, ee_digest.clone())],
            expect: Expect::Deferred("dnssec-invalid"),
            policy: "dane",
            tweak: |z, _domain, tlsa| {
                z.bogus(tlsa, RecordType::TLSA);
            },
            insecure: false,
            alias: false,
        },
        Spec {
            name: "servfail-tlsa",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, ee_digest.clone())],
            expect: Expect::Deferred("dnssec-invalid"),
            policy: "dane",
            tweak: |z, _domain, tlsa| {
                z.servfail(tlsa);
            },
            insecure: false,
            alias: false,
        },
        Spec {
            name: "bogus-mx",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, ee_digest.clone())],
            expect: Expect::Deferred("dnssec-invalid"),
            policy: "none",
            tweak: |z, domain, _tlsa| {
                z.bogus(domain, RecordType::MX);
            },
            insecure: false,
            alias: false,
        },
        // The on-path downgrade: usable TLSA records, and STARTTLS stripped
        // from the EHLO reply.
        Spec {
            name: "no-starttls",
            sink: SinkTls::Stripped,
            tlsa: vec![(3, 1, 1, spki_sha256(&other_cert))],
            expect: Expect::Deferred("starttls-not-supported"),
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: false,
        },
        // RFC 7672 §2.2.2: the MX name is an alias; the TLSA records sit at
        // the expanded name, and a DANE-TA certificate may name it.
        Spec {
            name: "alias-ee",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, ee_digest.clone())],
            expect: Expect::Authenticated,
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: true,
        },
        Spec {
            name: "alias-ta",
            sink: SinkTls::offer_pair(chain(&["real.alias-ta.dane.test"])),
            tlsa: vec![(2, 1, 1, ca_spki.clone())],
            expect: Expect::Authenticated,
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: true,
        },
        Spec {
            name: "alias-wrong-digest",
            sink: SinkTls::offer(ee_cert.clone(), ee_key.clone()),
            tlsa: vec![(3, 1, 1, vec![0xEF; 32])],
            expect: Expect::Deferred("tlsa-invalid"),
            policy: "dane",
            tweak: none,
            insecure: false,
            alias: true,
        },
    ];
    let _ = other_key;

    let mut policy = Policy::new(f.dns.addr).resolver(resolver(&f));
    let mut cases = Vec::new();
    for s in specs {
        let d = if s.insecure {
            format!("{}.insecure.{PARENT}", s.name)
        } else {
            domain(s.name)
        };
        let host = format!("mx.{d}");
        let sink = Sink::start(
            any_port(LOCALHOST),
            SinkConfig::new().hostname(&host).tls(s.sink),
        )
        .await
        .expect("sink");
        let port = sink.port();
        let tlsa_name = if s.alias {
            let real = format!("real.{d}");
            zone.mx(&d, 10, &host)
                .cname(&host, &real)
                .ip(&real, LOCALHOST);
            format!("_{port}._tcp.{real}")
        } else {
            zone.mx(&d, 10, &host).ip(&host, LOCALHOST);
            format!("_{port}._tcp.{host}")
        };
        for (u, sel, m, data) in &s.tlsa {
            zone.tlsa(&tlsa_name, *u, *sel, *m, data);
        }
        (s.tweak)(zone, &d, &tlsa_name);
        policy = policy.route(
            &d,
            queue("1h"),
            pki.egress(&format!(
                "enable_tls = 'OpportunisticInsecure', enable_dane = true, smtp_port = {port}"
            )),
        );
        cases.push(Case {
            name: s.name,
            expect: s.expect,
            policy: s.policy,
            sink,
            rcpt: format!("user@{d}"),
        });
    }
    let d = policy.start();
    for c in &cases {
        inject(&d, "sender@origin.test", &[&c.rcpt], c.name).await;
    }
    settle(
        &d,
        &cases.iter().map(|c| c.rcpt.clone()).collect::<Vec<_>>(),
        Duration::from_secs(30),
    )
    .await;
    sleep(Duration::from_millis(300)).await;
    let records = d.read_log_records();
    for c in &cases {
        let seen = c.sink.snapshot();
        let ctx = format!(
            "case {} expected {:?}\nsink saw:\n{}records:\n{}\nstderr:\n{}",
            c.name,
            c.expect,
            describe_sink(&seen),
            dump(&d),
            d.stderr()
        );
        let deliveries = for_rcpt(&records, "Delivery", &c.rcpt);
        let failures = for_rcpt(&records, "TransientFailure", &c.rcpt);
        match c.expect {
            Expect::Deferred(result) => {
                assert!(deliveries.is_empty(), "delivered: {ctx}");
                assert!(failures.len() >= 2, "{ctx}");
                for r in &failures {
                    assert_eq!(r["tls_policy"], c.policy, "{ctx}");
                    assert_eq!(r["tls_result"], result, "{ctx}");
                }
                assert!(seen.transactions.is_empty(), "sent: {ctx}");
                assert!(!seen.any_in_clear("MAIL"), "MAIL in clear: {ctx}");
                assert!(!seen.any_in_clear("RCPT"), "RCPT in clear: {ctx}");
            }
            other => {
                assert_eq!(deliveries.len(), 1, "{ctx}");
                let r = deliveries[0];
                assert_eq!(r["tls_policy"], c.policy, "{ctx}");
                assert_eq!(seen.transactions.len(), 1, "{ctx}");
                let tls = seen.transactions[0].tls;
                match other {
                    Expect::Authenticated => {
                        assert!(tls, "{ctx}");
                        assert_eq!(r["tls_validated"], true, "{ctx}");
                        assert_eq!(r["tls_result"], "success", "{ctx}");
                    }
                    Expect::Encrypted => {
                        assert!(tls, "{ctx}");
                        assert_eq!(r["tls_validated"], false, "{ctx}");
                    }
                    Expect::Clear => {
                        assert!(!tls, "{ctx}");
                        assert!(r.get("tls_protocol_version").is_none(), "{ctx}");
                    }
                    Expect::Deferred(_) => unreachable!(),
                }
            }
        }
    }
}

/// Seed 000's DANE set-up as written: `configure_unbound_resolver` with
/// `validate = true` and only name servers (so the built-in root keys are
/// the trust anchors) and `enable_dane = true`. The daemon starts with
/// validation on; a route from `mx_list` delivers; a destination found
/// through DNS that can't be validated against the real root keys waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_dane_configuration_runs_as_written() {
    let f = fixture().await;
    let host = mx("seed");
    f.zone.mx(&domain("seed"), 10, &host).ip(&host, LOCALHOST);
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new().hostname(&host))
        .await
        .expect("sink");
    let seed_resolver = format!(
        "kumo.dns.configure_unbound_resolver {{
    options = {{
      validate = true,
    }},
    name_servers = {{ '{}' }},
  }}",
        f.dns.addr
    );
    let d = Policy::new(f.dns.addr)
        .resolver(seed_resolver)
        .route(
            "routed.test",
            queue_to(&[&format!("127.0.0.1:{}", sink.port())]),
            f.pki.egress("enable_dane = true"),
        )
        .route(
            &domain("seed"),
            queue("1h"),
            f.pki
                .egress(&format!("enable_dane = true, smtp_port = {}", sink.port())),
        )
        .start();
    assert!(
        d.stderr().contains("DNSSEC validation on"),
        "{}",
        d.stderr()
    );
    let routed = inject(&d, "sender@origin.test", &["user@routed.test"], "routed").await;
    wait_kind(&d, "Delivery", &routed, Duration::from_secs(15)).await;
    let seed = format!("user@{}", domain("seed"));
    let id = inject(&d, "sender@origin.test", &[&seed], "seed").await;
    let r = wait_kind(&d, "TransientFailure", &id, Duration::from_secs(15)).await;
    assert_eq!(r["tls_result"], "dnssec-invalid", "{r}");
    assert_eq!(sink.snapshot().transactions.len(), 1);
}
