//! Building RFC 5322 / MIME messages for the object form of
//! `POST /api/inject/v1` `content`: headers are encoded (RFC 2047 for
//! non-ASCII text) and folded, bodies are sent as 7bit when they can be and
//! quoted-printable otherwise, attachments as base64, every line ends in
//! CRLF, and no caller-supplied value can add a header line.

use base64::Engine;
use ironpost_wire::address::{parse_forward_path, Mailbox};
use std::fmt::Write;

/// Longest header or body line SMTP allows, without CRLF (RFC 5322 2.1.1).
pub const MAX_LINE: usize = 998;
/// Where header lines are folded when they can be.
const FOLD_AT: usize = 78;

/// Make every line end in CRLF: a bare LF or a bare CR becomes CRLF.
pub fn normalize_crlf(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 32);
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// An envelope or header address: RFC 5321 syntax (UTF-8 allowed), with a
/// domain, no source route and no control characters.
pub fn parse_address(email: &str) -> Result<Mailbox, String> {
    if email.is_empty() {
        return Err("empty address".into());
    }
    if email.chars().any(|c| c.is_control()) || email.contains(['<', '>']) {
        return Err(format!("{email:?} is not a valid email address"));
    }
    let bracketed = format!("<{email}>");
    let (mbox, rest) = parse_forward_path(&bracketed, true)
        .map_err(|e| format!("{email:?} is not a valid email address: {e}"))?;
    if !rest.trim().is_empty() || mbox.domain.is_none() || email.starts_with('@') {
        return Err(format!("{email:?} is not a valid email address"));
    }
    Ok(mbox)
}

/// `=?UTF-8?B?...?=` words of at most 75 characters, split on character
/// boundaries.
fn encoded_words(text: &str) -> String {
    const MAX_CHUNK: usize = 45; // 45 bytes -> 60 base64 chars + 12 = 72
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + MAX_CHUNK).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let chunk = &text[start..end];
        words.push(format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(chunk)
        ));
        start = end;
    }
    // Separated by plain spaces (ignored between encoded words); [`fold`]
    // breaks the line at them.
    words.join(" ")
}

fn needs_encoding(text: &str) -> bool {
    !text.is_ascii() || text.contains("=?")
}

/// Fold `Name: value` at spaces so lines stay near 78 characters; a word
/// that cannot be folded may run to 998.
fn fold(name: &str, value: &str) -> Result<String, String> {
    if value.contains(['\r', '\n']) {
        return Err(format!("header {name} contains a line break"));
    }
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut line_len = out.len();
    for word in value.split(' ') {
        // One space after the colon and between words; a fold puts CRLF
        // before the space it breaks at, so unfolding restores the value.
        if line_len + 1 + word.len() > FOLD_AT && line_len > name.len() + 1 && !word.is_empty() {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        line_len += 1;
        out.push_str(word);
        line_len += word.len();
        if line_len > MAX_LINE {
            return Err(format!(
                "header {name} has a line longer than {MAX_LINE} characters"
            ));
        }
    }
    out.push_str("\r\n");
    Ok(out)
}

/// An unstructured header (Subject, custom headers): RFC 2047 when not
/// plain ASCII. CR and LF are refused rather than removed.
pub fn unstructured(name: &str, value: &str) -> Result<String, String> {
    if value.contains(['\r', '\n']) {
        return Err(format!("header {name} contains a line break"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("header {name} contains a control character"));
    }
    if needs_encoding(value) {
        fold(name, &encoded_words(value))
    } else {
        fold(name, value)
    }
}

fn is_atext_phrase(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

/// `Display Name <local@domain>` (or the bare address without a name).
pub fn mailbox(name: Option<&str>, email: &str) -> Result<String, String> {
    parse_address(email)?;
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Ok(email.to_string());
    };
    if name.chars().any(char::is_control) {
        return Err(format!(
            "display name for {email} contains a control character"
        ));
    }
    let phrase = if needs_encoding(name) {
        encoded_words(name)
    } else if is_atext_phrase(name) {
        name.to_string()
    } else {
        let mut q = String::from("\"");
        for c in name.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    };
    Ok(format!("{phrase} <{email}>"))
}

/// A header field name: printable US-ASCII without a colon (RFC 5322
/// 3.6.8), at most 76 characters.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Quoted-printable (RFC 2045 6.7) of CRLF-normalized text, lines of at
/// most 76 characters.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let lines: Vec<&str> = text.split("\r\n").collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        let mut len = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let at_end = j + 1 == bytes.len();
            let literal = matches!(b, 33..=60 | 62..=126) || ((b == b' ' || b == b'\t') && !at_end);
            let token_len = if literal { 1 } else { 3 };
            // Leave room for the soft break's '='.
            if len + token_len > 75 {
                out.push_str("=\r\n");
                len = 0;
            }
            if literal {
                out.push(b as char);
            } else {
                let _ = write!(out, "={b:02X}");
            }
            len += token_len;
        }
        if i != last {
            out.push_str("\r\n");
        }
    }
    out
}

