//! SPF (RFC 7208): the record's syntax, the DNS-lookup limits counted
//! through includes and redirects, whether every source address passes,
//! and how the record ends.
//!
//! Parsing and evaluation are pure: [`parse`] reads a record, [`walk`]
//! fetches everything the record refers to into an [`SpfData`] (the only
//! I/O), and [`evaluate`] runs RFC 7208 §4.6 over that data for one
//! address, as a receiver would.

use super::report::{Check, Findings, Item, Verdict};
use super::tags::{absence, clip, is_domain, normalize};
use crate::Posture;
use ironpost_dns::{Dns, DnsError, MxAnswer};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 7208 §4.6.4: terms that cause DNS lookups, per evaluation.
const LOOKUP_LIMIT: usize = 10;
/// RFC 7208 §4.6.4: lookups answered with NXDOMAIN or nothing.
const VOID_LIMIT: usize = 2;
/// RFC 7208 §4.6.4: MX hosts one `mx` mechanism may resolve.
const MX_HOST_LIMIT: usize = 10;
/// DNS queries the walk may make at most. The lookup limit already
/// bounds it (each `mx` costs up to 1 + 10 address lookups); this is the
/// backstop should a record be built to make the walk expensive.
const QUERY_BUDGET: usize = 150;

/// Addresses no record should authorise: class E and the IPv6 discard
/// prefix (RFC 6666). If one of them passes, the record is open to all.
const PROBES: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(240, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1)),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

/// A domain-spec: the text as written, and whether it has `%{...}` macros
/// (which need the sender's details, so this check cannot expand them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DomainSpec {
    pub text: String,
    pub macros: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    All,
    Include(DomainSpec),
    A {
        domain: Option<DomainSpec>,
        v4: u8,
        v6: u8,
    },
    Mx {
        domain: Option<DomainSpec>,
        v4: u8,
        v6: u8,
    },
    Ptr(Option<DomainSpec>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(DomainSpec),
}

impl Mechanism {
    /// Counts toward the 10-lookup limit (RFC 7208 §4.6.4).
    fn counts(&self) -> bool {
        matches!(
            self,
            Mechanism::Include(_)
                | Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr(_)
                | Mechanism::Exists(_)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
    /// The term as written, for details.
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpfRecord {
    pub directives: Vec<Directive>,
    pub redirect: Option<DomainSpec>,
    pub exp: Option<DomainSpec>,
    /// Legal but questionable constructs.
    pub warnings: Vec<String>,
}

impl SpfRecord {
    fn all(&self) -> Option<&Directive> {
        self.directives
            .iter()
            .find(|d| d.mechanism == Mechanism::All)
    }

    /// `redirect=` only applies when no `all` is present (RFC 7208 §6.1).
    fn effective_redirect(&self) -> Option<&DomainSpec> {
        if self.all().is_some() {
            None
        } else {
            self.redirect.as_ref()
        }
    }
}

/// A TXT record that is an SPF record: `v=spf1` alone or followed by a
/// space (RFC 7208 §4.5; `v=spf10` is not one).
pub(crate) fn is_spf(txt: &str) -> bool {
    txt.get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
        && matches!(txt.as_bytes().get(6), None | Some(b' '))
}

/// Parses an SPF record strictly (RFC 7208 §4.5, §12): any syntax error
/// is a permerror for receivers, so it is an error here.
pub(crate) fn parse(text: &str) -> Result<SpfRecord, String> {
    if !text.is_ascii() {
        return Err("non-ASCII characters".into());
    }
    let mut terms = text.split(' ').filter(|t| !t.is_empty());
    if !terms
        .next()
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
    {
        return Err("does not start with v=spf1".into());
    }
    let mut rec = SpfRecord::default();
    let mut after_all = Vec::new();
    for term in terms {
        if let Some((name, value)) = modifier(term) {
            let lower = name.to_ascii_lowercase();
            let slot = match lower.as_str() {
                "redirect" => &mut rec.redirect,
                "exp" => &mut rec.exp,
                _ => {
                    macro_string(value, false).map_err(|e| format!("{term}: {e}"))?;
                    rec.warnings
                        .push(format!("unknown modifier {name}= is ignored"));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(format!("{lower}= appears twice"));
            }
            *slot = Some(domain_spec(value).map_err(|e| format!("{term}: {e}"))?);
            continue;
        }
        let d = directive(term).map_err(|e| format!("{term}: {e}"))?;
        if rec.all().is_some() {
            after_all.push(term.to_string());
        }
        if matches!(d.mechanism, Mechanism::Ptr(_)) {
            rec.warnings
                .push("ptr is slow and deprecated (RFC 7208 §5.5); some receivers skip it".into());
        }
        rec.directives.push(d);
    }
    if !after_all.is_empty() {
        rec.warnings.push(format!(
            "{} after all is never evaluated",
            after_all.join(" ")
        ));
    }
    if rec.all().is_some() && rec.redirect.is_some() {
        rec.warnings
            .push("redirect= is ignored because the record has all".into());
    }
    Ok(rec)
}

/// `name=value` when the term is a modifier: a name (ALPHA *(ALPHA /
/// DIGIT / "-" / "_" / ".")) followed by `=` before any `:` or `/`.
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some((name, value))
}

fn directive(term: &str) -> Result<Directive, String> {
    let (qualifier, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let split = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, args) = rest.split_at(split);
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "all" => return Err("all takes no argument".into()),
        "include" => Mechanism::Include(required_domain(args)?),
        "exists" => Mechanism::Exists(required_domain(args)?),
        "ptr" => Mechanism::Ptr(match args.strip_prefix(':') {
            Some(spec) => Some(domain_spec(spec)?),
            None if args.is_empty() => None,
            None => return Err("ptr takes no prefix length".into()),
        }),
        "a" => {
            let (domain, v4, v6) = domain_and_cidr(args)?;
            Mechanism::A { domain, v4, v6 }
        }
        "mx" => {
            let (domain, v4, v6) = domain_and_cidr(args)?;
            Mechanism::Mx { domain, v4, v6 }
        }
        "ip4" => {
            let v = args.strip_prefix(':').ok_or("ip4 needs :address")?;
            let (addr, len) = network(v, 32)?;
            let addr = addr
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
            Mechanism::Ip4(addr, len)
        }
        "ip6" => {
            let v = args.strip_prefix(':').ok_or("ip6 needs :address")?;
            let (addr, len) = network(v, 128)?;
            let addr = addr
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
            Mechanism::Ip6(addr, len)
        }
        "" => return Err("empty mechanism".into()),
        other => return Err(format!("unknown mechanism {other:?}")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
        text: term.to_string(),
    })
}

fn required_domain(args: &str) -> Result<DomainSpec, String> {
    domain_spec(args.strip_prefix(':').ok_or("needs :domain")?)
}

/// `address[/len]` with len at most `max` (default: `max`).
fn network(v: &str, max: u8) -> Result<(&str, u8), String> {
    match v.rsplit_once('/') {
        Some((addr, len)) => Ok((addr, prefix_len(len, max)?)),
        None => Ok((v, max)),
    }
}

fn prefix_len(len: &str, max: u8) -> Result<u8, String> {
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad prefix length /{len}"));
    }
    let n: u8 = len
        .parse()
        .map_err(|_| format!("bad prefix length /{len}"))?;
    if n > max {
        return Err(format!("prefix length /{n} is over {max}"));
    }
    Ok(n)
}

/// `[":" domain-spec] [ip4-cidr-length] ["/" ip6-cidr-length]` of `a` and
/// `mx`. The lengths are taken from the end: a macro's delimiters may hold
/// a `/` but a macro always ends with `}`.
fn domain_and_cidr(args: &str) -> Result<(Option<DomainSpec>, u8, u8), String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut body = args;
    let mut v6 = 128;
    if let Some((b, len)) = body.rsplit_once("//") {
        if digits(len) {
            v6 = prefix_len(len, 128)?;
            body = b;
        }
    }
    let mut v4 = 32;
    if let Some((b, len)) = body.rsplit_once('/') {
        if digits(len) {
            v4 = prefix_len(len, 32)?;
            body = b;
        }
    }
    let domain = match body.strip_prefix(':') {
        Some(spec) => Some(domain_spec(spec)?),
        None if body.is_empty() => None,
        None => return Err(format!("unexpected {body:?}")),
    };
    Ok((domain, v4, v6))
}

