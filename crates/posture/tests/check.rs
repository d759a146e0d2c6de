//! `dns check` end to end: the loopback DNS server (DNSSEC-signed unless
//! a test says otherwise) and the loopback MTA-STS HTTPS server.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ironpost_dkim::Algorithm;
use ironpost_dns::{Dns, DnsConfig};
use ironpost_mta_sts::FetchConfig;
use ironpost_posture::check::{check, Check, CheckOptions, Report, Verdict};
use ironpost_posture::{Bimi, DkimKey, ListenerCert, MtaSts, Posture};
use ironpost_testkit::dns::{RecordType, TestDnsServer, TestZone};
use ironpost_testkit::https::{HttpResponse, PolicyServer};
use ironpost_testkit::{Leaf, TestCa};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Every test finishes within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(90);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test timed out")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const LOCALHOST: &str = "127.0.0.1";
const STS_HOSTS: [&str; 4] = [
    "mta-sts.good.test",
    "mta-sts.bad.test",
    "mta-sts.warn.test",
    "mta-sts.slow.test",
];

/// The DNS and HTTPS servers and the options pointing at them.
struct Env {
    _dns: TestDnsServer,
    _anchors: Option<tempfile::NamedTempFile>,
    https: PolicyServer,
    opts: CheckOptions,
}

impl Env {
    /// `validate`: a validating resolver trusting the signed zone's key.
    async fn start(zone: TestZone, validate: bool) -> Env {
        let anchors = validate.then(|| {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(zone.trust_anchor().as_bytes()).unwrap();
            f
        });
        let server = TestDnsServer::start(zone).await.unwrap();
        let dns = Dns::new(&DnsConfig {
            name_servers: vec![server.addr.into()],
            timeout: Some(Duration::from_secs(2)),
            attempts: Some(1),
            validate,
            trust_anchor_file: anchors.as_ref().map(|f| f.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let ca = TestCa::new("Posture test CA");
        let (cert, key) = ca.issue_server(&STS_HOSTS);
        let https = PolicyServer::start(&cert, &key).await.unwrap();
        let opts = CheckOptions {
            dns,
            mta_sts_fetch: FetchConfig {
                extra_ca_pem: Some(ca.cert_pem.clone().into_bytes()),
                https_port: https.addr.port(),
                connect_timeout: Duration::from_secs(5),
                fetch_timeout: Duration::from_secs(10),
            },
            timeout: Duration::from_secs(30),
        };
        Env {
            _dns: server,
            _anchors: anchors,
            https,
            opts,
        }
    }

    /// Runs the check; the table is printed for failing tests' output.
    async fn check(&self, posture: &Posture) -> Report {
        let r = check(posture, &self.opts).await;
        println!("{}", r.table());
        r
    }
}

fn item<'a>(r: &'a Report, check: Check, subject: &str) -> &'a ironpost_posture::check::Item {
    r.items
        .iter()
        .find(|i| i.check == check && i.subject == subject)
        .unwrap_or_else(|| panic!("no {check} {subject} in\n{}", r.table()))
}

#[track_caller]
fn expect(r: &Report, check: Check, subject: &str, verdict: Verdict) {
    let i = item(r, check, subject);
    assert_eq!(
        i.verdict,
        verdict,
        "{check} {subject}: {}\n{}",
        i.detail,
        r.table()
    );
}

#[track_caller]
fn expect_detail(r: &Report, check: Check, subject: &str, verdict: Verdict, needle: &str) {
    expect(r, check, subject, verdict);
    let i = item(r, check, subject);
    assert!(
        i.detail.contains(needle),
        "{check} {subject}: {:?} lacks {needle:?}",
        i.detail
    );
}

fn dkim_key(selector: &str, algo: Algorithm, public_b64: &str, bits: Option<usize>) -> DkimKey {
    DkimKey {
        selector: selector.into(),
        key_type: if algo == Algorithm::RsaSha256 {
            "rsa"
        } else {
            "ed25519"
        }
        .into(),
        public_key_b64: public_b64.into(),
        bits,
    }
}

fn ed25519() -> String {
    ironpost_dkim::generate(Algorithm::Ed25519Sha256, 0)
        .unwrap()
        .1
}

/// The key record for `public_b64` as `ironpost dkim` would publish it.
fn dkim_txt(domain: &str, selector: &str, algo: Algorithm, public_b64: &str) -> String {
    ironpost_dkim::dns_record(domain, selector, algo, public_b64)
        .unwrap()
        .txt_value()
}

/// An RSA SubjectPublicKeyInfo with a `bits`-bit modulus: not a usable
/// key, but DKIM only needs its size here, and real keys under 2048 bits
/// cannot be generated with the project's tooling.
fn fake_rsa_spki(bits: usize) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        match body.len() {
            n @ 0..=127 => v.push(n as u8),
            n @ 128..=255 => v.extend([0x81, n as u8]),
            n => v.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        v.extend_from_slice(body);
        v
    }
    let mut modulus = vec![0u8, 0xc1];
    modulus.extend(std::iter::repeat_n(0x5a, bits / 8 - 1));
    let pkcs1 = tlv(0x30, &[tlv(0x02, &modulus), tlv(0x02, &[1, 0, 1])].concat());
    let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let alg = tlv(0x30, &[tlv(0x06, &oid), vec![0x05, 0x00]].concat());
    let mut bits_body = vec![0u8];
    bits_body.extend(pkcs1);
    tlv(0x30, &[alg, tlv(0x03, &bits_body)].concat())
}

