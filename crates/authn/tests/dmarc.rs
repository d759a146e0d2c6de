//! DMARC (RFC 7489) as a table: records on the loopback DNS server, a
//! message's From, the SPF and DKIM results given, and what must come out:
//! the result, the disposition after `pct`, the policy that applied and
//! where the record was found.

mod common;

use ironpost_authn::{AuthResult, DmarcOutcome};
use ironpost_testkit::dns::{RecordType, TestZone};
use std::collections::BTreeMap;

fn zone() -> TestZone {
    let z = TestZone::new();
    z.txt(
        "_dmarc.example.com",
        "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com",
    )
    .txt("_dmarc.own.example.com", "v=DMARC1; p=none")
    .txt("_dmarc.nosp.example", "v=DMARC1; p=reject")
    .txt(
        "_dmarc.strict.example",
        "v=DMARC1; p=quarantine; aspf=s; adkim=s",
    )
    .txt("_dmarc.half.example", "v=DMARC1; p=reject; pct=50")
    .txt("_dmarc.zero.example", "v=DMARC1; p=quarantine; pct=0")
    .txt("_dmarc.example.co.uk", "v=DMARC1; p=reject")
    .txt("_dmarc.co.uk", "v=DMARC1; p=none")
    .txt("_dmarc.foo.github.io", "v=DMARC1; p=quarantine")
    .txt("_dmarc.github.io", "v=DMARC1; p=reject")
    .txt("_dmarc.two.example", "v=DMARC1; p=none")
    .txt("_dmarc.two.example", "v=DMARC1; p=reject")
    .txt("_dmarc.other.example", "some other text")
    .txt("_dmarc.other.example", "v=DMARC1; p=reject")
    .txt("_dmarc.badp.example", "v=DMARC1; p=always")
    .txt(
        "_dmarc.badp-rua.example",
        "v=DMARC1; p=always; rua=mailto:d@badp-rua.example",
    )
    .servfail_type("_dmarc.broken.example", RecordType::TXT);
    z
}

fn msg(from: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: b@example.net\r\nSubject: t\r\n\r\nbody\r\n").into_bytes()
}

fn spf(result: &str, mailfrom: &str) -> AuthResult {
    AuthResult {
        method: "spf".into(),
        result: result.into(),
        props: BTreeMap::from([("smtp.mailfrom".to_string(), mailfrom.to_string())]),
        ..Default::default()
    }
}

fn dkim(result: &str, d: &str) -> AuthResult {
    AuthResult {
        method: "dkim".into(),
        result: result.into(),
        props: BTreeMap::from([("header.d".to_string(), d.to_string())]),
        ..Default::default()
    }
}

struct Case {
    name: &'static str,
    from: &'static str,
    spf: AuthResult,
    dkim: Vec<AuthResult>,
    sample: u8,
    /// result, disposition, policy applied, record domain.
    want: (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ),
}

fn case(
    name: &'static str,
    from: &'static str,
    spf: AuthResult,
    dkim: Vec<AuthResult>,
    want: (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ),
) -> Case {
    Case {
        name,
        from,
        spf,
        dkim,
        sample: 0,
        want,
    }
}

fn none() -> AuthResult {
    spf("none", "x@unrelated.example")
}