/// `domain-spec = macro-string domain-end` (RFC 7208 §7.1).
fn domain_spec(s: &str) -> Result<DomainSpec, String> {
    if s.is_empty() {
        return Err("empty domain".into());
    }
    let macros = macro_string(s, false)?;
    if macros {
        // domain-end: "." toplabel ["."], or a macro-expand.
        let t = s.strip_suffix('.').unwrap_or(s);
        let ends_ok = t.ends_with('}')
            || t.rsplit_once('.').is_some_and(|(_, top)| {
                !top.is_empty()
                    && top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !top.bytes().all(|b| b.is_ascii_digit())
            });
        if !ends_ok {
            return Err(format!("{s:?} does not end in a domain name or a macro"));
        }
    } else if !is_domain(s) {
        return Err(format!("{s:?} is not a domain name"));
    }
    Ok(DomainSpec {
        text: s.to_string(),
        macros,
    })
}

/// Checks a macro-string (RFC 7208 §7.1); true when it has `%{...}`.
/// `exp` allows the letters only explanations may use (c, r, t).
fn macro_string(s: &str, exp: bool) -> Result<bool, String> {
    let b = s.as_bytes();
    let mut macros = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match b.get(i + 1) {
                Some(b'%' | b'_' | b'-') => i += 2,
                Some(b'{') => {
                    let end = s[i..].find('}').ok_or("unterminated %{")?;
                    macro_body(&s[i + 2..i + end], exp)?;
                    macros = true;
                    i += end + 1;
                }
                _ => return Err("% must be followed by {, %, _ or -".into()),
            },
            0x21..=0x7e => i += 1,
            _ => return Err("bad character".into()),
        }
    }
    Ok(macros)
}

/// `macro-letter transformers *delimiter`.
fn macro_body(body: &str, exp: bool) -> Result<(), String> {
    let bad = || format!("bad macro %{{{body}}}");
    let mut chars = body.chars().peekable();
    let letter = chars.next().ok_or_else(bad)?.to_ascii_lowercase();
    match letter {
        's' | 'l' | 'o' | 'd' | 'i' | 'p' | 'h' | 'v' => {}
        'c' | 'r' | 't' if exp => {}
        'c' | 'r' | 't' => return Err(format!("%{{{body}}} is only allowed in exp=")),
        _ => return Err(bad()),
    }
    while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'r')) {
        chars.next();
    }
    if chars.all(|c| ".-+,/_=".contains(c)) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The result of one lookup the walk made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fetched<T> {
    Found(T),
    /// NXDOMAIN or no records of the type: a void lookup.
    Void,
    /// Another failure: receivers get temperror.
    Error(String),
}

/// An `mx` mechanism's hosts' addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MxIps {
    pub hosts: usize,
    pub ips: Vec<IpAddr>,
}

