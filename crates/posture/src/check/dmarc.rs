//! DMARC (RFC 7489): the `_dmarc.<domain>` record's syntax, how strong
//! its policy is, where aggregate reports go, and the alignment modes.
//! Only `_dmarc.<domain>` is read: no fallback to the organisational
//! domain, which would need the public suffix list.

use super::report::{Check, Findings, Item, Verdict};
use super::tags::{clip, mailto, normalize, tag_list};
use crate::Posture;
use ironpost_dns::Dns;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    fn parse(v: &str) -> Option<Policy> {
        match v.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dmarc {
    pub p: Policy,
    pub sp: Option<Policy>,
    pub np: Option<Policy>,
    /// `adkim=s` / `aspf=s`.
    pub strict_dkim: bool,
    pub strict_spf: bool,
    pub pct: u8,
    /// `rua=` URIs as written.
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    /// DMARCbis `t=y`: testing.
    pub testing: bool,
    /// Tags receivers ignore.
    pub unknown: Vec<String>,
}

/// Starts with `v=DMARC1` (RFC 7489 §6.6.3: other records are discarded).
pub(crate) fn is_dmarc(txt: &str) -> bool {
    let rest = txt.trim_start();
    let Some(rest) = rest.strip_prefix('v') else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix('=') else {
        return false;
    };
    rest.trim_start()
        .strip_prefix("DMARC1")
        .is_some_and(|r| r.is_empty() || r.starts_with([';', ' ', '\t']))
}

fn uri_list(name: &str, v: &str) -> Result<Vec<String>, String> {
    let uris: Vec<String> = v
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if uris.is_empty() {
        return Err(format!("{name}= is empty"));
    }
    for u in &uris {
        mailto(u, true).map_err(|e| format!("{name}=: {e}"))?;
    }
    Ok(uris)
}

fn alignment(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "r" => Ok(false),
        "s" => Ok(true),
        _ => Err(format!("{name}={v}: r or s")),
    }
}

/// Parses a DMARC record strictly: a receiver that cannot read a tag may
/// discard the whole record.
pub(crate) fn parse(text: &str) -> Result<Dmarc, String> {
    let tags = tag_list(text)?;
    match tags.first() {
        Some((n, v)) if n == "v" && v == "DMARC1" => {}
        _ => return Err("does not start with v=DMARC1".into()),
    }
    let mut d = Dmarc {
        p: Policy::None,
        sp: None,
        np: None,
        strict_dkim: false,
        strict_spf: false,
        pct: 100,
        rua: Vec::new(),
        ruf: Vec::new(),
        testing: false,
        unknown: Vec::new(),
    };
    let mut p = None;
    let policy = |n: &str, v: &str| {
        Policy::parse(v).ok_or_else(|| format!("{n}={v}: none, quarantine or reject"))
    };
    for (n, v) in &tags[1..] {
        match n.as_str() {
            "p" => p = Some(policy(n, v)?),
            "sp" => d.sp = Some(policy(n, v)?),
            "np" => d.np = Some(policy(n, v)?),
            "adkim" => d.strict_dkim = alignment(n, v)?,
            "aspf" => d.strict_spf = alignment(n, v)?,
            "pct" => {
                d.pct = v
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100 && v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("pct={v}: 0 to 100"))?
            }
            "rua" => d.rua = uri_list(n, v)?,
            "ruf" => d.ruf = uri_list(n, v)?,
            "fo" => {
                for opt in v.split(':').map(str::trim) {
                    if !matches!(opt, "0" | "1" | "d" | "s") {
                        return Err(format!("fo={v}: options 0, 1, d, s"));
                    }
                }
            }
            "rf" => {
                for f in v.split(':').map(str::trim) {
                    if !f.eq_ignore_ascii_case("afrf") {
                        return Err(format!("rf={v}: only afrf is defined"));
                    }
                }
            }
            "ri" => {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 10 {
                    return Err(format!("ri={v}: seconds"));
                }
            }
            "t" => match v.to_ascii_lowercase().as_str() {
                "y" => d.testing = true,
                "n" => {}
                _ => return Err(format!("t={v}: y or n")),
            },
            "psd" => {
                if !matches!(v.to_ascii_lowercase().as_str(), "y" | "n" | "u") {
                    return Err(format!("psd={v}: y, n or u"));
                }
            }
            "v" => return Err("v= appears twice".into()),
            other => d.unknown.push(other.to_string()),
        }
    }
    d.p = p.ok_or("no p= tag (required)")?;
    Ok(d)
}

