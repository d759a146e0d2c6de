//! MX hosts that are CNAME aliases (RFC 7672 §2.2.2): address lookups
//! report the canonical name and whether the whole chain was proven, and
//! the test server answers through CNAME chains, signed or not.

mod common;

use common::{anchor_file, resolver};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData};
use ironpost_dns::{DnsError, HostAddresses, Secured, TlsaRecord};
use ironpost_testkit::dns::{RecordType, TestDnsServer, TestZone};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;
use tokio::net::UdpSocket;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn zone(z: TestZone) -> TestZone {
    z.mx("example", 10, "mx.example")
        .cname("mx.example", "real.example")
        .ip("real.example", ip("127.0.0.20"))
        .tlsa("_25._tcp.real.example", 3, 1, 1, &[0xcd; 32])
        // Two hops, both families.
        .cname("a1.example", "A2.example.")
        .cname("a2.example", "real2.example")
        .ip("real2.example", ip("127.0.0.21"))
        .ip("real2.example", ip("::2"))
        .cname("badalias.example", "real.example")
        .bogus("badalias.example", RecordType::CNAME)
        .cname("insalias.example", "host.insecure.example")
        .insecure("insecure.example")
        .ip("host.insecure.example", ip("127.0.0.22"))
        .cname("dangling.example", "missing.example")
        .cname("loop1.example", "loop2.example")
        .cname("loop2.example", "loop1.example");
    z
}

async fn start_signed() -> (TestDnsServer, tempfile::NamedTempFile) {
    let z = zone(TestZone::signed());
    let anchors = anchor_file(&z.trust_anchor());
    (TestDnsServer::start(z).await.unwrap(), anchors)
}

fn addrs(ips: &[&str], canonical: Option<&str>, secure: bool) -> Secured<HostAddresses> {
    Secured {
        value: HostAddresses {
            ips: ips.iter().map(|s| ip(s)).collect(),
            canonical: canonical.map(str::to_string),
        },
        secure,
    }
}

#[tokio::test]
async fn signed_alias_is_secure() {
    let (server, anchors) = start_signed().await;
    let dns = resolver(&server, true, Some(anchors.path()));

    // A through the CNAME, AAAA denied at the target: both proven. Twice,
    // the second time from the resolver's cache.
    for _ in 0..2 {
        assert_eq!(
            dns.addresses_secure("mx.example").await.unwrap(),
            addrs(&["127.0.0.20"], Some("real.example"), true)
        );
    }
    assert_eq!(
        dns.ips_secure("mx.example").await.unwrap(),
        Secured {
            value: vec![ip("127.0.0.20")],
            secure: true
        }
    );
    let tlsa = dns.tlsa(25, "real.example").await.unwrap();
    assert!(tlsa.secure);
    assert_eq!(
        tlsa.value,
        vec![TlsaRecord {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xcd; 32]
        }]
    );
    // None at the alias itself, provably.
    let t = dns.tlsa(25, "mx.example").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (0, true));

    // Two hops; names come out lower-case without the trailing dot.
    assert_eq!(
        dns.addresses_secure("A1.Example.").await.unwrap(),
        addrs(&["127.0.0.21", "::2"], Some("real2.example"), true)
    );
    // Not an alias.
    assert_eq!(
        dns.addresses_secure("real.example").await.unwrap(),
        addrs(&["127.0.0.20"], None, true)
    );
    assert_eq!(
        dns.addresses_secure("127.0.0.9").await.unwrap(),
        addrs(&["127.0.0.9"], None, false)
    );
    // An alias of nothing.
    assert_eq!(
        dns.addresses_secure("dangling.example").await,
        Err(DnsError::NxDomain("dangling.example".into()))
    );
    // Plain lookups follow aliases too.
    assert_eq!(dns.ips("mx.example").await.unwrap(), vec![ip("127.0.0.20")]);
}

#[tokio::test]
async fn bogus_alias() {
    let (server, anchors) = start_signed().await;
    let dns = resolver(&server, true, Some(anchors.path()));
    let err = dns.addresses_secure("badalias.example").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    let err = dns.ips_secure("badalias.example").await.unwrap_err();
    assert!(matches!(err, DnsError::Bogus(..)), "{err}");
    // The target on its own is fine.
    assert!(dns.addresses_secure("real.example").await.unwrap().secure);

    // Without validation nobody notices.
    let dns = resolver(&server, false, None);
    assert_eq!(
        dns.addresses_secure("badalias.example").await.unwrap(),
        addrs(&["127.0.0.20"], Some("real.example"), false)
    );
}

#[tokio::test]
async fn alias_into_insecure_zone() {
    let (server, anchors) = start_signed().await;
    let dns = resolver(&server, true, Some(anchors.path()));
    assert_eq!(
        dns.addresses_secure("insalias.example").await.unwrap(),
        addrs(&["127.0.0.22"], Some("host.insecure.example"), false)
    );
}

