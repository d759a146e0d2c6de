//! `Authentication-Results` (RFC 8601): writing the header field, and
//! removing the ones that claim to be ours (§5) before we add our own.
//! Also the header-section scanner the other checks share.

use crate::AuthResult;

/// One header field of a message: its name as written (no colon), its
/// value from after the colon through the line ending of its last line
/// (folding included), and where the whole field lies in the message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    pub start: usize,
    pub end: usize,
}

impl Field<'_> {
    /// The name without the white space obsolete syntax allows before the
    /// colon.
    pub fn name_is(&self, name: &str) -> bool {
        trim_wsp(self.name).eq_ignore_ascii_case(name.as_bytes())
    }
}

fn trim_wsp(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(0, |p| p + 1);
    &b[..end]
}

/// The header fields of `message` and the offset of its body (the end of
/// the message when there is no empty line). Lines end in CRLF or LF; a
/// line starting with SP or HTAB continues the field before it. Linear in
/// the size of the header section.
pub(crate) fn fields(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") {
            return (out, pos + 2);
        }
        if rest.starts_with(b"\n") {
            return (out, pos + 1);
        }
        // The field runs to the first line ending not followed by WSP.
        let mut end = message.len();
        let mut scan = pos;
        while let Some(nl) = memchr::memchr(b'\n', &message[scan..]) {
            let after = scan + nl + 1;
            if matches!(message.get(after), Some(b' ' | b'\t')) {
                scan = after;
            } else {
                end = after;
                break;
            }
        }
        let field = &message[pos..end];
        let first_line_end = memchr::memchr(b'\n', field).unwrap_or(field.len());
        let (name, value) = match memchr::memchr(b':', &field[..first_line_end]) {
            Some(colon) => (&field[..colon], &field[colon + 1..]),
            None => (
                &field[..first_line_end],
                &field[first_line_end..first_line_end],
            ),
        };
        out.push(Field {
            name,
            value,
            start: pos,
            end,
        });
        pos = end;
    }
    (out, message.len())
}

/// The `Authentication-Results` header field for `results`, as
/// `authserv-id` `serv_id`: one `resinfo` per line, values quoted when
/// they are not RFC 2045 tokens, `none` when there are no results. Ends
/// in CRLF. Control characters in values become spaces (no header
/// injection) and very long values are cut, so no line reaches the 998
/// octet limit.
pub fn authentication_results(serv_id: &str, results: &[AuthResult]) -> String {
    let mut out = format!("Authentication-Results: {};", value(serv_id));
    if results.is_empty() {
        out.push_str(" none\r\n");
        return out;
    }
    for (n, r) in results.iter().enumerate() {
        out.push_str("\r\n\t");
        let mut line = String::new();
        line.push_str(&token(&r.method));
        if let Some(v) = r.method_version {
            line.push_str(&format!("/{v}"));
        }
        line.push('=');
        line.push_str(&token(&r.result));
        let mut items = Vec::new();
        if let Some(reason) = &r.reason {
            items.push(format!("reason={}", value(reason)));
        }
        // Quoted values last: RFC 8601 does not mind, and some parsers
        // (Python's authres) only take a quoted-string at the end.
        let (bare, quoted): (Vec<String>, Vec<String>) = r
            .props
            .iter()
            .map(|(k, v)| format!("{}={}", property(k), pvalue(v)))
            .partition(|item| !item.ends_with('"'));
        items.extend(bare);
        items.extend(quoted);
        // "\t" counts as one column here; fold before an item that would
        // take the line past 78 columns.
        let mut col = 1 + line.len();
        for item in items {
            if col + 1 + item.len() > 78 {
                line.push_str("\r\n\t");
                col = 1;
            } else {
                line.push(' ');
                col += 1;
            }
            col += item.len();
            line.push_str(&item);
        }
        out.push_str(&line);
        if n + 1 < results.len() {
            out.push(';');
        }
    }
    out.push_str("\r\n");
    out
}

/// RFC 2045 token characters: visible ASCII but tspecials.
fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Longest value written (a line must stay under 998 octets).
const MAX_VALUE: usize = 900;

fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// A method, result or property name: tokens by construction; anything
/// else is dropped rather than allowed to break the grammar.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| is_token_char(*c) && *c != '.')
        .collect();
    if t.is_empty() {
        "none".into()
    } else {
        t
    }
}

/// `ptype "." property`.
fn property(s: &str) -> String {
    s.split('.')
        .map(|p| p.chars().filter(|c| is_token_char(*c)).collect::<String>())
        .collect::<Vec<_>>()
        .join(".")
}