fn base64_lines(data: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// `(Content-Transfer-Encoding, encoded body ending in CRLF)` for text.
fn encode_text(text: &str) -> (&'static str, String) {
    let mut body = normalize_crlf(text);
    if !body.ends_with("\r\n") {
        body.push_str("\r\n");
    }
    let seven_bit =
        body.is_ascii() && !body.contains('\0') && body.split("\r\n").all(|l| l.len() <= MAX_LINE);
    if seven_bit {
        ("7bit", body)
    } else {
        ("quoted-printable", quoted_printable(&body))
    }
}

/// One attachment, its data already decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub data: Vec<u8>,
    pub content_type: String,
    pub file_name: Option<String>,
    /// Present for inline parts (`multipart/related`), without `<>`.
    pub content_id: Option<String>,
}

/// Everything that goes into a built message.
#[derive(Clone, Debug, Default)]
pub struct MessageParts {
    /// Rendered `From:` value (see [`mailbox`]).
    pub from: String,
    /// Rendered `To:` value.
    pub to: String,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    /// Domain for the generated Message-ID.
    pub message_id_domain: String,
    /// Caller headers in order; `From`, `To`, `Subject`, `Reply-To`,
    /// `Date` and `Message-ID` replace the generated ones.
    pub headers: Vec<(String, String)>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attachments: Vec<Attachment>,
}

enum Part {
    Leaf {
        headers: String,
        body: String,
    },
    Multi {
        subtype: &'static str,
        extra: String,
        parts: Vec<Part>,
    },
}

fn new_boundary() -> String {
    format!("=_ironpost_{}", uuid::Uuid::now_v7().simple())
}

impl Part {
    fn text(subtype: &str, text: &str) -> Part {
        let (cte, body) = encode_text(text);
        Part::Leaf {
            headers: format!(
                "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n"
            ),
            body,
        }
    }