fn spki_sha256(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    Sha256::digest(cert.tbs_certificate.subject_pki.raw).to_vec()
}

fn listener(host: &str, port: u16) -> ListenerCert {
    ListenerCert {
        hostname: host.into(),
        port,
        cert_der: Leaf::self_signed(&[host]).der.to_vec(),
    }
}

fn sts(mode: &str, mx: &[&str], max_age: u64) -> MtaSts {
    MtaSts {
        mode: mode.into(),
        mx: mx.iter().map(|m| m.to_string()).collect(),
        max_age,
    }
}

/// good.test publishes everything its posture asks for.
async fn good(zone: &TestZone) -> Posture {
    let ed = ed25519();
    let rsa = ironpost_dkim::generate(Algorithm::RsaSha256, 2048)
        .unwrap()
        .1;
    let hosted = sts("enforce", &["mx.good.test"], 604_800);
    let cert = listener("mx.good.test", 25);
    zone.txt(
        "good.test",
        "v=spf1 ip4:192.0.2.0/24 a:out.good.test mx include:_spf.good.test ~all",
    )
    .txt("good.test", "google-site-verification=abc")
    .mx("good.test", 10, "mx.good.test")
    .ip("mx.good.test", ip("203.0.113.25"))
    .ip("out.good.test", ip("198.51.100.7"))
    .txt("_spf.good.test", "v=spf1 ip6:2001:db8::/32 -all")
    .txt(
        "s1._domainkey.good.test",
        &dkim_txt("good.test", "s1", Algorithm::Ed25519Sha256, &ed),
    )
    .txt(
        "s2._domainkey.good.test",
        &dkim_txt("good.test", "s2", Algorithm::RsaSha256, &rsa),
    )
    .txt(
        "_dmarc.good.test",
        "v=DMARC1; p=reject; adkim=s; rua=mailto:dmarc@good.test",
    )
    .txt(
        "_mta-sts.good.test",
        &format!("v=STSv1; id={}", hosted.id()),
    )
    .ip("mta-sts.good.test", ip(LOCALHOST))
    .txt(
        "_smtp._tls.good.test",
        "v=TLSRPTv1; rua=mailto:tlsrpt@good.test",
    )
    .txt(
        "default._bimi.good.test",
        "v=BIMI1; l=https://good.test/logo.svg",
    )
    .tlsa(
        "_25._tcp.mx.good.test",
        3,
        1,
        1,
        &spki_sha256(&cert.cert_der),
    );
    Posture {
        domain: "good.test".into(),
        source_addresses: ["192.0.2.10", "198.51.100.7", "203.0.113.25", "2001:db8::1"]
            .iter()
            .map(|s| ip(s))
            .collect(),
        sources_complete: true,
        dkim: vec![
            dkim_key("s1", Algorithm::Ed25519Sha256, &ed, None),
            dkim_key("s2", Algorithm::RsaSha256, &rsa, Some(2048)),
        ],
        dmarc_rua: vec!["mailto:dmarc@good.test".into()],
        tls_rpt_rua: vec!["mailto:tlsrpt@good.test".into()],
        mta_sts: Some(hosted),
        bimi: Some(Bimi {
            logo_url: "https://good.test/logo.svg".into(),
            authority_url: None,
        }),
        listener_certs: vec![cert],
    }
}