/// `value = token / quoted-string`.
fn value(s: &str) -> String {
    let s = clean(s);
    if !s.is_empty() && s.chars().all(is_token_char) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `pvalue = value / [ [ local-part ] "@" ] domain-name`: addresses with
/// a dot-atom local part stay bare, as RFC 8601's examples write them.
fn pvalue(s: &str) -> String {
    let c = clean(s);
    if let Some((local, domain)) = c.rsplit_once('@') {
        let atext = |ch: char| ch.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(ch);
        let dot_atom =
            |t: &str| !t.is_empty() && t.split('.').all(|p| !p.is_empty() && p.chars().all(atext));
        let domain_ok = !domain.is_empty()
            && domain.split('.').all(|l| {
                !l.is_empty() && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            });
        if domain_ok && (local.is_empty() || dot_atom(local)) {
            return c;
        }
    }
    value(&c)
}

/// Removes every `Authentication-Results` field of `message`'s header
/// section whose authserv-id is `serv_id` (ASCII case-insensitive), as a
/// border MTA must before adding its own (RFC 8601 §5); returns how many.
/// Folded fields go whole; comments before the authserv-id are skipped.
pub fn strip_claiming(message: &mut Vec<u8>, serv_id: &str) -> usize {
    let (fields, _) = fields(message);
    let doomed: Vec<(usize, usize)> = fields
        .iter()
        .filter(|f| f.name_is("Authentication-Results"))
        .filter(|f| authserv_id(f.value).is_some_and(|id| id.eq_ignore_ascii_case(serv_id)))
        .map(|f| (f.start, f.end))
        .collect();
    if doomed.is_empty() {
        return 0;
    }
    let mut kept = Vec::with_capacity(message.len());
    let mut from = 0;
    for (start, end) in &doomed {
        kept.extend_from_slice(&message[from..*start]);
        from = *end;
    }
    kept.extend_from_slice(&message[from..]);
    *message = kept;
    doomed.len()
}

/// The authserv-id at the start of an `Authentication-Results` value:
/// after CFWS, a token or a quoted-string.
fn authserv_id(v: &[u8]) -> Option<String> {
    let mut i = skip_cfws(v, 0);
    if v.get(i) == Some(&b'"') {
        let mut out = Vec::new();
        i += 1;
        while i < v.len() {
            match v[i] {
                b'\\' if i + 1 < v.len() => {
                    out.push(v[i + 1]);
                    i += 2;
                }
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\r' | b'\n' => i += 1,
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    let start = i;
    while i < v.len() && !matches!(v[i], b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b'"') {
        i += 1;
    }
    (i > start).then(|| String::from_utf8_lossy(&v[start..i]).into_owned())
}

/// Skips white space, folding and (nested) comments.
fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < v.len() {
        match v[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn r(method: &str, result: &str, reason: Option<&str>, props: &[(&str, &str)]) -> AuthResult {
        AuthResult {
            method: method.into(),
            method_version: None,
            result: result.into(),
            reason: reason.map(Into::into),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn writes_the_field() {
        assert_eq!(
            authentication_results("mx.example.org", &[]),
            "Authentication-Results: mx.example.org; none\r\n"
        );
        let h = authentication_results(
            "mx.example.org",
            &[
                r(
                    "dkim",
                    "pass",
                    None,
                    &[("header.d", "example.com"), ("header.b", "ab/+c=")],
                ),
                r(
                    "spf",
                    "fail",
                    Some("'-all' matched\r\nX-Injected: yes"),
                    &[("smtp.mailfrom", "user@example.com")],
                ),
            ],
        );
        assert_eq!(
            h,
            "Authentication-Results: mx.example.org;\r\n\
             \tdkim=pass header.d=example.com header.b=\"ab/+c=\";\r\n\
             \tspf=fail reason=\"'-all' matched  X-Injected: yes\"\r\n\
             \tsmtp.mailfrom=user@example.com\r\n"
        );
    }

    #[test]
    fn scans_fields() {
        let m = b"A: 1\r\nB: 2\r\n  2b\r\nC:3\r\n\r\nbody";
        let (f, body) = fields(m);
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].value, b" 2\r\n  2b\r\n");
        assert_eq!(&m[body..], b"body");
        let (f, body) = fields(b"A: 1\nB: 2");
        assert_eq!(f.len(), 2);
        assert_eq!(body, 9);
    }

    #[test]
    fn strips_ours_only() {
        let mut m = b"Received: x\r\n\
            Authentication-Results: (comment) MX.Example.ORG;\r\n\tspf=pass\r\n\
            Authentication-Results: other.example; spf=fail\r\n\
            authentication-results : \"mx.example.org\" 1; dkim=pass\r\n\
            Subject: hi\r\n\r\n\
            Authentication-Results: mx.example.org; in the body\r\n"
            .to_vec();
        assert_eq!(strip_claiming(&mut m, "mx.example.org"), 2);
        assert_eq!(
            m,
            b"Received: x\r\n\
            Authentication-Results: other.example; spf=fail\r\n\
            Subject: hi\r\n\r\n\
            Authentication-Results: mx.example.org; in the body\r\n"
        );
        assert_eq!(strip_claiming(&mut m, "mx.example.org"), 0);
    }
}
