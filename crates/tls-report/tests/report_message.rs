//! The report message parses, with mail-parser and with Python's email
//! package, into the headers, the multipart/report structure and the
//! attachment that RFC 8460 §5.3 asks for.

mod common;

use chrono::{DateTime, Utc};
use common::{day, mixed_day, run_python};
use ironpost_tls_report::{build_message, render, report_id, ReportMessage, ReportOptions, Store};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use std::io::Read;

const SUBMITTER: &str = "sender.example";
const FROM: &str = "tlsrpt-noreply@sender.example";
const TO: &str = "tls-reports@example.net";

struct Built {
    bytes: Vec<u8>,
    json: Vec<u8>,
    file_name: String,
    report_id: String,
}

fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("t.db")).unwrap();
    let d = day("2024-05-01");
    store.record(&mixed_day(d, "example.net")).unwrap();
    let agg = store.aggregate(d, "example.net").unwrap();
    let org = ReportOptions {
        organization_name: "Ironpost Test Org".into(),
        contact_info: "postmaster@sender.example".into(),
        submitter: SUBMITTER.into(),
    };
    let id = report_id(d, "example.net", SUBMITTER);
    let r = render(&agg, &org, &id).unwrap();
    let date: DateTime<Utc> = "2024-05-02T00:30:00Z".parse().unwrap();
    let bytes = build_message(&ReportMessage {
        from: FROM,
        to: TO,
        submitter: SUBMITTER,
        policy_domain: "example.net",
        report_id: &id,
        file_name: &r.file_name,
        report_gzip: &r.gzip,
        date,
        message_id: Some("20240501.example.net.1@sender.example"),
    })
    .unwrap();
    Built {
        bytes,
        json: r.json,
        file_name: r.file_name,
        report_id: id,
    }
}

fn expected_subject(id: &str) -> String {
    format!("Report Domain: example.net Submitter: {SUBMITTER} Report-ID: <{id}>")
}

#[test]
fn crlf_only() {
    let b = build();
    for (i, w) in b.bytes.windows(2).enumerate() {
        assert!(!(w[1] == b'\n' && w[0] != b'\r'), "bare LF at {}", i + 1);
    }
    assert!(b.bytes.iter().all(|&c| c.is_ascii()), "7-bit message");
    assert!(
        b.bytes.split(|&c| c == b'\n').all(|l| l.len() <= 1000),
        "line longer than RFC 5322 allows"
    );
    assert_eq!(
        b.file_name,
        "sender.example!example.net!1714521600!1714607999.json.gz"
    );
}

#[test]
fn parses_with_mail_parser() {
    let b = build();
    let m = MessageParser::default()
        .parse(&b.bytes[..])
        .expect("parses");
    assert_eq!(m.subject(), Some(expected_subject(&b.report_id).as_str()));
    assert_eq!(
        m.from().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(FROM)
    );
    assert_eq!(
        m.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(TO)
    );
    assert_eq!(
        m.message_id(),
        Some("20240501.example.net.1@sender.example")
    );
    assert_eq!(m.date().map(|d| d.to_timestamp()), Some(1_714_609_800));
    let header = |name: &str| m.header(name).and_then(|h| h.as_text()).map(str::to_string);
    assert_eq!(header("TLS-Report-Domain").as_deref(), Some("example.net"));
    assert_eq!(header("TLS-Report-Submitter").as_deref(), Some(SUBMITTER));

    let ct = m.content_type().expect("Content-Type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));

    let text = m.body_text(0).expect("a text part");
    assert!(text.contains("TLS report"), "{text}");

    let attachments: Vec<_> = m.attachments().collect();
    assert_eq!(attachments.len(), 1);
    let a = attachments[0];
    let act = a.content_type().unwrap();
    assert_eq!(
        (act.ctype(), act.subtype()),
        ("application", Some("tlsrpt+gzip"))
    );
    assert_eq!(a.attachment_name(), Some(b.file_name.as_str()));
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(a.contents())
        .read_to_end(&mut json)
        .unwrap();
    assert_eq!(json, b.json);
    let v: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["report-id"], b.report_id.as_str());
}

const PARSE: &str = r#"
import email, gzip, json, sys
from email import policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
defects = [type(d).__name__ for d in msg.defects]
parts = []
report = None
text = None
for p in msg.iter_parts():
    defects += [type(d).__name__ for d in p.defects]
    parts.append({"type": p.get_content_type(), "disposition": p.get_content_disposition(),
                  "filename": p.get_filename(), "transfer": p.get("Content-Transfer-Encoding")})
    if p.get_content_type() == "application/tlsrpt+gzip":
        report = json.loads(gzip.decompress(p.get_payload(decode=True)))
    elif p.get_content_type() == "text/plain":
        text = p.get_content()
print(json.dumps({
    "from": str(msg["From"]), "to": str(msg["To"]), "subject": str(msg["Subject"]),
    "message_id": str(msg["Message-ID"]), "date": msg["Date"].datetime.isoformat(),
    "report_domain": str(msg["TLS-Report-Domain"]),
    "report_submitter": str(msg["TLS-Report-Submitter"]),
    "mime_version": str(msg["MIME-Version"]),
    "content_type": msg.get_content_type(), "report_type": msg.get_param("report-type"),
    "parts": parts, "text": text, "report": report, "defects": defects,
}))
"#;

#[test]
fn parses_with_python_email() {
    let b = build();
    let out = run_python(PARSE, &[], &b.bytes);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["defects"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["from"], FROM);
    assert_eq!(v["to"], TO);
    assert_eq!(v["subject"], expected_subject(&b.report_id).as_str());
    assert_eq!(v["message_id"], "<20240501.example.net.1@sender.example>");
    assert_eq!(v["date"], "2024-05-02T00:30:00+00:00");
    assert_eq!(v["report_domain"], "example.net");
    assert_eq!(v["report_submitter"], SUBMITTER);
    assert_eq!(v["mime_version"], "1.0");
    assert_eq!(v["content_type"], "multipart/report");
    assert_eq!(v["report_type"], "tlsrpt");
    let parts = v["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{v:#}");
    assert_eq!(parts[0]["type"], "text/plain");
    assert_eq!(parts[1]["type"], "application/tlsrpt+gzip");
    assert_eq!(parts[1]["disposition"], "attachment");
    assert_eq!(parts[1]["filename"], b.file_name.as_str());
    assert_eq!(parts[1]["transfer"], "base64");
    assert!(v["text"].as_str().unwrap().contains("example.net"));
    let expected: Value = serde_json::from_slice(&b.json).unwrap();
    assert_eq!(v["report"], expected);
}