fn serve_policy(env: &Env, domain: &str, policy: &MtaSts) {
    env.https.set(
        &format!("mta-sts.{domain}"),
        HttpResponse::policy(&policy.policy_text()),
    );
}

#[tokio::test]
async fn a_domain_that_publishes_everything_passes() {
    within(async {
        let zone = TestZone::signed();
        let posture = good(&zone).await;
        let env = Env::start(zone, true).await;
        serve_policy(&env, "good.test", posture.mta_sts.as_ref().unwrap());
        let r = env.check(&posture).await;
        assert!(
            r.items.iter().all(|i| i.verdict == Verdict::Pass),
            "{}",
            r.table()
        );
        assert!(!r.failed());
        assert_eq!(r.domain, "good.test");
        for (check, subject) in [
            (Check::Spf, "record"),
            (Check::Spf, "lookups"),
            (Check::Spf, "sources"),
            (Check::Spf, "all"),
            (Check::Dkim, "s1"),
            (Check::Dkim, "s2"),
            (Check::Dmarc, "record"),
            (Check::Dmarc, "policy"),
            (Check::Dmarc, "rua"),
            (Check::Dmarc, "alignment"),
            (Check::MtaSts, "record"),
            (Check::MtaSts, "policy"),
            (Check::MtaSts, "mx"),
            (Check::MtaSts, "max_age"),
            (Check::MtaSts, "hosted"),
            (Check::TlsRpt, "record"),
            (Check::Bimi, "record"),
            (Check::Dnssec, "good.test"),
            (Check::Tlsa, "_25._tcp.mx.good.test"),
        ] {
            expect(&r, check, subject, Verdict::Pass);
        }
        expect_detail(&r, Check::Spf, "lookups", Verdict::Pass, "3 of 10 DNS lookups");
        expect_detail(
            &r,
            Check::Spf,
            "sources",
            Verdict::Pass,
            "2001:db8::1 passes (ip6:2001:db8::/32 in _spf.good.test, via include:_spf.good.test in good.test)",
        );
        expect_detail(&r, Check::Spf, "all", Verdict::Pass, "~all");
        expect_detail(&r, Check::Dkim, "s2", Verdict::Pass, "RSA 2048 bits");
        expect_detail(&r, Check::Dmarc, "alignment", Verdict::Pass, "adkim=s (strict)");
        expect_detail(&r, Check::MtaSts, "mx", Verdict::Pass, "mx.good.test");
        expect_detail(&r, Check::Tlsa, "_25._tcp.mx.good.test", Verdict::Pass, "3 1 1");
        // Report order follows the checks.
        let order: Vec<Check> = r.items.iter().map(|i| i.check).collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|c| {
            [
                Check::Spf,
                Check::Dkim,
                Check::Dmarc,
                Check::MtaSts,
                Check::TlsRpt,
                Check::Bimi,
                Check::Dnssec,
                Check::Tlsa,
            ]
            .iter()
            .position(|x| x == c)
        });
        assert_eq!(order, sorted);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["domain"], "good.test");
        assert_eq!(json["items"][0]["check"], "spf");
        assert_eq!(json["items"][0]["verdict"], "pass");
    })
    .await
}