    fn attachment(a: &Attachment) -> Result<Part, String> {
        let ct = a.content_type.trim();
        let valid_ct = ct.is_ascii() && ct.split(';').next().is_some_and(|t| {
            let mut it = t.trim().splitn(2, '/');
            matches!((it.next(), it.next()), (Some(a), Some(b)) if !a.is_empty() && !b.is_empty())
        }) && !ct.chars().any(|c| c.is_control());
        if !valid_ct {
            return Err(format!("attachment content_type {ct:?} is not a MIME type"));
        }
        let mut headers = format!("Content-Type: {ct}\r\nContent-Transfer-Encoding: base64\r\n");
        let disposition = if a.content_id.is_some() {
            "inline"
        } else {
            "attachment"
        };
        match &a.file_name {
            Some(f) => {
                if f.chars().any(|c| c.is_control()) {
                    return Err("attachment file_name contains a control character".into());
                }
                if f.is_ascii() {
                    let escaped = f.replace('\\', "\\\\").replace('"', "\\\"");
                    headers.push_str(&fold(
                        "Content-Disposition",
                        &format!("{disposition}; filename=\"{escaped}\""),
                    )?);
                } else {
                    // RFC 2231 extended parameter.
                    let mut enc = String::new();
                    for b in f.bytes() {
                        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                            enc.push(b as char);
                        } else {
                            let _ = write!(enc, "%{b:02X}");
                        }
                    }
                    headers.push_str(&format!(
                        "Content-Disposition: {disposition};\r\n filename*=UTF-8''{enc}\r\n"
                    ));
                }
            }
            None => {
                let _ = write!(headers, "Content-Disposition: {disposition}\r\n");
            }
        }
        if let Some(id) = &a.content_id {
            let ok = !id.is_empty()
                && id.len() <= 200
                && id
                    .bytes()
                    .all(|b| (33..=126).contains(&b) && b != b'<' && b != b'>');
            if !ok {
                return Err(format!("attachment content_id {id:?} is not valid"));
            }
            let _ = write!(headers, "Content-ID: <{id}>\r\n");
        }
        Ok(Part::Leaf {
            headers,
            body: base64_lines(&a.data),
        })
    }

    /// `(part headers, part body)`.
    fn render(self) -> (String, String) {
        match self {
            Part::Leaf { headers, body } => (headers, body),
            Part::Multi {
                subtype,
                extra,
                parts,
            } => {
                let rendered: Vec<(String, String)> = parts.into_iter().map(Part::render).collect();
                let mut boundary = new_boundary();
                while rendered
                    .iter()
                    .any(|(h, b)| h.contains(&boundary) || b.contains(&boundary))
                {
                    boundary = new_boundary();
                }
                let headers = format!(
                    "Content-Type: multipart/{subtype};{extra}\r\n boundary=\"{boundary}\"\r\n"
                );
                let mut body = String::new();
                for (h, b) in rendered {
                    let _ = write!(body, "--{boundary}\r\n{h}\r\n{b}");
                }
                let _ = write!(body, "--{boundary}--\r\n");
                (headers, body)
            }
        }
    }
}

const STRUCTURAL: [&str; 3] = ["content-type", "content-transfer-encoding", "mime-version"];
const REPLACEABLE: [&str; 6] = ["from", "to", "subject", "reply-to", "date", "message-id"];

