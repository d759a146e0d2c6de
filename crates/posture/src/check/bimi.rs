//! BIMI (draft-brand-indicators-for-message-identification): the
//! `default._bimi.<domain>` record. Optional, so its absence only warns.
//! The logo and certificate themselves are not fetched.

use super::report::{Check, Findings, Item, Verdict};
use super::tags::{clip, get, https_url, normalize, tag_list};
use crate::Posture;
use ironpost_dns::Dns;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BimiRecord {
    /// `l=`: the logo URL; empty declines.
    pub logo: String,
    /// `a=`: the mark certificate (VMC) URL, when given.
    pub authority: Option<String>,
    pub unknown: Vec<String>,
}

pub(crate) fn is_bimi(txt: &str) -> bool {
    txt.strip_prefix("v=BIMI1")
        .is_some_and(|r| r.is_empty() || r.starts_with([';', ' ', '\t']))
}

/// One `https:` URL or nothing.
fn url_or_empty(tag: &str, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    if v.contains(',') {
        return Err(format!("{tag}= must hold one URL"));
    }
    https_url(v).map(drop).map_err(|e| format!("{tag}=: {e}"))
}

pub(crate) fn parse(text: &str) -> Result<BimiRecord, String> {
    let tags = tag_list(text)?;
    match tags.first() {
        Some((n, v)) if n == "v" && v == "BIMI1" => {}
        _ => return Err("does not start with v=BIMI1".into()),
    }
    let logo = get(&tags, "l").ok_or("no l= tag")?;
    url_or_empty("l", logo)?;
    let authority = get(&tags, "a");
    // Early drafts used a=self for "no certificate".
    if let Some(a) = authority.filter(|a| !a.eq_ignore_ascii_case("self")) {
        url_or_empty("a", a)?;
    }
    Ok(BimiRecord {
        logo: logo.to_string(),
        authority: authority.filter(|a| !a.is_empty()).map(str::to_string),
        unknown: tags
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !matches!(n.as_str(), "v" | "l" | "a"))
            .collect(),
    })
}

pub(crate) fn grade(posture: &Posture, txts: &[String]) -> Item {
    let name = format!("default._bimi.{}", normalize(&posture.domain));
    let mut f = Findings::new();
    let records: Vec<&String> = txts.iter().filter(|t| is_bimi(t)).collect();
    let text = match records.as_slice() {
        [one] => *one,
        [] => {
            absent(posture, &mut f, format!("no v=BIMI1 record at {name}"));
            return f.item(Check::Bimi, "record");
        }
        many => {
            f.fail(format!("{} v=BIMI1 records at {name}", many.len()));
            return f.item(Check::Bimi, "record");
        }
    };
    let rec = match parse(text) {
        Ok(r) => r,
        Err(e) => {
            f.fail(format!("{name}: {e}, in {:?}", clip(text, 200)));
            return f.item(Check::Bimi, "record");
        }
    };
    if rec.logo.is_empty() && rec.authority.is_none() {
        f.pass(format!("{name}: declines to show a logo"));
    } else {
        f.pass(format!("{name}: logo {}", rec.logo));
    }
    if let Some(a) = &rec.authority {
        f.pass(format!("certificate {a}"));
    }
    if !rec.unknown.is_empty() {
        f.warn(format!("unknown tags: {}", rec.unknown.join(", ")));
    }
    if let Some(want) = &posture.bimi {
        if rec.logo != want.logo_url {
            f.warn(format!(
                "l= differs from the policy's logo {}",
                want.logo_url
            ));
        }
        if rec.authority != want.authority_url {
            f.warn(format!(
                "a= differs from the policy's certificate {}",
                want.authority_url.as_deref().unwrap_or("(none)")
            ));
        }
    }
    f.item(Check::Bimi, "record")
}

fn absent(posture: &Posture, f: &mut Findings, what: String) {
    match &posture.bimi {
        Some(b) => f.warn(format!(
            "{what}: publish \"v=BIMI1; l={}{}\" to show the policy's logo",
            b.logo_url,
            b.authority_url
                .as_deref()
                .map(|a| format!("; a={a}"))
                .unwrap_or_default()
        )),
        None => f.warn(format!("{what} (optional)")),
    }
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let name = format!("default._bimi.{}", normalize(&posture.domain));
    let item = match dns.txt(&name).await {
        Ok(txts) => grade(posture, &txts),
        Err(e) if e.is_permanent() => {
            let mut f = Findings::new();
            absent(posture, &mut f, format!("no BIMI record at {name}"));
            f.item(Check::Bimi, "record")
        }
        Err(e) => Item::new(Check::Bimi, "record", Verdict::Fail, e.to_string()),
    };
    vec![item]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bimi;

    #[test]
    fn parses() {
        let r = parse("v=BIMI1; l=https://example.test/logo.svg; a=https://example.test/vmc.pem")
            .unwrap();
        assert_eq!(r.logo, "https://example.test/logo.svg");
        assert_eq!(r.authority.as_deref(), Some("https://example.test/vmc.pem"));
        let r = parse("v=BIMI1; l=; a=;").unwrap();
        assert_eq!((r.logo.as_str(), r.authority), ("", None));
        assert_eq!(parse("v=BIMI1; l=; s=x").unwrap().unknown, vec!["s"]);
        for bad in [
            "v=BIMI1",
            "v=BIMI1; l=http://example.test/logo.svg",
            "v=BIMI1; l=https://a.test/1.svg,https://a.test/2.svg",
            "v=BIMI1; l=https://a.test/1.svg; a=ftp://a.test/vmc",
            "l=https://a.test/1.svg; v=BIMI1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grading() {
        let mut p = Posture {
            domain: "example.test".into(),
            ..Default::default()
        };
        let rec = ["v=BIMI1; l=https://example.test/logo.svg".to_string()];
        assert_eq!(grade(&p, &rec).verdict, Verdict::Pass);
        assert_eq!(grade(&p, &[]).verdict, Verdict::Warn);
        assert_eq!(
            grade(&p, &["v=BIMI1; l=http://x.test/l.svg".to_string()]).verdict,
            Verdict::Fail
        );
        p.bimi = Some(Bimi {
            logo_url: "https://example.test/new.svg".into(),
            authority_url: None,
        });
        let item = grade(&p, &rec);
        assert_eq!(item.verdict, Verdict::Warn);
        assert!(item.detail.contains("new.svg"));
    }
}