#[tokio::test]
async fn a_misconfigured_domain_fails_each_check() {
    within(async {
        let zone = TestZone::signed();
        let local = ed25519();
        let published = ed25519();
        let short = STANDARD.encode(fake_rsa_spki(1024));
        let hosted = sts("enforce", &["mx.bad.test"], 604_800);
        let served = sts("enforce", &["other.bad.test"], 604_800);
        let tlsa_host = listener("mx.bad.test", 25);
        zone.txt(
            "bad.test",
            "v=spf1 ip4:192.0.2.0/24 include:loop1.bad.test include:missing.bad.test -all",
        )
        .txt("loop1.bad.test", "v=spf1 include:loop2.bad.test -all")
        .txt("loop2.bad.test", "v=spf1 include:loop1.bad.test -all")
        .mx("bad.test", 10, "mx.bad.test")
        .ip("mx.bad.test", ip("203.0.113.26"))
        .txt(
            "s1._domainkey.bad.test",
            &dkim_txt("bad.test", "s1", Algorithm::Ed25519Sha256, &published),
        )
        .txt("s2._domainkey.bad.test", "v=DKIM1; k=ed25519; p=")
        .txt(
            "s4._domainkey.bad.test",
            &format!("v=DKIM1; k=rsa; p={short}"),
        )
        .txt("_dmarc.bad.test", "v=DMARC1; pct=50; rua=mailto:d@bad.test")
        .txt("_mta-sts.bad.test", "v=STSv1; id=abc123")
        .ip("mta-sts.bad.test", ip(LOCALHOST))
        .txt("_smtp._tls.bad.test", "v=TLSRPTv1; rua=http://r.bad.test/")
        .txt(
            "default._bimi.bad.test",
            "v=BIMI1; l=http://bad.test/logo.svg",
        )
        .tlsa("_25._tcp.mx.bad.test", 3, 1, 1, &[0xab; 32]);
        let posture = Posture {
            domain: "bad.test".into(),
            source_addresses: vec![ip("192.0.2.10"), ip("198.51.100.99")],
            sources_complete: true,
            dkim: vec![
                dkim_key("s1", Algorithm::Ed25519Sha256, &local, None),
                dkim_key("s2", Algorithm::Ed25519Sha256, &local, None),
                dkim_key("s3", Algorithm::Ed25519Sha256, &local, None),
                dkim_key("s4", Algorithm::RsaSha256, &short, Some(1024)),
            ],
            mta_sts: Some(hosted),
            tls_rpt_rua: vec!["mailto:tls@bad.test".into()],
            listener_certs: vec![tlsa_host, listener("mx2.bad.test", 465)],
            ..Default::default()
        };
        let env = Env::start(zone, true).await;
        serve_policy(&env, "bad.test", &served);
        let r = env.check(&posture).await;
        assert!(r.failed());

        expect(&r, Check::Spf, "record", Verdict::Pass);
        expect_detail(
            &r,
            Check::Spf,
            "lookups",
            Verdict::Fail,
            "loop: bad.test -> loop1.bad.test -> loop2.bad.test -> loop1.bad.test",
        );
        expect_detail(
            &r,
            Check::Spf,
            "lookups",
            Verdict::Fail,
            "include:missing.bad.test has no SPF record",
        );
        expect_detail(
            &r,
            Check::Spf,
            "sources",
            Verdict::Fail,
            "198.51.100.99 is not authorised: permerror",
        );
        expect_detail(
            &r,
            Check::Spf,
            "sources",
            Verdict::Fail,
            "192.0.2.10 passes",
        );
        expect(&r, Check::Spf, "all", Verdict::Pass);

        expect_detail(&r, Check::Dkim, "s1", Verdict::Fail, "different key");
        expect_detail(&r, Check::Dkim, "s2", Verdict::Fail, "revoked");
        expect_detail(
            &r,
            Check::Dkim,
            "s3",
            Verdict::Fail,
            "no DKIM key record at s3._domainkey.bad.test",
        );
        expect_detail(&r, Check::Dkim, "s4", Verdict::Warn, "RSA 1024 bits");

        expect_detail(&r, Check::Dmarc, "record", Verdict::Fail, "no p= tag");
        assert_eq!(r.of(Check::Dmarc).count(), 1, "{}", r.table());

        expect(&r, Check::MtaSts, "record", Verdict::Pass);
        expect(&r, Check::MtaSts, "policy", Verdict::Pass);
        expect_detail(
            &r,
            Check::MtaSts,
            "mx",
            Verdict::Fail,
            "mx.bad.test is not in the policy's mx",
        );
        expect_detail(&r, Check::MtaSts, "hosted", Verdict::Warn, "has id=abc123");
        expect_detail(
            &r,
            Check::MtaSts,
            "hosted",
            Verdict::Warn,
            "differs from the one Ironpost hosts",
        );

        expect_detail(
            &r,
            Check::TlsRpt,
            "record",
            Verdict::Fail,
            "http://r.bad.test/",
        );
        expect_detail(
            &r,
            Check::Bimi,
            "record",
            Verdict::Fail,
            "not an https:// URL",
        );
        expect(&r, Check::Dnssec, "bad.test", Verdict::Pass);
        expect_detail(
            &r,
            Check::Tlsa,
            "_25._tcp.mx.bad.test",
            Verdict::Fail,
            "no record matches",
        );
        expect_detail(
            &r,
            Check::Tlsa,
            "_465._tcp.mx2.bad.test",
            Verdict::Fail,
            "no TLSA records",
        );
    })
    .await
}

