//! SMTP smuggling: no byte sequence inside one DATA may end it early and
//! start a second transaction. The only end of data is CRLF.CRLF; bare CR
//! or LF get `552 5.6.0` under `invalid_line_endings = 'Deny'` (the default)
//! and are kept or normalised under 'Allow' / 'Fix'. Also dot-unstuffing.

use std::time::Duration;

use crate::common::*;
use ironpost_testkit::{Daemon, SmtpClient};

/// Sequences that some receivers take as the end of DATA.
const SEQUENCES: &[(&str, &[u8])] = &[
    ("bare LF", b"\n"),
    ("bare CR", b"\r"),
    ("LF.LF", b"\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("LF.CR", b"\n.\r"),
    ("CR.LF", b"\r.\n"),
];

/// The transaction an attacker tries to smuggle in.
const SMUGGLED: &[u8] =
    b"MAIL FROM:<smuggler@y.test>\r\nRCPT TO:<victim@w.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n";

/// Message content (before the real CRLF.CRLF) carrying a smuggling attempt.
fn smuggling_body(seq: &[u8]) -> Vec<u8> {
    let mut body = b"Subject: smuggle test\r\n\r\nfirst part".to_vec();
    body.extend_from_slice(seq);
    body.extend_from_slice(SMUGGLED);
    body
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Deny,
    Allow,
    Fix,
}

fn daemon(mode: Mode) -> Daemon {
    match mode {
        // Deny is the default: do not configure it.
        Mode::Deny => start_default(),
        Mode::Allow => start(&policy("invalid_line_endings = 'Allow',", "")),
        Mode::Fix => start(&policy("invalid_line_endings = 'Fix',", "")),
    }
}

/// Checks the reply to the end of DATA for `mode`; returns the id if stored.
fn final_reply(mode: Mode, r: &ironpost_testkit::Reply, what: &str) -> Option<String> {
    match mode {
        Mode::Deny => {
            check(r, 552, "5.6.0", what);
            None
        }
        Mode::Allow | Mode::Fix => Some(accepted_id(r)),
    }
}

/// After the final reply, the very next reply must belong to NOOP: any
/// reply produced by smuggled commands would come first.
async fn next_is_noop(c: &mut SmtpClient, what: &str) {
    let r = c.read_reply().await.expect("NOOP reply");
    assert_eq!(r.text(), "2.0.0 OK", "{what}: unexpected extra reply {r}");
    assert_eq!(r.code, 250);
}

/// One smuggling attempt with interactive commands. Returns the stored id.
async fn attempt_interactive(d: &Daemon, mode: Mode, name: &str, seq: &[u8]) -> Option<String> {
    let what = format!("{mode:?} {name} interactive");
    let mut c = connect_ehlo(d).await;
    let sender = format!("interactive.{}@example.test", tag(name));
    expect(&mut c, &format!("MAIL FROM:<{sender}>"), 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<rcpt@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    let mut payload = smuggling_body(seq);
    payload.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    c.send_raw(&payload).await.unwrap();
    let r = c.read_reply().await.expect("end of DATA");
    let id = final_reply(mode, &r, &what);
    next_is_noop(&mut c, &what).await;
    expect(&mut c, "QUIT", 221, "2.0.0").await;
    id
}

/// The whole transaction, the attempt and a legitimate follow-up message in
/// a single write. Returns (id of the attempt if stored, follow-up id).
async fn attempt_pipelined(
    d: &Daemon,
    mode: Mode,
    name: &str,
    seq: &[u8],
) -> (Option<String>, String) {
    let what = format!("{mode:?} {name} pipelined");
    let mut c = connect_ehlo(d).await;
    let sender = format!("pipelined.{}@example.test", tag(name));
    let mut batch =
        format!("MAIL FROM:<{sender}>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n").into_bytes();
    batch.extend_from_slice(&smuggling_body(seq));
    batch.extend_from_slice(b"\r\n.\r\n");
    batch.extend_from_slice(
        format!(
            "MAIL FROM:<followup.{}@example.test>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\nSubject: follow-up\r\n\r\nlegit\r\n.\r\nNOOP\r\n",
            tag(name)
        )
        .as_bytes(),
    );
    c.send_raw(&batch).await.unwrap();
    expect_reply(&mut c, 250, "2.1.0", &what).await;
    expect_reply(&mut c, 250, "2.1.5", &what).await;
    assert_eq!(c.read_reply().await.unwrap().code, 354, "{what}");
    let r = c.read_reply().await.expect("end of DATA");
    let id = final_reply(mode, &r, &what);
    // The follow-up transaction, and nothing in between.
    expect_reply(&mut c, 250, "2.1.0", &format!("{what} follow-up MAIL")).await;
    expect_reply(&mut c, 250, "2.1.5", &format!("{what} follow-up RCPT")).await;
    assert_eq!(c.read_reply().await.unwrap().code, 354, "{what}");
    let followup = accepted_id(&c.read_reply().await.unwrap());
    next_is_noop(&mut c, &what).await;
    (id, followup)
}

fn tag(name: &str) -> String {
    name.to_ascii_lowercase().replace([' ', '.'], "-")
}

async fn matrix(mode: Mode) {
    let d = daemon(mode);
    let mut expected_ids = Vec::new();
    for (name, seq) in SEQUENCES {
        let id = attempt_interactive(&d, mode, name, seq).await;
        expected_ids.extend(id);
        let (id, followup) = attempt_pipelined(&d, mode, name, seq).await;
        expected_ids.extend(id);
        expected_ids.push(followup);
    }

    let stored = spool_of(&d);
    let mut stored_ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    stored_ids.sort();
    expected_ids.sort();
    assert_eq!(
        stored_ids, expected_ids,
        "{mode:?}: exactly the replied-to messages"
    );
    let receptions = wait_records(&d, "Reception", expected_ids.len());
    assert_eq!(receptions.len(), expected_ids.len(), "{mode:?}");
    for m in &stored {
        // Nobody ever got a second message out of one DATA.
        assert_ne!(m.meta["sender"], "smuggler@y.test", "{mode:?}: smuggled");
        assert_ne!(m.meta["recipients"][0], "victim@w.test");
        let sender = m.meta["sender"].as_str().unwrap();
        if sender.starts_with("followup.") {
            continue;
        }
        // The smuggled text is content of the one message.
        assert!(contains(&m.data, SMUGGLED), "{mode:?} {sender}");
        match mode {
            Mode::Fix => assert!(
                only_crlf(&m.data),
                "{sender}: Fix leaves only CRLF: {:?}",
                String::from_utf8_lossy(&m.data)
            ),
            Mode::Allow => assert!(!only_crlf(&m.data), "{sender}: Allow keeps bare endings"),
            Mode::Deny => unreachable!(),
        }
    }
    for rec in &receptions {
        assert_ne!(rec["sender"], "smuggler@y.test");
    }
    if mode == Mode::Deny {
        let rejections = wait_records(&d, "Rejection", 2 * SEQUENCES.len());
        assert_eq!(rejections.len(), 2 * SEQUENCES.len());
        for rec in rejections {
            assert_eq!(rec["response"]["code"], 552, "{rec}");
            let reason = rec["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("bare CR or LF"), "{rec}");
        }
    }
}

#[tokio::test]
async fn deny_rejects_every_smuggling_attempt_once() {
    matrix(Mode::Deny).await;
}

#[tokio::test]
async fn allow_stores_exactly_one_message() {
    matrix(Mode::Allow).await;
}

#[tokio::test]
async fn fix_stores_exactly_one_message_with_crlf_only() {
    matrix(Mode::Fix).await;
}

#[tokio::test]
async fn allow_keeps_bare_line_endings_verbatim() {
    let d = daemon(Mode::Allow);
    let mut c = connect_ehlo(&d).await;
    let id = send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test"],
        b"Subject: raw\r\n\r\none\ntwo\rthree\n.\nfour\r\n",
    )
    .await;
    let m = spool_of(&d).into_iter().find(|m| m.id == id).unwrap();
    assert!(m
        .data
        .ends_with(b"Subject: raw\r\n\r\none\ntwo\rthree\n.\nfour\r\n"));
}

#[tokio::test]
async fn fix_normalises_bare_line_endings() {
    let d = daemon(Mode::Fix);
    let mut c = connect_ehlo(&d).await;
    let id = send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test"],
        b"Subject: raw\r\n\r\none\ntwo\rthree\r\n",
    )
    .await;
    let m = spool_of(&d).into_iter().find(|m| m.id == id).unwrap();
    assert!(m
        .data
        .ends_with(b"Subject: raw\r\n\r\none\r\ntwo\r\nthree\r\n"));
}

#[tokio::test]
async fn dot_unstuffing() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    // Raw, already stuffed by hand.
    c.send_raw(b"Subject: dots\r\n\r\n..x\r\n...\r\n..\r\nz.\r\n. \r\n.\r\n")
        .await
        .unwrap();
    let id = accepted_id(&c.read_reply().await.unwrap());
    let m = spool_of(&d).into_iter().find(|m| m.id == id).unwrap();
    assert!(
        m.data
            .ends_with(b"Subject: dots\r\n\r\n.x\r\n..\r\n.\r\nz.\r\n \r\n"),
        "{:?}",
        String::from_utf8_lossy(&m.data)
    );

    // The client's stuffing round-trips: lines that look like the end of
    // data arrive as written.
    let data = b"Subject: round trip\r\n\r\n.\r\n..\r\n.hidden\r\nend\r\n";
    let id = send_ok(&mut c, "a@example.test", &["b@example.test"], data).await;
    let m = spool_of(&d).into_iter().find(|m| m.id == id).unwrap();
    assert!(m.data.ends_with(data));
}