/// Everything the records refer to, keyed by lower-case domain.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpfData {
    /// A domain's SPF record; `Found(Err)` when it does not parse or
    /// there are several (a permerror either way).
    pub records: HashMap<String, Fetched<Result<SpfRecord, String>>>,
    /// A and AAAA addresses (for `a` and `exists`).
    pub addrs: HashMap<String, Fetched<Vec<IpAddr>>>,
    pub mx: HashMap<String, Fetched<MxIps>>,
}

/// What the walk counted and what it could not follow.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub lookups: usize,
    pub voids: usize,
    /// The walk stopped past the lookup limit.
    pub over_limit: bool,
    /// Permerrors and temperrors below the top record.
    pub problems: Vec<String>,
    /// What the walk did not follow (macros, the query budget).
    pub unfollowed: Vec<String>,
    queries: usize,
}

impl Walk {
    fn problem(&mut self, p: String) {
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn unfollowed(&mut self, p: String) {
        if !self.unfollowed.contains(&p) {
            self.unfollowed.push(p);
        }
    }

    /// Counts one DNS query; false when the budget is spent.
    fn query(&mut self) -> bool {
        self.queries += 1;
        if self.queries > QUERY_BUDGET {
            self.unfollowed(format!(
                "stopped after {QUERY_BUDGET} DNS queries: the rest was not checked"
            ));
            return false;
        }
        true
    }
}

fn classify<T>(r: Result<T, DnsError>) -> Fetched<T> {
    match r {
        Ok(v) => Fetched::Found(v),
        Err(e) if e.is_permanent() => Fetched::Void,
        Err(e) => Fetched::Error(e.to_string()),
    }
}

/// The SPF record among a name's TXT records: exactly one, parsed.
fn select(txts: &[String]) -> Fetched<Result<SpfRecord, String>> {
    let spf: Vec<&String> = txts.iter().filter(|t| is_spf(t)).collect();
    match spf.as_slice() {
        [] => Fetched::Void,
        [one] => Fetched::Found(parse(one)),
        many => Fetched::Found(Err(format!("{} v=spf1 records", many.len()))),
    }
}

/// Fetches, depth first, every record, address and MX set `domain`'s
/// record (`root`) refers to, counting lookups as receivers do. Loops are
/// cut where they close; the walk stops once past the lookup limit.
pub(crate) async fn walk(dns: &Dns, domain: &str, root: SpfRecord, data: &mut SpfData) -> Walk {
    let mut w = Walk::default();
    data.records
        .insert(domain.to_string(), Fetched::Found(Ok(root)));
    let mut stack: Vec<Vec<String>> = vec![vec![domain.to_string()]];
    while let Some(chain) = stack.pop() {
        let name = chain.last().cloned().unwrap_or_default();
        let Some(Fetched::Found(Ok(rec))) = data.records.get(&name).cloned() else {
            continue;
        };
        let mut targets = Vec::new();
        for d in &rec.directives {
            if !d.mechanism.counts() {
                continue;
            }
            w.lookups += 1;
            if w.lookups > LOOKUP_LIMIT {
                w.over_limit = true;
                return w;
            }
            match &d.mechanism {
                Mechanism::Include(spec) => targets.push(("include:", spec)),
                Mechanism::A { domain, .. } => match target(domain.as_ref(), &name) {
                    Some(t) => resolve_addrs(dns, &t, data, &mut w).await,
                    None => w.unfollowed(format!("{} has macros: not resolved", d.text)),
                },
                Mechanism::Exists(spec) => match target(Some(spec), &name) {
                    Some(t) => resolve_addrs(dns, &t, data, &mut w).await,
                    None => w.unfollowed(format!("{} has macros: not resolved", d.text)),
                },
                Mechanism::Mx { domain, .. } => match target(domain.as_ref(), &name) {
                    Some(t) => resolve_mx(dns, &t, data, &mut w).await,
                    None => w.unfollowed(format!("{} has macros: not resolved", d.text)),
                },
                _ => {}
            }
        }
        if let Some(spec) = rec.effective_redirect() {
            w.lookups += 1;
            if w.lookups > LOOKUP_LIMIT {
                w.over_limit = true;
                return w;
            }
            targets.push(("redirect=", spec));
        }
        // Reversed so the stack pops them in record order.
        for (kind, spec) in targets.into_iter().rev() {
            if spec.macros {
                w.unfollowed(format!("{kind}{} has macros: not followed", spec.text));
                continue;
            }
            let t = normalize(&spec.text);
            if chain.contains(&t) {
                w.problem(format!("loop: {} -> {t} (permerror)", chain.join(" -> ")));
                continue;
            }
            if !data.records.contains_key(&t) {
                if !w.query() {
                    return w;
                }
                let fetched = match classify(dns.txt(&t).await) {
                    Fetched::Found(txts) => select(&txts),
                    Fetched::Void => Fetched::Void,
                    Fetched::Error(e) => Fetched::Error(e),
                };
                data.records.insert(t.clone(), fetched);
            }
            match &data.records[&t] {
                Fetched::Found(Ok(_)) => {
                    let mut next = chain.clone();
                    next.push(t);
                    stack.push(next);
                }
                Fetched::Found(Err(e)) => {
                    let p = format!("{kind}{t}: {e} (permerror)");
                    w.problem(p);
                }
                Fetched::Void => {
                    w.voids += 1;
                    w.problem(format!("{kind}{t} has no SPF record (permerror)"));
                }
                Fetched::Error(e) => {
                    let p = format!("{kind}{t}: {e} (temperror)");
                    w.problem(p);
                }
            }
        }
    }
    w
}

/// The domain a mechanism applies to: its domain-spec, or the record's
/// own domain; None when the spec has macros.
fn target(spec: Option<&DomainSpec>, current: &str) -> Option<String> {
    match spec {
        None => Some(current.to_string()),
        Some(s) if s.macros => None,
        Some(s) => Some(normalize(&s.text)),
    }
}

async fn resolve_addrs(dns: &Dns, name: &str, data: &mut SpfData, w: &mut Walk) {
    if !data.addrs.contains_key(name) {
        if !w.query() {
            return;
        }
        let fetched = classify(dns.ips_secure(name).await.map(|s| s.value));
        data.addrs.insert(name.to_string(), fetched);
    }
    if data.addrs[name] == Fetched::Void {
        w.voids += 1;
    }
}

async fn resolve_mx(dns: &Dns, name: &str, data: &mut SpfData, w: &mut Walk) {
    if !data.mx.contains_key(name) {
        if !w.query() {
            return;
        }
        let fetched = match dns.mx(name).await {
            Ok(MxAnswer::Null) => Fetched::Found(MxIps {
                hosts: 0,
                ips: Vec::new(),
            }),
            // RFC 7208 §5.4: no implicit MX.
            Ok(MxAnswer::Hosts { implicit: true, .. }) => Fetched::Void,
            Ok(MxAnswer::Hosts { hosts, .. }) => {
                let mut ips = Vec::new();
                let mut error = None;
                for h in hosts.iter().take(MX_HOST_LIMIT) {
                    if !w.query() {
                        break;
                    }
                    match classify(dns.ips_secure(&h.name).await.map(|s| s.value)) {
                        Fetched::Found(v) => ips.extend(v),
                        Fetched::Void => {}
                        Fetched::Error(e) => error = Some(e),
                    }
                }
                match error {
                    Some(e) => Fetched::Error(e),
                    None => Fetched::Found(MxIps {
                        hosts: hosts.len(),
                        ips,
                    }),
                }
            }
            Err(e) if e.is_permanent() => Fetched::Void,
            Err(e) => Fetched::Error(e.to_string()),
        };
        data.mx.insert(name.to_string(), fetched);
    }
    if data.mx[name] == Fetched::Void {
        w.voids += 1;
    }
}

/// An SPF result (RFC 7208 §2.6), plus `Unknown` for what this check
/// cannot evaluate (macros, `ptr`, data the walk did not fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    PermError(String),
    TempError(String),
    Unknown(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("pass"),
            Outcome::Fail => f.write_str("fail"),
            Outcome::SoftFail => f.write_str("softfail"),
            Outcome::Neutral => f.write_str("neutral"),
            Outcome::None => f.write_str("none"),
            Outcome::PermError(e) => write!(f, "permerror: {e}"),
            Outcome::TempError(e) => write!(f, "temperror: {e}"),
            Outcome::Unknown(e) => write!(f, "not determined: {e}"),
        }
    }
}

