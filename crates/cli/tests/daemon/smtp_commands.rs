//! Every SMTP command and reply-code path of the inbound daemon, over real
//! loopback sockets against the real binary.

use crate::common::*;
use ironpost_testkit::SmtpClient;

#[tokio::test]
async fn greeting_and_ehlo_advertise_the_extensions() {
    let d = start_default();
    let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    assert_eq!(greeting.code, 220);
    // The greeting text is a domain, so it has no enhanced code.
    assert_eq!(greeting.lines, vec!["mx.test ESMTP Ironpost".to_string()]);
    assert_eq!(greeting.enhanced(), None);

    let ehlo = c.ehlo("client.test").await.unwrap();
    assert_eq!(ehlo.code, 250);
    assert_eq!(
        ehlo.lines,
        vec![
            "mx.test Hello client.test",
            "PIPELINING",
            "SIZE 20971520",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "STARTTLS",
        ]
    );
    // EHLO again is fine; HELO answers with the host name.
    assert_eq!(c.ehlo("again.test").await.unwrap().code, 250);
    let helo = expect(&mut c, "HELO client.test", 250, "2.0.0").await;
    assert_eq!(helo.text(), "2.0.0 mx.test");
    expect(&mut c, "QUIT", 221, "2.0.0").await;
    assert!(c.expect_closed().await, "QUIT must close the connection");
}

