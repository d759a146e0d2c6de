//! Inbound DANE (RFC 7672): each listener's `_<port>._tcp.<host>` TLSA
//! records, DNSSEC-secure, one of them matching its certificate.

use super::report::{Check, Findings, Item};
use crate::{tlsa_311, ListenerCert, Posture};
use ironpost_dns::{Dns, DnsError, Secured, TlsaRecord};
use sha2::{Digest, Sha256, Sha512};

/// How one record relates to the listener's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Match {
    Yes,
    No,
    /// DANE-TA: matches an issuer, which the leaf alone cannot show.
    Unchecked,
    /// Senders ignore the record (the reason says why).
    Unusable(&'static str),
}

/// Compares one record with the leaf certificate (DER).
pub(crate) fn compare(rec: &TlsaRecord, cert_der: &[u8]) -> Match {
    match rec.usage {
        3 => {}
        2 => return Match::Unchecked,
        // RFC 7672 §3.1.3: SMTP clients treat PKIX usages as unusable.
        0 | 1 => return Match::Unusable("PKIX usages 0 and 1 are unusable for SMTP"),
        _ => return Match::Unusable("unknown usage"),
    }
    let data: Vec<u8> = match rec.selector {
        0 => cert_der.to_vec(),
        1 => match x509_parser::parse_x509_certificate(cert_der) {
            Ok((_, cert)) => cert.tbs_certificate.subject_pki.raw.to_vec(),
            Err(_) => return Match::No,
        },
        _ => return Match::Unusable("unknown selector"),
    };
    let digest = match rec.matching {
        0 => data,
        1 => Sha256::digest(&data).to_vec(),
        2 => Sha512::digest(&data).to_vec(),
        _ => return Match::Unusable("unknown matching type"),
    };
    if digest == rec.data {
        Match::Yes
    } else {
        Match::No
    }
}

fn short_hex(data: &[u8]) -> String {
    let hex: String = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if data.len() > 8 {
        format!("{hex}...")
    } else {
        hex
    }
}

