//! DMARC, RFC 7489 (not DMARCbis): the policy record of the From domain,
//! else of its Organizational Domain (one record at most, `sp` for
//! subdomains), identifier alignment (relaxed or strict) of the SPF and
//! DKIM results given, and `pct` sampling of the requested disposition.
//!
//! Written here rather than mail-auth's `verify_dmarc`, which walks the
//! DNS tree as DMARCbis (RFC 9989) does and ignores `pct`.
//!
//! The Organizational Domain comes from the Public Suffix List compiled
//! into the `psl` crate (the list as of that crate's version; no network
//! at run time), the whole list as published: ICANN *and* private
//! suffixes, as OpenDMARC and most receivers use it. So the organizational
//! domain of `foo.github.io` is `foo.github.io` (github.io is a private
//! suffix) and that of `mail.example.co.uk` is `example.co.uk`; names
//! under a TLD the list does not know take the TLD as their suffix.
//!
//! Results (`dmarc`, props `header.from` and, with a record,
//! `policy.dmarc`: the p or sp that applied):
//! `pass` (an aligned SPF or DKIM pass), `fail`, `none` (no record, no
//! single From domain), `temperror` (DNS), `permerror` (several records,
//! or one without a valid `p` and no `rua` to fall back on, §6.6.3).

use crate::dns::{self, Failure};
use crate::header::fields;
use crate::{AuthResult, Authenticator, AuthnError};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

/// What [`Authenticator::dmarc_check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarcOutcome {
    /// The disposition the domain asks for this message, after `pct`:
    /// `none`, `quarantine` or `reject` (always `none` unless the result
    /// is `fail`).
    pub disposition: String,
    /// The `dmarc` result.
    pub result: AuthResult,
    /// The RFC5322.From domain, when there is exactly one.
    pub from_domain: Option<String>,
    /// Where the record was found (the From domain or its
    /// Organizational Domain).
    pub record_domain: Option<String>,
    /// The policy that applied (`p`, or `sp` for a subdomain).
    pub policy: Option<String>,
    /// The record's `pct` (100 without a record).
    pub pct: u8,
    /// Whether the message fell within `pct` (so `policy` applies in full).
    pub sampled: bool,
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
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

    fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    /// §6.6.4: messages outside `pct` get the next less strict policy.
    fn weaker(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    p: Policy,
    sp: Option<Policy>,
    pct: u8,
    strict_dkim: bool,
    strict_spf: bool,
}

/// RFC 7489 §6.4: "v=DMARC1" first.
fn is_dmarc_record(txt: &[u8]) -> bool {
    let text = String::from_utf8_lossy(txt);
    let Some(first) = text.split(';').next() else {
        return false;
    };
    match first.split_once('=') {
        Some((k, v)) => k.trim().eq_ignore_ascii_case("v") && v.trim() == "DMARC1",
        None => false,
    }
}

/// Parses a record (§6.3); §6.6.3 step 6: an invalid or missing `p` (or
/// an invalid `sp`) is read as `p=none` when `rua` names a URI, and makes
/// the record unusable otherwise.
fn parse_record(txt: &[u8]) -> Result<Record, AuthnError> {
    let text = String::from_utf8_lossy(txt);
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for spec in text.split(';').skip(1) {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        if let Some((k, v)) = spec.split_once('=') {
            tags.entry(k.trim().to_ascii_lowercase())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    let p = tags.get("p").and_then(|v| Policy::parse(v));
    let sp = tags.get("sp").map(|v| Policy::parse(v));
    let rua_ok = tags.get("rua").is_some_and(|v| {
        v.split(',').any(|u| {
            u.trim()
                .split_once(':')
                .is_some_and(|(s, rest)| !s.is_empty() && !rest.is_empty())
        })
    });
    let (p, sp) = match (p, sp) {
        (Some(p), None) => (p, None),
        (Some(p), Some(Some(sp))) => (p, Some(sp)),
        _ if rua_ok => (Policy::None, None),
        _ => {
            return Err(AuthnError::Syntax(
                "DMARC record without a valid p= (or with an invalid sp=) and no rua=".into(),
            ))
        }
    };
    let pct = tags
        .get("pct")
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|n| *n <= 100)
        .unwrap_or(100);
    let strict = |t: &str| tags.get(t).is_some_and(|v| v.eq_ignore_ascii_case("s"));
    Ok(Record {
        p,
        sp,
        pct,
        strict_dkim: strict("adkim"),
        strict_spf: strict("aspf"),
    })
}

/// The Organizational Domain of `domain` (RFC 7489 §3.2) from the Public
/// Suffix List: the public suffix and one more label; a name that is
/// itself a public suffix is its own.
pub fn organizational_domain(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&d).map_or_else(|| d.clone(), str::to_string)
}

