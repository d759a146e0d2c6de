//! ESMTP capabilities from an EHLO response (RFC 5321 §4.1.1.1), free of I/O.

use crate::reply::Reply;

/// What the server said it supports. `Default` is a plain-SMTP server
/// (one that only answered HELO).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// True when the server answered EHLO (false after the HELO fallback).
    pub esmtp: bool,
    /// The first word of the first line: the name the server gives itself.
    pub domain: String,
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: `Some(0)` means SIZE without a limit.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 4954 mechanisms, upper case, in the server's order.
    pub auth: Vec<String>,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 3030 (not used for sending yet, recorded for logs).
    pub chunking: bool,
    /// RFC 3461.
    pub dsn: bool,
}

impl Capabilities {
    /// Parse the lines of a positive EHLO reply.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        Capabilities::from_lines(&reply.lines)
    }

    /// Parse EHLO reply lines: the first is the greeting, each further line
    /// an extension keyword and its parameters. Keywords are matched without
    /// regard to case; unknown keywords and bad parameters are ignored.
    pub fn from_lines<S: AsRef<str>>(lines: &[S]) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        let mut iter = lines.iter().map(|l| l.as_ref());
        if let Some(first) = iter.next() {
            caps.domain = first.split_whitespace().next().unwrap_or("").to_string();
        }
        for line in iter {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // Old servers advertise `AUTH=PLAIN LOGIN` as well as or instead
            // of `AUTH PLAIN LOGIN`.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("AUTH") => ("AUTH", Some(v)),
                _ => (keyword, None),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "CHUNKING" => caps.chunking = true,
                "DSN" => caps.dsn = true,
                "AUTH" => {
                    for mech in first_param.into_iter().chain(words) {
                        let mech = mech.to_ascii_uppercase();
                        if !mech.is_empty() && !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// Whether `mechanism` (any case) was advertised.
    pub fn supports_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }

    /// Whether a message of `size` octets exceeds a declared SIZE limit.
    pub fn exceeds_size(&self, size: u64) -> bool {
        matches!(self.size, Some(max) if max > 0 && size > max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_response() {
        let caps = Capabilities::from_lines(&[
            "mx.example.net Hello client [127.0.0.1]",
            "pipelining",
            "SIZE 35882577",
            "8BITMIME",
            "SMTPUTF8",
            "STARTTLS",
            "AUTH PLAIN login CRAM-MD5",
            "AUTH=PLAIN XOAUTH2",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "DSN",
            "X-UNKNOWN whatever",
            "",
        ]);
        assert!(caps.esmtp);
        assert_eq!(caps.domain, "mx.example.net");
        assert!(caps.pipelining && caps.eight_bit_mime && caps.smtputf8 && caps.starttls);
        assert!(caps.enhanced_status_codes && caps.chunking && caps.dsn);
        assert_eq!(caps.size, Some(35882577));
        assert_eq!(caps.auth, vec!["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]);
        assert!(caps.supports_auth("plain"));
        assert!(!caps.supports_auth("GSSAPI"));
    }

    #[test]
    fn minimal_and_odd_responses() {
        let caps = Capabilities::from_lines(&["mx"]);
        assert!(caps.esmtp && !caps.pipelining && caps.auth.is_empty());
        assert_eq!(caps.size, None);
        let caps = Capabilities::from_lines(&["mx", "SIZE", "SIZE abc"]);
        assert_eq!(caps.size, Some(0));
        assert!(!caps.exceeds_size(u64::MAX));
        let caps = Capabilities::from_lines(&["mx", "SIZE 100"]);
        assert!(caps.exceeds_size(101) && !caps.exceeds_size(100));
        // The greeting line is never a keyword.
        let caps = Capabilities::from_lines(&["STARTTLS"]);
        assert!(!caps.starttls);
        let caps = Capabilities::from_lines::<&str>(&[]);
        assert_eq!(caps.domain, "");
        // Keywords must be whole words.
        let caps = Capabilities::from_lines(&["mx", "STARTTLSX", "XPIPELINING"]);
        assert!(!caps.starttls && !caps.pipelining);
    }
}