/// Grades the TLSA answer for one listener. `validating`: whether the
/// resolver checks DNSSEC (without it, `secure` is never true).
pub(crate) fn grade(
    cert: &ListenerCert,
    validating: bool,
    answer: Result<Secured<Vec<TlsaRecord>>, DnsError>,
) -> Item {
    let name = format!(
        "_{}._tcp.{}",
        cert.port,
        cert.hostname.trim_end_matches('.')
    );
    let mut f = Findings::new();
    let publish = match tlsa_311(&cert.cert_der) {
        Ok(hex) => format!("publish \"{name}. IN TLSA 3 1 1 {hex}\""),
        Err(e) => {
            f.fail(format!("the listener's {e}"));
            return f.item(Check::Tlsa, name);
        }
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            f.fail(e.to_string());
            return f.item(Check::Tlsa, name);
        }
    };
    if answer.value.is_empty() {
        f.fail(format!("no TLSA records: {publish}"));
        return f.item(Check::Tlsa, name);
    }
    let results: Vec<(String, Match)> = answer
        .value
        .iter()
        .map(|r| {
            let label = format!(
                "{} {} {} {}",
                r.usage,
                r.selector,
                r.matching,
                short_hex(&r.data)
            );
            (label, compare(r, &cert.cert_der))
        })
        .collect();
    let matching: Vec<&str> = results
        .iter()
        .filter(|(_, m)| *m == Match::Yes)
        .map(|(l, _)| l.as_str())
        .collect();
    if !matching.is_empty() {
        f.pass(format!("{} matches the certificate", matching.join(", ")));
        let others = results.len() - matching.len();
        if others > 0 {
            f.pass(format!("{others} other record(s), e.g. for a rollover"));
        }
    } else if results.iter().any(|(_, m)| *m == Match::Unchecked) {
        f.warn("only DANE-TA (2 x x) records, which cannot be checked against the leaf alone");
    } else {
        f.fail(format!(
            "no record matches the listener's certificate: {publish}"
        ));
    }
    for (label, m) in &results {
        if let Match::Unusable(why) = m {
            f.warn(format!("{label}: {why}"));
        }
    }
    if !validating {
        f.warn("the resolver does not validate DNSSEC: whether senders trust these records was not checked");
    } else if !answer.secure {
        f.fail("the answer is not DNSSEC-secure: senders ignore these records");
    } else {
        f.pass("DNSSEC-secure");
    }
    f.item(Check::Tlsa, name)
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let mut items = Vec::new();
    for cert in &posture.listener_certs {
        let answer = dns.tlsa(cert.port, &cert.hostname).await;
        items.push(grade(cert, dns.validating(), answer));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::Verdict;

    fn cert() -> Vec<u8> {
        ironpost_testkit::Leaf::self_signed(&["mx.example.test"])
            .der
            .to_vec()
    }

    fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> TlsaRecord {
        TlsaRecord {
            usage,
            selector,
            matching,
            data,
        }
    }

    #[test]
    fn comparisons() {
        let der = cert();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        let spki = c.tbs_certificate.subject_pki.raw.to_vec();
        assert_eq!(
            compare(&rec(3, 1, 1, Sha256::digest(&spki).to_vec()), &der),
            Match::Yes
        );
        assert_eq!(
            compare(&rec(3, 0, 1, Sha256::digest(&der).to_vec()), &der),
            Match::Yes
        );
        assert_eq!(
            compare(&rec(3, 1, 2, Sha512::digest(&spki).to_vec()), &der),
            Match::Yes
        );
        assert_eq!(compare(&rec(3, 0, 0, der.clone()), &der), Match::Yes);
        assert_eq!(compare(&rec(3, 1, 1, vec![0; 32]), &der), Match::No);
        assert_eq!(compare(&rec(2, 0, 1, vec![0; 32]), &der), Match::Unchecked);
        assert!(matches!(
            compare(&rec(1, 1, 1, vec![]), &der),
            Match::Unusable(_)
        ));
        assert!(matches!(
            compare(&rec(3, 2, 1, vec![]), &der),
            Match::Unusable(_)
        ));
        assert!(matches!(
            compare(&rec(3, 1, 3, vec![]), &der),
            Match::Unusable(_)
        ));
        assert_eq!(hex_of(&Sha256::digest(&spki)), tlsa_311(&der).unwrap());
    }

    fn hex_of(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn grading() {
        let der = cert();
        let listener = ListenerCert {
            hostname: "mx.example.test".into(),
            port: 25,
            cert_der: der.clone(),
        };
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        let good = rec(
            3,
            1,
            1,
            Sha256::digest(c.tbs_certificate.subject_pki.raw).to_vec(),
        );
        let ans = |v: Vec<TlsaRecord>, secure| Ok(Secured { value: v, secure });
        let item = grade(&listener, true, ans(vec![good.clone()], true));
        assert_eq!(item.verdict, Verdict::Pass, "{item:?}");
        assert_eq!(item.subject, "_25._tcp.mx.example.test");
        let item = grade(&listener, true, ans(vec![good.clone()], false));
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("not DNSSEC-secure"));
        let item = grade(&listener, true, ans(vec![rec(3, 1, 1, vec![1; 32])], true));
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("IN TLSA 3 1 1 "));
        let item = grade(&listener, true, ans(vec![], true));
        assert!(item.detail.starts_with("no TLSA records"));
        let item = grade(&listener, true, ans(vec![rec(2, 1, 1, vec![1; 32])], true));
        assert_eq!(item.verdict, Verdict::Warn);
        let item = grade(&listener, false, ans(vec![good], false));
        assert_eq!(item.verdict, Verdict::Warn);
        let item = grade(
            &listener,
            true,
            Err(DnsError::Bogus("x".into(), "bad".into())),
        );
        assert_eq!(item.verdict, Verdict::Fail);
    }
}
