//! SPF, RFC 7208: `check_host()` with every mechanism and modifier, macros,
//! the explanation, and the processing limits (10 terms that query DNS,
//! 2 void lookups, 10 MX and 10 PTR names per term).
//!
//! Our own evaluator rather than mail-auth's `verify_spf`, which does not
//! pass the RFC 7208 test suite: it has no void-lookup limit, takes the
//! first of several SPF records instead of failing with `permerror`,
//! accepts records with syntax errors past the matching term, and
//! mishandles include results. The suite runs in
//! `tests/spf_suite.rs` (every case; see there).
//!
//! Whole records are checked before any term is evaluated (§4.6: a syntax
//! error anywhere is `permerror`); `redirect` and `include` recurse with
//! the limits shared across the whole evaluation; `exp=` is fetched only
//! for a `fail` of the top-level record (or of its redirect target), never
//! counts against the limits, and is dropped silently on any problem.

use crate::authenticator::Inner;
use crate::dns::{self, unmap, Failure};
use crate::{AuthResult, Authenticator, AuthnError};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 7208 §4.6.4: terms that query DNS per evaluation.
const MAX_LOOKUPS: usize = 10;
/// RFC 7208 §4.6.4: void lookups per evaluation.
const MAX_VOID_LOOKUPS: usize = 2;
/// RFC 7208 §4.6.4: MX records per `mx` term (more is `permerror`).
const MAX_MX: usize = 10;
/// RFC 7208 §4.6.4: PTR names looked at per `ptr` term or `%{p}`.
const MAX_PTR: usize = 10;

/// What [`Authenticator::spf_check_host`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfOutcome {
    /// `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror` or
    /// `permerror`.
    pub disposition: String,
    /// The same as an `spf` result: `smtp.mailfrom` (or `smtp.helo` for a
    /// HELO check) and a reason naming the deciding term or error.
    pub result: AuthResult,
}

impl Authenticator {
    /// RFC 7208 `check_host(ip, domain, sender)`, with `helo` for `%{h}`.
    ///
    /// `sender` is the MAIL FROM address; `None` checks the HELO identity
    /// (`domain` is then the HELO name and the sender `postmaster@domain`,
    /// as for a null reverse-path, §2.4). Bounded by
    /// [`Limits::timeout`](crate::Limits::timeout): past it, `temperror`.
    pub async fn spf_check_host(
        &self,
        ip: IpAddr,
        helo: &str,
        domain: &str,
        sender: Option<&str>,
    ) -> SpfOutcome {
        self.spf_check_host_explained(ip, helo, domain, sender)
            .await
            .0
    }