/// Build the message: headers, then a single text part, a
/// `multipart/alternative` when both bodies are given, wrapped in
/// `multipart/related` for inline attachments and `multipart/mixed` for
/// the others.
pub fn build(p: &MessageParts) -> Result<Vec<u8>, String> {
    let body = match (&p.text_body, &p.html_body) {
        (Some(t), Some(h)) => Part::Multi {
            subtype: "alternative",
            extra: String::new(),
            parts: vec![Part::text("plain", t), Part::text("html", h)],
        },
        (Some(t), None) => Part::text("plain", t),
        (None, Some(h)) => Part::text("html", h),
        (None, None) => return Err("content needs text_body, html_body or both".into()),
    };
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) =
        p.attachments.iter().partition(|a| a.content_id.is_some());
    let mut body = body;
    if !inline.is_empty() {
        let root_type = match (&p.text_body, &p.html_body) {
            (Some(_), Some(_)) => "multipart/alternative",
            (None, Some(_)) => "text/html",
            _ => "text/plain",
        };
        let mut parts = vec![body];
        for a in inline {
            parts.push(Part::attachment(a)?);
        }
        body = Part::Multi {
            subtype: "related",
            extra: format!(" type=\"{root_type}\";"),
            parts,
        };
    }
    if !attached.is_empty() {
        let mut parts = vec![body];
        for a in attached {
            parts.push(Part::attachment(a)?);
        }
        body = Part::Multi {
            subtype: "mixed",
            extra: String::new(),
            parts,
        };
    }

    let mut custom: Vec<(String, String)> = Vec::new();
    let mut replaced: Vec<(String, String)> = Vec::new();
    for (name, value) in &p.headers {
        if !valid_header_name(name) {
            return Err(format!("{name:?} is not a valid header name"));
        }
        let lower = name.to_ascii_lowercase();
        if STRUCTURAL.contains(&lower.as_str()) {
            return Err(format!(
                "header {name} cannot be set: the MIME structure is built by Ironpost"
            ));
        }
        if REPLACEABLE.contains(&lower.as_str()) {
            replaced.push((lower, value.clone()));
        } else {
            custom.push((name.clone(), value.clone()));
        }
    }
    let replacement = |lower: &str| {
        replaced
            .iter()
            .rev()
            .find(|(n, _)| n == lower)
            .map(|(_, v)| v.as_str())
    };
    let address_header = |name: &str, generated: &str| -> Result<String, String> {
        match replacement(&name.to_ascii_lowercase()) {
            // A caller's address header: ASCII only (an encoded word would
            // corrupt the address), no line breaks.
            Some(v) => {
                if !v.is_ascii() || v.chars().any(|c| c.is_control()) {
                    return Err(format!(
                        "header {name} must be ASCII without control characters; use the from object for a display name"
                    ));
                }
                fold(name, v)
            }
            None => fold(name, generated),
        }
    };

    let mut out = String::new();
    out.push_str(&address_header("From", &p.from)?);
    out.push_str(&address_header("To", &p.to)?);
    if let Some(s) = replacement("subject").or(p.subject.as_deref()) {
        out.push_str(&unstructured("Subject", s)?);
    }
    if replacement("reply-to").is_some() || p.reply_to.is_some() {
        out.push_str(&address_header(
            "Reply-To",
            p.reply_to.as_deref().unwrap_or(""),
        )?);
    }
    let date = chrono::Local::now().to_rfc2822();
    out.push_str(&unstructured("Date", replacement("date").unwrap_or(&date))?);
    let msgid = format!(
        "<{}@{}>",
        uuid::Uuid::now_v7().simple(),
        p.message_id_domain
    );
    out.push_str(&unstructured(
        "Message-ID",
        replacement("message-id").unwrap_or(&msgid),
    )?);
    for (name, value) in &custom {
        out.push_str(&unstructured(name, value)?);
    }
    out.push_str("MIME-Version: 1.0\r\n");
    let (part_headers, part_body) = body.render();
    out.push_str(&part_headers);
    out.push_str("\r\n");
    out.push_str(&part_body);
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> MessageParts {
        MessageParts {
            from: mailbox(Some("Sender"), "sender@example.com").unwrap(),
            to: mailbox(None, "rcpt@example.net").unwrap(),
            subject: Some("Hello".into()),
            message_id_domain: "example.com".into(),
            text_body: Some("plain body\nsecond line".into()),
            ..MessageParts::default()
        }
    }

    fn text(m: &[u8]) -> String {
        String::from_utf8(m.to_vec()).unwrap()
    }

    fn header_block(m: &str) -> &str {
        &m[..m.find("\r\n\r\n").unwrap() + 2]
    }

    /// Every line ends in CRLF and none is longer than 998.
    fn assert_wire_clean(m: &str) {
        assert!(m.ends_with("\r\n"));
        for (i, b) in m.bytes().enumerate() {
            if b == b'\n' {
                assert_eq!(m.as_bytes()[i - 1], b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(m.as_bytes()[i + 1], b'\n', "bare CR at {i}");
            }
        }
        assert!(m.split("\r\n").all(|l| l.len() <= MAX_LINE));
    }

    #[test]
    fn single_text_part() {
        let m = text(&build(&parts()).unwrap());
        assert_wire_clean(&m);
        let h = header_block(&m);
        assert!(h.starts_with(
            "From: Sender <sender@example.com>\r\nTo: rcpt@example.net\r\nSubject: Hello\r\nDate: "
        ));
        assert!(h.contains("\r\nMessage-ID: <"));
        assert!(h.contains("@example.com>\r\n"));
        assert!(h.contains("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"));
        assert!(m.ends_with("\r\n\r\nplain body\r\nsecond line\r\n"));
        // The Date parses back as RFC 2822.
        let date = h.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        chrono::DateTime::parse_from_rfc2822(date).unwrap();
    }

    #[test]
    fn alternative_when_both_bodies() {
        let mut p = parts();
        p.html_body = Some("<p>caf\u{e9}</p>".into());
        let m = text(&build(&p).unwrap());
        assert_wire_clean(&m);
        let h = header_block(&m);
        assert!(h.contains("Content-Type: multipart/alternative;\r\n boundary=\"=_ironpost_"));
        let boundary = h
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let body = &m[h.len() + 2..];
        let sections: Vec<&str> = body.split(&format!("--{boundary}")).collect();
        // preamble (empty), text, html, closing "--\r\n"
        assert_eq!(sections.len(), 4, "{body}");
        assert!(sections[1].contains("Content-Type: text/plain; charset=utf-8"));
        assert!(sections[2].contains("Content-Type: text/html; charset=utf-8"));
        assert!(sections[2].contains("Content-Transfer-Encoding: quoted-printable"));
        assert!(sections[2].contains("<p>caf=C3=A9</p>"));
        assert_eq!(sections[3], "--\r\n");
    }

    #[test]
    fn encoded_headers_and_names() {
        let mut p = parts();
        p.subject = Some("Gr\u{fc}\u{df}e aus K\u{f6}ln".into());
        p.from = mailbox(Some("J\u{fc}rgen M\u{fc}ller"), "j@example.com").unwrap();
        p.to = mailbox(Some("Smith, John"), "rcpt@example.net").unwrap();
        p.headers = vec![("X-Campaign".into(), "spring \u{2603}".into())];
        let m = text(&build(&p).unwrap());
        assert_wire_clean(&m);
        assert!(m.is_ascii());
        assert!(m.contains("Subject: =?UTF-8?B?"));
        assert!(m.contains("From: =?UTF-8?B?"));
        assert!(m.contains("To: \"Smith, John\" <rcpt@example.net>\r\n"));
        assert!(m.contains("X-Campaign: =?UTF-8?B?"));
        // A long non-ASCII display name folds between encoded words.
        let mut p = parts();
        p.from = mailbox(Some(&"\u{fc}ber ".repeat(30)), "j@example.com").unwrap();
        let m = text(&build(&p).unwrap());
        assert_wire_clean(&m);
        let h = header_block(&m);
        assert!(h.starts_with("From: =?UTF-8?B?"));
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        assert!(!h.contains("\r\n\r\n"));
        let from_lines = h.lines().take_while(|l| !l.starts_with("To:")).count();
        assert!(from_lines > 2, "{h}");
        assert!(h.contains(" <j@example.com>\r\nTo: "));
        // Long non-ASCII subjects split into several words of <= 75 chars.
        let mut p = parts();
        p.subject = Some("\u{e9}".repeat(200));
        let m = text(&build(&p).unwrap());
        let subject_lines: Vec<&str> = m
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .collect();
        assert!(subject_lines.len() > 3);
        for l in subject_lines {
            let word = l.trim_start_matches("Subject:").trim();
            assert!(word.len() <= 75 && word.starts_with("=?UTF-8?B?") && word.ends_with("?="));
        }
    }

    #[test]
    fn no_header_injection() {
        let mut p = parts();
        p.subject = Some("hi\r\nBcc: victim@example.org".into());
        assert!(build(&p).unwrap_err().contains("line break"));
        let mut p = parts();
        p.headers = vec![("X-A".into(), "x\nBcc: v@example.org".into())];
        assert!(build(&p).is_err());
        let mut p = parts();
        p.headers = vec![("Bad Name".into(), "x".into())];
        assert!(build(&p).is_err());
        let mut p = parts();
        p.headers = vec![("Content-Type".into(), "text/html".into())];
        assert!(build(&p).unwrap_err().contains("MIME structure"));
        assert!(mailbox(None, "a@b.example\r\nBcc: x@y").is_err());
        assert!(mailbox(Some("x\r\nBcc: y"), "a@b.example").is_err());
        assert!(mailbox(None, "not an address").is_err());
        assert!(mailbox(None, "@route@x.example").is_err());
    }

    #[test]
    fn header_overrides() {
        let mut p = parts();
        p.headers = vec![
            ("Subject".into(), "From headers".into()),
            ("Message-ID".into(), "<fixed@example.com>".into()),
            ("X-Tenant".into(), "mytenant".into()),
        ];
        let m = text(&build(&p).unwrap());
        assert_eq!(m.matches("Subject:").count(), 1);
        assert!(m.contains("Subject: From headers\r\n"));
        assert!(m.contains("Message-ID: <fixed@example.com>\r\n"));
        assert!(m.contains("X-Tenant: mytenant\r\n"));
    }

    #[test]
    fn folding() {
        let mut p = parts();
        let long = "word ".repeat(60);
        p.subject = Some(long.trim().to_string());
        let m = text(&build(&p).unwrap());
        assert_wire_clean(&m);
        let h = header_block(&m);
        assert!(h.lines().all(|l| l.len() <= 80), "{h}");
        // Unfolding gives the value back.
        let unfolded = h.replace("\r\n ", " ");
        assert!(unfolded.contains(&format!("Subject: {}\r\n", long.trim())));
        let mut p = parts();
        p.subject = Some("x".repeat(2000));
        assert!(build(&p).is_err());
    }

    #[test]
    fn long_lines_become_quoted_printable() {
        let mut p = parts();
        p.text_body = Some(format!("{}\n= end ", "a".repeat(1500)));
        let m = text(&build(&p).unwrap());
        assert_wire_clean(&m);
        assert!(m.contains("Content-Transfer-Encoding: quoted-printable"));
        assert!(m
            .split("\r\n")
            .all(|l| l.len() <= 76 || l.starts_with("Content-")));
        assert!(m.contains("=3D end=20\r\n"));
    }

    #[test]
    fn qp_roundtrip_shape() {
        assert_eq!(quoted_printable("a=b \r\nc\t"), "a=3Db=20\r\nc=09");
        let q = quoted_printable(&"\u{e9}".repeat(40));
        assert!(q.split("\r\n").all(|l| l.len() <= 76));
        assert!(q.contains("=\r\n"));
    }

    #[test]
    fn attachments() {
        let mut p = parts();
        p.html_body = Some("<img src=\"cid:logo\">".into());
        p.attachments = vec![
            Attachment {
                data: vec![0, 1, 2, 255],
                content_type: "image/gif".into(),
                file_name: Some("logo.gif".into()),
                content_id: Some("logo".into()),
            },
            Attachment {
                data: b"col1,col2\n".to_vec(),
                content_type: "text/csv".into(),
                file_name: Some("r\u{e9}sum\u{e9}.csv".into()),
                content_id: None,
            },
        ];
        let m = text(&build(&p).unwrap());
        assert_wire_clean(&m);
        assert!(header_block(&m).contains("Content-Type: multipart/mixed;"));
        assert!(m.contains("Content-Type: multipart/related; type=\"multipart/alternative\";"));
        assert!(m.contains("Content-ID: <logo>\r\n"));
        assert!(m.contains("Content-Disposition: inline; filename=\"logo.gif\"\r\n"));
        assert!(m.contains("AAEC/w==\r\n"));
        assert!(m.contains("filename*=UTF-8''r%C3%A9sum%C3%A9.csv"));
        let mut p = parts();
        p.attachments = vec![Attachment {
            data: vec![],
            content_type: "garbage".into(),
            file_name: None,
            content_id: None,
        }];
        assert!(build(&p).is_err());
    }

    #[test]
    fn needs_a_body() {
        let mut p = parts();
        p.text_body = None;
        assert!(build(&p).is_err());
    }

    #[test]
    fn crlf() {
        assert_eq!(normalize_crlf("a\nb\rc\r\nd"), "a\r\nb\r\nc\r\nd");
        assert_eq!(normalize_crlf("\r\r\n"), "\r\n\r\n");
    }
}