#[tokio::test]
async fn banner_is_configurable() {
    let d = start(&policy("banner = 'Test Banner',", ""));
    let (_c, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    assert_eq!(
        greeting.lines,
        vec!["mx.test ESMTP Test Banner".to_string()]
    );
}

#[tokio::test]
async fn command_sequencing() {
    let d = start_default();
    let mut c = connect(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 503, "5.5.1").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    expect(&mut c, "DATA", 503, "5.5.1").await;
    assert_eq!(c.ehlo("client.test").await.unwrap().code, 250);
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    expect(&mut c, "DATA", 503, "5.5.1").await;
    let r = expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    assert_eq!(r.text(), "2.1.0 Sender OK");
    expect(&mut c, "MAIL FROM:<a@example.test>", 503, "5.5.1").await;
    expect(&mut c, "DATA", 554, "5.5.1").await;
    expect(&mut c, "STARTTLS", 503, "5.5.1").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    // RSET ended the transaction.
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    let r = expect(&mut c, "MAIL FROM:<>", 250, "2.1.0").await;
    assert_eq!(r.text(), "2.1.0 Sender <> OK");
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    // EHLO in the middle of a transaction resets it.
    assert_eq!(c.ehlo("client.test").await.unwrap().code, 250);
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    let r = c.cmd("DATA").await.unwrap();
    // RFC 2034: 354 carries no enhanced status code.
    assert_eq!(r.code, 354);
    assert_eq!(r.enhanced(), None);
    assert_eq!(r.text(), "End data with <CR><LF>.<CR><LF>");
    c.send_raw(b"Subject: seq\r\n\r\nbody\r\n.\r\n")
        .await
        .unwrap();
    let r = expect_reply(&mut c, 250, "2.0.0", "end of DATA").await;
    accepted_id(&r);
    // The transaction is over after the message.
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    expect(&mut c, "DATA", 503, "5.5.1").await;
    expect(&mut c, "QUIT", 221, "2.0.0").await;
    assert!(c.expect_closed().await);
}

#[tokio::test]
async fn simple_commands() {
    let d = start_default();
    let mut c = connect(&d).await;
    // These work before EHLO too.
    let r = expect(&mut c, "NOOP", 250, "2.0.0").await;
    assert_eq!(r.text(), "2.0.0 OK");
    expect(&mut c, "NOOP ignored argument", 250, "2.0.0").await;
    expect(&mut c, "noop", 250, "2.0.0").await;
    expect(&mut c, "VRFY postmaster", 252, "2.5.0").await;
    expect(&mut c, "VRFY", 252, "2.5.0").await;
    let help = expect(&mut c, "HELP", 214, "2.0.0").await;
    assert!(help.lines.len() >= 2, "HELP is multi-line: {help}");
    assert!(help.text().contains("EHLO"), "{help}");
    expect(&mut c, "HELP MAIL", 214, "2.0.0").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    for verb in ["EXPN staff", "BDAT 10 LAST", "ETRN example.test", "TURN"] {
        expect(&mut c, verb, 502, "5.5.1").await;
    }
    expect(&mut c, "FOO bar", 500, "5.5.1").await;
    expect(&mut c, "MAILFROM:<a@example.test>", 500, "5.5.1").await;
    expect(&mut c, "", 500, "5.5.2").await;
    expect(&mut c, "Quit", 221, "2.0.0").await;
    assert!(c.expect_closed().await, "QUIT must close the connection");
}

#[tokio::test]
async fn syntax_errors() {
    let d = start_default();
    // (command, code, enhanced); a fresh connection per group keeps each
    // under the error limit.
    let groups: &[&[(&str, u16, &str)]] = &[
        &[
            ("EHLO", 501, "5.5.4"),
            ("HELO", 501, "5.5.4"),
            ("EHLO  ", 501, "5.5.4"),
            ("MAIL TO:<a@example.test>", 501, "5.5.4"),
            ("MAIL", 501, "5.5.4"),
            ("MAIL FROM:a@example.test", 501, "5.1.7"),
            ("MAIL FROM:<a@@example.test>", 501, "5.1.7"),
            ("MAIL FROM:<a@example.test", 501, "5.1.7"),
            ("MAIL FROM:<a@-bad-.test>", 501, "5.1.7"),
            ("MAIL FROM:<a@example.test> SIZE=abc", 501, "5.5.4"),
            ("MAIL FROM:<a@example.test> SIZE=-1", 501, "5.5.4"),
            (
                "MAIL FROM:<a@example.test> SIZE=999999999999999999999999",
                501,
                "5.5.4",
            ),
            ("MAIL FROM:<a@example.test> RET=FULL", 555, "5.5.4"),
            ("MAIL FROM:<a@example.test> BODY=BINARYMIME", 555, "5.5.4"),
            ("MAIL FROM:<ü@example.test>", 553, "5.6.7"),
        ],
        &[
            ("MAIL FROM:<a@example.test>", 250, "2.1.0"),
            ("RCPT", 501, "5.5.4"),
            ("RCPT FROM:<b@example.test>", 501, "5.5.4"),
            ("RCPT TO:b@example.test", 501, "5.1.3"),
            ("RCPT TO:<>", 501, "5.1.3"),
            ("RCPT TO:<a b@example.test>", 501, "5.1.3"),
            ("RCPT TO:<b@example..test>", 501, "5.1.3"),
            ("RCPT TO:<b@example.test> NOTIFY=NEVER", 555, "5.5.4"),
            ("RCPT TO:<ü@example.test>", 553, "5.6.7"),
            ("RCPT TO:<Postmaster>", 550, "5.1.1"),
            ("DATA now", 501, "5.5.4"),
            ("RSET all", 501, "5.5.4"),
            ("STARTTLS please", 501, "5.5.4"),
            ("QUIT now", 501, "5.5.4"),
            ("AUTH", 501, "5.5.4"),
            ("AUTH PLAIN", 530, "5.7.0"),
            // The transaction survived all of that.
            ("RCPT TO:<b@example.test>", 250, "2.1.5"),
        ],
    ];
    for group in groups {
        let mut c = connect_ehlo(&d).await;
        for (line, code, enhanced) in group.iter() {
            expect(&mut c, line, *code, enhanced).await;
        }
    }

    // Parameters need EHLO; AUTH needs EHLO before anything else.
    let mut c = connect(&d).await;
    expect(&mut c, "AUTH PLAIN", 503, "5.5.1").await;
    expect(&mut c, "HELO client.test", 250, "2.0.0").await;
    expect(&mut c, "MAIL FROM:<a@example.test> SIZE=10", 555, "5.5.4").await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;

    // Bytes that are not text.
    let mut c = connect_ehlo(&d).await;
    c.send_raw(b"NOOP\0\r\n").await.unwrap();
    expect_reply(&mut c, 500, "5.5.2", "NUL in command").await;
    c.send_raw(b"NOOP \xff\xfe\r\n").await.unwrap();
    expect_reply(&mut c, 500, "5.5.2", "invalid UTF-8").await;
    expect(&mut c, "NOOP", 250, "2.0.0").await;
}

#[tokio::test]
async fn accepted_mail_parameters_and_utf8() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    expect(
        &mut c,
        "MAIL FROM:<a@example.test> SIZE=100 BODY=8BITMIME AUTH=<>",
        250,
        "2.1.0",
    )
    .await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    let body = "Subject: 8bit\r\n\r\nGrüße aus dem Test\r\n";
    c.send_raw(format!("{body}.\r\n").as_bytes()).await.unwrap();
    let id8 = accepted_id(&c.read_reply().await.unwrap());

    expect(
        &mut c,
        "MAIL FROM:<jörg@exämple.test> SMTPUTF8 BODY=8BITMIME",
        250,
        "2.1.0",
    )
    .await;
    expect(&mut c, "RCPT TO:<δοκιμή@example.test>", 250, "2.1.5").await;
    expect(&mut c, "RCPT TO:<postmaster@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: utf8\r\n\r\nx\r\n.\r\n")
        .await
        .unwrap();
    let idu = accepted_id(&c.read_reply().await.unwrap());

    let rec = reception(&d, &idu);
    assert_eq!(rec["sender"], "jörg@exämple.test");
    assert_eq!(
        rec["recipients"],
        serde_json::json!(["δοκιμή@example.test", "postmaster@example.test"])
    );
    let stored = spool_of(&d);
    let m = stored.iter().find(|m| m.id == id8).expect("8bit message");
    assert!(m.data.ends_with(body.as_bytes()), "8-bit content kept");
}

