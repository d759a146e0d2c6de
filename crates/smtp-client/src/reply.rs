//! Parsing the replies of a remote SMTP server (RFC 5321 §4.2), free of I/O.
//!
//! The input comes from an untrusted peer, so the parser is total: any byte
//! sequence gives "need more", a reply, or an error, never a panic, and its
//! memory use is bounded by [`MAX_LINE`] and [`MAX_LINES`].

use std::fmt;

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 sets 512;
/// real servers exceed it, so allow some slack.
pub const MAX_LINE: usize = 4096;
/// Most lines in one multi-line reply (an EHLO response has about 15).
pub const MAX_LINES: usize = 128;

/// An RFC 3463 enhanced status code such as `5.1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl EnhancedCode {
    /// Parse `x.y.z` at the start of `text` (followed by a space or the end).
    /// The class must be 2, 4 or 5; subject and detail 1 to 3 digits.
    pub fn parse_prefix(text: &str) -> Option<EnhancedCode> {
        let token = text.split(' ').next()?;
        let mut parts = token.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let digits = |s: &str, max: usize| {
            (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !matches!(class, "2" | "4" | "5") || !digits(subject, 3) || !digits(detail, 3) {
            return None;
        }
        Some(EnhancedCode {
            class: class.as_bytes()[0] - b'0',
            subject: subject.parse().ok()?,
            detail: detail.parse().ok()?,
        })
    }
}

/// One complete reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code of the first line, when it has one whose
    /// class agrees with the reply code.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line after the code and separator, enhanced code
    /// included, with control characters replaced by spaces and invalid
    /// UTF-8 replaced, so it is safe to log and to quote in a DSN.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not retry.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Lines joined by a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Replace every occurrence of `secret` in the text (used so that a
    /// server echoing an AUTH response cannot put credentials in logs).
    pub(crate) fn redact(mut self, secret: &str) -> Reply {
        if !secret.is_empty() {
            for line in &mut self.lines {
                if line.contains(secret) {
                    *line = line.replace(secret, "<redacted>");
                }
            }
        }
        self
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for line in &self.lines {
            if !line.is_empty() {
                write!(f, " {line}")?;
            }
        }
        Ok(())
    }
}

/// Why a reply could not be parsed. Any of these means the peer does not
/// speak SMTP (or is hostile): the connection must be dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_LINE} octets")]
    LineTooLong,
    #[error("reply with more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply code changes within a multi-line reply ({0} then {1})")]
    InconsistentCode(u16, u16),
}

/// Parse one reply at the start of `buf`.
///
/// Returns `None` when more input is needed, `Some(Ok((reply, consumed)))`
/// with the number of bytes the reply took, or `Some(Err(_))` when the input
/// can never become a valid reply. Lines end in CRLF; a bare LF is tolerated
/// as a line end (some servers send it), any other CR is replaced by a space.
pub fn parse_reply(buf: &[u8]) -> Option<Result<(Reply, usize), ReplyError>> {
    let mut pos = 0;
    let mut code = 0u16;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if rest.len() >= MAX_LINE {
                return Some(Err(ReplyError::LineTooLong));
            }
            return None;
        };
        if nl + 1 > MAX_LINE {
            return Some(Err(ReplyError::LineTooLong));
        }
        let mut line = &rest[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        pos += nl + 1;
        let (this_code, last, text) = match split_line(line) {
            Some(parts) => parts,
            None => {
                return Some(Err(ReplyError::Malformed(sanitise(
                    &line[..line.len().min(64)],
                ))))
            }
        };
        if lines.is_empty() {
            code = this_code;
        } else if this_code != code {
            return Some(Err(ReplyError::InconsistentCode(code, this_code)));
        }
        if lines.len() == MAX_LINES {
            return Some(Err(ReplyError::TooManyLines));
        }
        lines.push(sanitise(text));
        if last {
            break;
        }
    }
    let enhanced = lines
        .first()
        .and_then(|l| EnhancedCode::parse_prefix(l))
        .filter(|e| u16::from(e.class) == code / 100);
    Some(Ok((
        Reply {
            code,
            enhanced,
            lines,
        },
        pos,
    )))
}

/// `NNN-text`, `NNN text` or `NNN`: the code, whether this is the last line,
/// and the text.
fn split_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    if line.len() < 3 {
        return None;
    }
    let (d, rest) = line.split_at(3);
    let valid = (b'2'..=b'5').contains(&d[0]) && d[1].is_ascii_digit() && d[2].is_ascii_digit();
    if !valid {
        return None;
    }
    let code = u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
    match rest.first() {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &rest[1..])),
        Some(b'-') => Some((code, false, &rest[1..])),
        Some(_) => None,
    }
}