    /// [`Authenticator::spf_check_host`], with the explanation of a `fail`:
    /// the domain's `exp=` text, macros expanded (RFC 7208 §6.2), when it
    /// has one that could be fetched and expanded.
    pub async fn spf_check_host_explained(
        &self,
        ip: IpAddr,
        helo: &str,
        domain: &str,
        sender: Option<&str>,
    ) -> (SpfOutcome, Option<String>) {
        let mut props = BTreeMap::new();
        match sender {
            Some(s) => props.insert("smtp.mailfrom".to_string(), s.to_string()),
            None => props.insert("smtp.helo".to_string(), helo.to_string()),
        };
        let ip = unmap(ip);
        let (local, sender_domain) = match sender {
            None => ("postmaster".to_string(), domain.to_string()),
            Some(s) => match s.rsplit_once('@') {
                Some((l, d)) => (
                    if l.is_empty() { "postmaster" } else { l }.to_string(),
                    d.to_string(),
                ),
                None => ("postmaster".to_string(), s.to_string()),
            },
        };
        let mut ctx = Ctx {
            inner: &self.inner,
            ip,
            sender: format!("{local}@{sender_domain}"),
            local,
            sender_domain,
            helo: helo.to_string(),
            lookups: 0,
            voids: 0,
            validated: None,
        };
        let limit = self.inner.limits.timeout;
        let (result, reason, explanation) =
            match tokio::time::timeout(limit, ctx.check_top(domain)).await {
                Ok(v) => v,
                Err(_) => (
                    SpfResult::TempError,
                    AuthnError::Timeout(limit).to_string(),
                    None,
                ),
            };
        let disposition = result.as_str().to_string();
        let outcome = SpfOutcome {
            result: AuthResult {
                method: "spf".into(),
                method_version: None,
                result: disposition.clone(),
                reason: Some(reason),
                props,
            },
            disposition,
        };
        (outcome, explanation)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpfResult {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl SpfResult {
    fn as_str(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn result(self) -> SpfResult {
        match self {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

/// One piece of a macro-string.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(String),
    Macro {
        letter: u8,
        /// Upper-case letter: URL-escape the expansion.
        escape: bool,
        /// Right-hand parts to keep.
        keep: Option<usize>,
        reverse: bool,
        /// Delimiters to split on ("." when empty).
        delimiters: Vec<u8>,
    },
}

/// A macro-string, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MacroString(Vec<Tok>);

impl MacroString {
    fn uses(&self, letter: u8) -> bool {
        self.0
            .iter()
            .any(|t| matches!(t, Tok::Macro { letter: l, .. } if *l == letter))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mechanism {
    All,
    Include(MacroString),
    A {
        domain: Option<MacroString>,
        v4: u8,
        v6: u8,
    },
    Mx {
        domain: Option<MacroString>,
        v4: u8,
        v6: u8,
    },
    Ptr(Option<MacroString>),
    Ip4(std::net::Ipv4Addr, u8),
    Ip6(std::net::Ipv6Addr, u8),
    Exists(MacroString),
}

#[derive(Clone, Debug)]
struct Directive {
    qualifier: Qualifier,
    mechanism: Mechanism,
    /// The term as written, for reasons.
    text: String,
}

#[derive(Clone, Debug, Default)]
struct Record {
    directives: Vec<Directive>,
    redirect: Option<MacroString>,
    exp: Option<MacroString>,
}

fn syntax(msg: impl Into<String>) -> AuthnError {
    AuthnError::Syntax(msg.into())
}

/// RFC 7208 §4.5: the record starts with "v=spf1" then a space or its end.
fn is_spf_record(txt: &[u8]) -> bool {
    txt.len() >= 6 && txt[..6].eq_ignore_ascii_case(b"v=spf1") && (txt.len() == 6 || txt[6] == b' ')
}

/// Parses a whole record (§4.6, §12): any error anywhere fails it.
fn parse_record(txt: &[u8]) -> Result<Record, AuthnError> {
    if let Some(bad) = txt
        .iter()
        .find(|&&b| !(b == b' ' || (0x21..=0x7e).contains(&b)))
    {
        return Err(syntax(format!(
            "invalid character 0x{bad:02x} in SPF record"
        )));
    }
    // Only printable ASCII is left.
    let text = std::str::from_utf8(txt).map_err(|_| syntax("not ASCII"))?;
    let mut record = Record::default();
    for term in text.split(' ').skip(1).filter(|t| !t.is_empty()) {
        if let Some((name, value)) = modifier(term) {
            if name.eq_ignore_ascii_case("redirect") {
                if record.redirect.is_some() {
                    return Err(syntax("redirect= appears twice"));
                }
                record.redirect = Some(domain_spec(value).map_err(|e| in_term(e, term))?);
            } else if name.eq_ignore_ascii_case("exp") {
                if record.exp.is_some() {
                    return Err(syntax("exp= appears twice"));
                }
                record.exp = Some(domain_spec(value).map_err(|e| in_term(e, term))?);
            } else {
                // Unknown modifiers are ignored, but must be well-formed.
                macro_string(value, false, false).map_err(|e| in_term(e, term))?;
            }
        } else {
            record
                .directives
                .push(directive(term).map_err(|e| in_term(e, term))?);
        }
    }
    Ok(record)
}

fn in_term(e: AuthnError, term: &str) -> AuthnError {
    match e {
        AuthnError::Syntax(m) => AuthnError::Syntax(format!("{m} in '{term}'")),
        other => other,
    }
}

/// `name "=" value` with `name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )`.
fn modifier(term: &str) -> Option<(&str, &str)> {
    let b = term.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))?;
    (b[end] == b'=').then(|| (&term[..end], &term[end + 1..]))
}

fn directive(term: &str) -> Result<Directive, AuthnError> {
    let (qualifier, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = rest[..name_end].to_ascii_lowercase();
    let args = &rest[name_end..];
    let mechanism = match name.as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required_domain(args)?),
        "exists" => Mechanism::Exists(required_domain(args)?),
        "ptr" => Mechanism::Ptr(optional_domain(args)?),
        "a" | "mx" => {
            let (args, v4, v6) = dual_cidr(args)?;
            let domain = optional_domain(args)?;
            if name == "a" {
                Mechanism::A { domain, v4, v6 }
            } else {
                Mechanism::Mx { domain, v4, v6 }
            }
        }
        "ip4" => {
            let spec = args
                .strip_prefix(':')
                .ok_or_else(|| syntax("ip4 without an address"))?;
            let (addr, len) = match spec.split_once('/') {
                Some((a, l)) => (a, cidr(l, 32)?),
                None => (spec, 32),
            };
            Mechanism::Ip4(ip4_network(addr)?, len)
        }
        "ip6" => {
            let spec = args
                .strip_prefix(':')
                .ok_or_else(|| syntax("ip6 without an address"))?;
            let (addr, len) = match spec.split_once('/') {
                Some((a, l)) => (a, cidr(l, 128)?),
                None => (spec, 128),
            };
            let addr = addr
                .parse()
                .map_err(|_| syntax(format!("invalid IPv6 address {addr:?}")))?;
            Mechanism::Ip6(addr, len)
        }
        _ => return Err(syntax("unknown mechanism")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
        text: term.to_string(),
    })
}

/// `":" domain-spec`.
fn required_domain(args: &str) -> Result<MacroString, AuthnError> {
    match args.strip_prefix(':') {
        Some(spec) => domain_spec(spec),
        None => Err(syntax("missing domain")),
    }
}

/// `[ ":" domain-spec ]`.
fn optional_domain(args: &str) -> Result<Option<MacroString>, AuthnError> {
    if args.is_empty() {
        Ok(None)
    } else {
        required_domain(args).map(Some)
    }
}

/// Splits `[ ip4-cidr-length ] [ "/" ip6-cidr-length ]` off the end.
fn dual_cidr(args: &str) -> Result<(&str, u8, u8), AuthnError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut rest = args;
    let mut v6 = 128;
    if let Some(pos) = rest.rfind("//") {
        if digits(&rest[pos + 2..]) {
            v6 = cidr(&rest[pos + 2..], 128)?;
            rest = &rest[..pos];
        }
    }
    let mut v4 = 32;
    if let Some(pos) = rest.rfind('/') {
        if digits(&rest[pos + 1..]) {
            v4 = cidr(&rest[pos + 1..], 32)?;
            rest = &rest[..pos];
        }
    }
    Ok((rest, v4, v6))
}

/// A CIDR length: decimal without leading zeros, at most `max`.
fn cidr(s: &str, max: u8) -> Result<u8, AuthnError> {
    let bad = || syntax(format!("invalid CIDR length /{s}"));
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad());
    }
    let n: u16 = s.parse().map_err(|_| bad())?;
    if n > u16::from(max) {
        return Err(bad());
    }
    Ok(n as u8)
}

/// `qnum "." qnum "." qnum "." qnum`, no leading zeros.
fn ip4_network(s: &str) -> Result<std::net::Ipv4Addr, AuthnError> {
    let bad = || syntax(format!("invalid IPv4 address {s:?}"));
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return Err(bad());
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty()
            || p.len() > 3
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return Err(bad());
        }
        *o = p.parse().map_err(|_| bad())?;
    }
    Ok(octets.into())
}