impl From<Qualifier> for Outcome {
    fn from(q: Qualifier) -> Outcome {
        match q {
            Qualifier::Pass => Outcome::Pass,
            Qualifier::Fail => Outcome::Fail,
            Qualifier::SoftFail => Outcome::SoftFail,
            Qualifier::Neutral => Outcome::Neutral,
        }
    }
}

struct Eval<'a> {
    data: &'a SpfData,
    ip: IpAddr,
    lookups: usize,
    voids: usize,
}

/// `check_host()` for `ip` over prefetched data: the result and the term
/// that decided it (`~all in example.com`).
pub(crate) fn evaluate(data: &SpfData, domain: &str, ip: IpAddr) -> (Outcome, String) {
    let mut e = Eval {
        data,
        ip,
        lookups: 0,
        voids: 0,
    };
    e.eval(&mut vec![normalize(domain)])
}

impl Eval<'_> {
    fn eval(&mut self, chain: &mut Vec<String>) -> (Outcome, String) {
        let domain = chain.last().cloned().unwrap_or_default();
        let rec = match self.data.records.get(&domain) {
            Some(Fetched::Found(Ok(r))) => r,
            Some(Fetched::Found(Err(e))) => return (Outcome::PermError(e.clone()), domain),
            Some(Fetched::Void) => return (Outcome::None, domain),
            Some(Fetched::Error(e)) => return (Outcome::TempError(e.clone()), domain),
            None => return (Outcome::Unknown("record not fetched".into()), domain),
        };
        for d in &rec.directives {
            let at = || format!("{} in {domain}", d.text);
            if d.mechanism.counts() {
                self.lookups += 1;
                if self.lookups > LOOKUP_LIMIT {
                    return (Outcome::PermError("more than 10 DNS lookups".into()), at());
                }
            }
            match self.matches(&d.mechanism, &domain, chain) {
                Ok(None) => {}
                Ok(Some(inner)) => {
                    let why = match inner {
                        Some(inner) => format!("{inner}, via {}", at()),
                        None => at(),
                    };
                    return (d.qualifier.into(), why);
                }
                Err(o) => return (o, at()),
            }
        }
        if let Some(spec) = rec.effective_redirect() {
            let at = format!("redirect={} in {domain}", spec.text);
            self.lookups += 1;
            if self.lookups > LOOKUP_LIMIT {
                return (Outcome::PermError("more than 10 DNS lookups".into()), at);
            }
            let Some(t) = target(Some(spec), &domain) else {
                return (Outcome::Unknown("macros".into()), at);
            };
            if chain.contains(&t) {
                return (Outcome::PermError("redirect loop".into()), at);
            }
            chain.push(t.clone());
            let (o, why) = self.eval(chain);
            chain.pop();
            return match o {
                Outcome::None => (Outcome::PermError(format!("{t} has no SPF record")), at),
                o => (o, why),
            };
        }
        (Outcome::Neutral, format!("nothing matched in {domain}"))
    }

    /// Ok(None): no match; Ok(Some(why)): a match (with the deciding term
    /// of an include); Err: evaluation ends with that result.
    #[allow(clippy::type_complexity)]
    fn matches(
        &mut self,
        m: &Mechanism,
        domain: &str,
        chain: &mut Vec<String>,
    ) -> Result<Option<Option<String>>, Outcome> {
        let hit = |b: bool| if b { Some(None) } else { None };
        let unknown = || Outcome::Unknown("macros are not expanded".into());
        match m {
            Mechanism::All => Ok(Some(None)),
            Mechanism::Ip4(net, len) => Ok(hit(in_net(self.ip, IpAddr::V4(*net), *len))),
            Mechanism::Ip6(net, len) => Ok(hit(in_net(self.ip, IpAddr::V6(*net), *len))),
            Mechanism::A {
                domain: spec,
                v4,
                v6,
            } => {
                let t = target(spec.as_ref(), domain).ok_or_else(unknown)?;
                let ips = self.lookup(self.data.addrs.get(&t))?;
                Ok(hit(ips.iter().any(|ip| self.in_prefix(*ip, *v4, *v6))))
            }
            Mechanism::Mx {
                domain: spec,
                v4,
                v6,
            } => {
                let t = target(spec.as_ref(), domain).ok_or_else(unknown)?;
                let mx = self.lookup(self.data.mx.get(&t))?;
                if mx.hosts > MX_HOST_LIMIT {
                    return Err(Outcome::PermError(format!(
                        "{t} has {} MX hosts (limit {MX_HOST_LIMIT})",
                        mx.hosts
                    )));
                }
                Ok(hit(mx.ips.iter().any(|ip| self.in_prefix(*ip, *v4, *v6))))
            }
            Mechanism::Exists(spec) => {
                let t = target(Some(spec), domain).ok_or_else(unknown)?;
                let ips = self.lookup(self.data.addrs.get(&t))?;
                Ok(hit(ips.iter().any(IpAddr::is_ipv4)))
            }
            Mechanism::Ptr(_) => Err(Outcome::Unknown("ptr is not evaluated".into())),
            Mechanism::Include(spec) => {
                let t = target(Some(spec), domain).ok_or_else(unknown)?;
                if chain.contains(&t) {
                    return Err(Outcome::PermError("include loop".into()));
                }
                chain.push(t.clone());
                let (o, why) = self.eval(chain);
                chain.pop();
                // RFC 7208 §5.2.
                match o {
                    Outcome::Pass => Ok(Some(Some(why))),
                    Outcome::Fail | Outcome::SoftFail | Outcome::Neutral => Ok(None),
                    Outcome::None => Err(Outcome::PermError(format!("{t} has no SPF record"))),
                    o => Err(o),
                }
            }
        }
    }

    /// The data of a lookup; a void one counts toward the void limit.
    fn lookup<'d, T: Default + Clone>(
        &mut self,
        f: Option<&'d Fetched<T>>,
    ) -> Result<std::borrow::Cow<'d, T>, Outcome> {
        match f {
            Some(Fetched::Found(v)) => Ok(std::borrow::Cow::Borrowed(v)),
            Some(Fetched::Void) => {
                self.voids += 1;
                if self.voids > VOID_LIMIT {
                    return Err(Outcome::PermError("more than 2 void DNS lookups".into()));
                }
                Ok(std::borrow::Cow::Owned(T::default()))
            }
            Some(Fetched::Error(e)) => Err(Outcome::TempError(e.clone())),
            None => Err(Outcome::Unknown("not resolved".into())),
        }
    }

    fn in_prefix(&self, addr: IpAddr, v4: u8, v6: u8) -> bool {
        let len = if addr.is_ipv4() { v4 } else { v6 };
        in_net(self.ip, addr, len)
    }
}

