//! SMTP replies. Every reply Ironpost sends carries an enhanced status code
//! (RFC 3463), including the greeting and multi-line EHLO responses.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `2.1.0`.
    pub enhanced: String,
    /// One entry per reply line.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: enhanced.to_string(),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code: only the greeting and the
    /// EHLO response, whose text is defined by RFC 5321 grammar (a domain;
    /// extension keywords) that a code would corrupt.
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: String::new(),
            lines,
        }
    }

    pub fn multi(code: u16, enhanced: &str, lines: Vec<String>) -> Reply {
        debug_assert!(!lines.is_empty());
        Reply {
            code,
            enhanced: enhanced.to_string(),
            lines,
        }
    }

    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Text without codes, lines joined by a space; used in logs.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Wire form. Text is sanitised so policy-supplied strings cannot inject
    /// extra reply lines or control characters.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            if self.enhanced.is_empty() {
                out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            } else {
                out.extend_from_slice(format!("{}{}{} ", self.code, sep, self.enhanced).as_bytes());
            }
            for c in line.chars() {
                if c.is_control() {
                    out.push(b' ');
                } else {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text())
    }
}

/// Parse the leading `x.y.z` enhanced code of a reply text supplied by policy
/// (`kumo.reject(550, "5.7.1 go away")`). Returns the code and the rest.
pub fn split_enhanced(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = first.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let ok = matches!(class, "2" | "4" | "5")
        && (1..=3).contains(&subject.len())
        && (1..=3).contains(&detail.len())
        && subject.bytes().all(|b| b.is_ascii_digit())
        && detail.bytes().all(|b| b.is_ascii_digit());
    ok.then_some((first, rest))
}

/// Build a reply from a policy-supplied code and text, deriving an enhanced
/// code from the basic code when the text does not carry one.
pub fn from_policy(code: u16, text: &str) -> Reply {
    let code = if (200..600).contains(&code) {
        code
    } else {
        550
    };
    match split_enhanced(text) {
        Some((esc, rest)) if esc.as_bytes()[0] == b'0' + (code / 100) as u8 => {
            Reply::new(code, esc, rest.to_string())
        }
        _ => {
            let esc = match code / 100 {
                2 => "2.0.0",
                4 => "4.0.0",
                _ => "5.0.0",
            };
            Reply::new(code, esc, text.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(
            Reply::new(250, "2.0.0", "OK").to_bytes(),
            b"250 2.0.0 OK\r\n"
        );
        let r = Reply::multi(250, "2.0.0", vec!["a".into(), "b".into()]);
        assert_eq!(r.to_bytes(), b"250-2.0.0 a\r\n250 2.0.0 b\r\n");
    }

    #[test]
    fn plain_replies_have_no_enhanced_code() {
        let r = Reply::plain(250, vec!["mx.test".into(), "PIPELINING".into()]);
        assert_eq!(r.to_bytes(), b"250-mx.test\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn control_characters_cannot_inject_lines() {
        let r = Reply::new(550, "5.7.1", "no\r\n250 2.0.0 fake");
        assert_eq!(r.to_bytes(), b"550 5.7.1 no  250 2.0.0 fake\r\n");
    }

    #[test]
    fn policy_reply_keeps_or_derives_enhanced_code() {
        assert_eq!(from_policy(550, "5.7.1 nope").to_string(), "550 5.7.1 nope");
        assert_eq!(from_policy(451, "later").to_string(), "451 4.0.0 later");
        // A mismatched class is not trusted.
        assert_eq!(from_policy(550, "2.0.0 x").to_string(), "550 5.0.0 2.0.0 x");
        assert_eq!(from_policy(42, "x").code, 550);
    }
}
