//! `Authentication-Results` as `header::authentication_results` writes it,
//! read back by an independent parser (Python's `authres`, all features),
//! every field compared; and `strip_claiming` on a header section of 20 MB.

mod common;

use ironpost_authn::header::{authentication_results, strip_claiming};
use ironpost_authn::AuthResult;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Parses each header of the JSON list on stdin; prints what authres saw.
const PARSER: &str = r#"
import json, re, sys
import authres
fc = authres.all_features()
unq = lambda s: None if s is None else re.sub(r'\\(.)', r'\1', s)
out = []
for h in json.load(sys.stdin):
    p = fc.parse(h)
    out.append({
        'authserv_id': unq(p.authserv_id),
        'results': [{
            'method': r.method,
            'version': r.version,
            'result': r.result,
            'reason': unq(r.reason),
            'props': {'%s.%s' % (x.type, x.name): unq(x.value) for x in r.properties},
        } for r in p.results],
    })
print(json.dumps(out))
"#;

fn result(
    method: &str,
    version: Option<u32>,
    res: &str,
    reason: Option<&str>,
    props: &[(&str, &str)],
) -> AuthResult {
    AuthResult {
        method: method.into(),
        method_version: version,
        result: res.into(),
        reason: reason.map(Into::into),
        props: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn authres_reads_what_we_write() {
    let long_reason = "a long reason ".repeat(10);
    let sets: Vec<(&str, Vec<AuthResult>)> = vec![
        ("mx.example.org", vec![]),
        (
            "mx.example.org",
            vec![
                result(
                    "dkim",
                    None,
                    "pass",
                    None,
                    &[
                        ("header.d", "example.com"),
                        ("header.i", "@example.com"),
                        ("header.s", "sel-2024"),
                        ("header.a", "rsa-sha256"),
                        ("header.b", "Ab+/9=xy"),
                    ],
                ),
                result(
                    "dkim",
                    Some(1),
                    "fail",
                    Some("body hash did not verify"),
                    &[("header.d", "example.org"), ("header.b", "zZ09+/ab")],
                ),
                result(
                    "spf",
                    None,
                    "softfail",
                    Some("'~all' matched; \"quoted\" (and \\ backslash)"),
                    &[("smtp.mailfrom", "bounce+tag=x@example.com")],
                ),
                result(
                    "spf",
                    None,
                    "none",
                    Some(&long_reason),
                    &[("smtp.helo", "mx.example.net")],
                ),
                result(
                    "dmarc",
                    None,
                    "fail",
                    Some("no aligned SPF or DKIM pass"),
                    &[("header.from", "example.com"), ("policy.dmarc", "reject")],
                ),
                result(
                    "iprev",
                    None,
                    "pass",
                    Some("ip 192.0.2.1 <-> mail.example.com."),
                    &[("policy.iprev", "192.0.2.1")],
                ),
                result(
                    "spf",
                    None,
                    "pass",
                    None,
                    &[("smtp.mailfrom", "odd local@example.com")],
                ),
                result("arc", None, "none", None, &[]),
            ],
        ),
        (
            "mx-2.Example.ORG",
            vec![result(
                "iprev",
                None,
                "permerror",
                Some("ip 2001:db8::1 has no PTR"),
                &[("policy.iprev", "2001:db8::1")],
            )],
        ),
    ];
    let headers: Vec<String> = sets
        .iter()
        .map(|(id, results)| authentication_results(id, results))
        .collect();
    for h in &headers {
        assert!(h.ends_with("\r\n"));
        assert!(h.split("\r\n").all(|line| line.len() < 998), "{h}");
    }
    let script = common::imports(&[("authres", "authres")]) + PARSER;
    let out = common::run_python(
        &script,
        &[],
        serde_json::to_string(&headers).unwrap().as_bytes(),
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed.len(), sets.len());
    for ((id, results), p) in sets.iter().zip(&parsed) {
        // authres lower-cases the authserv-id (a domain name, RFC 8601).
        assert!(
            p["authserv_id"].as_str().unwrap().eq_ignore_ascii_case(id),
            "{p}"
        );
        let got = p["results"].as_array().unwrap();
        if results.is_empty() {
            // "none" reads as no results.
            assert!(
                got.is_empty() || (got.len() == 1 && got[0]["method"] == "none"),
                "{got:?}"
            );
            continue;
        }
        assert_eq!(got.len(), results.len(), "{p}");
        for (want, got) in results.iter().zip(got) {
            assert_eq!(got["method"], want.method.as_str());
            assert_eq!(got["result"], want.result.as_str());
            assert_eq!(
                got["version"].as_str().map(|v| v.parse::<u32>().unwrap()),
                want.method_version,
                "{got}"
            );
            assert_eq!(got["reason"].as_str(), want.reason.as_deref(), "{got}");
            let props: BTreeMap<String, String> = got["props"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            assert_eq!(props, want.props, "{got}");
        }
    }
}

#[test]
fn strip_claiming_is_linear() {
    // 100,000 header fields (20 MB), a third of them Authentication-Results
    // claiming our authserv-id, folded.
    let mut m = Vec::new();
    for n in 0..100_000 {
        if n % 3 == 0 {
            m.extend_from_slice(b"Authentication-Results: MX.example.org;\r\n\tspf=pass\r\n");
        } else {
            m.extend_from_slice(format!("X-Filler-{n}: {}\r\n", "x".repeat(190)).as_bytes());
        }
    }
    m.extend_from_slice(b"\r\nbody\r\n");
    let started = Instant::now();
    let removed = strip_claiming(&mut m, "mx.example.org");
    let took = started.elapsed();
    assert_eq!(removed, 33_334);
    assert!(!String::from_utf8_lossy(&m).contains("Authentication-Results"));
    assert!(m.ends_with(b"\r\n\r\nbody\r\n"));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
