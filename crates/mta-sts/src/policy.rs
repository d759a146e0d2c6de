//! The policy file (RFC 8461 §3.2) and MX matching (§4.1).

use crate::domain;
use crate::StsError;
use serde::{Deserialize, Serialize};

/// Largest `max_age` the RFC allows: one year, in seconds.
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// The policy mode. What each one means for delivery is the caller's
/// decision; this crate only reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns, lower-case, without trailing dot; `*.` prefix allowed.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

fn invalid(msg: impl Into<String>) -> StsError {
    StsError::InvalidPolicy(crate::clip(msg.into()))
}

impl Policy {
    /// Parses a policy body that has not yet been checked to be UTF-8.
    pub fn parse_bytes(body: &[u8]) -> Result<Policy, StsError> {
        let text = std::str::from_utf8(body).map_err(|_| invalid("body is not valid UTF-8"))?;
        Policy::parse(text)
    }

    /// Parses a policy body strictly per the RFC 8461 §3.2 ABNF.
    ///
    /// Lines end in LF or CRLF; each is `key:` then optional SP/HTAB then
    /// a value, with trailing SP/HTAB allowed. Field names are
    /// case-sensitive. `version`, `mode` and `max_age` must appear exactly
    /// once, `mx` at least once unless the mode is `none`. Unknown
    /// (extension) fields are syntax-checked and ignored. The only
    /// leniency is that blank lines are tolerated at the very end, since a
    /// stray extra newline changes nothing and rejecting it would switch
    /// MTA-STS off for that domain.
    pub fn parse(text: &str) -> Result<Policy, StsError> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();

        let mut lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        while lines.last() == Some(&"") {
            lines.pop();
        }
        if lines.is_empty() {
            return Err(invalid("empty policy"));
        }

        for (n, line) in lines.iter().enumerate() {
            let n = n + 1;
            let (key, rest) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("line {n}: no ':'")))?;
            if !is_field_name(key) {
                return Err(invalid(format!("line {n}: bad field name {key:?}")));
            }
            let value = rest
                .trim_start_matches([' ', '\t'])
                .trim_end_matches([' ', '\t']);
            if value.is_empty() {
                return Err(invalid(format!("line {n}: empty value for {key}")));
            }
            if !is_ext_value(value) {
                return Err(invalid(format!("line {n}: bad characters in {key}")));
            }
            match key {
                "version" => set_once(&mut version, value, key)?,
                "mode" => {
                    let m = match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(invalid(format!("unknown mode {other:?}"))),
                    };
                    set_once(&mut mode, m, key)?;
                }
                "max_age" => {
                    // 1*10DIGIT: the length cap also keeps the parse in u64.
                    if value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid(format!("bad max_age {value:?}")));
                    }
                    let v: u64 = value.parse().map_err(|_| invalid("bad max_age"))?;
                    if v > MAX_AGE_LIMIT {
                        return Err(invalid(format!("max_age {v} above {MAX_AGE_LIMIT}")));
                    }
                    set_once(&mut max_age, v, key)?;
                }
                "mx" => mx.push(
                    normalize_mx_pattern(value)
                        .ok_or_else(|| invalid(format!("bad mx pattern {value:?}")))?,
                ),
                _ => {} // Extension: ignored, per §3.2.
            }
        }

        match version {
            Some("STSv1") => {}
            Some(v) => return Err(invalid(format!("unsupported version {v:?}"))),
            None => return Err(invalid("missing version")),
        }
        let mode = mode.ok_or_else(|| invalid("missing mode"))?;
        let max_age = max_age.ok_or_else(|| invalid("missing max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(invalid("no mx pattern"));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Re-checks the invariants `parse` establishes, for policies that
    /// come back from the on-disk cache.
    pub(crate) fn validate(&self) -> Result<(), StsError> {
        if self.max_age > MAX_AGE_LIMIT {
            return Err(invalid("max_age out of range"));
        }
        if self.mx.is_empty() && self.mode != Mode::None {
            return Err(invalid("no mx pattern"));
        }
        for p in &self.mx {
            if normalize_mx_pattern(p).as_deref() != Some(p.as_str()) {
                return Err(invalid(format!("bad mx pattern {p:?}")));
            }
        }
        Ok(())
    }

    /// Whether the MX host `host` is allowed by one of the patterns
    /// (§4.1): case-insensitive, a trailing dot ignored, and `*.` standing
    /// for exactly one extra leftmost label.
    pub fn matches_mx(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(first, rest)| !first.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }
}

/// Fields other than `mx` may appear only once.
fn set_once<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), StsError> {
    match slot.replace(value) {
        Some(_) => Err(invalid(format!("repeated {key}"))),
        None => Ok(()),
    }
}

