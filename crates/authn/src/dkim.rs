//! DKIM verification (RFC 6376, RFC 8301, RFC 8463): one `dkim` result per
//! DKIM-Signature, for the first [`MAX_DKIM_SIGNATURES`] of them (the ones
//! nearest the top, most recently added); later ones are counted, never
//! parsed.
//!
//! mail-auth supplies the pieces (signature and key parsers, header
//! canonicalization, RSA and Ed25519 verification); the orchestration is
//! ours, because `verify_dkim` parses and body-hashes every signature of a
//! message before looking at any, rejects `l=` outright, and reports in an
//! order of its own. Results:
//!
//! - `pass`: the signature verifies (reason notes a `t=y` testing key);
//! - `fail`: the body hash or the signature does not verify, the key is
//!   revoked (`p=` empty), the signature expired (`x=`, 5 minutes of clock
//!   skew allowed), `l=` is longer than the body, the key refuses the
//!   signature (type, `h=`, `s=`, `t=s`), or policy refuses it: RSA keys
//!   under 1024 bits and rsa-sha1 (RFC 8301), reasons starting `policy:`;
//! - `permerror`: a malformed signature (missing or duplicate tags, wrong
//!   version, unknown algorithm, `h=` without From, `i=` outside `d=`, `x=`
//!   before `t=`), no key record, an unusable key;
//! - `temperror`: the key lookup failed or ran past the time limit.
//!
//! Properties as KumoMTA sets them: `header.d`, `header.i` (the `i=` tag,
//! else `@` and `d=`), `header.s`, `header.a`, and `header.b`: the first 8
//! characters of `b=`, longer where needed to tell two signatures apart
//! (RFC 6008; at most 128).

use crate::dns::{self, Failure};
use crate::header::{fields, Field};
use crate::{AuthResult, Authenticator, AuthnError, MAX_DKIM_SIGNATURES};
use mail_auth::common::crypto::{Algorithm, HashAlgorithm};
use mail_auth::common::headers::{Writable, Writer};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::{Canonicalization, Signature};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Clock skew allowed on `x=`.
const SKEW_SECS: u64 = 300;
/// RFC 8301 §3.2.
const MIN_RSA_BITS: usize = 1024;

