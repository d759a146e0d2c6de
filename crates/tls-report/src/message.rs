//! The report as mail, for `mailto:` destinations (RFC 8460 §5.3).

use chrono::{DateTime, Utc};
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

use crate::error::{Error, Result};
use crate::report::is_domain;

/// What goes into one report message.
#[derive(Debug, Clone)]
pub struct ReportMessage<'a> {
    /// Our report sender address (`From`).
    pub from: &'a str,
    /// The destination address, from the `mailto:` URI.
    pub to: &'a str,
    /// Our domain (`TLS-Report-Submitter`).
    pub submitter: &'a str,
    pub policy_domain: &'a str,
    /// In `id-left@id-right` form (see [`report_id`](crate::report_id)).
    pub report_id: &'a str,
    /// The attachment's name (see [`file_name`](crate::file_name)).
    pub file_name: &'a str,
    /// The gzipped JSON report.
    pub report_gzip: &'a [u8],
    pub date: DateTime<Utc>,
    /// Without angle brackets; `None` makes `<uuid@submitter>`.
    pub message_id: Option<&'a str>,
}

/// Builds the message: CRLF line endings, the report base64-encoded in an
/// `application/tlsrpt+gzip` part of a `multipart/report;
/// report-type="tlsrpt"`.
pub fn build_message(m: &ReportMessage<'_>) -> Result<Vec<u8>> {
    // Everything below goes into header fields unencoded; refuse what
    // could break out of them rather than trust the caller.
    for (what, d) in [
        ("submitter", m.submitter),
        ("policy domain", m.policy_domain),
    ] {
        if !is_domain(d) {
            return Err(Error::Report(format!("{what} {d:?} is not a domain name")));
        }
    }
    for (what, a) in [("From", m.from), ("To", m.to)] {
        if !is_plain_address(a) {
            return Err(Error::Report(format!("{what} address {a:?} is not usable")));
        }
    }
    if m.file_name.is_empty() || !m.file_name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Report(format!(
            "attachment name {:?} is not printable ASCII",
            m.file_name
        )));
    }
    let report_id = m.report_id.trim_start_matches('<').trim_end_matches('>');
    if !is_msg_id(report_id) {
        return Err(Error::Report(format!(
            "report id {report_id:?} is not of the form id-left@id-right"
        )));
    }
    let message_id = match m.message_id {
        Some(id) => id.trim_start_matches('<').trim_end_matches('>').to_string(),
        None => format!("{}@{}", uuid::Uuid::now_v7().simple(), m.submitter),
    };
    if !is_msg_id(&message_id) {
        return Err(Error::Report(format!(
            "Message-ID {message_id:?} is not of the form id-left@id-right"
        )));
    }

    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {} for {}.\r\n\
         The report is attached as {}.\r\n",
        m.submitter, m.policy_domain, m.file_name
    );
    let body = MimePart::new(
        // report-type is a required parameter of multipart/report
        // (RFC 6522); mail-builder writes it before the boundary.
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "us-ascii"),
                text,
            ),
            MimePart::new(
                ContentType::new("application/tlsrpt+gzip"),
                m.report_gzip.to_vec(),
            )
            .attachment(m.file_name.to_string()),
        ],
    );
    MessageBuilder::new()
        .from(Address::new_address(None::<&str>, m.from))
        .to(Address::new_address(None::<&str>, m.to))
        .date(Date::new(m.date.timestamp()))
        .message_id(MessageId::new(message_id))
        // Raw: mail-builder would RFC 2047-encode a long subject with "<",
        // and receivers match this one as plain text. The parts were
        // checked above, so it needs no encoding.
        .header(
            "Subject",
            Raw::new(format!(
                "Report Domain: {} Submitter: {} Report-ID: <{report_id}>",
                m.policy_domain, m.submitter
            )),
        )
        .header("TLS-Report-Domain", Raw::new(m.policy_domain.to_string()))
        .header("TLS-Report-Submitter", Raw::new(m.submitter.to_string()))
        // RFC 3834: nobody should auto-reply to a report.
        .header("Auto-Submitted", Raw::new("auto-generated"))
        // RFC 8689: the report must arrive even when the very TLS it
        // reports on fails (RFC 8460 §5.3).
        .header("TLS-Required", Raw::new("No"))
        .body(body)
        .write_to_vec()
        .map_err(|e| Error::Report(format!("writing the message: {e}")))
}

/// `local@domain` with nothing that needs quoting or could end a header.
fn is_plain_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"(),:;<>@[\\]".contains(&b))
        && is_domain(domain)
}

/// `id-left "@" id-right` of RFC 5322 in its dot-atom form.
fn is_msg_id(id: &str) -> bool {
    let Some((left, right)) = id.split_once('@') else {
        return false;
    };
    let atom = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c))
            })
    };
    atom(left) && atom(right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(gz: &'a [u8]) -> ReportMessage<'a> {
        ReportMessage {
            from: "tlsrpt-noreply@mx.sender.example",
            to: "reports@receiver.example",
            submitter: "sender.example",
            policy_domain: "receiver.example",
            report_id: "20240501.receiver.example@sender.example",
            file_name: "sender.example!receiver.example!1714521600!1714607999.json.gz",
            report_gzip: gz,
            date: DateTime::from_timestamp(1_714_608_000, 0).unwrap(),
            message_id: Some("fixed-id@sender.example"),
        }
    }

    #[test]
    fn headers_and_structure() {
        let gz = crate::gzip(b"{}");
        let bytes = build_message(&msg(&gz)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        // Unfolded header block.
        let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        for want in [
            "From: <tlsrpt-noreply@mx.sender.example>",
            "To: <reports@receiver.example>",
            "Message-ID: <fixed-id@sender.example>",
            "Date: Thu, 2 May 2024 00:00:00 +0000",
            "Subject: Report Domain: receiver.example Submitter: sender.example \
             Report-ID: <20240501.receiver.example@sender.example>",
            "TLS-Report-Domain: receiver.example",
            "TLS-Report-Submitter: sender.example",
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=",
        ] {
            assert!(head.contains(want), "missing {want:?} in\n{head}");
        }
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(text.contains("Content-Type: application/tlsrpt+gzip"));
        assert!(text.contains("Content-Transfer-Encoding: base64"));
    }

    #[test]
    fn refuses_header_injection() {
        let gz = crate::gzip(b"{}");
        let mut m = msg(&gz);
        m.policy_domain = "evil.example\r\nBcc: x@y.example";
        assert!(build_message(&m).is_err());
        let mut m = msg(&gz);
        m.to = "a@b.example>, <c@d.example";
        assert!(build_message(&m).is_err());
        let mut m = msg(&gz);
        m.report_id = "no at sign";
        assert!(build_message(&m).is_err());
    }

    #[test]
    fn generated_message_id() {
        let gz = crate::gzip(b"{}");
        let mut m = msg(&gz);
        m.message_id = None;
        let text = String::from_utf8(build_message(&m).unwrap()).unwrap();
        assert!(text.contains("@sender.example>"), "{text}");
    }
}