#[tokio::test]
async fn terminator_split_across_reads() {
    let d = start_default();
    for (first, second) in [
        (&b"Subject: split\r\n\r\nbody\r\n."[..], &b"\r\n"[..]),
        (b"Subject: split\r\n\r\nbody\r", b"\n.\r\n"),
        (b"Subject: split\r\n\r\nbody\r\n", b".\r\n"),
        (b"Subject: split\r\n\r\nbody\r\n.\r", b"\n"),
    ] {
        let mut c = connect_ehlo(&d).await;
        expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
        expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
        assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
        c.send_raw(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.send_raw(second).await.unwrap();
        let id = accepted_id(&c.read_reply().await.unwrap());
        let m = spool_of(&d).into_iter().find(|m| m.id == id).unwrap();
        assert!(m.data.ends_with(b"\r\n\r\nbody\r\n"));
    }
}

#[tokio::test]
async fn dot_without_preceding_crlf_does_not_end_data() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: x\r\n\r\nnot the end.\r\nNOOP\r\n")
        .await
        .unwrap();
    // Still in DATA: no reply yet.
    let pending = tokio::time::timeout(Duration::from_millis(300), c.read_reply()).await;
    assert!(pending.is_err(), "no reply before CRLF.CRLF: {pending:?}");
    c.send_raw(b".\r\n").await.unwrap();
    let id = accepted_id(&c.read_reply().await.unwrap());
    let m = spool_of(&d).into_iter().find(|m| m.id == id).unwrap();
    assert!(m.data.ends_with(b"not the end.\r\nNOOP\r\n"));
}