impl Authenticator {
    /// Verifies the DKIM signatures of `message` (header and body, CRLF or
    /// LF line endings); empty when it has none. Bounded by
    /// [`Limits::timeout`](crate::Limits::timeout) for all key lookups
    /// together.
    pub async fn dkim_verify(&self, message: &[u8]) -> Vec<AuthResult> {
        let deadline = Instant::now() + self.inner.limits.timeout;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (headers, body_offset) = fields(message);
        let body = &message[body_offset..];
        let signatures: Vec<&Field> = headers
            .iter()
            .filter(|f| f.name_is("DKIM-Signature"))
            .collect();
        if signatures.len() > MAX_DKIM_SIGNATURES {
            tracing::debug!(
                "{} DKIM signatures; checking the first {MAX_DKIM_SIGNATURES}",
                signatures.len()
            );
        }
        let checked = &signatures[..signatures.len().min(MAX_DKIM_SIGNATURES)];
        let parsed: Vec<Parsed> = checked.iter().map(|f| Parsed::new(f)).collect();
        let bs: Vec<String> = parsed.iter().map(|p| p.b_tag.clone()).collect();
        let index = HeaderIndex::new(&headers);
        let mut bodies = BodyHashes::new(body);
        let mut out = Vec::with_capacity(parsed.len());
        for (n, p) in parsed.iter().enumerate() {
            let mut props = BTreeMap::new();
            if let Some(d) = p.tag("d") {
                props.insert("header.d".to_string(), d.to_string());
                let i = p
                    .sig
                    .as_ref()
                    .ok()
                    .map(|s| s.i.clone())
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| format!("@{d}"));
                props.insert("header.i".to_string(), i);
            }
            if let Some(s) = p.tag("s") {
                props.insert("header.s".to_string(), s.to_string());
            }
            if let Some(a) = p.tag("a") {
                props.insert("header.a".to_string(), a.to_ascii_lowercase());
            }
            if !p.b_tag.is_empty() {
                props.insert("header.b".to_string(), short_b(n, &bs));
            }
            let (result, reason) =
                match self.verify_one(p, &index, &mut bodies, now, deadline).await {
                    Ok(note) => ("pass", note),
                    Err(Verdict::Fail(why)) => ("fail", Some(why)),
                    Err(Verdict::PermError(why)) => ("permerror", Some(why)),
                    Err(Verdict::TempError(why)) => ("temperror", Some(why)),
                };
            out.push(AuthResult {
                method: "dkim".into(),
                method_version: None,
                result: result.into(),
                reason,
                props,
            });
        }
        out
    }

    async fn verify_one(
        &self,
        p: &Parsed<'_>,
        index: &HeaderIndex<'_>,
        bodies: &mut BodyHashes<'_>,
        now: u64,
        deadline: Instant,
    ) -> Result<Option<String>, Verdict> {
        let tags = p.tags.as_ref().map_err(|e| Verdict::PermError(e.clone()))?;
        for required in ["v", "a", "b", "bh", "d", "h", "s"] {
            if !tags.contains_key(required) {
                return Err(Verdict::PermError(format!("no {required}= tag")));
            }
        }
        if tags["v"] != "1" {
            return Err(Verdict::PermError(format!(
                "unsupported version v={}",
                tags["v"]
            )));
        }
        let a = tags["a"].to_ascii_lowercase();
        match a.as_str() {
            "rsa-sha256" | "ed25519-sha256" => {}
            "rsa-sha1" => {
                return Err(Verdict::Fail(
                    "policy: rsa-sha1 signatures are not accepted (RFC 8301)".into(),
                ))
            }
            other => return Err(Verdict::PermError(format!("unsupported algorithm {other}"))),
        }
        let sig = p
            .sig
            .as_ref()
            .map_err(|e| Verdict::PermError(format!("malformed signature: {e}")))?;
        if !sig.h.iter().any(|h| h.trim().eq_ignore_ascii_case("from")) {
            return Err(Verdict::PermError("h= does not sign From".into()));
        }
        let d = sig.d.to_ascii_lowercase();
        let auid_domain = match sig.i.rsplit_once('@') {
            Some((_, dom)) => Some(dom.to_ascii_lowercase()),
            None if sig.i.is_empty() => None,
            None => {
                return Err(Verdict::PermError(format!(
                    "i={} is not an identity",
                    sig.i
                )))
            }
        };
        if let Some(dom) = &auid_domain {
            if *dom != d && !dom.ends_with(&format!(".{d}")) {
                return Err(Verdict::PermError(format!(
                    "i= domain {dom} is not within d={d}"
                )));
            }
        }
        let number = |t: &str| -> Result<Option<u64>, Verdict> {
            match tags.get(t) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| Verdict::PermError(format!("{t}={v} is not a number"))),
            }
        };
        let (l, t, x) = (number("l")?, number("t")?, number("x")?);
        if let (Some(t), Some(x)) = (t, x) {
            if x < t {
                return Err(Verdict::PermError(format!("x={x} is before t={t}")));
            }
        }
        if let Some(x) = x {
            if x.saturating_add(SKEW_SECS) < now {
                return Err(Verdict::Fail(format!("signature expired (x={x})")));
            }
        }

        // The key (RFC 6376 §6.1.2).
        let selector = sig.s.to_ascii_lowercase();
        let key_name = format!("{selector}._domainkey.{d}");
        let Some(qname) = dns::name(&key_name) else {
            return Err(Verdict::PermError(format!(
                "{key_name} is not a valid name"
            )));
        };
        let records = match tokio::time::timeout_at(deadline.into(), self.inner.txt(&qname)).await {
            Err(_) => {
                return Err(Verdict::TempError(
                    AuthnError::Timeout(self.inner.limits.timeout).to_string(),
                ))
            }
            Ok(Ok(r)) => r,
            Ok(Err(f)) if f.is_void() => {
                return Err(Verdict::PermError(format!("no key record at {key_name}")))
            }
            Ok(Err(f)) => {
                return Err(Verdict::TempError(
                    AuthnError::Dns {
                        name: key_name,
                        error: dns_error(&f),
                    }
                    .to_string(),
                ))
            }
        };
        let (record, key_tags) = records
            .iter()
            .find_map(|r| {
                let tags = tag_list(r).ok()?;
                let v_ok = match tags.first() {
                    Some((k, v)) if k == "v" => v == "DKIM1",
                    _ => !tags.iter().any(|(k, _)| k == "v"),
                };
                (v_ok && tags.iter().any(|(k, _)| k == "p")).then_some((r, tags))
            })
            .ok_or_else(|| Verdict::PermError(format!("no DKIM key record at {key_name}")))?;
        let key_tag = |t: &str| {
            key_tags
                .iter()
                .find(|(k, _)| k == t)
                .map(|(_, v)| v.as_str())
        };
        let p_value: String = key_tag("p").unwrap_or("").split_whitespace().collect();
        if p_value.is_empty() {
            return Err(Verdict::Fail(format!(
                "key {key_name} is revoked (empty p=)"
            )));
        }
        let list = |v: Option<&str>| -> Option<Vec<String>> {
            v.map(|v| {
                v.split(':')
                    .map(|i| i.trim().to_ascii_lowercase())
                    .collect()
            })
        };
        let key_type = key_tag("k").unwrap_or("rsa").trim().to_ascii_lowercase();
        let wanted = if a.starts_with("ed25519") {
            "ed25519"
        } else {
            "rsa"
        };
        if key_type != wanted {
            return Err(Verdict::Fail(format!(
                "key {key_name} is k={key_type}, the signature a={a}"
            )));
        }
        if let Some(hashes) = list(key_tag("h")) {
            if !hashes.iter().any(|h| h == "sha256") {
                return Err(Verdict::Fail(format!(
                    "key {key_name} does not allow sha256"
                )));
            }
        }
        if let Some(services) = list(key_tag("s")) {
            if !services.iter().any(|s| s == "*" || s == "email") {
                return Err(Verdict::Fail(format!("key {key_name} is not for email")));
            }
        }
        let flags = list(key_tag("t")).unwrap_or_default();
        if flags.iter().any(|f| f == "s") {
            if let Some(dom) = &auid_domain {
                if *dom != d {
                    return Err(Verdict::Fail(format!(
                        "key {key_name} has t=s but i= is in a subdomain ({dom})"
                    )));
                }
            }
        }
        let key = DomainKey::parse(record)
            .map_err(|e| Verdict::PermError(format!("unusable key at {key_name}: {e}")))?;
        if wanted == "rsa" {
            let bits = key.p.public_key_bits();
            if bits < MIN_RSA_BITS {
                return Err(Verdict::Fail(format!(
                    "policy: {bits}-bit RSA key, under {MIN_RSA_BITS} bits (RFC 8301)"
                )));
            }
        }

        // The body hash (§6.1.3 step 2 of the verifier's computation).
        let (hash, len) = bodies.get(sig.cb, l);
        if let Some(l) = l {
            if l > len {
                return Err(Verdict::Fail(format!(
                    "l={l} is longer than the canonical body ({len} octets)"
                )));
            }
        }
        if hash != sig.bh {
            return Err(Verdict::Fail("body hash did not verify".into()));
        }

        // The header hash and the signature.
        let stripped = strip_b(p.field.value);
        let mut signed = index.select(&sig.h);
        signed.push((p.field.name, &stripped));
        let mut iter = signed.into_iter();
        let algorithm = if wanted == "rsa" {
            Algorithm::RsaSha256
        } else {
            Algorithm::Ed25519Sha256
        };
        key.p
            .verify(&mut iter, &sig.b, sig.ch, algorithm)
            .map_err(|_| Verdict::Fail("signature did not verify".into()))?;
        Ok(flags
            .iter()
            .any(|f| f == "y")
            .then(|| format!("key {key_name} is in testing mode (t=y)")))
    }
}

