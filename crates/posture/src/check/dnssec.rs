//! Whether the domain's zone is DNSSEC-signed and validates, as the
//! validating resolver sees an answer at the domain itself.

use super::report::{Check, Item, Verdict};
use super::tags::normalize;
use crate::Posture;
use ironpost_dns::{Dns, DnsError, Secured};

/// Grades the answer to a TXT query at the domain (any answer, positive
/// or a denial, carries the zone's verdict). `validating`: whether the
/// resolver checks signatures at all.
pub(crate) fn grade(
    posture: &Posture,
    validating: bool,
    answer: Result<Secured<Vec<String>>, DnsError>,
) -> Item {
    let domain = normalize(&posture.domain);
    let item = |v, d: String| Item::new(Check::Dnssec, &domain, v, d);
    if !validating {
        return item(
            Verdict::Warn,
            "not checked: the resolver does not validate DNSSEC".into(),
        );
    }
    match answer {
        Ok(s) if s.secure => item(
            Verdict::Pass,
            format!("{domain} is signed and its answers validate"),
        ),
        // DANE needs a signed zone: TLSA records in an unsigned one are
        // ignored by every sender.
        Ok(_) if !posture.listener_certs.is_empty() => item(
            Verdict::Fail,
            format!("{domain} is not signed: senders ignore TLSA records without DNSSEC"),
        ),
        Ok(_) => item(
            Verdict::Warn,
            format!("{domain} is not signed: answers can be forged, and DANE is impossible"),
        ),
        Err(e @ DnsError::Bogus(..)) => item(
            Verdict::Fail,
            format!("{e}: validating resolvers answer SERVFAIL for the domain"),
        ),
        Err(e) => item(Verdict::Fail, e.to_string()),
    }
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let answer = if dns.validating() {
        dns.txt_secure(&normalize(&posture.domain)).await
    } else {
        Ok(Secured {
            value: Vec::new(),
            secure: false,
        })
    };
    vec![grade(posture, dns.validating(), answer)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ListenerCert;

    #[test]
    fn grading() {
        let mut p = Posture {
            domain: "Example.Test.".into(),
            ..Default::default()
        };
        let ans = |secure| {
            Ok(Secured {
                value: vec![],
                secure,
            })
        };
        let g = |p: &Posture, a| grade(p, true, a).verdict;
        assert_eq!(g(&p, ans(true)), Verdict::Pass);
        assert_eq!(g(&p, ans(false)), Verdict::Warn);
        assert_eq!(grade(&p, false, ans(true)).verdict, Verdict::Warn);
        let bogus = Err(DnsError::Bogus("example.test".into(), "bad".into()));
        assert_eq!(g(&p, bogus), Verdict::Fail);
        let temp = Err(DnsError::Temporary(
            "example.test".into(),
            "SERVFAIL".into(),
        ));
        assert_eq!(g(&p, temp), Verdict::Fail);
        p.listener_certs.push(ListenerCert {
            hostname: "mx.example.test".into(),
            port: 25,
            cert_der: vec![],
        });
        assert_eq!(g(&p, ans(false)), Verdict::Fail);
        assert_eq!(grade(&p, true, ans(true)).subject, "example.test");
    }
}