/// Identifier alignment (§3.1): the same name (strict) or the same
/// Organizational Domain (relaxed).
fn aligned(a: &str, b: &str, strict: bool) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || (!strict && organizational_domain(&a) == organizational_domain(&b))
}

/// The domains of the addresses in the message's From fields, as
/// A-labels, lower case, deduplicated; it stops at the second (two or more
/// are all the same to DMARC).
fn from_domains(message: &[u8]) -> Vec<String> {
    let (headers, _) = fields(message);
    let mut out: Vec<String> = Vec::new();
    for f in headers.iter().filter(|f| f.name_is("From")) {
        let value = mail_parser::parsers::MessageStream::new(f.value).parse_address();
        let mut addrs = Vec::new();
        match value {
            mail_parser::HeaderValue::Address(mail_parser::Address::List(list)) => {
                addrs.extend(list.into_iter().filter_map(|a| a.address));
            }
            mail_parser::HeaderValue::Address(mail_parser::Address::Group(groups)) => {
                for g in groups {
                    addrs.extend(g.addresses.into_iter().filter_map(|a| a.address));
                }
            }
            _ => {}
        }
        for a in addrs {
            if let Some((_, d)) = a.rsplit_once('@') {
                let d = mail_auth::common::to_a_label(d.trim().trim_end_matches('.'))
                    .to_ascii_lowercase();
                if !d.is_empty() && !out.contains(&d) {
                    out.push(d);
                    if out.len() > 1 {
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// A random sample in 0..100 for `pct`.
fn random_sample() -> u8 {
    // RandomState is randomly keyed per process and thread, and its keys
    // change with every instance: good enough to sample a percentage.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() % 100) as u8
}

impl Authenticator {
    /// RFC 7489 DMARC for `message`, given the SPF result (`spf`, its
    /// domain `mail_from_domain`: the MAIL FROM domain, or the HELO name for
    /// a null reverse-path; empty to take it from `spf`'s `smtp.mailfrom` /
    /// `smtp.helo`) and the DKIM results. `pct` samples at random; see
    /// [`Authenticator::dmarc_check_sampled`].
    pub async fn dmarc_check(
        &self,
        message: &[u8],
        mail_from_domain: &str,
        spf: &AuthResult,
        dkim: &[AuthResult],
    ) -> DmarcOutcome {
        self.dmarc_check_sampled(message, mail_from_domain, spf, dkim, random_sample())
            .await
    }

    /// [`Authenticator::dmarc_check`] with the sampling decided: the
    /// message is within `pct` when `sample` (0..=99) is below it.
    pub async fn dmarc_check_sampled(
        &self,
        message: &[u8],
        mail_from_domain: &str,
        spf: &AuthResult,
        dkim: &[AuthResult],
        sample: u8,
    ) -> DmarcOutcome {
        let mut out = DmarcOutcome {
            disposition: "none".into(),
            result: AuthResult {
                method: "dmarc".into(),
                method_version: None,
                result: "none".into(),
                reason: None,
                props: BTreeMap::new(),
            },
            from_domain: None,
            record_domain: None,
            policy: None,
            pct: 100,
            sampled: true,
            spf_aligned: false,
            dkim_aligned: false,
        };
        let domains = from_domains(message);
        let from = match domains.as_slice() {
            [] => {
                out.result.reason = Some("no From domain".into());
                return out;
            }
            [one] => one.clone(),
            many => {
                out.result.reason =
                    Some(format!("several From domains ({}, ...)", many.join(", ")));
                return out;
            }
        };
        out.result.props.insert("header.from".into(), from.clone());
        out.from_domain = Some(from.clone());

        let limit = self.inner.limits.timeout;
        let found = match tokio::time::timeout(limit, self.discover(&from)).await {
            Ok(f) => f,
            Err(_) => Err(("temperror", AuthnError::Timeout(limit).to_string())),
        };
        let (record_domain, record) = match found {
            Ok(Some(found)) => found,
            Ok(None) => {
                out.result.reason = Some(format!("no DMARC record for {from}"));
                return out;
            }
            Err((result, why)) => {
                out.result.result = result.into();
                out.result.reason = Some(why);
                return out;
            }
        };
        let policy = if record_domain == from {
            record.p
        } else {
            record.sp.unwrap_or(record.p)
        };
        out.record_domain = Some(record_domain);
        out.policy = Some(policy.as_str().into());
        out.pct = record.pct;
        out.result
            .props
            .insert("policy.dmarc".into(), policy.as_str().into());

        let spf_domain = if mail_from_domain.is_empty() {
            spf.props
                .get("smtp.mailfrom")
                .map(|m| m.rsplit_once('@').map_or(m.as_str(), |(_, d)| d))
                .or_else(|| spf.props.get("smtp.helo").map(String::as_str))
                .unwrap_or("")
                .to_string()
        } else {
            mail_from_domain.to_string()
        };
        out.spf_aligned = spf.result.eq_ignore_ascii_case("pass")
            && aligned(&spf_domain, &from, record.strict_spf);
        let dkim_pass = dkim.iter().find(|r| {
            r.result.eq_ignore_ascii_case("pass")
                && r.props
                    .get("header.d")
                    .is_some_and(|d| aligned(d, &from, record.strict_dkim))
        });
        out.dkim_aligned = dkim_pass.is_some();

        if out.spf_aligned || out.dkim_aligned {
            out.result.result = "pass".into();
            let mut why = Vec::new();
            if let Some(r) = dkim_pass {
                why.push(format!("DKIM d={} aligned", r.props["header.d"]));
            }
            if out.spf_aligned {
                why.push(format!("SPF {spf_domain} aligned"));
            }
            out.result.reason = Some(why.join(", "));
            return out;
        }
        out.result.result = "fail".into();
        out.sampled = sample < record.pct;
        let applied = if out.sampled { policy } else { policy.weaker() };
        out.disposition = applied.as_str().into();
        let mut why = format!("no aligned SPF or DKIM pass for {from}");
        if !out.sampled {
            why.push_str(&format!(
                "; outside pct={}, {} applies instead of {}",
                record.pct,
                applied.as_str(),
                policy.as_str()
            ));
        }
        out.result.reason = Some(why);
        out
    }

    /// §6.6.3 policy discovery: the From domain's record, else (none
    /// there) the Organizational Domain's.
    #[allow(clippy::type_complexity)]
    async fn discover(
        &self,
        from: &str,
    ) -> Result<Option<(String, Record)>, (&'static str, String)> {
        let org = organizational_domain(from);
        let mut candidates = vec![from.to_string()];
        if org != from {
            candidates.push(org);
        }
        for domain in candidates {
            let name = format!("_dmarc.{domain}");
            let records = match dns::name(&name) {
                None => Default::default(),
                Some(q) => match self.inner.txt(&q).await {
                    Ok(r) => r,
                    Err(f) if f.is_void() => Default::default(),
                    Err(Failure::Temp(e)) => {
                        return Err(("temperror", AuthnError::Dns { name, error: e }.to_string()))
                    }
                    Err(other) => {
                        return Err(("temperror", format!("DNS lookup of {name}: {other:?}")))
                    }
                },
            };
            let dmarc: Vec<&[u8]> = records
                .iter()
                .map(|r| &**r)
                .filter(|r| is_dmarc_record(r))
                .collect();
            match dmarc.as_slice() {
                [] => continue,
                [one] => {
                    return match parse_record(one) {
                        Ok(r) => Ok(Some((domain, r))),
                        Err(e) => Err(("permerror", format!("{e} at {name}"))),
                    }
                }
                many => {
                    return Err((
                        "permerror",
                        format!("{} DMARC records at {name}", many.len()),
                    ))
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_domains() {
        assert_eq!(organizational_domain("mail.example.com"), "example.com");
        assert_eq!(organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(organizational_domain("Example.CO.UK."), "example.co.uk");
        assert_eq!(organizational_domain("foo.github.io"), "foo.github.io");
        assert_eq!(organizational_domain("bar.foo.github.io"), "foo.github.io");
        assert_eq!(organizational_domain("co.uk"), "co.uk");
        assert_eq!(organizational_domain("mx.example.test"), "example.test");
    }

    #[test]
    fn records() {
        assert!(is_dmarc_record(b"v=DMARC1; p=none"));
        assert!(is_dmarc_record(b"v = DMARC1"));
        assert!(!is_dmarc_record(b"v=DMARC2; p=none"));
        assert!(!is_dmarc_record(b"p=none; v=DMARC1"));
        let r = parse_record(b"v=DMARC1; p=reject; sp=quarantine; pct=25; adkim=s").unwrap();
        assert_eq!(
            r,
            Record {
                p: Policy::Reject,
                sp: Some(Policy::Quarantine),
                pct: 25,
                strict_dkim: true,
                strict_spf: false,
            }
        );
        assert_eq!(
            parse_record(b"v=DMARC1; p=bogus; rua=mailto:a@example.com")
                .unwrap()
                .p,
            Policy::None
        );
        assert!(parse_record(b"v=DMARC1; p=bogus").is_err());
        assert!(parse_record(b"v=DMARC1; p=none; sp=bogus").is_err());
        assert_eq!(parse_record(b"v=DMARC1; p=none; pct=300").unwrap().pct, 100);
    }

    #[test]
    fn from_header_domains() {
        assert_eq!(
            from_domains(b"From: \"A, B\" <a@Example.COM>\r\n\r\n"),
            vec!["example.com"]
        );
        assert_eq!(
            from_domains(b"From: a@one.example, b@two.example\r\n\r\n"),
            vec!["one.example", "two.example"]
        );
        assert!(from_domains(b"Subject: x\r\n\r\n").is_empty());
    }
}