/// A DNS failure's text, for reasons.
fn dns_error(f: &Failure) -> String {
    match f {
        Failure::Temp(e) => e.clone(),
        other => format!("{other:?}"),
    }
}

enum Verdict {
    Fail(String),
    PermError(String),
    TempError(String),
}

/// One DKIM-Signature, parsed twice: its raw tags (presence, duplicates,
/// the texts the properties show) and mail-auth's typed view (base64,
/// quoted-printable, lists).
struct Parsed<'a> {
    field: &'a Field<'a>,
    tags: Result<HashMap<String, String>, String>,
    sig: Result<Signature, mail_auth::Error>,
    /// `b=` without white space.
    b_tag: String,
}

impl<'a> Parsed<'a> {
    fn new(field: &'a Field<'a>) -> Parsed<'a> {
        let tags = tag_list(field.value).and_then(|list| {
            let mut map = HashMap::new();
            for (k, v) in list {
                if map.insert(k.clone(), v).is_some() {
                    return Err(format!("duplicate {k}= tag"));
                }
            }
            Ok(map)
        });
        let b_tag = tags
            .as_ref()
            .ok()
            .and_then(|t| t.get("b"))
            .map(|b| b.split_whitespace().collect())
            .unwrap_or_default();
        Parsed {
            field,
            tags,
            sig: Signature::parse(field.value),
            b_tag,
        }
    }

    fn tag(&self, name: &str) -> Option<&str> {
        self.tags.as_ref().ok()?.get(name).map(String::as_str)
    }
}

