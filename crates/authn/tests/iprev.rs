//! iprev against the loopback zone: pass, fail, permerror, temperror, as
//! KumoMTA's `policy-extras.mail_auth` reports them.

mod common;

use ironpost_testkit::dns::{RecordType, TestZone};
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn results() {
    let z = TestZone::new();
    z.ptr("1.2.0.192.in-addr.arpa", "mail.example.com")
        .ip("mail.example.com", ip("192.0.2.1"))
        .ptr("2.2.0.192.in-addr.arpa", "liar.example.com")
        .ip("liar.example.com", ip("192.0.2.99"))
        .ptr("3.2.0.192.in-addr.arpa", "gone.example.com")
        .servfail_type("5.2.0.192.in-addr.arpa", RecordType::PTR)
        .ptr("6.2.0.192.in-addr.arpa", "broken.example.com")
        .servfail_type("broken.example.com", RecordType::A)
        .ptr("7.2.0.192.in-addr.arpa", "liar.example.com")
        .ptr("7.2.0.192.in-addr.arpa", "second.example.com")
        .ip("second.example.com", ip("192.0.2.7"))
        .ptr(
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            "v6.example.com",
        )
        .ip("v6.example.com", ip("2001:db8::1"));
    let (_dns, auth) = common::authenticator(z, common::limits()).await;
    let cases = [
        ("192.0.2.1", "pass", "ip 192.0.2.1 <-> mail.example.com."),
        (
            "192.0.2.2",
            "fail",
            "name liar.example.com. does not resolve to 192.0.2.2",
        ),
        ("192.0.2.3", "fail", "name gone.example.com. has no A/AAAA"),
        ("192.0.2.4", "permerror", "ip 192.0.2.4 has no PTR"),
        (
            "192.0.2.5",
            "temperror",
            "ip 192.0.2.5 failed to resolve PTR",
        ),
        (
            "192.0.2.6",
            "temperror",
            "failed to resolve broken.example.com.",
        ),
        ("192.0.2.7", "pass", "ip 192.0.2.7 <-> second.example.com."),
        ("2001:db8::1", "pass", "ip 2001:db8::1 <-> v6.example.com."),
        (
            "::ffff:192.0.2.1",
            "pass",
            "ip 192.0.2.1 <-> mail.example.com.",
        ),
    ];
    for (addr, result, reason) in cases {
        let r = auth.iprev(ip(addr)).await;
        assert_eq!(r.method, "iprev");
        assert_eq!(r.result, result, "{addr}: {r:?}");
        let got = r.reason.as_deref().unwrap();
        assert!(
            got.starts_with(reason),
            "{addr}: reason {got:?}, want {reason:?}"
        );
        let shown = addr.strip_prefix("::ffff:").unwrap_or(addr);
        assert_eq!(r.props["policy.iprev"], shown);
    }
}

#[tokio::test]
async fn bounded_by_the_time_limit() {
    let (_sock, auth) = common::silent_authenticator(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = auth.iprev(ip("192.0.2.1")).await;
    assert_eq!(r.result, "temperror");
    assert!(r.reason.unwrap().contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(3));
}