/// `sts-policy-ext-name` (RFC 8461 §3.2), which has the same grammar as the
/// TXT record's `sts-ext-name` (§3.1): (ALPHA / DIGIT) *31(ALPHA / DIGIT /
/// "_" / "-" / ".").
pub(crate) fn is_field_name(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// `sts-policy-ext-value`: visible characters (printable ASCII or any
/// non-ASCII UTF-8) with inner SP/HTAB. Control characters, including a
/// stray CR, are refused.
fn is_ext_value(value: &str) -> bool {
    value
        .chars()
        .all(|c| matches!(c, ' ' | '\t' | '\x21'..='\x7e') || (c as u32) >= 0x80)
}

/// `["*."] Domain`, lower-cased. No trailing dot: the grammar has none.
fn normalize_mx_pattern(value: &str) -> Option<String> {
    let (wild, name) = match value.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if name.ends_with('.') {
        return None;
    }
    let name = domain::normalize(name)?;
    Some(if wild { format!("*.{name}") } else { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";

    fn err(text: &str) -> String {
        match Policy::parse(text) {
            Ok(p) => panic!("accepted {text:?} as {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_lf() {
        let p = Policy::parse(GOOD).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, vec!["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 86400);
    }

    #[test]
    fn parses_crlf_and_no_final_newline_and_tabs() {
        let text = "version:STSv1\r\nmode:\ttesting \r\nmx: MX.Example.COM\r\nmax_age: 0";
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.mx, vec!["mx.example.com"]);
        assert_eq!(p.max_age, 0);
        // Mixed terminators are both legal line endings.
        Policy::parse("version: STSv1\r\nmode: none\nmax_age: 5\r\n").unwrap();
    }

    #[test]
    fn trailing_blank_lines_tolerated_but_not_inner() {
        Policy::parse(&format!("{GOOD}\n\r\n")).unwrap();
        err("version: STSv1\n\nmode: none\nmax_age: 5\n");
    }

    #[test]
    fn missing_or_bad_version() {
        assert!(err("mode: enforce\nmx: a.b\nmax_age: 5\n").contains("missing version"));
        err("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 5\n");
        err("version: stsv1\nmode: enforce\nmx: a.b\nmax_age: 5\n");
        // Field names are case-sensitive: "Version" is an extension.
        err("Version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 5\n");
    }

    #[test]
    fn bad_mode() {
        err("version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 5\n");
        err("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 5\n");
        err("version: STSv1\nmx: a.b\nmax_age: 5\n");
    }

    #[test]
    fn max_age_range() {
        let with = |v: &str| format!("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: {v}\n");
        assert_eq!(Policy::parse(&with("31557600")).unwrap().max_age, 31557600);
        for bad in [
            "31557601",
            "99999999999",
            "-1",
            "+5",
            "1e3",
            "1 2",
            "0x10",
            "",
        ] {
            err(&with(bad));
        }
        err("version: STSv1\nmode: enforce\nmx: a.b\n");
    }

    #[test]
    fn repeated_fields() {
        assert!(
            err("version: STSv1\nmode: enforce\nmode: testing\nmx: a.b\nmax_age: 5\n")
                .contains("repeated mode")
        );
        err("version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.b\nmax_age: 5\n");
        err("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 5\nmax_age: 5\n");
    }

    #[test]
    fn unknown_keys_ignored() {
        let p = Policy::parse(&format!("{GOOD}foo_bar: some value here\nx.y-z: 1\n")).unwrap();
        assert_eq!(p.mx.len(), 2);
        // ...but still syntax-checked.
        err(&format!("{GOOD}_foo: 1\n"));
        err(&format!("{GOOD}foo bar: 1\n"));
        err(&format!("{GOOD}foo:\n"));
        err(&format!("{GOOD}foo: a\u{1}b\n"));
    }

    #[test]
    fn whitespace_rules() {
        err(" version: STSv1\nmode: none\nmax_age: 5\n");
        err("version : STSv1\nmode: none\nmax_age: 5\n");
        err("version: STSv1\nmode: none\nmax_age: 5\rmx: a.b\n");
        err("version: STSv1\nmode: none\nmax_age: 5\nno colon here\n");
        err("");
        err("\n");
    }

    #[test]
    fn mode_none_without_mx() {
        let p = Policy::parse("version: STSv1\nmode: none\nmax_age: 86400\n").unwrap();
        assert_eq!(p.mode, Mode::None);
        assert!(p.mx.is_empty());
        err("version: STSv1\nmode: testing\nmax_age: 86400\n");
    }

    #[test]
    fn bad_mx_patterns() {
        for bad in [
            "*",
            "*.",
            "a.*.b",
            "mx.example.com.",
            "a..b",
            "-a.b",
            "a_b.c",
            "**.a.b",
        ] {
            err(&format!(
                "version: STSv1\nmode: enforce\nmx: {bad}\nmax_age: 5\n"
            ));
        }
    }

    #[test]
    fn rejects_non_utf8() {
        assert!(Policy::parse_bytes(b"version: STSv1\nmode: none\nmax_age: 5\nx: \xff\n").is_err());
        Policy::parse_bytes(GOOD.as_bytes()).unwrap();
    }

    #[test]
    fn mx_matching() {
        let p = Policy::parse(GOOD).unwrap();
        assert!(p.matches_mx("mail.example.com"));
        assert!(p.matches_mx("MAIL.Example.Com."));
        assert!(!p.matches_mx("mail.example.com.evil"));
        assert!(!p.matches_mx("example.com"));
        assert!(p.matches_mx("mx.example.net"));
        assert!(p.matches_mx("MX1.EXAMPLE.NET."));
        assert!(!p.matches_mx("a.b.example.net"));
        assert!(!p.matches_mx("example.net"));
        assert!(!p.matches_mx(".example.net"));
        assert!(!p.matches_mx("xexample.net"));
        assert!(!p.matches_mx(""));
        assert!(!p.matches_mx("."));
    }
}