#[tokio::test]
async fn command_line_framing_errors() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    // A bare LF does not end a command line.
    c.send_raw(b"NOOP\n").await.unwrap();
    let r = expect_reply(&mut c, 500, "5.5.2", "bare LF").await;
    assert!(r.text().contains("CRLF"), "{r}");
    // A bare CR inside a line.
    c.send_raw(b"NO\rOP\r\n").await.unwrap();
    expect_reply(&mut c, 500, "5.5.2", "bare CR").await;
    // Long but within the 4096-octet limit: fine.
    let ok = format!("NOOP {}", "x".repeat(4000));
    expect(&mut c, &ok, 250, "2.0.0").await;
    // Too long: one error, the rest of the line is dropped, and the next
    // command works.
    let long = format!("MAIL FROM:<{}@example.test>", "a".repeat(6000));
    c.send_raw(format!("{long}\r\nNOOP\r\n").as_bytes())
        .await
        .unwrap();
    let r = expect_reply(&mut c, 500, "5.5.2", "too long").await;
    assert!(r.text().contains("too long"), "{r}");
    expect_reply(&mut c, 250, "2.0.0", "NOOP after long line").await;
    // The over-long MAIL was not executed.
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    // An over-long line arriving in pieces without any LF.
    c.send_raw(&vec![b'A'; 3000]).await.unwrap();
    c.send_raw(&vec![b'A'; 3000]).await.unwrap();
    expect_reply(&mut c, 500, "5.5.2", "too long, no LF yet").await;
    c.send_raw(b"AAAA\r\nNOOP\r\n").await.unwrap();
    expect_reply(&mut c, 250, "2.0.0", "NOOP after long line").await;
}

#[tokio::test]
async fn too_many_errors_close_the_connection() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    c.send_raw("FOO\r\n".repeat(20).as_bytes()).await.unwrap();
    for i in 1..=20 {
        expect_reply(&mut c, 500, "5.5.1", &format!("error {i}")).await;
    }
    expect_reply(&mut c, 421, "4.7.0", "error limit").await;
    assert!(c.expect_closed().await, "connection closed after 421");
}

#[tokio::test]
async fn errors_from_every_command_count_towards_the_limit() {
    let d = start_default();
    // Sequencing errors (503) count as much as syntax errors.
    let mut c = connect(&d).await;
    for _ in 1..20 {
        expect(&mut c, "RCPT TO:<a@example.test>", 503, "5.5.1").await;
    }
    expect(&mut c, "RCPT TO:<a@example.test>", 503, "5.5.1").await;
    expect_reply(&mut c, 421, "4.7.0", "error limit").await;
    assert!(c.expect_closed().await, "connection closed after 421");

    // A mix of kinds adds up too.
    let mut c = connect(&d).await;
    for _ in 0..10 {
        expect(&mut c, "MAIL FROM:<a@example.test>", 503, "5.5.1").await;
        expect(&mut c, "XYZZY", 500, "5.5.1").await;
    }
    expect_reply(&mut c, 421, "4.7.0", "error limit").await;
    assert!(c.expect_closed().await, "connection closed after 421");
}