/// An RFC 6376 §3.2 tag-list: `tag-name = ALPHA *ALNUMPUNC`, values with
/// surrounding white space (and folding) trimmed.
fn tag_list(v: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = String::from_utf8_lossy(v);
    let mut out = Vec::new();
    for spec in text.split(';') {
        let spec = spec.trim_matches(|c: char| c.is_ascii_whitespace());
        if spec.is_empty() {
            continue;
        }
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("malformed tag {spec:?}"))?;
        let name = name.trim_matches(|c: char| c.is_ascii_whitespace());
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!("malformed tag name {name:?}"));
        }
        out.push((
            name.to_string(),
            value
                .trim_matches(|c: char| c.is_ascii_whitespace())
                .to_string(),
        ));
    }
    Ok(out)
}

/// `header.b` for signature `n` of `all`: its first 8 characters, more
/// where another signature starts the same (RFC 6008: unique among the
/// results), at most 128.
fn short_b(n: usize, all: &[String]) -> String {
    const MAX: usize = 128;
    let b = all[n].as_bytes();
    let mut len = 8;
    for (m, other) in all.iter().enumerate() {
        if m == n || other.as_bytes() == b {
            continue;
        }
        let common = b
            .iter()
            .zip(other.as_bytes())
            .take_while(|(x, y)| x == y)
            .count();
        len = len.max(common + 1);
    }
    let mut len = len.min(b.len()).min(MAX);
    while !all[n].is_char_boundary(len) {
        len -= 1;
    }
    all[n][..len].to_string()
}

