//! `msg:check_fix_conformance` with KumoMTA's documented contract
//! (docs/reference/message/check_fix_conformance.md): it returns a failure
//! string or nil, knows every documented flag, and the reference example
//! rejects with 552 or fixes as it says.

use ironpost_policy::{EngineOptions, EventError, Message, PolicyEngine, PolicySource};

fn engine(handler: &str) -> (tempfile::TempDir, PolicyEngine) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.lua");
    std::fs::write(
        &p,
        format!("kumo.on('smtp_server_message_received', function(msg)\n{handler}\nend)\n"),
    )
    .unwrap();
    let (e, _) = PolicyEngine::start(
        PolicySource::File(p),
        EngineOptions {
            pool_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    (dir, e)
}

fn msg(data: &[u8]) -> Message {
    Message {
        id: "abc123".into(),
        sender: "s@sender.test".into(),
        recipients: vec!["r@dest.test".into()],
        data: data.to_vec(),
        ..Default::default()
    }
}

async fn run(e: &PolicyEngine, data: &[u8]) -> Result<Message, EventError> {
    e.message_event("smtp_server_message_received", msg(data), None)
        .await
}

/// The documentation's example, unchanged.
const REFERENCE: &str = r#"
  local failed = msg:check_fix_conformance(
    -- check for and reject messages with these issues:
    'MISSING_COLON_VALUE',
    -- fix messages with these issues:
    'LINE_TOO_LONG|NAME_ENDS_WITH_SPACE|NEEDS_TRANSFER_ENCODING|NON_CANONICAL_LINE_ENDINGS|MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION'
  )
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
"#;

#[tokio::test(flavor = "multi_thread")]
async fn reference_example_rejects_or_fixes() {
    let (_d, e) = engine(REFERENCE);
    // A header without a colon: the policy's reject branch.
    assert_eq!(
        run(&e, b"From: a@sender.test\r\nSubject\r\n\r\nbody\r\n")
            .await
            .unwrap_err(),
        EventError::Reject {
            code: 552,
            text: "5.6.0 Message has conformance issues: MISSING_COLON_VALUE".into()
        }
    );
    // Missing Date, Message-ID and MIME-Version: added, nothing else
    // touched.
    let out = run(
        &e,
        b"From: <sender@example.test>\r\nSubject: no date, no id\r\n\r\nHi.\r\n",
    )
    .await
    .unwrap();
    let text = String::from_utf8(out.data).unwrap();
    assert!(
        text.starts_with("From: <sender@example.test>\r\nSubject: no date, no id\r\nDate: "),
        "{text}"
    );
    assert!(
        text.ends_with("\r\nMime-Version: 1.0\r\nMessage-ID: <abc123@sender.test>\r\n\r\nHi.\r\n"),
        "{text}"
    );
    // Long lines, 8-bit text, a name ending in a space and bare LFs: the
    // message is rebuilt and then has none of those issues.
    let long = "lorem ipsum ".repeat(12);
    let messy = format!(
        "From: Jürgen <j@sender.test>\nSubject : Grüße {long}\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\nMessage-ID: <x@y>\r\nMIME-Version: 1.0\r\n\r\nHällo {long}\nbye\n"
    );
    let out = run(&e, messy.as_bytes()).await.unwrap();
    assert!(out.data.is_ascii());
    let (_d2, strict) = engine(
        "local f = msg:check_fix_conformance('MISSING_COLON_VALUE|NON_CANONICAL_LINE_ENDINGS|NAME_ENDS_WITH_SPACE|LINE_TOO_LONG|NEEDS_TRANSFER_ENCODING|MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION|INVALID_MIME_HEADERS', '')\nif f then error(f) end",
    );
    run(&strict, &out.data)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out.data)));
    let parsed = mail_parser::MessageParser::default()
        .parse(&out.data)
        .unwrap();
    assert_eq!(
        parsed.subject().unwrap(),
        format!("Grüße {}", long.trim_end())
    );
    assert_eq!(
        parsed.body_text(0).unwrap().trim_end(),
        format!("Hällo {long}\r\nbye"),
        "content kept, trailing space included"
    );
}

/// The issues come back as a string (sorted names), never raised; the
/// message is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn failures_are_returned_not_raised() {
    let (_d, e) = engine(
        "local f = msg:check_fix_conformance('LINE_TOO_LONG|MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER', 'MISSING_MESSAGE_ID_HEADER')\n\
         msg:set_meta('failed', f or 'nil')",
    );
    let data = format!("Subject: {}\r\n\r\nx\r\n", "y".repeat(100));
    let out = run(&e, data.as_bytes()).await.unwrap();
    assert_eq!(
        out.meta["failed"],
        "Message has conformance issues: LINE_TOO_LONG|MISSING_DATE_HEADER"
    );
    assert_eq!(out.data, data.as_bytes());
    // Unparseable content is a failure string too.
    let out = run(&e, b"Sub\x01ject: x\r\n\r\nx\r\n").await.unwrap();
    let failed = out.meta["failed"].as_str().unwrap().to_string();
    assert!(failed.starts_with("invalid header: "), "{failed}");
    // A conforming message: nil.
    let out = run(
        &e,
        b"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\nSubject: x\r\n\r\nx\r\n",
    )
    .await
    .unwrap();
    assert_eq!(out.meta["failed"], "nil");
}

/// Unknown flags raise (as in KumoMTA), naming the flag and the known ones;
/// the settings table: `message_id` is used, `detect_encoding` is refused
/// by name, an unknown key is an error.
#[tokio::test(flavor = "multi_thread")]
async fn flags_and_settings() {
    let (_d, e) = engine("msg:check_fix_conformance('MISSING_COLON_VALUE|BOGUS', '')");
    match run(&e, b"Subject: x\r\n\r\nx\r\n").await {
        Err(EventError::Failed(m)) => {
            assert!(
                m.contains("'BOGUS'") && m.contains("'MISSING_MIME_VERSION'"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    let (_d, e) = engine(
        "msg:check_fix_conformance('', 'MISSING_MESSAGE_ID_HEADER', { message_id = 'given@id.test' })",
    );
    let out = run(&e, b"Subject: x\r\n\r\nx\r\n").await.unwrap();
    assert!(String::from_utf8_lossy(&out.data).contains("Message-ID: <given@id.test>\r\n"));
    let (_d, e) = engine(
        "msg:check_fix_conformance('', 'NEEDS_TRANSFER_ENCODING', { detect_encoding = true, include_encodings = { 'iso-8859-1' } })",
    );
    match run(&e, b"Subject: \xa3\r\n\r\nGBP\r\n").await {
        Err(EventError::Failed(m)) => assert!(
            m.contains("detect_encoding") && m.contains("Ironpost does not support"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let (_d, e) = engine("assert(msg:check_fix_conformance('', '', {}) == nil)");
    run(&e, b"Subject: x\r\n\r\nx\r\n").await.unwrap();
    let (_d, e) = engine("msg:check_fix_conformance('', '', { detect_encodings = false })");
    match run(&e, b"Subject: x\r\n\r\nx\r\n").await {
        Err(EventError::Failed(m)) => assert!(m.contains("detect_encodings"), "{m}"),
        other => panic!("{other:?}"),
    }
}