#[tokio::test]
async fn pipelined_commands_get_replies_in_order() {
    let d = start_default();
    let mut c = connect(&d).await;
    c.send_raw(
        b"EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n\
          RCPT TO:<c@example.test>\r\nDATA\r\n",
    )
    .await
    .unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 250);
    expect_reply(&mut c, 250, "2.1.0", "MAIL").await;
    expect_reply(&mut c, 250, "2.1.5", "RCPT 1").await;
    expect_reply(&mut c, 250, "2.1.5", "RCPT 2").await;
    assert_eq!(c.read_reply().await.unwrap().code, 354);
    c.send_raw(b"Subject: pipe\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        .await
        .unwrap();
    let id = accepted_id(&c.read_reply().await.unwrap());
    expect_reply(&mut c, 250, "2.0.0", "NOOP").await;
    expect_reply(&mut c, 221, "2.0.0", "QUIT").await;
    assert!(c.expect_closed().await);
    let rec = reception(&d, &id);
    assert_eq!(
        rec["recipients"],
        serde_json::json!(["b@example.test", "c@example.test"])
    );
}

#[tokio::test]
async fn accepted_message_is_logged_and_spooled() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    let data = message("logged");
    let id = send_ok(&mut c, "sender@example.test", &["rcpt@example.test"], &data).await;
    expect(&mut c, "QUIT", 221, "2.0.0").await;

    let rec = reception(&d, &id);
    assert_eq!(rec["sender"], "sender@example.test");
    assert_eq!(rec["recipients"], serde_json::json!(["rcpt@example.test"]));
    assert_eq!(rec["reception_protocol"], "ESMTP");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.1");
    assert_eq!(rec["peer_address"]["name"], "client.test");
    assert_eq!(rec["response"]["code"], 250);
    assert!(rec.get("tls_protocol_version").is_none(), "{rec}");
    assert!(rec.get("tls_cipher").is_none(), "{rec}");

    let stored = spool_of(&d);
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(m.id, id);
    assert_eq!(m.meta["id"], id.as_str());
    assert_eq!(m.meta["sender"], "sender@example.test");
    assert_eq!(
        m.meta["recipients"],
        serde_json::json!(["rcpt@example.test"])
    );
    assert_eq!(rec["size"], m.data.len());
    let text = String::from_utf8(m.data.clone()).unwrap();
    let expected_trace = format!(
        "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Ironpost) with ESMTP id {id}\r\n\tfor <rcpt@example.test>;\r\n\t"
    );
    assert!(text.starts_with(&expected_trace), "{text}");
    assert!(m.data.ends_with(&data), "content stored unchanged");
}

#[tokio::test]
async fn helo_session_is_plain_smtp() {
    let d = start_default();
    let mut c = connect(&d).await;
    expect(&mut c, "HELO old.client.test", 250, "2.0.0").await;
    let id = send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test", "c@example.test"],
        &message("helo"),
    )
    .await;
    let rec = reception(&d, &id);
    assert_eq!(rec["reception_protocol"], "SMTP");
    let stored = spool_of(&d);
    let text = String::from_utf8_lossy(&stored[0].data).into_owned();
    assert!(
        text.starts_with(
            "Received: from old.client.test ([127.0.0.1])\r\n\tby mx.test (Ironpost) with SMTP id "
        ),
        "{text}"
    );
    // Several recipients: none is named in the trace header.
    assert!(!text.contains("for <"), "{text}");
}

#[tokio::test]
async fn empty_and_dot_only_messages() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    // An empty body is accepted (the daemon adds its Received header).
    let r = c
        .send_message("a@example.test", &["b@example.test"], b"")
        .await
        .unwrap();
    let id = accepted_id(&r);
    let stored = spool_of(&d);
    let m = stored.iter().find(|m| m.id == id).unwrap();
    assert!(m.data.starts_with(b"Received: "));
    assert!(m.data.ends_with(b"\r\n"));
}
