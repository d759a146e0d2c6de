//! SMTP TLS reporting (RFC 8460 §3): the `_smtp._tls.<domain>` record.

use super::report::{Check, Findings, Item, Verdict};
use super::tags::{clip, get, https_url, mailto, normalize, tag_list};
use crate::Posture;
use ironpost_dns::Dns;

/// RFC 8460 §3: records not starting with `v=TLSRPTv1` are discarded.
pub(crate) fn is_tls_rpt(txt: &str) -> bool {
    txt.strip_prefix("v=TLSRPTv1")
        .is_some_and(|r| r.is_empty() || r.starts_with([';', ' ', '\t']))
}

/// The record's `rua` URIs.
pub(crate) fn parse(text: &str) -> Result<Vec<String>, String> {
    let tags = tag_list(text)?;
    match tags.first() {
        Some((n, v)) if n == "v" && v == "TLSRPTv1" => {}
        _ => return Err("does not start with v=TLSRPTv1".into()),
    }
    let rua = get(&tags, "rua").ok_or("no rua= field")?;
    let uris: Vec<String> = rua
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if uris.is_empty() {
        return Err("rua= is empty".into());
    }
    for u in &uris {
        let ok = if u
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("mailto:"))
        {
            mailto(u, false).map(drop)
        } else {
            https_url(u).map(drop)
        };
        ok.map_err(|e| format!("rua=: {e} (mailto: or https: only)"))?;
    }
    Ok(uris)
}

pub(crate) fn grade(posture: &Posture, txts: &[String]) -> Item {
    let domain = normalize(&posture.domain);
    let name = format!("_smtp._tls.{domain}");
    let mut f = Findings::new();
    let records: Vec<&String> = txts.iter().filter(|t| is_tls_rpt(t)).collect();
    let text = match records.as_slice() {
        [one] => *one,
        [] => {
            absent(posture, &mut f, format!("no v=TLSRPTv1 record at {name}"));
            return f.item(Check::TlsRpt, "record");
        }
        many => {
            f.fail(format!(
                "{} v=TLSRPTv1 records at {name}: senders ignore them all",
                many.len()
            ));
            return f.item(Check::TlsRpt, "record");
        }
    };
    match parse(text) {
        Ok(uris) => {
            f.pass(format!("{name}: reports to {}", uris.join(", ")));
            let live: Vec<String> = uris.iter().map(|u| u.to_ascii_lowercase()).collect();
            for want in &posture.tls_rpt_rua {
                if !live.contains(&want.to_ascii_lowercase()) {
                    f.warn(format!("{want} (from the policy) is not in rua="));
                }
            }
        }
        Err(e) => f.fail(format!("{name}: {e}, in {:?}", clip(text, 200))),
    }
    f.item(Check::TlsRpt, "record")
}

/// No record: optional, unless the policy names report addresses.
fn absent(posture: &Posture, f: &mut Findings, what: String) {
    if posture.tls_rpt_rua.is_empty() {
        f.warn(format!("{what}: nobody hears about TLS failures"));
    } else {
        f.fail(format!(
            "{what}: publish \"v=TLSRPTv1; rua={}\"",
            posture.tls_rpt_rua.join(",")
        ));
    }
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let name = format!("_smtp._tls.{}", normalize(&posture.domain));
    let item = match dns.txt(&name).await {
        Ok(txts) => grade(posture, &txts),
        Err(e) if e.is_permanent() => {
            let mut f = Findings::new();
            absent(posture, &mut f, format!("no TLS-RPT record at {name}"));
            f.item(Check::TlsRpt, "record")
        }
        Err(e) => Item::new(Check::TlsRpt, "record", Verdict::Fail, e.to_string()),
    };
    vec![item]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            parse("v=TLSRPTv1; rua=mailto:tls@example.test, https://r.example.test/v1").unwrap(),
            vec!["mailto:tls@example.test", "https://r.example.test/v1"]
        );
        assert_eq!(parse("v=TLSRPTv1;rua=mailto:a@b.test;").unwrap().len(), 1);
        for bad in [
            "v=TLSRPTv1",
            "v=TLSRPTv1; rua=",
            "v=TLSRPTv1; rua=http://r.example.test/",
            "v=TLSRPTv1; rua=tls@example.test",
            "v=TLSRPTv1; rua=mailto:tls@example.test!10m",
            "rua=mailto:a@b.test; v=TLSRPTv1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(is_tls_rpt("v=TLSRPTv1; rua=mailto:a@b.test"));
        assert!(!is_tls_rpt("v=TLSRPTv10; rua=mailto:a@b.test"));
    }

    #[test]
    fn grading() {
        let mut p = Posture {
            domain: "example.test".into(),
            ..Default::default()
        };
        let ok = ["v=TLSRPTv1; rua=mailto:tls@example.test".to_string()];
        assert_eq!(grade(&p, &ok).verdict, Verdict::Pass);
        assert_eq!(grade(&p, &[]).verdict, Verdict::Warn);
        p.tls_rpt_rua = vec!["mailto:other@example.test".into()];
        assert_eq!(grade(&p, &[]).verdict, Verdict::Fail);
        let item = grade(&p, &ok);
        assert_eq!(item.verdict, Verdict::Warn);
        assert!(item
            .detail
            .contains("mailto:other@example.test (from the policy)"));
        assert_eq!(
            grade(&p, &[ok[0].clone(), ok[0].clone()]).verdict,
            Verdict::Fail
        );
    }
}