/// `domain-spec = macro-string domain-end`, `domain-end = ( "." toplabel
/// [ "." ] ) / macro-expand`.
fn domain_spec(s: &str) -> Result<MacroString, AuthnError> {
    if s.is_empty() {
        return Err(syntax("empty domain-spec"));
    }
    let ms = macro_string(s, false, false)?;
    let ends_in_macro =
        s.ends_with('}') && matches!(ms.0.last(), Some(Tok::Macro { .. })) || ends_in_escape(s);
    if !ends_in_macro {
        let Some(Tok::Lit(last)) = ms.0.last() else {
            return Err(syntax("domain-spec does not end in a top label"));
        };
        let last = last.strip_suffix('.').unwrap_or(last);
        match last.rsplit_once('.') {
            Some((_, top)) if toplabel(top) => {}
            _ => return Err(syntax("domain-spec does not end in a valid top label")),
        }
    }
    Ok(ms)
}

/// The string ends in "%%", "%_" or "%-" (a macro-expand), counting the
/// escapes from the left.
fn ends_in_escape(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut last_escape_end = None;
    while i < b.len() {
        if b[i] == b'%' && i + 1 < b.len() {
            if matches!(b[i + 1], b'%' | b'_' | b'-') {
                last_escape_end = Some(i + 2);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    last_escape_end == Some(b.len())
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum
/// / "-" ) alphanum )`.
fn toplabel(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return false;
    }
    if b.contains(&b'-') {
        b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric()
    } else {
        b.iter().any(|c| c.is_ascii_alphabetic())
    }
}

/// A macro-string (§7.1). `exp`: the letters c, r, t are allowed (only in
/// explanation text); `spaces`: an explain-string, where SP is literal.
fn macro_string(s: &str, exp: bool, spaces: bool) -> Result<MacroString, AuthnError> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            match b.get(i + 1) {
                Some(b'%') => lit.push('%'),
                Some(b'_') => lit.push(' '),
                Some(b'-') => lit.push_str("%20"),
                Some(b'{') => {
                    let end = s[i..]
                        .find('}')
                        .map(|e| i + e)
                        .ok_or_else(|| syntax("unterminated macro"))?;
                    let tok = macro_expand(&b[i + 2..end], exp)?;
                    if !lit.is_empty() {
                        toks.push(Tok::Lit(std::mem::take(&mut lit)));
                    }
                    toks.push(tok);
                    i = end + 1;
                    continue;
                }
                _ => return Err(syntax("'%' not followed by '{', '%', '_' or '-'")),
            }
            i += 2;
        } else if (0x21..=0x7e).contains(&c) || (spaces && c == b' ') {
            lit.push(c as char);
            i += 1;
        } else {
            return Err(syntax(format!("invalid character 0x{c:02x}")));
        }
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    Ok(MacroString(toks))
}

/// The inside of `%{...}`: `macro-letter transformers *delimiter`.
fn macro_expand(body: &[u8], exp: bool) -> Result<Tok, AuthnError> {
    let Some(&raw) = body.first() else {
        return Err(syntax("empty macro"));
    };
    let letter = raw.to_ascii_lowercase();
    let allowed: &[u8] = if exp { b"slodipvhcrt" } else { b"slodipvh" };
    if !allowed.contains(&letter) {
        return Err(syntax(if b"crt".contains(&letter) {
            format!("macro letter {} is allowed in exp= text only", raw as char)
        } else {
            format!("unknown macro letter {:?}", raw as char)
        }));
    }
    let mut i = 1;
    let digits_end = body[i..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(body.len(), |p| i + p);
    let keep = if digits_end > i {
        let d = std::str::from_utf8(&body[i..digits_end]).unwrap_or("0");
        // Huge counts keep every part; zero is not allowed (§7.3).
        let n = d.parse::<usize>().unwrap_or(usize::MAX);
        if n == 0 {
            return Err(syntax("macro keeps zero parts"));
        }
        Some(n)
    } else {
        None
    };
    i = digits_end;
    let reverse = matches!(body.get(i), Some(b'r' | b'R'));
    if reverse {
        i += 1;
    }
    let delimiters = body[i..].to_vec();
    if let Some(bad) = delimiters.iter().find(|d| !b".-+,/_=".contains(d)) {
        return Err(syntax(format!(
            "invalid macro delimiter {:?}",
            *bad as char
        )));
    }
    Ok(Tok::Macro {
        letter,
        escape: raw.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters,
    })
}

/// An early exit of the evaluation with `temperror` or `permerror`.
struct Abort(SpfResult, AuthnError);

type Eval<'a, T> = Pin<Box<dyn Future<Output = Result<T, Abort>> + Send + 'a>>;

/// What evaluating one domain's record gave.
struct Verdict {
    result: SpfResult,
    reason: String,
    /// The `exp=` in force if `result` is `fail`, and its domain.
    exp: Option<(MacroString, String)>,
}

struct Ctx<'a> {
    inner: &'a Inner,
    ip: IpAddr,
    sender: String,
    local: String,
    sender_domain: String,
    helo: String,
    lookups: usize,
    voids: usize,
    /// The validated PTR names of `ip` (§5.5), once looked up.
    validated: Option<Vec<String>>,
}

/// RFC 7208 §4.3: a domain check_host() can look at.
fn valid_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.len() > 253 || d.starts_with('[') {
        return false;
    }
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() > 1
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| (0x21..0x7f).contains(&b)))
}