#[tokio::test]
async fn cases() {
    let (_dns, auth) = common::authenticator(zone(), common::limits()).await;
    let ex = Some("example.com");
    let cases = vec![
        // Alignment.
        case(
            "spf aligned, same domain",
            "a@example.com",
            spf("pass", "b@example.com"),
            vec![],
            ("pass", "none", Some("reject"), ex),
        ),
        case(
            "spf aligned, relaxed",
            "a@example.com",
            spf("pass", "b@bounce.example.com"),
            vec![],
            ("pass", "none", Some("reject"), ex),
        ),
        case(
            "spf pass, unaligned",
            "a@example.com",
            spf("pass", "b@other.example"),
            vec![],
            ("fail", "reject", Some("reject"), ex),
        ),
        case(
            "spf aligned but softfail",
            "a@example.com",
            spf("softfail", "b@example.com"),
            vec![],
            ("fail", "reject", Some("reject"), ex),
        ),
        case(
            "dkim aligned",
            "a@example.com",
            none(),
            vec![dkim("pass", "example.com")],
            ("pass", "none", Some("reject"), ex),
        ),
        case(
            "dkim aligned, relaxed",
            "a@example.com",
            none(),
            vec![dkim("pass", "mail.example.com")],
            ("pass", "none", Some("reject"), ex),
        ),
        case(
            "dkim aligned but failing",
            "a@example.com",
            none(),
            vec![dkim("fail", "example.com")],
            ("fail", "reject", Some("reject"), ex),
        ),
        case(
            "dkim pass, unaligned",
            "a@example.com",
            none(),
            vec![dkim("pass", "example.org")],
            ("fail", "reject", Some("reject"), ex),
        ),
        case(
            "second dkim aligned",
            "a@example.com",
            none(),
            vec![dkim("pass", "esp.example"), dkim("pass", "example.com")],
            ("pass", "none", Some("reject"), ex),
        ),
        case(
            "strict spf, same domain",
            "a@strict.example",
            spf("pass", "b@strict.example"),
            vec![],
            ("pass", "none", Some("quarantine"), Some("strict.example")),
        ),
        case(
            "strict spf, subdomain",
            "a@strict.example",
            spf("pass", "b@bounce.strict.example"),
            vec![],
            (
                "fail",
                "quarantine",
                Some("quarantine"),
                Some("strict.example"),
            ),
        ),
        case(
            "strict dkim, subdomain",
            "a@strict.example",
            none(),
            vec![dkim("pass", "mail.strict.example")],
            (
                "fail",
                "quarantine",
                Some("quarantine"),
                Some("strict.example"),
            ),
        ),
        // Subdomains: sp at the Organizational Domain, or p without sp; a
        // record of its own wins.
        case(
            "subdomain gets sp",
            "a@news.example.com",
            none(),
            vec![],
            ("fail", "quarantine", Some("quarantine"), ex),
        ),
        case(
            "subdomain aligned with org",
            "a@news.example.com",
            spf("pass", "b@example.com"),
            vec![],
            ("pass", "none", Some("quarantine"), ex),
        ),
        case(
            "subdomain without sp gets p",
            "a@x.nosp.example",
            none(),
            vec![],
            ("fail", "reject", Some("reject"), Some("nosp.example")),
        ),
        case(
            "subdomain's own record",
            "a@own.example.com",
            none(),
            vec![],
            ("fail", "none", Some("none"), Some("own.example.com")),
        ),
        // Multi-label public suffixes, and private ones (github.io).
        case(
            "under co.uk",
            "a@mail.example.co.uk",
            spf("pass", "b@bounce.example.co.uk"),
            vec![],
            ("pass", "none", Some("reject"), Some("example.co.uk")),
        ),
        case(
            "under co.uk, unaligned",
            "a@mail.example.co.uk",
            spf("pass", "b@other.co.uk"),
            vec![],
            ("fail", "reject", Some("reject"), Some("example.co.uk")),
        ),
        case(
            "private suffix: org is foo.github.io",
            "a@mail.foo.github.io",
            none(),
            vec![],
            (
                "fail",
                "quarantine",
                Some("quarantine"),
                Some("foo.github.io"),
            ),
        ),
        case(
            "private suffix: siblings do not align",
            "a@foo.github.io",
            spf("pass", "b@bar.github.io"),
            vec![dkim("pass", "bar.github.io")],
            (
                "fail",
                "quarantine",
                Some("quarantine"),
                Some("foo.github.io"),
            ),
        ),
        case(
            "private suffix: github.io's record is not bar's",
            "a@bar.github.io",
            none(),
            vec![],
            ("none", "none", None, None),
        ),
        // No policy to apply, or none to be had.
        case(
            "no record",
            "a@nodmarc.example",
            none(),
            vec![],
            ("none", "none", None, None),
        ),
        case("no From", "", none(), vec![], ("none", "none", None, None)),
        case(
            "two From domains",
            "a@example.com, b@example.org",
            spf("pass", "b@example.com"),
            vec![],
            ("none", "none", None, None),
        ),
        case(
            "two addresses, one domain",
            "a@example.com, b@Example.COM",
            spf("pass", "b@example.com"),
            vec![],
            ("pass", "none", Some("reject"), ex),
        ),
        case(
            "non-DMARC TXT ignored",
            "a@other.example",
            none(),
            vec![],
            ("fail", "reject", Some("reject"), Some("other.example")),
        ),
        case(
            "two records",
            "a@two.example",
            none(),
            vec![],
            ("permerror", "none", None, None),
        ),
        case(
            "invalid p",
            "a@badp.example",
            none(),
            vec![],
            ("permerror", "none", None, None),
        ),
        case(
            "invalid p, rua: p=none",
            "a@badp-rua.example",
            none(),
            vec![],
            ("fail", "none", Some("none"), Some("badp-rua.example")),
        ),
        case(
            "DNS failure",
            "a@broken.example",
            none(),
            vec![],
            ("temperror", "none", None, None),
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let message = if c.from.is_empty() {
            b"Subject: no from\r\n\r\nbody\r\n".to_vec()
        } else {
            msg(c.from)
        };
        let o = auth
            .dmarc_check_sampled(&message, "", &c.spf, &c.dkim, c.sample)
            .await;
        let got = (
            o.result.result.as_str(),
            o.disposition.as_str(),
            o.policy.as_deref(),
            o.record_domain.as_deref(),
        );
        if got != c.want {
            failures.push(format!(
                "{}: got {got:?}, want {:?} ({:?})",
                c.name, c.want, o.result.reason
            ));
        }
        check_props(&o);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_props(o: &DmarcOutcome) {
    assert_eq!(o.result.method, "dmarc");
    assert_eq!(
        o.result.props.get("header.from").map(String::as_str),
        o.from_domain.as_deref()
    );
    assert_eq!(
        o.result.props.get("policy.dmarc").map(String::as_str),
        o.policy.as_deref()
    );
    assert!(o.result.reason.is_some());
}

/// `pct` with the deterministic sample: within it the policy, outside it
/// the next weaker one (RFC 7489 §6.6.4).
#[tokio::test]
async fn pct_sampling() {
    let (_dns, auth) = common::authenticator(zone(), common::limits()).await;
    let m = msg("a@half.example");
    for (sample, disposition, sampled) in [
        (0, "reject", true),
        (49, "reject", true),
        (50, "quarantine", false),
        (99, "quarantine", false),
    ] {
        let o = auth.dmarc_check_sampled(&m, "", &none(), &[], sample).await;
        assert_eq!(
            (o.result.result.as_str(), o.disposition.as_str(), o.sampled),
            ("fail", disposition, sampled),
            "sample {sample}"
        );
        assert_eq!(o.pct, 50);
        assert_eq!(o.policy.as_deref(), Some("reject"));
    }
    let m = msg("a@zero.example");
    let o = auth.dmarc_check_sampled(&m, "", &none(), &[], 0).await;
    assert_eq!((o.disposition.as_str(), o.sampled), ("none", false));
    // A pass is never sampled down or up.
    let o = auth
        .dmarc_check_sampled(
            &msg("a@half.example"),
            "",
            &spf("pass", "b@half.example"),
            &[],
            99,
        )
        .await;
    assert_eq!(
        (o.result.result.as_str(), o.disposition.as_str()),
        ("pass", "none")
    );
    // The random sampler stays within the two possible dispositions.
    for _ in 0..20 {
        let o = auth
            .dmarc_check(&msg("a@half.example"), "half.example", &none(), &[])
            .await;
        assert!(["reject", "quarantine"].contains(&o.disposition.as_str()));
    }
}

/// The SPF domain comes from the caller (the MAIL FROM domain, or the HELO
/// name for a null sender) and else from the SPF result's properties.
#[tokio::test]
async fn spf_domain_sources() {
    let (_dns, auth) = common::authenticator(zone(), common::limits()).await;
    let m = msg("a@example.com");
    let helo = AuthResult {
        method: "spf".into(),
        result: "pass".into(),
        props: BTreeMap::from([("smtp.helo".to_string(), "mx.example.com".to_string())]),
        ..Default::default()
    };
    let o = auth.dmarc_check_sampled(&m, "", &helo, &[], 0).await;
    assert_eq!(o.result.result, "pass");
    assert!(o.spf_aligned);
    let o = auth
        .dmarc_check_sampled(&m, "other.example", &helo, &[], 0)
        .await;
    assert_eq!(o.result.result, "fail", "the caller's domain wins");
}

#[tokio::test]
async fn bounded_by_the_time_limit() {
    let (_sock, auth) = common::silent_authenticator(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let o = auth
        .dmarc_check_sampled(&msg("a@example.com"), "", &none(), &[], 0)
        .await;
    assert_eq!(
        (o.result.result.as_str(), o.disposition.as_str()),
        ("temperror", "none")
    );
    assert!(o.result.reason.unwrap().contains("timed out"));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
