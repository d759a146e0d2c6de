//! RFC 5321 envelope addresses (with RFC 6531 UTF-8 when the client asked
//! for SMTPUTF8).
//!
//! Relay decisions are made on the domain this parser yields, never on string
//! matching, so the classic open-relay tricks have a defined meaning:
//! a source route is parsed and discarded (RFC 5321 §3.3 says to ignore it),
//! `%`, `!` and a quoted `@` stay inside the local part where
//! [`Mailbox::has_routing_syntax`] flags them, and a trailing dot or a second
//! unquoted `@` is a syntax error.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Longest local part accepted. RFC 5321 sets 64 as the minimum a server must
/// take; VERP bounce addresses legitimately exceed it.
pub const MAX_LOCAL_PART: usize = 256;
pub const MAX_DOMAIN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A host name, lower-cased, without a trailing dot.
    Name(String),
    /// `[192.0.2.1]` or `[IPv6:...]`.
    Literal(IpAddr),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::Literal(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Domain::Literal(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part exactly as the client wrote it (quotes included), so
    /// it is relayed unchanged.
    pub local_part: String,
    /// `None` only for the bare `<Postmaster>` recipient (RFC 5321 §4.5.1).
    pub domain: Option<Domain>,
}

impl Mailbox {
    /// The local part with quoting removed.
    pub fn local_part_unquoted(&self) -> String {
        unquote(&self.local_part)
    }

    /// True when the local part carries sender-specified routing: an `@`,
    /// `%` or `!` (after unquoting). Such addresses must never be accepted
    /// for relay on the strength of a relay domain alone.
    pub fn has_routing_syntax(&self) -> bool {
        self.local_part_unquoted()
            .chars()
            .any(|c| matches!(c, '@' | '%' | '!'))
    }

    pub fn domain_name(&self) -> Option<&str> {
        match &self.domain {
            Some(Domain::Name(n)) => Some(n),
            _ => None,
        }
    }

    pub fn is_ascii(&self) -> bool {
        self.local_part.is_ascii() && self.domain_name().is_none_or(|d| d.is_ascii())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{}", self.local_part, d),
            None => f.write_str(&self.local_part),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(m) => m.fmt(f),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address must be enclosed in <>")]
    MissingBrackets,
    #[error("empty address")]
    Empty,
    #[error("malformed source route")]
    BadRoute,
    #[error("malformed local part")]
    BadLocalPart,
    #[error("local part too long")]
    LocalPartTooLong,
    #[error("address has no domain")]
    MissingDomain,
    #[error("malformed domain")]
    BadDomain,
    #[error("malformed address literal")]
    BadLiteral,
    #[error("non-ASCII address without SMTPUTF8")]
    Utf8NotAllowed,
}

/// Parse `<...>` from MAIL FROM. Returns the path and the rest of the line
/// (parameters).
pub fn parse_reverse_path(input: &str, utf8: bool) -> Result<(ReversePath, &str), AddressError> {
    let (inner, rest) = bracketed(input)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    let mbox = parse_path_inner(inner, utf8, false)?;
    Ok((ReversePath::Mailbox(mbox), rest))
}

/// Parse `<...>` from RCPT TO. `<Postmaster>` without a domain is allowed.
pub fn parse_forward_path(input: &str, utf8: bool) -> Result<(Mailbox, &str), AddressError> {
    let (inner, rest) = bracketed(input)?;
    if inner.is_empty() {
        return Err(AddressError::Empty);
    }
    Ok((parse_path_inner(inner, utf8, true)?, rest))
}

/// Split `<inner> rest`. The closing bracket is the first `>` outside a
/// quoted string.
fn bracketed(input: &str) -> Result<(&str, &str), AddressError> {
    let s = input
        .strip_prefix('<')
        .ok_or(AddressError::MissingBrackets)?;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => return Ok((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    Err(AddressError::MissingBrackets)
}

fn parse_path_inner(
    inner: &str,
    utf8: bool,
    allow_postmaster: bool,
) -> Result<Mailbox, AddressError> {
    if !utf8 && !inner.is_ascii() {
        return Err(AddressError::Utf8NotAllowed);
    }
    // A-d-l: "@a,@b:" — validate every hop, then discard it.
    let mailbox = if inner.starts_with('@') {
        let colon = inner.find(':').ok_or(AddressError::BadRoute)?;
        for hop in inner[..colon].split(',') {
            let d = hop.strip_prefix('@').ok_or(AddressError::BadRoute)?;
            parse_domain(d).map_err(|_| AddressError::BadRoute)?;
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    if allow_postmaster && mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(Mailbox {
            local_part: mailbox.to_string(),
            domain: None,
        });
    }
    let (local, domain) = split_local_domain(mailbox)?;
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }
    let domain = if domain.starts_with('[') {
        Domain::Literal(parse_literal(domain)?)
    } else {
        Domain::Name(parse_domain(domain)?)
    };
    Ok(Mailbox {
        local_part: local.to_string(),
        domain: Some(domain),
    })
}

/// Split at the `@` that ends a syntactically valid local part.
fn split_local_domain(mailbox: &str) -> Result<(&str, &str), AddressError> {
    let end = if mailbox.starts_with('"') {
        quoted_string_end(mailbox)?
    } else {
        let end = mailbox.find('@').ok_or(AddressError::MissingDomain)?;
        let local = &mailbox[..end];
        if local.is_empty() || !local.split('.').all(is_atom) {
            return Err(AddressError::BadLocalPart);
        }
        end
    };
    let local = &mailbox[..end];
    let domain = mailbox[end..]
        .strip_prefix('@')
        .ok_or(AddressError::MissingDomain)?;
    if domain.is_empty() {
        return Err(AddressError::MissingDomain);
    }
    Ok((local, domain))
}

/// Index just past the closing quote of a Quoted-string at the start of `s`.
fn quoted_string_end(s: &str) -> Result<usize, AddressError> {
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok(i + 1),
            '\\' => match chars.next() {
                Some((_, q)) if (' '..='~').contains(&q) => {}
                _ => return Err(AddressError::BadLocalPart),
            },
            c if c == ' ' || c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c) => {}
            c if !c.is_ascii() => {}
            _ => return Err(AddressError::BadLocalPart),
        }
    }
    Err(AddressError::BadLocalPart)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_atom(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_atext)
}

/// Validate a domain name and return it lower-cased. A trailing dot, empty
/// labels, labels over 63 octets and characters outside letter-digit-hyphen
/// (or UTF-8 U-labels) are rejected.
pub fn parse_domain(d: &str) -> Result<String, AddressError> {
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return Err(AddressError::BadDomain);
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
            });
        if !ok {
            return Err(AddressError::BadDomain);
        }
    }
    Ok(d.to_lowercase())
}

