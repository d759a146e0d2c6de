//! The `_smtp._tls` TXT record (RFC 8460 §3): where a domain wants its
//! reports.
//!
//! ```text
//! tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//! field-delim      = *WSP ";" *WSP
//! tlsrpt-field     = tlsrpt-rua / tlsrpt-extension
//! tlsrpt-version   = %s"v=TLSRPTv1"
//! tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//! tlsrpt-uri       = URI   ; commas and "!" MUST be percent-encoded
//! tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
//! tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//! tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
//! ```
//!
//! Unlike DMARC's, a TLS-RPT `rua` URI has no `!size` suffix: "!" must be
//! encoded, so one here is an error.

use crate::error::{Error, Result};
use crate::model::normalize_domain;
use crate::report::is_domain;

/// One report destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rua {
    /// `mailto:`: mail the report to `address`. `uri` is
    /// `mailto:<address>`, one per address (query parts dropped).
    Mailto { uri: String, address: String },
    /// `https:`: POST the report to `uri`, as published.
    Https { uri: String },
}

impl Rua {
    /// The destination as a URI: the key of its delivery state in the
    /// store.
    pub fn uri(&self) -> &str {
        match self {
            Rua::Mailto { uri, .. } | Rua::Https { uri } => uri,
        }
    }
}

/// A parsed record: its destinations, in order, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptRecord {
    pub rua: Vec<Rua>,
}

/// Where the record of `policy_domain` is published.
pub fn record_name(policy_domain: &str) -> String {
    format!("_smtp._tls.{}", normalize_domain(policy_domain))
}

/// A record's character-strings joined without separators, as §3 says
/// (invalid UTF-8 is replaced, and then fails the URI checks).
pub fn join_strings<S: AsRef<[u8]>>(strings: &[S]) -> String {
    let bytes: Vec<u8> = strings.iter().flat_map(|s| s.as_ref().to_vec()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Picks and parses the TLS-RPT record among the TXT records of
/// `_smtp._tls.<domain>`, each already joined (as `dns::Resolver::txt`
/// returns them). Records not starting with the version are ignored; none
/// left is [`Error::NoRecord`], more than one is
/// [`Error::MultipleRecords`] (§3: the domain then does not implement
/// TLS-RPT).
pub fn parse_txt<S: AsRef<str>>(records: &[S]) -> Result<TlsRptRecord> {
    let ours: Vec<&str> = records
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| is_tlsrpt(r))
        .collect();
    match ours.as_slice() {
        [] => Err(Error::NoRecord),
        [one] => parse_record(one),
        many => Err(Error::MultipleRecords(many.len())),
    }
}

/// The version field, complete (so `v=TLSRPTv10` is someone else's).
fn is_tlsrpt(r: &str) -> bool {
    r.strip_prefix("v=TLSRPTv1")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([';', ' ', '\t']))
}

/// Parses one record (its strings joined).
pub fn parse_record(record: &str) -> Result<TlsRptRecord> {
    let invalid = |m: String| Error::InvalidRecord(m);
    let mut fields = record.split(';');
    let version = fields.next().unwrap_or_default();
    if version.trim_end_matches(WSP) != "v=TLSRPTv1" {
        return Err(invalid(format!(
            "must start with \"v=TLSRPTv1;\", not {:?}",
            clip(version)
        )));
    }
    let mut rest: Vec<&str> = fields.map(|f| f.trim_matches(WSP)).collect();
    if rest.last() == Some(&"") {
        rest.pop();
    }
    if rest.is_empty() {
        return Err(invalid(
            "no fields after the version (rua= is required)".into(),
        ));
    }
    let mut rua: Vec<Rua> = Vec::new();
    let mut seen_rua = false;
    for field in rest {
        if field.is_empty() {
            return Err(invalid("empty field (\";;\")".into()));
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(invalid(format!(
                "field {:?} is not name=value",
                clip(field)
            )));
        };
        if name == "rua" {
            // Several rua fields are grammatical; their URIs add up.
            seen_rua = true;
            for uri in value.split(',') {
                for r in parse_uri(uri.trim_matches(WSP))? {
                    if !rua.contains(&r) {
                        rua.push(r);
                    }
                }
            }
        } else if !is_ext_name(name) {
            return Err(invalid(format!("bad field name {:?}", clip(name))));
        } else if value.is_empty() || !value.bytes().all(is_ext_value_byte) {
            return Err(invalid(format!(
                "bad value for field {name:?}: {:?}",
                clip(value)
            )));
        }
        // Other extensions are valid and ignored (§3).
    }
    if !seen_rua {
        return Err(invalid("no rua= field".into()));
    }
    Ok(TlsRptRecord { rua })
}