/// Whether two domains plausibly share an organisational domain (one is
/// the other or below it, or they end in the same two labels): reports
/// between them need no authorisation record. Without the public suffix
/// list this errs towards skipping the check, never towards a false alarm.
fn related(a: &str, b: &str) -> bool {
    let last2 = |d: &str| {
        let labels: Vec<&str> = d.rsplitn(3, '.').take(2).collect();
        labels.join(".")
    };
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")) || last2(a) == last2(b)
}

/// The external report destinations of `rua`: domains that must publish
/// `<domain>._report._dmarc.<dest>` (RFC 7489 §7.1).
pub(crate) fn external_destinations(domain: &str, rua: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in rua {
        if let Ok(dest) = mailto(u, true) {
            if !related(domain, &dest) && !out.contains(&dest) {
                out.push(dest);
            }
        }
    }
    out
}

/// The address of a `mailto:` URI without scheme or size, lower case,
/// for comparing with the policy's.
fn address(uri: &str) -> String {
    let a = uri.get(7..).unwrap_or("");
    let a = a.rsplit_once('!').map_or(a, |(a, _)| a);
    a.to_ascii_lowercase()
}

/// Grades a parsed record. `authorised`: per external destination,
/// whether it publishes the authorisation record (Err: the lookup failed).
pub(crate) fn grade(
    posture: &Posture,
    text: &str,
    d: &Dmarc,
    authorised: &[(String, Result<bool, String>)],
) -> Vec<Item> {
    let domain = normalize(&posture.domain);
    let mut record = Findings::new();
    record.pass(format!("_dmarc.{domain}: {}", clip(text, 200)));
    if !d.unknown.is_empty() {
        record.warn(format!(
            "unknown tags ignored by receivers: {}",
            d.unknown.join(", ")
        ));
    }

    let mut policy = Findings::new();
    match d.p {
        Policy::None => policy.warn("p=none: monitoring only, spoofed mail is still delivered"),
        p => policy.pass(format!("p={}", p.name())),
    }
    if let Some(sp) = d.sp.filter(|sp| *sp < d.p) {
        policy.warn(format!(
            "sp={}: subdomains get a weaker policy than p={}",
            sp.name(),
            d.p.name()
        ));
    }
    if d.pct < 100 {
        policy.warn(format!(
            "pct={}: the policy applies to only {}% of failing mail",
            d.pct, d.pct
        ));
    }
    if d.testing {
        policy.warn("t=y: testing, receivers apply a weaker policy");
    }

    let mut rua = Findings::new();
    if d.rua.is_empty() {
        rua.warn("no rua=: nobody receives aggregate reports");
    } else {
        rua.pass(format!("reports to {}", d.rua.join(", ")));
    }
    let live: Vec<String> = d.rua.iter().map(|u| address(u)).collect();
    for want in &posture.dmarc_rua {
        if !live.contains(&address(want)) {
            rua.warn(format!("{want} (from the policy) is not in rua="));
        }
    }
    for (dest, ok) in authorised {
        let name = format!("{domain}._report._dmarc.{dest}");
        match ok {
            Ok(true) => rua.pass(format!("{dest} accepts the reports ({name})")),
            Ok(false) => rua.warn(format!(
                "{dest} has not authorised reports for {domain}: receivers skip it until {name} has a v=DMARC1 record"
            )),
            Err(e) => rua.warn(format!("{name}: {e}")),
        }
    }

    let mode = |strict: bool| if strict { "s (strict)" } else { "r (relaxed)" };
    let align = Item::new(
        Check::Dmarc,
        "alignment",
        Verdict::Pass,
        format!("adkim={}, aspf={}", mode(d.strict_dkim), mode(d.strict_spf)),
    );
    vec![
        record.item(Check::Dmarc, "record"),
        policy.item(Check::Dmarc, "policy"),
        rua.item(Check::Dmarc, "rua"),
        align,
    ]
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let domain = normalize(&posture.domain);
    let name = format!("_dmarc.{domain}");
    let fail = |d: String| vec![Item::new(Check::Dmarc, "record", Verdict::Fail, d)];
    let txts = match dns.txt(&name).await {
        Ok(t) => t,
        Err(e) if e.is_permanent() => {
            return fail(format!(
                "no DMARC record at {name}: receivers apply no policy to spoofed mail"
            ))
        }
        Err(e) => return fail(e.to_string()),
    };
    let records: Vec<&String> = txts.iter().filter(|t| is_dmarc(t)).collect();
    let text = match records.as_slice() {
        [one] => *one,
        [] => return fail(format!("no v=DMARC1 record at {name}")),
        many => {
            return fail(format!(
                "{} v=DMARC1 records at {name}: receivers ignore them all",
                many.len()
            ))
        }
    };
    let d = match parse(text) {
        Ok(d) => d,
        Err(e) => return fail(format!("{name}: {e}, in {:?}", clip(text, 200))),
    };
    let mut authorised = Vec::new();
    for dest in external_destinations(&domain, &d.rua) {
        let q = format!("{domain}._report._dmarc.{dest}");
        let ok = match dns.txt(&q).await {
            Ok(t) => Ok(t.iter().any(|t| is_dmarc(t))),
            Err(e) if e.is_permanent() => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        authorised.push((dest, ok));
    }
    grade(posture, text, &d, &authorised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_records() {
        assert!(is_dmarc("v=DMARC1; p=none"));
        assert!(is_dmarc("v = DMARC1;p=none"));
        assert!(is_dmarc("v=DMARC1"));
        assert!(!is_dmarc("v=DMARC10; p=none"));
        assert!(!is_dmarc("p=none; v=DMARC1"));
        assert!(!is_dmarc("v=spf1 -all"));
    }

    #[test]
    fn parses() {
        let d = parse(
            "v=DMARC1; p=Reject; sp=quarantine; adkim=s; pct=50; \
             rua=mailto:a@example.test,mailto:b@x.test!10m; fo=1:d; rf=afrf; ri=86400; x=1",
        )
        .unwrap();
        assert_eq!(d.p, Policy::Reject);
        assert_eq!(d.sp, Some(Policy::Quarantine));
        assert!(d.strict_dkim && !d.strict_spf);
        assert_eq!(d.pct, 50);
        assert_eq!(d.rua.len(), 2);
        assert_eq!(d.unknown, vec!["x"]);
        for bad in [
            "p=none; v=DMARC1",
            "v=DMARC1",
            "v=DMARC1; p=block",
            "v=DMARC1; p=none; adkim=x",
            "v=DMARC1; p=none; pct=101",
            "v=DMARC1; p=none; pct=-1",
            "v=DMARC1; p=none; rua=a@example.test",
            "v=DMARC1; p=none; rua=",
            "v=DMARC1; p=none; fo=2",
            "v=DMARC1; p=none; ri=soon",
            "v=DMARC1; p=none; p=reject",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_reports() {
        let rua = [
            "mailto:d@example.test".to_string(),
            "mailto:d@reports.example.test".to_string(),
            "mailto:d@vendor.test!5m".to_string(),
            "mailto:e@vendor.test".to_string(),
        ];
        assert_eq!(
            external_destinations("example.test", &rua),
            vec!["vendor.test"]
        );
        assert!(related("mail.example.com", "example.com"));
        assert!(related("a.example.com", "b.example.com"));
        assert!(!related("example.com", "example.net"));
        assert_eq!(address("mailto:D@X.test!10m"), "d@x.test");
    }

    fn subjects(items: &[Item]) -> Vec<(String, Verdict)> {
        items
            .iter()
            .map(|i| (i.subject.clone(), i.verdict))
            .collect()
    }

    #[test]
    fn grading() {
        let posture = Posture {
            domain: "example.test".into(),
            dmarc_rua: vec!["mailto:d@example.test".into()],
            ..Default::default()
        };
        let text = "v=DMARC1; p=reject; rua=mailto:d@example.test";
        let items = grade(&posture, text, &parse(text).unwrap(), &[]);
        assert_eq!(
            subjects(&items),
            vec![
                ("record".into(), Verdict::Pass),
                ("policy".into(), Verdict::Pass),
                ("rua".into(), Verdict::Pass),
                ("alignment".into(), Verdict::Pass)
            ]
        );
        assert_eq!(items[3].detail, "adkim=r (relaxed), aspf=r (relaxed)");

        let text = "v=DMARC1; p=none; sp=none; pct=10";
        let items = grade(&posture, text, &parse(text).unwrap(), &[]);
        assert_eq!(items[1].verdict, Verdict::Warn);
        assert!(items[1].detail.contains("pct=10"));
        assert_eq!(items[2].verdict, Verdict::Warn);
        assert!(items[2].detail.contains("no rua="));
        assert!(items[2]
            .detail
            .contains("mailto:d@example.test (from the policy)"));

        let text =
            "v=DMARC1; p=quarantine; sp=none; rua=mailto:d@example.test,mailto:x@vendor.test";
        let authorised = [("vendor.test".to_string(), Ok(false))];
        let items = grade(&posture, text, &parse(text).unwrap(), &authorised);
        assert_eq!(items[1].verdict, Verdict::Warn);
        assert!(items[1].detail.contains("sp=none"));
        assert_eq!(items[2].verdict, Verdict::Warn);
        assert!(items[2].detail.contains("vendor.test has not authorised"));
    }
}
