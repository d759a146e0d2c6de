//! SPF beyond the RFC 7208 suite: the result's properties, the time limit,
//! and bounded cost for records built to be expensive.

mod common;

use ironpost_testkit::dns::TestZone;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn properties_and_reasons() {
    let z = TestZone::new();
    z.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("mx.example.com", "v=spf1 a -all")
        .ip("mx.example.com", ip("192.0.2.10"));
    let (_dns, auth) = common::authenticator(z, common::limits()).await;

    let o = auth
        .spf_check_host(
            ip("192.0.2.1"),
            "mx.example.com",
            "example.com",
            Some("u@example.com"),
        )
        .await;
    assert_eq!(o.disposition, "pass");
    assert_eq!(o.result.method, "spf");
    assert_eq!(o.result.props["smtp.mailfrom"], "u@example.com");
    assert!(o
        .result
        .reason
        .as_deref()
        .unwrap()
        .contains("'ip4:192.0.2.0/24' matched"));

    let o = auth
        .spf_check_host(
            ip("198.51.100.1"),
            "mx.example.com",
            "example.com",
            Some("u@example.com"),
        )
        .await;
    assert_eq!(o.disposition, "fail");
    assert!(o
        .result
        .reason
        .as_deref()
        .unwrap()
        .contains("'-all' matched"));

    // A HELO check: smtp.helo, the HELO name as the domain.
    let o = auth
        .spf_check_host(ip("192.0.2.10"), "mx.example.com", "mx.example.com", None)
        .await;
    assert_eq!(o.disposition, "pass");
    assert_eq!(o.result.props["smtp.helo"], "mx.example.com");
    assert!(!o.result.props.contains_key("smtp.mailfrom"));

    let o = auth
        .spf_check_host(
            ip("192.0.2.1"),
            "h",
            "nothing.example",
            Some("u@nothing.example"),
        )
        .await;
    assert_eq!(o.disposition, "none");
}

/// Two domains including each other: the 11th DNS-querying term ends it
/// with permerror, at once.
#[tokio::test]
async fn include_loop_is_bounded() {
    let z = TestZone::new();
    z.txt("a.example", "v=spf1 include:b.example -all")
        .txt("b.example", "v=spf1 include:a.example -all");
    let (_dns, auth) = common::authenticator(z, common::limits()).await;
    let started = Instant::now();
    let o = auth
        .spf_check_host(
            ip("192.0.2.1"),
            "h.example",
            "a.example",
            Some("x@a.example"),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(o.disposition, "permerror");
    let reason = o.result.reason.unwrap();
    assert!(
        reason.contains("more than 10 DNS-querying terms"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Lookups of names that do not exist: the third is a permerror.
#[tokio::test]
async fn void_lookups_are_bounded() {
    let z = TestZone::new();
    let terms: String = (0..9)
        .map(|n| format!(" a:n{n}.example exists:e{n}.example"))
        .collect();
    z.txt("void.example", &format!("v=spf1{terms} -all"));
    let (_dns, auth) = common::authenticator(z, common::limits()).await;
    let o = auth
        .spf_check_host(
            ip("192.0.2.1"),
            "h.example",
            "void.example",
            Some("x@void.example"),
        )
        .await;
    assert_eq!(o.disposition, "permerror");
    assert!(o
        .result
        .reason
        .unwrap()
        .contains("more than 2 void lookups"));
}

/// A record of 2,500 terms (about 48 KB, near the most a DNS message over
/// TCP holds) is parsed and
/// evaluated in bounded time.
#[tokio::test]
async fn a_huge_record_is_cheap() {
    let z = TestZone::new();
    let terms: String = (0..2500)
        .map(|n| format!(" ip4:10.{}.{}.0/24", n / 256, n % 256))
        .collect();
    z.txt("big.example", &format!("v=spf1{terms} ~all"));
    let (_dns, auth) = common::authenticator(z, common::limits()).await;
    let started = Instant::now();
    let o = auth
        .spf_check_host(
            ip("192.0.2.1"),
            "h.example",
            "big.example",
            Some("x@big.example"),
        )
        .await;
    assert_eq!(o.disposition, "softfail");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bounded_by_the_time_limit() {
    let (_sock, auth) = common::silent_authenticator(Duration::from_millis(300)).await;
    let started = Instant::now();
    let o = auth
        .spf_check_host(
            ip("192.0.2.1"),
            "h.example",
            "example.com",
            Some("x@example.com"),
        )
        .await;
    assert_eq!(o.disposition, "temperror");
    assert!(o.result.reason.unwrap().contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(3));
}