const WSP: [char; 2] = [' ', '\t'];

fn is_ext_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

fn is_ext_value_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x3a | 0x3c | 0x3e..=0x7e)
}

/// RFC 3986 characters (unreserved, reserved, "%"); "!" and "," are
/// excluded because §3 requires them encoded.
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b';'
                | b'='
                | b'%'
        )
}

fn parse_uri(uri: &str) -> Result<Vec<Rua>> {
    let invalid = |m: String| Error::InvalidRecord(m);
    if uri.is_empty() {
        return Err(invalid("empty rua URI".into()));
    }
    if let Some(b) = uri.bytes().find(|&b| !is_uri_byte(b)) {
        let what = match b {
            b'!' => "\"!\" (it must be percent-encoded; TLS-RPT has no size limits)".to_string(),
            b' ' | b'\t' => "a space".to_string(),
            _ => format!("{:?}", char::from(b)),
        };
        return Err(invalid(format!("rua URI {:?} contains {what}", clip(uri))));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(invalid(format!(
            "rua {:?} is not a URI (no scheme)",
            clip(uri)
        )));
    };
    if scheme.eq_ignore_ascii_case("mailto") {
        let to = rest.split_once('?').map_or(rest, |(to, _)| to);
        let decoded = percent_decode(to)
            .ok_or_else(|| invalid(format!("rua {:?}: bad percent-encoding", clip(uri))))?;
        let mut out = Vec::new();
        for address in decoded.split(',') {
            if !is_address(address) {
                return Err(invalid(format!(
                    "rua {:?}: {:?} is not a mail address",
                    clip(uri),
                    clip(address)
                )));
            }
            out.push(Rua::Mailto {
                uri: format!("mailto:{address}"),
                address: address.to_string(),
            });
        }
        Ok(out)
    } else if scheme.eq_ignore_ascii_case("https") {
        let url =
            reqwest::Url::parse(uri).map_err(|e| invalid(format!("rua {:?}: {e}", clip(uri))))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(format!("rua {:?}: no host", clip(uri))));
        }
        Ok(vec![Rua::Https {
            uri: uri.to_string(),
        }])
    } else {
        Err(invalid(format!(
            "rua {:?}: unsupported scheme {:?} (mailto: and https: only)",
            clip(uri),
            clip(scheme)
        )))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `dot-atom@domain`, ASCII: what can go into `To:` and `RCPT TO`
/// without quoting.
fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    let atom = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c);
    !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(atom))
        && is_domain(domain)
        && domain.contains('.')
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailto(a: &str) -> Rua {
        Rua::Mailto {
            uri: format!("mailto:{a}"),
            address: a.into(),
        }
    }

    fn https(u: &str) -> Rua {
        Rua::Https { uri: u.into() }
    }

    fn err(r: &str) -> String {
        match parse_record(r) {
            Err(Error::InvalidRecord(m)) => m,
            other => panic!("{r:?}: {other:?}"),
        }
    }

    #[test]
    fn valid_records() {
        let r = parse_record("v=TLSRPTv1; rua=mailto:tlsrpt@example.com").unwrap();
        assert_eq!(r.rua, vec![mailto("tlsrpt@example.com")]);
        let r =
            parse_record("v=TLSRPTv1 ;rua=mailto:a@example.com , https://r.example.com/tls?x=1;")
                .unwrap();
        assert_eq!(
            r.rua,
            vec![
                mailto("a@example.com"),
                https("https://r.example.com/tls?x=1")
            ]
        );
        // Extensions are ignored; a second rua adds up; duplicates go.
        let r = parse_record(
            "v=TLSRPTv1;ext.x-1=val;rua=MAILTO:a@example.com;rua=mailto:a@example.com,mailto:b%2Bx@example.com?subject=hi",
        )
        .unwrap();
        assert_eq!(
            r.rua,
            vec![mailto("a@example.com"), mailto("b+x@example.com")]
        );
        // Encoded comma: two addresses in one mailto URI.
        let r = parse_record("v=TLSRPTv1;rua=mailto:a@example.com%2Cb@example.com").unwrap();
        assert_eq!(
            r.rua,
            vec![mailto("a@example.com"), mailto("b@example.com")]
        );
    }

    #[test]
    fn invalid_records() {
        assert!(err("v=TLSRPTv1").contains("rua= is required"));
        assert!(err("v=TLSRPTv1;").contains("rua= is required"));
        assert!(err("v=TLSRPTv1;foo=bar").contains("no rua"));
        assert!(err("v=TLSRPTv1;RUA=mailto:a@example.com").contains("no rua"));
        assert!(err("v=TLSRPTv1;;rua=mailto:a@example.com").contains("empty field"));
        assert!(err("v=TLSRPTv1;rua").contains("not name=value"));
        assert!(err("v=TLSRPTv1;rua =mailto:a@example.com").contains("bad field name"));
        assert!(err("v=TLSRPTv1;rua=").contains("empty rua URI"));
        assert!(err("v=TLSRPTv1;rua=mailto:a@example.com!10m").contains("percent-encoded"));
        assert!(err("v=TLSRPTv1;rua=http://example.com/").contains("unsupported scheme"));
        assert!(err("v=TLSRPTv1;rua=ftp://example.com/").contains("unsupported scheme"));
        assert!(err("v=TLSRPTv1;rua=example.com").contains("no scheme"));
        assert!(err("v=TLSRPTv1;rua=mailto:nobody").contains("not a mail address"));
        assert!(err("v=TLSRPTv1;rua=mailto:a%0D%0Ab@x.com").contains("not a mail address"));
        assert!(err("v=TLSRPTv1;rua=mailto:a@example.com%zz").contains("percent-encoding"));
        assert!(err("v=TLSRPTv1;rua=https://").contains("rua"));
        assert!(err("v=TLSRPTv1;rua=mailto:a@exämple.com").contains("contains"));
        assert!(err("v=TLSRPTv1;x=a b;rua=mailto:a@example.com").contains("bad value"));
        assert!(err("v=tlsrptv1;rua=mailto:a@example.com").contains("must start"));
    }

    #[test]
    fn record_selection() {
        assert!(matches!(parse_txt::<&str>(&[]), Err(Error::NoRecord)));
        assert!(matches!(
            parse_txt(&["v=spf1 -all", "v=TLSRPTv10; rua=mailto:a@example.com"]),
            Err(Error::NoRecord)
        ));
        let r = parse_txt(&["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.com"]).unwrap();
        assert_eq!(r.rua.len(), 1);
        assert!(matches!(
            parse_txt(&[
                "v=TLSRPTv1; rua=mailto:a@example.com",
                "v=TLSRPTv1; rua=mailto:b@example.com"
            ]),
            Err(Error::MultipleRecords(2))
        ));
        // One record split into several strings.
        let joined = join_strings(&[
            &b"v=TLSRPTv1; rua=mailto:tls"[..],
            &b"rpt@example.com,https://rep"[..],
            &b"orts.example.com/v1"[..],
        ]);
        let r = parse_txt(&[joined]).unwrap();
        assert_eq!(
            r.rua,
            vec![
                mailto("tlsrpt@example.com"),
                https("https://reports.example.com/v1")
            ]
        );
        assert_eq!(record_name("Example.COM."), "_smtp._tls.example.com");
    }
}
