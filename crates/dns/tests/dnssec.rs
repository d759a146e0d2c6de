//! DNSSEC validation against the signed loopback test server.

mod common;

use common::{anchor_file, resolver};
use ironpost_dns::{Dns, DnsConfig, DnsError, MxAnswer, TlsaRecord};
use ironpost_testkit::dns::{RecordType, TestDnsServer, TestZone};
use std::net::IpAddr;
use std::path::Path;

const V4: &str = "127.0.0.10";
const V6: &str = "::1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn zone() -> TestZone {
    let z = TestZone::signed();
    z.mx("example.test", 10, "mx.example.test")
        .ip("mx.example.test", ip(V4))
        .ip("mx.example.test", ip(V6))
        .tlsa("_25._tcp.mx.example.test", 3, 1, 1, &[0xab; 32])
        .ip("notlsa.example.test", ip("127.0.0.11"))
        .exists("_25._tcp.nodata.example.test")
        .txt("a._25._tcp.ent.example.test", "below an empty non-terminal")
        .ip("implicit.test", ip("127.0.0.13"))
        .null_mx("nomail.test")
        .txt_strings("txt.example.test", &["v=spf1 ", "-all"])
        .txt("txt.example.test", &"k".repeat(300))
        .insecure("insecure.test")
        .mx("insecure.test", 10, "mx.insecure.test")
        .ip("mx.insecure.test", ip("127.0.0.12"))
        .tlsa("_25._tcp.badtlsa.example.test", 3, 1, 1, &[1; 32])
        .bogus("_25._tcp.badtlsa.example.test", RecordType::TLSA)
        .mx("badmx.test", 10, "mx.example.test")
        .bogus("badmx.test", RecordType::MX)
        .bogus("_25._tcp.baddenial.example.test", RecordType::TLSA)
        .servfail("_25._tcp.broken.example.test")
        .ip("badip.example.test", ip("127.0.0.14"))
        .bogus("badip.example.test", RecordType::AAAA);
    // Too big for UDP: the client has to retry over TCP.
    for i in 0..20 {
        z.txt("big.example.test", &format!("{i:02}{}", "x".repeat(298)));
    }
    z
}

async fn start() -> (TestDnsServer, tempfile::NamedTempFile) {
    let z = zone();
    let anchors = anchor_file(&z.trust_anchor());
    (TestDnsServer::start(z).await.unwrap(), anchors)
}

#[tokio::test]
async fn secure_answers() {
    let (server, anchors) = start().await;
    let dns = resolver(&server, true, Some(anchors.path()));
    assert!(dns.validating());

    let mx = dns.mx_secure("example.test").await.unwrap();
    assert!(mx.secure);
    let MxAnswer::Hosts { hosts, implicit } = mx.value else {
        panic!()
    };
    assert!(!implicit);
    assert_eq!(hosts[0].name, "mx.example.test");

    let ips = dns.ips_secure("mx.example.test").await.unwrap();
    assert!(ips.secure);
    assert_eq!(ips.value, vec![ip(V4), ip(V6)]);
    // No AAAA: the NODATA for it is proven too.
    let ips = dns.ips_secure("notlsa.example.test").await.unwrap();
    assert_eq!((ips.value, ips.secure), (vec![ip("127.0.0.11")], true));

    let tlsa = dns.tlsa(25, "mx.example.test").await.unwrap();
    assert!(tlsa.secure);
    assert_eq!(
        tlsa.value,
        vec![TlsaRecord {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab; 32]
        }]
    );

    // Plain lookups keep working with validation on.
    assert!(dns.ips("mx.example.test").await.unwrap().contains(&ip(V4)));
    assert_eq!(
        dns.mx("nomail.test").await.unwrap(),
        MxAnswer::Null,
        "null MX"
    );
}

#[tokio::test]
async fn secure_denials() {
    let (server, anchors) = start().await;
    let dns = resolver(&server, true, Some(anchors.path()));

    // NXDOMAIN (the host exists, _25._tcp below it does not); the second
    // time from the resolver's cache, which must keep the proof.
    for _ in 0..2 {
        let t = dns.tlsa(25, "notlsa.example.test").await.unwrap();
        assert_eq!((t.value.len(), t.secure), (0, true));
        assert!(dns.mx_secure("example.test").await.unwrap().secure);
    }
    // NODATA at an existing name.
    let t = dns.tlsa(25, "nodata.example.test").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (0, true));
    // NODATA at an empty non-terminal.
    let t = dns.tlsa(25, "ent.example.test").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (0, true));
    // NXDOMAIN well away from any name.
    let t = dns.tlsa(25, "nowhere.invalid-tld").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (0, true));

    // Implicit MX: secure because the MX denial is.
    let mx = dns.mx_secure("implicit.test").await.unwrap();
    assert!(mx.secure);
    assert!(matches!(mx.value, MxAnswer::Hosts { implicit: true, .. }));

    assert_eq!(
        dns.mx_secure("missing.example.test").await,
        Err(DnsError::NxDomain("missing.example.test".into()))
    );
    assert!(matches!(
        dns.ips_secure("missing.example.test").await,
        Err(DnsError::NxDomain(_))
    ));
}