impl<'a> Ctx<'a> {
    /// The top-level check_host(), with the explanation of a `fail`.
    async fn check_top(&mut self, domain: &str) -> (SpfResult, String, Option<String>) {
        match self.check_host(domain.to_string(), 0).await {
            Ok(v) => {
                let explanation = match (&v.result, &v.exp) {
                    (SpfResult::Fail, Some((spec, d))) => self.explain(spec, d).await,
                    _ => None,
                };
                (v.result, v.reason, explanation)
            }
            Err(Abort(r, e)) => (r, e.to_string(), None),
        }
    }

    fn count_lookup(&mut self) -> Result<(), Abort> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(Abort(
                SpfResult::PermError,
                AuthnError::Limit(format!("more than {MAX_LOOKUPS} DNS-querying terms")),
            ));
        }
        Ok(())
    }

    fn count_void(&mut self) -> Result<(), Abort> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(Abort(
                SpfResult::PermError,
                AuthnError::Limit(format!("more than {MAX_VOID_LOOKUPS} void lookups")),
            ));
        }
        Ok(())
    }

    fn temp(name: &str, failure: Failure) -> Abort {
        let error = match failure {
            Failure::Temp(e) => e,
            other => format!("{other:?}"),
        };
        Abort(
            SpfResult::TempError,
            AuthnError::Dns {
                name: name.to_string(),
                error,
            },
        )
    }

    /// check_host() for `domain` (§4): its record, then its terms.
    fn check_host(&mut self, domain: String, depth: usize) -> Eval<'_, Verdict> {
        Box::pin(async move {
            if !valid_domain(&domain) {
                return Ok(Verdict {
                    result: SpfResult::None,
                    reason: format!("{domain:?} is not a domain SPF can check"),
                    exp: None,
                });
            }
            let Some(qname) = dns::name(&domain) else {
                return Ok(Verdict {
                    result: SpfResult::None,
                    reason: format!("{domain:?} is not a domain SPF can check"),
                    exp: None,
                });
            };
            let records = match self.inner.txt(&qname).await {
                Ok(r) => r,
                Err(f) if f.is_void() => Default::default(),
                Err(f) => return Err(Self::temp(&domain, f)),
            };
            let spf: Vec<&[u8]> = records
                .iter()
                .map(|r| &**r)
                .filter(|r| is_spf_record(r))
                .collect();
            let txt = match spf.as_slice() {
                [] => {
                    return Ok(Verdict {
                        result: SpfResult::None,
                        reason: format!("no SPF record for {domain}"),
                        exp: None,
                    })
                }
                [one] => *one,
                _ => {
                    return Err(Abort(
                        SpfResult::PermError,
                        syntax(format!("{domain} has {} SPF records", spf.len())),
                    ))
                }
            };
            let record = parse_record(txt).map_err(|e| {
                Abort(
                    SpfResult::PermError,
                    AuthnError::Syntax(format!(
                        "{} (SPF record of {domain})",
                        e.to_string().trim_start_matches("syntax error: ")
                    )),
                )
            })?;
            self.evaluate(record, domain, depth).await
        })
    }

    /// §4.6.2: the terms left to right, then `redirect`.
    async fn evaluate(
        &mut self,
        record: Record,
        domain: String,
        depth: usize,
    ) -> Result<Verdict, Abort> {
        for d in &record.directives {
            if self.matches(&d.mechanism, &domain, depth).await? {
                return Ok(Verdict {
                    result: d.qualifier.result(),
                    reason: format!("'{}' matched in the SPF record of {domain}", d.text),
                    exp: record.exp.clone().map(|e| (e, domain.clone())),
                });
            }
        }
        if let Some(spec) = &record.redirect {
            self.count_lookup()?;
            let target = self.target(spec, &domain).await?;
            let v = self.check_host(target.clone(), depth + 1).await?;
            if v.result == SpfResult::None {
                return Err(Abort(
                    SpfResult::PermError,
                    AuthnError::Message(format!(
                        "redirect from {domain} to {target}, which has no SPF record"
                    )),
                ));
            }
            return Ok(v);
        }
        Ok(Verdict {
            result: SpfResult::Neutral,
            reason: format!("no term matched in the SPF record of {domain}"),
            exp: None,
        })
    }

    /// Expands a domain-spec into a name to query (§7.3: trailing dot
    /// dropped, labels dropped from the left past 253 octets).
    async fn target(&mut self, spec: &MacroString, domain: &str) -> Result<String, Abort> {
        let mut s = self.expand(spec, domain, false).await;
        if s.ends_with('.') {
            s.pop();
        }
        while s.len() > 253 {
            match s.find('.') {
                Some(p) => {
                    s.drain(..=p);
                }
                None => break,
            }
        }
        Ok(s)
    }

    async fn matches(&mut self, m: &Mechanism, domain: &str, depth: usize) -> Result<bool, Abort> {
        match m {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(cidr_match(self.ip, IpAddr::V4(*net), *len)),
            Mechanism::Ip6(net, len) => Ok(cidr_match(self.ip, IpAddr::V6(*net), *len)),
            Mechanism::Include(spec) => {
                self.count_lookup()?;
                let target = self.target(spec, domain).await?;
                let v = self.check_host(target.clone(), depth + 1).await?;
                match v.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::None => Err(Abort(
                        SpfResult::PermError,
                        AuthnError::Message(format!(
                            "include of {target}, which has no SPF record"
                        )),
                    )),
                    // Errors come back as Abort.
                    SpfResult::TempError | SpfResult::PermError => {
                        Err(Abort(v.result, AuthnError::Message(v.reason)))
                    }
                }
            }
            Mechanism::A {
                domain: spec,
                v4,
                v6,
            } => {
                self.count_lookup()?;
                let target = match spec {
                    Some(s) => self.target(s, domain).await?,
                    None => domain.to_string(),
                };
                match self.addresses(&target).await {
                    Ok(addrs) => Ok(addrs.iter().any(|a| self.cidr_dual(*a, *v4, *v6))),
                    Err(f) if f.is_void() => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Err(f) => Err(Self::temp(&target, f)),
                }
            }
            Mechanism::Mx {
                domain: spec,
                v4,
                v6,
            } => {
                self.count_lookup()?;
                let target = match spec {
                    Some(s) => self.target(s, domain).await?,
                    None => domain.to_string(),
                };
                let mxs = match dns::name(&target) {
                    Some(n) => self.inner.mx(&n).await,
                    None => Err(Failure::BadName),
                };
                let mxs = match mxs {
                    Ok(m) => m,
                    Err(f) if f.is_void() => {
                        self.count_void()?;
                        return Ok(false);
                    }
                    Err(f) => return Err(Self::temp(&target, f)),
                };
                if mxs.len() > MAX_MX {
                    return Err(Abort(
                        SpfResult::PermError,
                        AuthnError::Limit(format!(
                            "{target} has {} MX records, more than {MAX_MX}",
                            mxs.len()
                        )),
                    ));
                }
                for (_, exchange) in mxs {
                    if &*exchange == "." {
                        continue; // null MX
                    }
                    let addrs = match dns::name_from_fqdn(&exchange) {
                        Some(n) => self.inner.addresses(&n, self.ip).await,
                        None => Err(Failure::BadName),
                    };
                    match addrs {
                        Ok(addrs) => {
                            if addrs.iter().any(|a| self.cidr_dual(*a, *v4, *v6)) {
                                return Ok(true);
                            }
                        }
                        Err(f) if f.is_void() => {}
                        Err(f) => return Err(Self::temp(&exchange, f)),
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_lookup()?;
                let target = match spec {
                    Some(s) => self.target(s, domain).await?,
                    None => domain.to_string(),
                }
                .to_ascii_lowercase();
                let names = self.validated_names().await;
                Ok(names
                    .iter()
                    .any(|n| *n == target || n.ends_with(&format!(".{target}"))))
            }
            Mechanism::Exists(spec) => {
                self.count_lookup()?;
                let target = self.target(spec, domain).await?;
                let found = match dns::name(&target) {
                    Some(n) => self.inner.ipv4(&n).await.map(|_| ()),
                    None => Err(Failure::BadName),
                };
                match found {
                    Ok(()) => Ok(true),
                    Err(f) if f.is_void() => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Err(f) => Err(Self::temp(&target, f)),
                }
            }
        }
    }

    /// The addresses of `target` in the client's family.
    async fn addresses(&self, target: &str) -> Result<Vec<IpAddr>, Failure> {
        match dns::name(target) {
            Some(n) => self.inner.addresses(&n, self.ip).await,
            None => Err(Failure::BadName),
        }
    }

    fn cidr_dual(&self, addr: IpAddr, v4: u8, v6: u8) -> bool {
        let len = if addr.is_ipv4() { v4 } else { v6 };
        cidr_match(self.ip, addr, len)
    }

    /// §5.5: the PTR names of the client whose addresses include it (the
    /// first 10 PTR names; DNS errors skip a name, or give none at all).
    async fn validated_names(&mut self) -> Vec<String> {
        if let Some(v) = &self.validated {
            return v.clone();
        }
        let mut out = Vec::new();
        if let Ok(names) = self.inner.ptr(self.ip).await {
            for n in names.iter().take(MAX_PTR) {
                if let Some(q) = dns::name_from_fqdn(n) {
                    let n = n.trim_end_matches('.');
                    if let Ok(addrs) = self.inner.addresses(&q, self.ip).await {
                        if addrs.contains(&self.ip) {
                            out.push(n.to_string());
                        }
                    }
                }
            }
        }
        self.validated = Some(out.clone());
        out
    }

    /// `%{p}` (§7.3): the validated name equal to <domain>, else one of its
    /// subdomains, else any, else "unknown".
    async fn p_macro(&mut self, domain: &str) -> String {
        let names = self.validated_names().await;
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        names
            .iter()
            .find(|n| **n == d)
            .or_else(|| names.iter().find(|n| n.ends_with(&format!(".{d}"))))
            .or_else(|| names.first())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    /// §7.3 macro expansion.
    async fn expand(&mut self, ms: &MacroString, domain: &str, exp: bool) -> String {
        let p = if ms.uses(b'p') {
            self.p_macro(domain).await
        } else {
            String::new()
        };
        let mut out = String::new();
        for t in &ms.0 {
            match t {
                Tok::Lit(s) => out.push_str(s),
                Tok::Macro {
                    letter,
                    escape,
                    keep,
                    reverse,
                    delimiters,
                } => {
                    let value = match letter {
                        b's' => self.sender.clone(),
                        b'l' => self.local.clone(),
                        b'o' => self.sender_domain.clone(),
                        b'd' => domain.to_string(),
                        b'i' => dotted_ip(self.ip),
                        b'p' => p.clone(),
                        b'v' => if self.ip.is_ipv4() { "in-addr" } else { "ip6" }.into(),
                        b'h' => self.helo.clone(),
                        b'c' if exp => self.ip.to_string(),
                        b'r' if exp => self.inner.receiver.clone(),
                        b't' if exp => SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                            .to_string(),
                        _ => String::new(),
                    };
                    let value = transform(&value, *keep, *reverse, delimiters);
                    if *escape {
                        out.push_str(&url_escape(&value));
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        out
    }

    /// §6.2: the explanation of a `fail`, or `None` on any problem.
    async fn explain(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        let mut target = self.expand(spec, domain, false).await;
        if target.ends_with('.') {
            target.pop();
        }
        while target.len() > 253 {
            let p = target.find('.')?;
            target.drain(..=p);
        }
        let records = self.inner.txt(&dns::name(&target)?).await.ok()?;
        let [one] = &*records else { return None };
        let text = std::str::from_utf8(one).ok()?;
        if !text.is_ascii() {
            return None;
        }
        let ms = macro_string(text, true, true).ok()?;
        Some(self.expand(&ms, domain, true).await)
    }
}

/// `%{i}`: dotted decimal, or dot-separated nibbles for IPv6 (upper case,
/// as the RFC 7208 test suite has them).
fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut parts = Vec::with_capacity(32);
            for b in v6.octets() {
                parts.push(format!("{:X}", b >> 4));
                parts.push(format!("{:X}", b & 0xf));
            }
            parts.join(".")
        }
    }
}

/// §7.3 transformers: split on the delimiters, reverse, keep the
/// right-hand parts, join with ".".
fn transform(value: &str, keep: Option<usize>, reverse: bool, delimiters: &[u8]) -> String {
    if keep.is_none() && !reverse && delimiters.is_empty() {
        return value.to_string();
    }
    let delims: &[u8] = if delimiters.is_empty() {
        b"."
    } else {
        delimiters
    };
    let mut parts: Vec<&str> = value
        .split(|c: char| c.is_ascii() && delims.contains(&(c as u8)))
        .collect();
    if reverse {
        parts.reverse();
    }
    if let Some(n) = keep {
        if n < parts.len() {
            parts.drain(..parts.len() - n);
        }
    }
    parts.join(".")
}

/// Upper-case macro letters: every character outside the URI unreserved
/// set is percent-encoded (§7.3).
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn cidr_match(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_selection() {
        assert!(is_spf_record(b"v=spf1"));
        assert!(is_spf_record(b"V=SpF1 -all"));
        assert!(!is_spf_record(b"v=spf10"));
        assert!(!is_spf_record(b"v=spf1mx"));
    }

    #[test]
    fn grammar() {
        let ok = [
            "v=spf1 a mx -all",
            "v=spf1 a/24//64 mx:%{d}/27 ip4:10.0.0.0/8 ip6:2001:db8::/32",
            "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
            "v=spf1 a:foo:bar/baz.example.com",
            "v=spf1 exists:%{i}.%{l2r-}.user.%{d2}",
            "v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
            "v=spf1 include:o.spf.example.com. ~all",
            "v=spf1 default=+",
            "v=spf1 a:foo.example.xn--zckzah -all",
            "v=spf1 ",
        ];
        for r in ok {
            parse_record(r.as_bytes()).unwrap_or_else(|e| panic!("{r}: {}", e));
        }
        let bad = [
            "v=spf1 -all moo",
            "v=spf1 -all.",
            "v=spf1 -all:foobar",
            "v=spf1 all/8",
            "v=spf1 ptr/0",
            "v=spf1 a:museum",
            "v=spf1 a:museum.",
            "v=spf1 a:111.222.33.44",
            "v=spf1 a:example.-com",
            "v=spf1 a:example.com:8080",
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/24/64",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 exp=",
            "v=spf1 exp=-all",
            "v=spf1 redirect=a.example redirect=a.example",
            "v=spf1 1up=foo",
            "v=spf1 =all",
            "v=spf1 foo=%abc",
            "v=spf1 -exists:%(ir).sbl.example.com",
            "v=spf1 exists:foo%.sbl.example.com",
            "v=spf1 -all exp=%{r}.example.com",
            "v=spf1 a:%{a}.example.com",
            "v=spf1 a:%{d0}.example.com",
            "v=spf1 include:",
            "v=spf1 exists",
            "v=spf1 a:ctrl.example.com\rptr",
            "v=spf1 a:foo.example.com\0",
        ];
        for r in bad {
            assert!(parse_record(r.as_bytes()).is_err(), "{r:?} parsed");
        }
    }

    #[test]
    fn macros() {
        assert_eq!(
            transform("philip-gladstone-test", Some(2), true, b"-"),
            "gladstone.philip"
        );
        assert_eq!(
            transform("foo-bar+zip+quux", Some(2), true, b"+-"),
            "bar.foo"
        );
        assert_eq!(
            transform("email.example.com", Some(2), false, b""),
            "example.com"
        );
        assert_eq!(
            transform("email.example.com", None, true, b""),
            "com.example.email"
        );
        assert_eq!(
            url_escape("~jack&jill=up-a_b3.c"),
            "~jack%26jill%3Dup-a_b3.c"
        );
        assert_eq!(
            dotted_ip("cafe:babe::1".parse().unwrap()),
            "C.A.F.E.B.A.B.E.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1"
        );
        assert!(cidr_match(
            "1.2.3.4".parse().unwrap(),
            "1.2.3.0".parse().unwrap(),
            24
        ));
        assert!(cidr_match(
            "1.2.3.4".parse().unwrap(),
            "9.9.9.9".parse().unwrap(),
            0
        ));
        assert!(!cidr_match(
            "1.2.3.4".parse().unwrap(),
            "::1".parse().unwrap(),
            0
        ));
    }
}