/// The DKIM-Signature value as it is hashed: `b=`'s value (and the white
/// space around it) removed, no final line ending (RFC 6376 §3.7).
fn strip_b(value: &[u8]) -> Vec<u8> {
    let value = value
        .strip_suffix(b"\r\n")
        .or_else(|| value.strip_suffix(b"\n"))
        .unwrap_or(value);
    let mut out = Vec::with_capacity(value.len());
    for (n, segment) in value.split(|c| *c == b';').enumerate() {
        if n > 0 {
            out.push(b';');
        }
        let name_start = segment
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(segment.len());
        let name_end = segment[name_start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(segment.len(), |p| name_start + p);
        let eq = segment[name_end..]
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .map(|p| name_end + p);
        match eq {
            Some(eq) if &segment[name_start..name_end] == b"b" && segment[eq] == b'=' => {
                out.extend_from_slice(&segment[..=eq]);
            }
            _ => out.extend_from_slice(segment),
        }
    }
    out
}

/// Where each header field name occurs, to pick signed fields from the
/// bottom up (RFC 6376 §5.4.2).
struct HeaderIndex<'a> {
    fields: &'a [Field<'a>],
    by_name: HashMap<Vec<u8>, Vec<usize>>,
}

impl<'a> HeaderIndex<'a> {
    fn new(fields: &'a [Field<'a>]) -> Self {
        let mut by_name: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (n, f) in fields.iter().enumerate() {
            let name: Vec<u8> = f
                .name
                .iter()
                .filter(|c| !matches!(c, b' ' | b'\t'))
                .map(u8::to_ascii_lowercase)
                .collect();
            by_name.entry(name).or_default().push(n);
        }
        HeaderIndex { fields, by_name }
    }

    /// The fields `h=` names, each instance used once, last first; names
    /// with no instance left contribute nothing.
    fn select(&self, h: &[String]) -> Vec<(&'a [u8], &'a [u8])> {
        let mut used: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut out = Vec::with_capacity(h.len());
        for name in h {
            let key = name.trim().to_ascii_lowercase().into_bytes();
            let Some(positions) = self.by_name.get(&key) else {
                continue;
            };
            let taken = used.entry(key).or_default();
            if *taken < positions.len() {
                let f = &self.fields[positions[positions.len() - 1 - *taken]];
                out.push((f.name, f.value));
                *taken += 1;
            }
        }
        out
    }
}

/// Body hashes by (canonicalization, l=), each computed once per message.
struct BodyHashes<'a> {
    body: &'a [u8],
    done: HashMap<(bool, Option<u64>), (Vec<u8>, u64)>,
}

impl<'a> BodyHashes<'a> {
    fn new(body: &'a [u8]) -> Self {
        BodyHashes {
            body,
            done: HashMap::new(),
        }
    }

    /// The SHA-256 of the canonical body (its first `l` octets) and the
    /// canonical body's full length.
    fn get(&mut self, c: Canonicalization, l: Option<u64>) -> (Vec<u8>, u64) {
        let relaxed = c == Canonicalization::Relaxed;
        let body = self.body;
        self.done
            .entry((relaxed, l))
            .or_insert_with(|| {
                let total = Cell::new(0);
                let hash = HashAlgorithm::Sha256.hash(CanonicalBody {
                    body,
                    relaxed,
                    limit: l,
                    total: &total,
                });
                (hash.as_ref().to_vec(), total.get())
            })
            .clone()
    }
}

/// RFC 6376 §3.4.3 / §3.4.4 body canonicalization, streamed into a hash,
/// cut at `limit` octets; `total` receives the whole canonical length.
/// Bare LF ends a line as CRLF does.
struct CanonicalBody<'a> {
    body: &'a [u8],
    relaxed: bool,
    limit: Option<u64>,
    total: &'a Cell<u64>,
}

struct Sink<'w, W: Writer> {
    w: &'w mut W,
    limit: Option<u64>,
    total: u64,
}

impl<W: Writer> Sink<'_, W> {
    fn put(&mut self, bytes: &[u8]) {
        let room = match self.limit {
            Some(l) => l.saturating_sub(self.total).min(bytes.len() as u64) as usize,
            None => bytes.len(),
        };
        if room > 0 {
            self.w.write(&bytes[..room]);
        }
        self.total += bytes.len() as u64;
    }

    fn crlfs(&mut self, mut n: usize) {
        const RUN: &[u8] = b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
        while n > 0 {
            let k = n.min(RUN.len() / 2);
            self.put(&RUN[..k * 2]);
            n -= k;
        }
    }
}