#[tokio::test]
async fn insecure_child_zone() {
    let (server, anchors) = start().await;
    let dns = resolver(&server, true, Some(anchors.path()));

    let mx = dns.mx_secure("insecure.test").await.unwrap();
    assert!(!mx.secure);
    let MxAnswer::Hosts { hosts, .. } = mx.value else {
        panic!()
    };
    assert_eq!(hosts[0].name, "mx.insecure.test");
    let ips = dns.ips_secure("mx.insecure.test").await.unwrap();
    assert_eq!((ips.value, ips.secure), (vec![ip("127.0.0.12")], false));
    let t = dns.tlsa(25, "mx.insecure.test").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (0, false));
    assert!(matches!(
        dns.mx_secure("missing.insecure.test").await,
        Err(DnsError::NxDomain(_))
    ));
}

#[tokio::test]
async fn bogus_and_servfail() {
    let (server, anchors) = start().await;
    let dns = resolver(&server, true, Some(anchors.path()));

    let err = dns.tlsa(25, "badtlsa.example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    assert!(!err.is_permanent());
    let err = dns.mx_secure("badmx.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    let err = dns.mx("badmx.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    // A forged "no TLSA records" must not pass as an empty answer.
    let err = dns.tlsa(25, "baddenial.example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");

    // A forged AAAA denial spoils the whole address lookup.
    let err = dns.ips_secure("badip.example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");

    let err = dns.tlsa(25, "broken.example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Temporary(..)), "{err}");
}

#[tokio::test]
async fn validation_off_is_never_secure() {
    let (server, anchors) = start().await;
    let dns = resolver(&server, false, Some(anchors.path()));
    assert!(!dns.validating());

    assert!(!dns.mx_secure("example.test").await.unwrap().secure);
    assert!(!dns.ips_secure("mx.example.test").await.unwrap().secure);
    let t = dns.tlsa(25, "mx.example.test").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (1, false));
    let t = dns.tlsa(25, "notlsa.example.test").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (0, false));
    assert!(!dns.mx_secure("implicit.test").await.unwrap().secure);
    // Nothing checks the signatures, so the corrupted ones go unnoticed.
    assert!(!dns.mx_secure("badmx.test").await.unwrap().secure);
    assert_eq!(
        dns.tlsa(25, "badtlsa.example.test")
            .await
            .unwrap()
            .value
            .len(),
        1
    );
}

#[tokio::test]
async fn wrong_trust_anchor_is_bogus() {
    let (server, _) = start().await;
    let other = anchor_file(&TestZone::signed().trust_anchor());
    let dns = resolver(&server, true, Some(other.path()));

    let err = dns.mx_secure("example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    let err = dns.tlsa(25, "mx.example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    let err = dns.tlsa(25, "notlsa.example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
}

#[tokio::test]
async fn bad_trust_anchor_files() {
    let cfg = |path: &Path| DnsConfig {
        name_servers: vec!["127.0.0.1:53"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into()],
        validate: true,
        trust_anchor_file: Some(path.to_path_buf()),
        ..Default::default()
    };
    let garbage = anchor_file(". 3600 IN DNSKEY 257 3 15 !!notbase64!!\n");
    let empty = anchor_file("; nothing here\n");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.keys");
    for path in [garbage.path(), empty.path(), &missing] {
        let Err(DnsError::Config(msg)) = Dns::new(&cfg(path)) else {
            panic!("{} accepted", path.display())
        };
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    // Without validation the file is not read.
    let mut off = cfg(&missing);
    off.validate = false;
    assert!(Dns::new(&off).is_ok());
}

#[tokio::test]
async fn txt_records() {
    let (server, anchors) = start().await;
    for dns in [
        resolver(&server, true, Some(anchors.path())),
        resolver(&server, false, None),
    ] {
        let mut txt = dns.txt("txt.example.test").await.unwrap();
        txt.sort();
        assert_eq!(txt, vec!["k".repeat(300), "v=spf1 -all".to_string()]);
        let big = dns.txt("big.example.test").await.unwrap();
        assert_eq!(big.len(), 20);
        assert!(big.iter().all(|t| t.len() == 300));
        assert_eq!(
            dns.txt("missing.example.test").await,
            Err(DnsError::NxDomain("missing.example.test".into()))
        );
        assert_eq!(
            dns.txt("example.test").await,
            Err(DnsError::NoRecords("example.test".into(), "TXT"))
        );
    }

    // And from an unsigned zone.
    let z = TestZone::new();
    z.txt_strings("t.test", &["a", "b", "c"]);
    let server = TestDnsServer::start(z).await.unwrap();
    let dns = resolver(&server, false, None);
    assert_eq!(dns.txt("t.test").await.unwrap(), vec!["abc".to_string()]);
}