#[tokio::test]
async fn alias_in_insecure_zone_to_signed_target() {
    let z = zone(TestZone::signed());
    z.cname("alias.insecure.example", "real.example");
    let anchors = anchor_file(&z.trust_anchor());
    let server = TestDnsServer::start(z).await.unwrap();
    let dns = resolver(&server, true, Some(anchors.path()));
    // The AAAA denial at the target is proven, but the unsigned CNAME
    // that led there in the A answer is not.
    assert_eq!(
        dns.addresses_secure("alias.insecure.example")
            .await
            .unwrap(),
        addrs(&["127.0.0.20"], Some("real.example"), false)
    );
}

#[tokio::test]
async fn validation_off_keeps_canonical() {
    let (server, _anchors) = start_signed().await;
    let dns = resolver(&server, false, None);
    assert_eq!(
        dns.addresses_secure("a1.example").await.unwrap(),
        addrs(&["127.0.0.21", "::2"], Some("real2.example"), false)
    );
}

#[tokio::test]
async fn cname_loop_fails() {
    let (server, anchors) = start_signed().await;
    for dns in [
        resolver(&server, true, Some(anchors.path())),
        resolver(&server, false, None),
    ] {
        assert!(dns.addresses_secure("loop1.example").await.is_err());
    }
}

#[tokio::test]
async fn unsigned_alias() {
    let server = TestDnsServer::start(zone(TestZone::new())).await.unwrap();
    let dns = resolver(&server, false, None);
    assert_eq!(
        dns.addresses_secure("mx.example").await.unwrap(),
        addrs(&["127.0.0.20"], Some("real.example"), false)
    );
    assert_eq!(
        dns.addresses_secure("a1.example").await.unwrap(),
        addrs(&["127.0.0.21", "::2"], Some("real2.example"), false)
    );
    assert_eq!(
        dns.addresses_secure("real.example").await.unwrap(),
        addrs(&["127.0.0.20"], None, false)
    );
    assert_eq!(
        dns.addresses_secure("dangling.example").await,
        Err(DnsError::NxDomain("dangling.example".into()))
    );
    assert_eq!(dns.ips("a1.example").await.unwrap().len(), 2);
    let t = dns.tlsa(25, "real.example").await.unwrap();
    assert_eq!((t.value.len(), t.secure), (1, false));
}

/// One raw query (with the DO bit) to the test server over UDP.
async fn raw(server: &TestDnsServer, name: &str, rtype: RecordType) -> Message {
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns.set_dnssec_ok(true);
    q.set_edns(edns);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), server.addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// (owner, type) of each record in a section, RRSIGs as "RRSIG:<covered>".
fn summary(records: &[hickory_proto::rr::Record]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            let t = match &r.data {
                RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(sig)) => {
                    format!("RRSIG:{}", sig.input().type_covered)
                }
                _ => r.record_type().to_string(),
            };
            (r.name.to_ascii(), t)
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn server_answers_through_chains() {
    let (server, _anchors) = start_signed().await;

    // Each RRset of the chain with its own signature.
    let m = raw(&server, "a1.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        summary(&m.answers),
        pairs(&[
            ("a1.example.", "CNAME"),
            ("a1.example.", "RRSIG:CNAME"),
            ("a2.example.", "CNAME"),
            ("a2.example.", "RRSIG:CNAME"),
            ("real2.example.", "A"),
            ("real2.example.", "RRSIG:A"),
        ])
    );
    // A CNAME query gets just the CNAME.
    let m = raw(&server, "a1.example.", RecordType::CNAME).await;
    assert_eq!(
        summary(&m.answers),
        pairs(&[("a1.example.", "CNAME"), ("a1.example.", "RRSIG:CNAME")])
    );
    // Into the insecure child: the target's records come unsigned.
    let m = raw(&server, "insalias.example.", RecordType::A).await;
    assert_eq!(
        summary(&m.answers),
        pairs(&[
            ("insalias.example.", "CNAME"),
            ("insalias.example.", "RRSIG:CNAME"),
            ("host.insecure.example.", "A"),
        ])
    );
    // A dangling alias: the chain, with the target's response code and
    // SOA. The target's NSECs are left for the resolver's own query for the
    // target (hickory would judge them against the alias).
    let m = raw(&server, "dangling.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        summary(&m.answers),
        pairs(&[
            ("dangling.example.", "CNAME"),
            ("dangling.example.", "RRSIG:CNAME"),
        ])
    );
    assert_eq!(
        summary(&m.authorities),
        pairs(&[(".", "SOA"), (".", "RRSIG:SOA")])
    );
    let m = raw(&server, "missing.example.", RecordType::A).await;
    assert!(summary(&m.authorities).iter().any(|(_, t)| t == "NSEC"));
    // NODATA at the target.
    let m = raw(&server, "mx.example.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        summary(&m.answers),
        pairs(&[("mx.example.", "CNAME"), ("mx.example.", "RRSIG:CNAME")])
    );
}