fn sanitise(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> (Reply, usize) {
        parse_reply(buf).expect("complete").expect("valid")
    }

    #[test]
    fn single_line() {
        let (r, n) = ok(b"250 2.1.0 Sender ok\r\nrest");
        assert_eq!(n, 21);
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced.unwrap().to_string(), "2.1.0");
        assert_eq!(r.lines, vec!["2.1.0 Sender ok"]);
        assert_eq!(r.to_string(), "250 2.1.0 Sender ok");
        assert!(r.is_positive() && !r.is_transient() && !r.is_permanent());
    }

    #[test]
    fn multi_line_and_code_only() {
        let (r, n) = ok(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
        assert_eq!(n, 46);
        assert_eq!(r.lines, vec!["mx.example", "PIPELINING", "SIZE 100"]);
        assert_eq!(r.enhanced, None);
        let (r, n) = ok(b"354\r\n");
        assert_eq!((r.code, n), (354, 5));
        assert_eq!(r.lines, vec![""]);
        assert!(r.is_intermediate());
    }

    #[test]
    fn incomplete_needs_more() {
        assert!(parse_reply(b"").is_none());
        assert!(parse_reply(b"25").is_none());
        assert!(parse_reply(b"250-a\r\n").is_none());
        assert!(parse_reply(b"250-a\r\n250 b").is_none());
    }

    #[test]
    fn bare_lf_tolerated() {
        let (r, n) = ok(b"421-a\n421 b\n");
        assert_eq!(n, 12);
        assert!(r.is_transient());
        assert_eq!(r.lines, vec!["a", "b"]);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"250x\r\n",
            b"650 no\r\n",
            b"150 no\r\n",
            b"2a0 no\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad), Some(Err(ReplyError::Malformed(_)))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_reply(b"250-a\r\n550 b\r\n"),
            Some(Err(ReplyError::InconsistentCode(250, 550)))
        );
    }

    #[test]
    fn limits() {
        let long = vec![b'a'; MAX_LINE];
        assert_eq!(parse_reply(&long), Some(Err(ReplyError::LineTooLong)));
        let mut long = b"250 ".to_vec();
        long.extend(vec![b'a'; MAX_LINE]);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_reply(&long), Some(Err(ReplyError::LineTooLong)));
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_reply(&many), Some(Err(ReplyError::TooManyLines)));
        let mut max = b"250-x\r\n".repeat(MAX_LINES - 1);
        max.extend_from_slice(b"250 x\r\n");
        assert_eq!(ok(&max).0.lines.len(), MAX_LINES);
    }

    #[test]
    fn text_is_sanitised() {
        let (r, _) = ok(b"550 5.7.1 bad\x1b[31m \xff\rx\r\n");
        assert_eq!(r.lines, vec!["5.7.1 bad [31m \u{fffd} x"]);
    }

    #[test]
    fn enhanced_code_rules() {
        assert_eq!(ok(b"550 4.1.1 x\r\n").0.enhanced, None, "class mismatch");
        assert_eq!(ok(b"550 5.1 x\r\n").0.enhanced, None);
        assert_eq!(ok(b"550 5.1234.1 x\r\n").0.enhanced, None);
        assert_eq!(ok(b"550 5.1.1.1 x\r\n").0.enhanced, None);
        let e = ok(b"452-4.5.3 Too many\r\n452 4.5.3 recipients\r\n").0;
        assert_eq!(
            e.enhanced,
            Some(EnhancedCode {
                class: 4,
                subject: 5,
                detail: 3
            })
        );
        assert_eq!(
            ok(b"250 2.0.0\r\n").0.enhanced.unwrap().to_string(),
            "2.0.0"
        );
    }

    #[test]
    fn redaction() {
        let (r, _) = ok(b"535 5.7.8 bad AHVAcA== AHVAcA==\r\n");
        assert_eq!(
            r.redact("AHVAcA==").to_string(),
            "535 5.7.8 bad <redacted> <redacted>"
        );
    }

    #[test]
    fn never_panics_on_arbitrary_prefixes() {
        // A cheap exhaustive check: every prefix and every one-byte mutation
        // of a valid multi-line reply parses without panicking.
        let base = b"250-mx.example ESMTP\r\n250-SIZE 10\r\n250 2.0.0 OK\r\n".to_vec();
        for end in 0..=base.len() {
            let _ = parse_reply(&base[..end]);
        }
        for i in 0..base.len() {
            for b in [0u8, b'\r', b'\n', b'-', b' ', b'9', 0xff] {
                let mut m = base.clone();
                m[i] = b;
                if let Some(Ok((_, n))) = parse_reply(&m) {
                    assert!(n <= m.len());
                }
            }
        }
    }
}