/// Whether `ip` is in `net/len` (same family only).
fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// How the record treats senders it does not list: the qualifier of the
/// `all` that ends it (following `redirect=`), and where that is.
fn ending(data: &SpfData, domain: &str) -> (Option<Qualifier>, String) {
    let mut cur = normalize(domain);
    let mut seen = vec![cur.clone()];
    loop {
        let Some(Fetched::Found(Ok(rec))) = data.records.get(&cur) else {
            return (None, cur);
        };
        if let Some(all) = rec.all() {
            return (Some(all.qualifier), cur);
        }
        match rec.redirect.as_ref().and_then(|s| target(Some(s), &cur)) {
            Some(next) if !seen.contains(&next) && seen.len() <= LOOKUP_LIMIT => {
                seen.push(next.clone());
                cur = next;
            }
            _ => return (None, cur),
        }
    }
}

/// The checks, once the data is in.
fn grade(posture: &Posture, text: &str, data: &SpfData, walk: &Walk) -> Vec<Item> {
    let domain = normalize(&posture.domain);
    let mut items = Vec::new();

    let mut record = Findings::new();
    record.pass(format!("{domain}: {}", clip(text, 200)));
    if let Some(Fetched::Found(Ok(rec))) = data.records.get(&domain) {
        for w in &rec.warnings {
            record.warn(w.clone());
        }
    }
    items.push(record.item(Check::Spf, "record"));

    let mut lookups = Findings::new();
    if walk.over_limit {
        lookups.fail(format!(
            "more than {LOOKUP_LIMIT} DNS lookups (include, a, mx, ptr, exists, redirect; \
             counted through includes): receivers may return permerror"
        ));
    } else {
        lookups.pass(format!("{} of {LOOKUP_LIMIT} DNS lookups", walk.lookups));
    }
    if walk.voids > VOID_LIMIT {
        lookups.fail(format!(
            "{} void lookups (limit {VOID_LIMIT}): receivers may return permerror",
            walk.voids
        ));
    } else {
        lookups.pass(format!("{} of {VOID_LIMIT} void lookups", walk.voids));
    }
    for p in &walk.problems {
        lookups.fail(p.clone());
    }
    for u in &walk.unfollowed {
        lookups.warn(u.clone());
    }
    items.push(lookups.item(Check::Spf, "lookups"));

    let mut sources = Findings::new();
    if posture.source_addresses.is_empty() {
        sources.warn(if posture.sources_complete {
            "no source addresses in the policy: coverage not checked"
        } else {
            "no egress source has a fixed address: coverage not checked"
        });
    }
    for ip in &posture.source_addresses {
        match evaluate(data, &domain, *ip) {
            (Outcome::Pass, why) => sources.pass(format!("{ip} passes ({why})")),
            (o @ Outcome::Unknown(_), why) => sources.warn(format!("{ip}: {o} ({why})")),
            (o, why) => sources.fail(format!("{ip} is not authorised: {o} ({why})")),
        }
    }
    items.push(sources.item(Check::Spf, "sources"));

    let mut all = Findings::new();
    let (q, at) = ending(data, &domain);
    let place = if at == domain {
        String::new()
    } else {
        format!(" (in {at})")
    };
    match q {
        Some(Qualifier::Pass) => all.fail(format!(
            "+all{place} authorises every address on the Internet"
        )),
        Some(Qualifier::Fail) if !posture.sources_complete => all.warn(format!(
            "-all{place}, but some egress sources have no fixed address: their mail fails SPF"
        )),
        Some(Qualifier::Fail) => all.pass(format!("-all{place}: other senders fail")),
        // ~all passes: DMARC treats softfail like fail (neither is an SPF
        // pass), while receivers that reject on -all at SMTP time refuse
        // forwarded mail before DKIM and DMARC could accept it; hence
        // M3AAWG's advice of ~all alongside DMARC.
        Some(Qualifier::SoftFail) => all.pass(format!("~all{place}: other senders softfail")),
        Some(Qualifier::Neutral) => all.warn(format!(
            "?all{place}: other senders get neutral, which protects nothing"
        )),
        None => all.warn(format!(
            "no all{place}: other senders get neutral, which protects nothing"
        )),
    }
    if q != Some(Qualifier::Pass) {
        for probe in PROBES {
            if let (Outcome::Pass, why) = evaluate(data, &domain, probe) {
                all.fail(format!("any address passes, e.g. {probe} ({why})"));
                break;
            }
        }
    }
    items.push(all.item(Check::Spf, "all"));
    items
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let domain = normalize(&posture.domain);
    let fail = |d: String| vec![Item::new(Check::Spf, "record", Verdict::Fail, d)];
    let txts = match dns.txt(&domain).await {
        Ok(t) => t,
        Err(e) if e.is_permanent() => {
            return fail(format!(
                "no SPF record at {domain} ({}): receivers get SPF none",
                absence(&e)
            ))
        }
        Err(e) => return fail(e.to_string()),
    };
    let spf: Vec<&String> = txts.iter().filter(|t| is_spf(t)).collect();
    let text = match spf.as_slice() {
        [one] => *one,
        [] => {
            return fail(format!(
                "no v=spf1 record among the {} TXT records at {domain}: receivers get SPF none",
                txts.len()
            ))
        }
        many => {
            return fail(format!(
                "{} v=spf1 records at {domain}: receivers return permerror; merge them",
                many.len()
            ))
        }
    };
    let rec = match parse(text) {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "{e}, in {:?}: receivers return permerror",
                clip(text, 200)
            ))
        }
    };
    let mut data = SpfData::default();
    let walk = walk(dns, &domain, rec, &mut data).await;
    grade(posture, text, &data, &walk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn mech(term: &str) -> Mechanism {
        directive(term).unwrap().mechanism
    }

    fn spec(text: &str) -> DomainSpec {
        DomainSpec {
            text: text.into(),
            macros: text.contains("%{"),
        }
    }

    #[test]
    fn recognises_spf_records() {
        assert!(is_spf("v=spf1"));
        assert!(is_spf("V=SPF1 -all"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("v=spf1\t-all"));
        assert!(!is_spf("v=DMARC1"));
        assert!(!is_spf("v=sp\u{e9}1"));
    }

    #[test]
    fn mechanisms() {
        assert_eq!(mech("-all"), Mechanism::All);
        assert_eq!(directive("~all").unwrap().qualifier, Qualifier::SoftFail);
        assert_eq!(directive("?ALL").unwrap().qualifier, Qualifier::Neutral);
        assert_eq!(directive("mx").unwrap().qualifier, Qualifier::Pass);
        assert_eq!(
            mech("ip4:192.0.2.0/24"),
            Mechanism::Ip4("192.0.2.0".parse().unwrap(), 24)
        );
        assert_eq!(
            mech("ip4:192.0.2.1"),
            Mechanism::Ip4("192.0.2.1".parse().unwrap(), 32)
        );
        assert_eq!(
            mech("ip6:2001:db8::/32"),
            Mechanism::Ip6("2001:db8::".parse().unwrap(), 32)
        );
        assert_eq!(
            mech("a"),
            Mechanism::A {
                domain: None,
                v4: 32,
                v6: 128
            }
        );
        assert_eq!(
            mech("a:mail.example.com/24//64"),
            Mechanism::A {
                domain: Some(spec("mail.example.com")),
                v4: 24,
                v6: 64
            }
        );
        assert_eq!(
            mech("mx//48"),
            Mechanism::Mx {
                domain: None,
                v4: 32,
                v6: 48
            }
        );
        assert_eq!(
            mech("mx/28"),
            Mechanism::Mx {
                domain: None,
                v4: 28,
                v6: 128
            }
        );
        assert_eq!(
            mech("include:_spf.example.com"),
            Mechanism::Include(spec("_spf.example.com"))
        );
        assert_eq!(
            mech("exists:%{i}._spf.%{d}"),
            Mechanism::Exists(spec("%{i}._spf.%{d}"))
        );
        // A macro's delimiter is not a prefix length.
        assert_eq!(
            mech("a:%{d1/}"),
            Mechanism::A {
                domain: Some(spec("%{d1/}")),
                v4: 32,
                v6: 128
            }
        );
        assert_eq!(mech("ptr"), Mechanism::Ptr(None));
    }

    #[test]
    fn bad_mechanisms() {
        for bad in [
            "ip4:192.0.2.0/33",
            "ip4:192.0.2",
            "ip4:2001:db8::1",
            "ip4",
            "ip6:2001:db8::/129",
            "ip6:192.0.2.1",
            "include",
            "include:",
            "include:exa mple",
            "include:-bad.example",
            "a:/24",
            "a:example.com/",
            "mx:example.com/24/",
            "all:example.com",
            "allow",
            "+",
            "exists:%{q}.example.com",
            "exists:%{c}.example.com",
            "exists:%{d",
            "exists:50%.example.com",
            "exists:%{i}.1",
            "ptr/24",
        ] {
            assert!(directive(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records() {
        let r = parse("v=spf1  ip4:192.0.2.1 include:_spf.example.net ~all").unwrap();
        assert_eq!(r.directives.len(), 3);
        assert!(r.warnings.is_empty());
        let r = parse("v=spf1 mx redirect=_spf.example.net").unwrap();
        assert_eq!(r.effective_redirect(), Some(&spec("_spf.example.net")));
        let r = parse("v=spf1 -all redirect=_spf.example.net").unwrap();
        assert_eq!(r.effective_redirect(), None);
        assert!(r.warnings[0].contains("redirect= is ignored"));
        let r = parse("v=spf1 ptr -all mx").unwrap();
        assert!(r.warnings.iter().any(|w| w.contains("ptr")));
        assert!(r.warnings.iter().any(|w| w.contains("mx after all")));
        let r = parse("v=spf1 foo=bar -all exp=explain.%{d}").unwrap();
        assert!(r.warnings[0].contains("foo="));
        assert!(r.exp.is_some());

        for bad in [
            "v=spf2 -all",
            "spf1 -all",
            "v=spf1 redirect=a.example redirect=b.example",
            "v=spf1 exp=a.example exp=b.example",
            "v=spf1 ip4:300.0.0.1",
            "v=spf1 include:example.com:80",
            "v=spf1 redirect=",
            "v=spf1 -all caf\u{e9}",
            "v=spf1 foo=%z",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert!(in_net(ip("192.0.2.77"), ip("192.0.2.0"), 24));
        assert!(!in_net(ip("192.0.3.1"), ip("192.0.2.0"), 24));
        assert!(in_net(ip("10.1.2.3"), ip("0.0.0.0"), 0));
        assert!(in_net(ip("2001:db8::5"), ip("2001:db8::"), 32));
        assert!(!in_net(ip("2001:db9::5"), ip("2001:db8::"), 32));
        assert!(!in_net(ip("192.0.2.1"), ip("::"), 0));
        assert!(in_net(ip("192.0.2.1"), ip("192.0.2.1"), 32));
    }

    fn data(records: &[(&str, &str)]) -> SpfData {
        let mut d = SpfData::default();
        for (name, text) in records {
            d.records
                .insert(name.to_string(), Fetched::Found(parse(text)));
        }
        d
    }

    #[test]
    fn evaluation() {
        let mut d = data(&[
            (
                "example.test",
                "v=spf1 ip4:192.0.2.0/24 a:out.example.test mx include:_spf.example.test ~all",
            ),
            ("_spf.example.test", "v=spf1 ip6:2001:db8::/32 -all"),
        ]);
        d.addrs.insert(
            "out.example.test".into(),
            Fetched::Found(vec![ip("198.51.100.7")]),
        );
        d.mx.insert(
            "example.test".into(),
            Fetched::Found(MxIps {
                hosts: 1,
                ips: vec![ip("203.0.113.1")],
            }),
        );
        let eval = |s: &str| evaluate(&d, "example.test", ip(s));
        assert_eq!(eval("192.0.2.9").0, Outcome::Pass);
        assert_eq!(eval("198.51.100.7").0, Outcome::Pass);
        assert_eq!(eval("203.0.113.1").0, Outcome::Pass);
        let (o, why) = eval("2001:db8::1");
        assert_eq!(o, Outcome::Pass);
        assert!(
            why.contains("ip6:2001:db8::/32 in _spf.example.test"),
            "{why}"
        );
        assert!(why.contains("via include:_spf.example.test"), "{why}");
        let (o, why) = eval("198.51.100.8");
        assert_eq!(o, Outcome::SoftFail);
        assert_eq!(why, "~all in example.test");
    }

    #[test]
    fn evaluation_errors() {
        // An include with no record is a permerror.
        let mut d = data(&[("a.test", "v=spf1 include:none.test -all")]);
        d.records.insert("none.test".into(), Fetched::Void);
        assert!(matches!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::PermError(_)
        ));
        // A DNS failure below is a temperror.
        d.records
            .insert("none.test".into(), Fetched::Error("SERVFAIL".into()));
        assert!(matches!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::TempError(_)
        ));
        // Loops end, as permerror.
        let d = data(&[
            ("a.test", "v=spf1 include:b.test -all"),
            ("b.test", "v=spf1 include:a.test -all"),
        ]);
        assert_eq!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::PermError("include loop".into())
        );
        // Macros and ptr cannot be decided here.
        let d = data(&[("a.test", "v=spf1 exists:%{i}.x.test -all")]);
        assert!(matches!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::Unknown(_)
        ));
        // Three void lookups.
        let mut d = data(&[("a.test", "v=spf1 a:x.test a:y.test a:z.test -all")]);
        for n in ["x.test", "y.test", "z.test"] {
            d.addrs.insert(n.into(), Fetched::Void);
        }
        assert_eq!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::PermError("more than 2 void DNS lookups".into())
        );
        // Eleven lookups.
        let text = format!("v=spf1 {}-all", "a:x.test ".repeat(11));
        let mut d = data(&[("a.test", &text)]);
        d.addrs
            .insert("x.test".into(), Fetched::Found(vec![ip("192.0.2.2")]));
        assert!(matches!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::PermError(_)
        ));
        assert_eq!(evaluate(&d, "a.test", ip("192.0.2.2")).0, Outcome::Pass);
        // Too many MX hosts.
        let mut d = data(&[("a.test", "v=spf1 mx -all")]);
        d.mx.insert(
            "a.test".into(),
            Fetched::Found(MxIps {
                hosts: 11,
                ips: vec![],
            }),
        );
        assert!(matches!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::PermError(_)
        ));
    }

    #[test]
    fn redirects_and_endings() {
        let d = data(&[
            ("a.test", "v=spf1 ip4:192.0.2.1 redirect=b.test"),
            ("b.test", "v=spf1 ip4:192.0.2.2 -all"),
        ]);
        assert_eq!(evaluate(&d, "a.test", ip("192.0.2.2")).0, Outcome::Pass);
        assert_eq!(evaluate(&d, "a.test", ip("192.0.2.3")).0, Outcome::Fail);
        assert_eq!(
            ending(&d, "a.test"),
            (Some(Qualifier::Fail), "b.test".into())
        );
        let d = data(&[("a.test", "v=spf1 ip4:192.0.2.1")]);
        assert_eq!(evaluate(&d, "a.test", ip("192.0.2.3")).0, Outcome::Neutral);
        assert_eq!(ending(&d, "a.test"), (None, "a.test".into()));
        let d = data(&[
            ("a.test", "v=spf1 redirect=b.test"),
            ("b.test", "v=spf1 redirect=a.test"),
        ]);
        assert_eq!(ending(&d, "a.test").0, None);
        assert!(matches!(
            evaluate(&d, "a.test", ip("192.0.2.1")).0,
            Outcome::PermError(_)
        ));
    }

    fn posture(sources: &[&str], complete: bool) -> Posture {
        Posture {
            domain: "a.test".into(),
            source_addresses: sources.iter().map(|s| ip(s)).collect(),
            sources_complete: complete,
            ..Default::default()
        }
    }

    fn verdicts(items: &[Item]) -> Vec<(&str, Verdict)> {
        items
            .iter()
            .map(|i| (i.subject.as_str(), i.verdict))
            .collect()
    }

    #[test]
    fn grading() {
        let text = "v=spf1 ip4:192.0.2.0/24 ~all";
        let d = data(&[("a.test", text)]);
        let w = Walk {
            lookups: 0,
            ..Default::default()
        };
        let items = grade(&posture(&["192.0.2.1"], true), text, &d, &w);
        assert_eq!(
            verdicts(&items),
            vec![
                ("record", Verdict::Pass),
                ("lookups", Verdict::Pass),
                ("sources", Verdict::Pass),
                ("all", Verdict::Pass)
            ]
        );
        let items = grade(&posture(&["192.0.2.1", "198.51.100.1"], true), text, &d, &w);
        assert_eq!(items[2].verdict, Verdict::Fail);
        assert!(items[2]
            .detail
            .starts_with("198.51.100.1 is not authorised: softfail"));

        for (text, verdict) in [
            ("v=spf1 ip4:192.0.2.0/24 +all", Verdict::Fail),
            ("v=spf1 ip4:192.0.2.0/24 all", Verdict::Fail),
            ("v=spf1 ip4:192.0.2.0/24 ?all", Verdict::Warn),
            ("v=spf1 ip4:192.0.2.0/24", Verdict::Warn),
            ("v=spf1 ip4:192.0.2.0/24 -all", Verdict::Pass),
            ("v=spf1 ip4:0.0.0.0/0 -all", Verdict::Fail),
        ] {
            let d = data(&[("a.test", text)]);
            let items = grade(&posture(&["192.0.2.1"], true), text, &d, &w);
            assert_eq!(items[3].verdict, verdict, "{text}: {:?}", items[3]);
        }
        // -all while some source's address is not known.
        let text = "v=spf1 ip4:192.0.2.0/24 -all";
        let d = data(&[("a.test", text)]);
        let items = grade(&posture(&["192.0.2.1"], false), text, &d, &w);
        assert_eq!(items[3].verdict, Verdict::Warn);
        let items = grade(&posture(&[], false), text, &d, &w);
        assert_eq!(items[2].verdict, Verdict::Warn);

        let w = Walk {
            lookups: 11,
            over_limit: true,
            voids: 3,
            ..Default::default()
        };
        let items = grade(&posture(&["192.0.2.1"], true), text, &d, &w);
        assert_eq!(items[1].verdict, Verdict::Fail);
        assert!(
            items[1].detail.contains("more than 10"),
            "{}",
            items[1].detail
        );
        assert!(
            items[1].detail.contains("3 void lookups"),
            "{}",
            items[1].detail
        );
    }
}