#[tokio::test]
async fn weak_settings_warn() {
    within(async {
        let zone = TestZone::signed();
        let hosted = sts("testing", &["mx.warn.test"], 3600);
        zone.txt("warn.test", "v=spf1 ip4:192.0.2.0/24 ptr ?all")
            .mx("warn.test", 10, "mx.warn.test")
            .ip("mx.warn.test", ip("203.0.113.27"))
            .txt(
                "_dmarc.warn.test",
                "v=DMARC1; p=none; rua=mailto:d@vendor.test",
            )
            .txt("_mta-sts.warn.test", "v=STSv1; id=old1")
            .ip("mta-sts.warn.test", ip(LOCALHOST));
        let posture = Posture {
            domain: "warn.test".into(),
            source_addresses: vec![ip("192.0.2.1")],
            sources_complete: true,
            mta_sts: Some(hosted.clone()),
            ..Default::default()
        };
        let env = Env::start(zone, true).await;
        serve_policy(&env, "warn.test", &hosted);
        let r = env.check(&posture).await;
        assert!(!r.failed(), "{}", r.table());
        assert_eq!(r.worst(), Verdict::Warn);

        expect_detail(&r, Check::Spf, "record", Verdict::Warn, "ptr");
        expect(&r, Check::Spf, "sources", Verdict::Pass);
        expect_detail(&r, Check::Spf, "all", Verdict::Warn, "?all");
        expect(&r, Check::Dmarc, "record", Verdict::Pass);
        expect_detail(&r, Check::Dmarc, "policy", Verdict::Warn, "p=none");
        expect_detail(
            &r,
            Check::Dmarc,
            "rua",
            Verdict::Warn,
            "vendor.test has not authorised reports for warn.test",
        );
        expect_detail(&r, Check::MtaSts, "policy", Verdict::Warn, "mode testing");
        expect(&r, Check::MtaSts, "mx", Verdict::Pass);
        expect_detail(&r, Check::MtaSts, "max_age", Verdict::Warn, "3600");
        expect_detail(
            &r,
            Check::MtaSts,
            "hosted",
            Verdict::Warn,
            &format!("publish \"v=STSv1; id={}\"", hosted.id()),
        );
        expect_detail(
            &r,
            Check::TlsRpt,
            "record",
            Verdict::Warn,
            "no TLS-RPT record",
        );
        expect_detail(&r, Check::Bimi, "record", Verdict::Warn, "optional");
        assert_eq!(r.of(Check::Dkim).count() + r.of(Check::Tlsa).count(), 0);
    })
    .await
}