fn parse_literal(lit: &str) -> Result<IpAddr, AddressError> {
    let inner = lit
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .ok_or(AddressError::BadLiteral)?;
    if let Some(v6) = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
    {
        return v6
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| AddressError::BadLiteral);
    }
    // Only dotted-quad IPv4 here; Rust's parser rejects octal and short forms.
    inner
        .parse::<std::net::Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| AddressError::BadLiteral)
}

fn unquote(local: &str) -> String {
    match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => local.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(s: &str) -> Result<Mailbox, AddressError> {
        parse_forward_path(s, false).map(|(m, _)| m)
    }

    #[test]
    fn plain_addresses() {
        let m = rcpt("<User@Example.COM>").unwrap();
        assert_eq!(m.local_part, "User");
        assert_eq!(m.domain_name(), Some("example.com"));
        assert!(!m.has_routing_syntax());
        let (p, rest) = parse_reverse_path("<> SIZE=10", false).unwrap();
        assert_eq!(p, ReversePath::Null);
        assert_eq!(rest, " SIZE=10");
    }

    #[test]
    fn open_relay_tricks_have_a_defined_meaning() {
        // Percent hack and bang path stay in the local part and are flagged.
        let m = rcpt("<victim%evil.example@ours.example>").unwrap();
        assert_eq!(m.domain_name(), Some("ours.example"));
        assert!(m.has_routing_syntax());
        let m = rcpt("<evil.example!victim@ours.example>").unwrap();
        assert!(m.has_routing_syntax());
        // Quoted @ is part of the local part.
        let m = rcpt("<\"victim@evil.example\"@ours.example>").unwrap();
        assert_eq!(m.domain_name(), Some("ours.example"));
        assert!(m.has_routing_syntax());
        // Source route: the route is discarded, the mailbox decides.
        let m = rcpt("<@ours.example,@relay.example:victim@evil.example>").unwrap();
        assert_eq!(m.domain_name(), Some("evil.example"));
        // Bang path without a domain is not an address.
        assert_eq!(
            rcpt("<evil.example!victim>"),
            Err(AddressError::MissingDomain)
        );
        // Two unquoted @.
        assert!(rcpt("<victim@evil.example@ours.example>").is_err());
        // Trailing dot is not RFC 5321 syntax.
        assert_eq!(rcpt("<a@ours.example.>"), Err(AddressError::BadDomain));
        // Literal.
        let m = rcpt("<a@[192.0.2.1]>").unwrap();
        assert_eq!(
            m.domain,
            Some(Domain::Literal("192.0.2.1".parse().unwrap()))
        );
        assert!(rcpt("<a@[0300.0.2.1]>").is_err());
        assert!(rcpt("<a@[IPv6:::1]>").is_ok());
        // Case folding.
        assert_eq!(
            rcpt("<a@OURS.Example>").unwrap().domain_name(),
            Some("ours.example")
        );
    }

    #[test]
    fn postmaster_and_errors() {
        assert_eq!(rcpt("<Postmaster>").unwrap().domain, None);
        assert!(parse_reverse_path("<postmaster>", false).is_err());
        assert_eq!(rcpt("a@b.example"), Err(AddressError::MissingBrackets));
        assert_eq!(rcpt("<a@b.example"), Err(AddressError::MissingBrackets));
        assert!(rcpt("<@a:>").is_err());
        assert!(rcpt("<.a@b.example>").is_err());
        assert!(rcpt("<a..b@b.example>").is_err());
        assert!(rcpt("<a@-b.example>").is_err());
        assert_eq!(
            rcpt("<δοκιμή@παράδειγμα.δοκιμή>"),
            Err(AddressError::Utf8NotAllowed)
        );
        assert!(parse_forward_path("<δοκιμή@παράδειγμα.δοκιμή>", true).is_ok());
    }

    #[test]
    fn quoted_local_parts() {
        let m = rcpt("<\"a b\\\"c\"@x.example>").unwrap();
        assert_eq!(m.local_part_unquoted(), "a b\"c");
        let (m, rest) = parse_forward_path("<\"a>b\"@x.example> NOTIFY=NEVER", false).unwrap();
        assert_eq!(m.local_part, "\"a>b\"");
        assert_eq!(rest, " NOTIFY=NEVER");
    }
}