impl Writable for CanonicalBody<'_> {
    fn write(self, writer: &mut impl Writer) {
        let mut sink = Sink {
            w: writer,
            limit: self.limit,
            total: 0,
        };
        let mut empty_lines = 0usize;
        let mut relaxed_line = Vec::new();
        let mut rest = self.body;
        while !rest.is_empty() {
            let (line, eol) = match memchr::memchr(b'\n', rest) {
                Some(p) => {
                    let line = &rest[..p];
                    rest = &rest[p + 1..];
                    (line.strip_suffix(b"\r").unwrap_or(line), true)
                }
                None => (std::mem::take(&mut rest), false),
            };
            let content: &[u8] = if self.relaxed {
                relaxed_line.clear();
                let mut wsp = false;
                for &c in line {
                    if c == b' ' || c == b'\t' {
                        wsp = true;
                    } else {
                        if wsp {
                            relaxed_line.push(b' ');
                        }
                        wsp = false;
                        relaxed_line.push(c);
                    }
                }
                &relaxed_line
            } else {
                line
            };
            if content.is_empty() {
                if eol {
                    empty_lines += 1;
                }
                continue;
            }
            sink.crlfs(empty_lines);
            empty_lines = 0;
            sink.put(content);
            sink.put(b"\r\n");
        }
        if !self.relaxed && sink.total == 0 {
            sink.put(b"\r\n");
        }
        self.total.set(sink.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(body: &[u8], relaxed: bool) -> Vec<u8> {
        let total = Cell::new(0);
        let mut out = Vec::new();
        CanonicalBody {
            body,
            relaxed,
            limit: None,
            total: &total,
        }
        .write(&mut out);
        assert_eq!(total.get(), out.len() as u64);
        out
    }

    #[test]
    fn body_canonicalization() {
        // RFC 6376 §3.4.5's example.
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(canon(body, true), b" C\r\nD E\r\n");
        assert_eq!(canon(body, false), b" C \r\nD \t E\r\n");
        assert_eq!(canon(b"", true), b"");
        assert_eq!(canon(b"", false), b"\r\n");
        assert_eq!(canon(b"\r\n\r\n", false), b"\r\n");
        assert_eq!(canon(b"a", false), b"a\r\n");
        assert_eq!(canon(b"a \t\r\n \r\nb", true), b"a\r\n\r\nb\r\n");
        let total = Cell::new(0);
        let mut out = Vec::new();
        CanonicalBody {
            body: b"hello\r\nworld\r\n",
            relaxed: false,
            limit: Some(7),
            total: &total,
        }
        .write(&mut out);
        assert_eq!(out, b"hello\r\n");
        assert_eq!(total.get(), 14);
    }

    #[test]
    fn b_is_stripped() {
        assert_eq!(
            strip_b(b" v=1; bh=abc=; b=Zm9v\r\n\tYmFy; h=from\r\n"),
            b" v=1; bh=abc=; b=; h=from"
        );
        assert_eq!(strip_b(b" v=1; b = Zm9v\r\n"), b" v=1; b =");
    }

    #[test]
    fn header_b_is_unique() {
        let all = vec![
            "abcdefgh12".to_string(),
            "abcdefgh34".into(),
            "zzzzzzzzzz".into(),
            "zzzzzzzzzz".into(),
            "é".repeat(100),
            format!("{}x", "é".repeat(100)),
        ];
        assert_eq!(short_b(0, &all), "abcdefgh1");
        assert_eq!(short_b(2, &all), "zzzzzzzz", "identical signatures");
        assert_eq!(short_b(4, &all), "é".repeat(64), "cut at 128 octets");
        // Long shared prefixes cost linear time, not quadratic.
        let long = vec![
            format!("{}1", "a".repeat(1 << 20)),
            format!("{}2", "a".repeat(1 << 20)),
        ];
        assert_eq!(short_b(0, &long).len(), 128);
    }
}