#[tokio::test]
async fn spf_lookups_are_counted_through_includes() {
    within(async {
        let zone = TestZone::signed();
        zone.txt("deep.test", "v=spf1 include:i1.deep.test -all");
        for n in 1..=11 {
            zone.txt(
                &format!("i{n}.deep.test"),
                &format!("v=spf1 include:i{}.deep.test -all", n + 1),
            );
        }
        zone.txt("i12.deep.test", "v=spf1 ip4:192.0.2.1 -all");
        let posture = Posture {
            domain: "deep.test".into(),
            source_addresses: vec![ip("192.0.2.1")],
            sources_complete: true,
            ..Default::default()
        };
        let env = Env::start(zone, true).await;
        let r = env.check(&posture).await;
        expect_detail(
            &r,
            Check::Spf,
            "lookups",
            Verdict::Fail,
            "more than 10 DNS lookups",
        );
        expect_detail(
            &r,
            Check::Spf,
            "sources",
            Verdict::Fail,
            "192.0.2.1 is not authorised: permerror",
        );
    })
    .await
}

#[tokio::test]
async fn signed_zone_with_matching_tlsa_passes_dane() {
    within(async {
        let zone = TestZone::signed();
        let cert = listener("mx.dane.test", 25);
        let submission = listener("smtp.dane.test", 465);
        let sub_sha512 = {
            use sha2::Sha512;
            let (_, c) = x509_parser::parse_x509_certificate(&submission.cert_der).unwrap();
            Sha512::digest(c.tbs_certificate.subject_pki.raw).to_vec()
        };
        zone.txt("dane.test", "v=spf1 -all")
            .tlsa(
                "_25._tcp.mx.dane.test",
                3,
                1,
                1,
                &spki_sha256(&cert.cert_der),
            )
            .tlsa("_25._tcp.mx.dane.test", 3, 1, 1, &[0x11; 32])
            .tlsa("_465._tcp.smtp.dane.test", 3, 1, 2, &sub_sha512);
        let posture = Posture {
            domain: "dane.test".into(),
            listener_certs: vec![cert, submission],
            ..Default::default()
        };
        let env = Env::start(zone, true).await;
        let r = env.check(&posture).await;
        expect_detail(&r, Check::Dnssec, "dane.test", Verdict::Pass, "signed");
        expect_detail(
            &r,
            Check::Tlsa,
            "_25._tcp.mx.dane.test",
            Verdict::Pass,
            "1 other record",
        );
        expect_detail(
            &r,
            Check::Tlsa,
            "_465._tcp.smtp.dane.test",
            Verdict::Pass,
            "3 1 2",
        );
    })
    .await
}

#[tokio::test]
async fn unsigned_zone_cannot_do_dane() {
    within(async {
        let zone = TestZone::signed();
        let cert = listener("mx.unsigned.test", 25);
        zone.insecure("unsigned.test")
            .txt("unsigned.test", "v=spf1 -all")
            .tlsa(
                "_25._tcp.mx.unsigned.test",
                3,
                1,
                1,
                &spki_sha256(&cert.cert_der),
            );
        let mut posture = Posture {
            domain: "unsigned.test".into(),
            listener_certs: vec![cert],
            ..Default::default()
        };
        let env = Env::start(zone, true).await;
        let r = env.check(&posture).await;
        expect_detail(
            &r,
            Check::Dnssec,
            "unsigned.test",
            Verdict::Fail,
            "not signed",
        );
        let tlsa = item(&r, Check::Tlsa, "_25._tcp.mx.unsigned.test");
        assert_eq!(tlsa.verdict, Verdict::Fail, "{}", r.table());
        assert!(tlsa.detail.contains("not DNSSEC-secure"), "{}", tlsa.detail);
        assert!(
            tlsa.detail.contains("matches the certificate"),
            "{}",
            tlsa.detail
        );

        // Without listeners to protect, unsigned is only a warning.
        posture.listener_certs.clear();
        let r = env.check(&posture).await;
        expect(&r, Check::Dnssec, "unsigned.test", Verdict::Warn);
    })
    .await
}

#[tokio::test]
async fn bogus_answers_fail() {
    within(async {
        let zone = TestZone::signed();
        zone.txt("bogus.test", "v=spf1 -all")
            .bogus("bogus.test", RecordType::TXT);
        let posture = Posture {
            domain: "bogus.test".into(),
            ..Default::default()
        };
        let env = Env::start(zone, true).await;
        let r = env.check(&posture).await;
        expect_detail(&r, Check::Dnssec, "bogus.test", Verdict::Fail, "bogus");
        expect_detail(
            &r,
            Check::Spf,
            "record",
            Verdict::Fail,
            "DNSSEC validation failed",
        );
    })
    .await
}

/// A DNS failure or a slow policy host fails its own check only, and the
/// run stays within the options' timeout. The resolver does not validate
/// here, which the DNSSEC and TLSA checks report.
#[tokio::test]
async fn failures_stay_isolated_and_bounded() {
    within(async {
        let zone = TestZone::new();
        let posture = good(&zone).await;
        zone.servfail("_dmarc.good.test");
        let mut slow = posture.clone();
        slow.domain = "slow.test".into();
        zone.txt("_mta-sts.slow.test", "v=STSv1; id=1")
            .ip("mta-sts.slow.test", ip(LOCALHOST));
        let mut env = Env::start(zone, false).await;
        serve_policy(&env, "good.test", posture.mta_sts.as_ref().unwrap());

        let r = env.check(&posture).await;
        expect_detail(
            &r,
            Check::Dmarc,
            "record",
            Verdict::Fail,
            "temporary DNS failure",
        );
        assert_eq!(r.of(Check::Dmarc).count(), 1);
        for (check, subject) in [
            (Check::Spf, "sources"),
            (Check::Dkim, "s1"),
            (Check::MtaSts, "mx"),
            (Check::TlsRpt, "record"),
        ] {
            expect(&r, check, subject, Verdict::Pass);
        }
        expect_detail(
            &r,
            Check::Dnssec,
            "good.test",
            Verdict::Warn,
            "does not validate",
        );
        expect_detail(
            &r,
            Check::Tlsa,
            "_25._tcp.mx.good.test",
            Verdict::Warn,
            "does not validate",
        );

        // The policy host answers only after the check's time is up.
        env.https.set(
            "mta-sts.slow.test",
            HttpResponse {
                delay: Duration::from_secs(20),
                ..HttpResponse::policy(&posture.mta_sts.as_ref().unwrap().policy_text())
            },
        );
        env.opts.timeout = Duration::from_secs(3);
        let started = Instant::now();
        let r = env.check(&slow).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        expect_detail(
            &r,
            Check::MtaSts,
            "timeout",
            Verdict::Fail,
            "not finished after 3s",
        );
        assert_eq!(r.of(Check::MtaSts).count(), 1);
        expect_detail(
            &r,
            Check::Spf,
            "record",
            Verdict::Fail,
            "no SPF record at slow.test",
        );
    })
    .await
}
