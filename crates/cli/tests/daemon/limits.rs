//! Every listener limit: max_message_size (SIZE= and actual bytes),
//! max_recipients_per_message, max_messages_per_connection, client_timeout
//! (idle and trickling clients), data_processing_timeout, max_connections
//! and line_length_hard_limit.

use std::time::{Duration, Instant};

use crate::common::*;
use ironpost_testkit::SmtpClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn max_message_size() {
    let d = start(&policy("max_message_size = 2000,", ""));
    let mut c = connect(&d).await;
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 2000"), "{ehlo}");

    // Declared size over the limit.
    expect(&mut c, "MAIL FROM:<a@example.test> SIZE=2001", 552, "5.3.4").await;
    expect(
        &mut c,
        "MAIL FROM:<a@example.test> SIZE=18446744073709551615",
        552,
        "5.3.4",
    )
    .await;
    // Declared within, actual bytes over.
    expect(
        &mut c,
        "MAIL FROM:<big@example.test> SIZE=2000",
        250,
        "2.1.0",
    )
    .await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    let line = format!("{}\r\n", "x".repeat(70));
    let big = format!("Subject: big\r\n\r\n{}", line.repeat(40));
    c.send_raw(format!("{big}.\r\n").as_bytes()).await.unwrap();
    expect_reply(&mut c, 552, "5.3.4", "actual size over").await;
    // Far over, without SIZE: the daemon reads and drops it, then goes on.
    expect(&mut c, "MAIL FROM:<huge@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    let huge = format!("Subject: huge\r\n\r\n{}", line.repeat(3000));
    c.send_raw(format!("{huge}.\r\n").as_bytes()).await.unwrap();
    expect_reply(&mut c, 552, "5.3.4", "far over").await;
    expect(&mut c, "NOOP", 250, "2.0.0").await;

    // Exactly at the limit is fine (the limit counts content, not the
    // Received header the daemon adds).
    let mut fits = format!(
        "Subject: fits\r\n\r\n{}",
        format!("{}\r\n", "y".repeat(78)).repeat(24)
    );
    let rest = 2000 - fits.len() - 2;
    fits.push_str(&format!("{}\r\n", "z".repeat(rest)));
    assert_eq!(fits.len(), 2000);
    let id = send_ok(
        &mut c,
        "fits@example.test",
        &["b@example.test"],
        fits.as_bytes(),
    )
    .await;

    let stored = spool_of(&d);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    let rejections = wait_records(&d, "Rejection", 2);
    assert_eq!(rejections.len(), 2, "{rejections:#?}");
    for rec in rejections {
        assert_eq!(rec["response"]["enhanced_code"], "5.3.4", "{rec}");
        assert!(rec["reason"].as_str().unwrap().contains("size"), "{rec}");
    }
}

#[tokio::test]
async fn max_recipients_per_message() {
    let d = start(&policy("max_recipients_per_message = 3,", ""));
    let mut c = connect_ehlo(&d).await;
    for _round in 0..2 {
        expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
        for i in 0..3 {
            expect(
                &mut c,
                &format!("RCPT TO:<r{i}@example.test>"),
                250,
                "2.1.5",
            )
            .await;
        }
        expect(&mut c, "RCPT TO:<r3@example.test>", 452, "4.5.3").await;
        expect(&mut c, "RCPT TO:<r4@example.test>", 452, "4.5.3").await;
        assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
        c.send_raw(b"Subject: rcpts\r\n\r\nx\r\n.\r\n")
            .await
            .unwrap();
        let id = accepted_id(&c.read_reply().await.unwrap());
        let rec = reception(&d, &id);
        assert_eq!(
            rec["recipients"],
            serde_json::json!(["r0@example.test", "r1@example.test", "r2@example.test"])
        );
    }
}

#[tokio::test]
async fn max_messages_per_connection() {
    let d = start(&policy("max_messages_per_connection = 2,", ""));
    let mut c = connect_ehlo(&d).await;
    // A refused message does not count.
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"bare\nLF\r\n.\r\n").await.unwrap();
    expect_reply(&mut c, 552, "5.6.0", "refused message").await;
    for i in 0..2 {
        send_ok(
            &mut c,
            "a@example.test",
            &["b@example.test"],
            &message(&format!("n{i}")),
        )
        .await;
    }
    expect(&mut c, "MAIL FROM:<a@example.test>", 421, "4.7.0").await;
    assert!(c.expect_closed().await, "closed after 421");
    // A new connection gets a fresh allowance.
    let mut c = connect_ehlo(&d).await;
    send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test"],
        &message("again"),
    )
    .await;
}

/// Reads everything until the server closes (or `limit` passes); returns
/// the bytes and when the close happened.
async fn read_until_closed(
    r: &mut (impl AsyncReadExt + Unpin),
    limit: Duration,
) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&all).into_owned(),
                    Some(start.elapsed()),
                )
            }
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&all).into_owned(), None),
        }
    }
}

/// Connects, reads the greeting, and hands back split halves.
async fn raw_connect(
    d: &ironpost_testkit::Daemon,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let tcp = TcpStream::connect(d.smtp_addr()).await.unwrap();
    let (mut r, w) = tcp.into_split();
    let mut greeting = [0u8; 256];
    let n = r.read(&mut greeting).await.unwrap();
    assert!(greeting[..n].starts_with(b"220 "), "greeting");
    (r, w)
}

/// Writes `bytes` one at a time, `gap` apart, until the peer goes away.
fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, gap: Duration) {
    tokio::spawn(async move {
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
}

#[tokio::test]
async fn idle_client_times_out() {
    let d = start(&policy("client_timeout = '2s',", ""));
    // Idle right after the greeting.
    let mut c = connect(&d).await;
    let t = Instant::now();
    let r = c.read_reply().await.expect("timeout reply");
    check(&r, 421, "4.4.2", "idle");
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert!(c.expect_closed().await);

    // Idle in the middle of a transaction.
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    let r = c.read_reply().await.expect("timeout reply");
    check(&r, 421, "4.4.2", "idle in transaction");
    assert!(c.expect_closed().await);

    // Idle during DATA.
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: half a message\r\n").await.unwrap();
    let r = c.read_reply().await.expect("timeout reply");
    check(&r, 421, "4.4.2", "idle in DATA");
    assert!(c.expect_closed().await);
    settle_logs();
    assert!(records(&d, "Reception").is_empty());
}

#[tokio::test]
async fn trickling_command_line_is_cut_off() {
    let d = start(&policy("client_timeout = '2s',", ""));
    let (mut r, w) = raw_connect(&d).await;
    // 38 bytes at 300 ms each would take over 11 s; every byte arrives well
    // within the timeout, but the whole line does not.
    trickle(
        w,
        b"MAIL FROM:<slowloris@example.test>\r\n".to_vec(),
        Duration::from_millis(300),
    );
    let (text, closed) = read_until_closed(&mut r, Duration::from_secs(8)).await;
    let closed = closed.expect("connection closed while trickling");
    assert!(text.starts_with("421 4.4.2 "), "{text:?}");
    assert!(closed < Duration::from_millis(4500), "held for {closed:?}");
}

#[tokio::test]
async fn trickling_data_is_cut_off_by_data_processing_timeout() {
    let d = start(&policy(
        "client_timeout = '2s', data_processing_timeout = '3s',",
        "",
    ));
    let (mut r, mut w) = raw_connect(&d).await;
    w.write_all(
        b"EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
    )
    .await
    .unwrap();
    // Wait for the 354 before starting the clock.
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !contains(&seen, b"354 ") {
        let n = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf))
            .await
            .expect("354 in time")
            .unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    // One byte every 300 ms keeps client_timeout (2 s) happy forever; the
    // DATA phase as a whole must still end at 3 s.
    trickle(w, vec![b'x'; 200], Duration::from_millis(300));
    let (text, closed) = read_until_closed(&mut r, Duration::from_secs(10)).await;
    let closed = closed.expect("connection closed while trickling DATA");
    assert!(text.starts_with("421 4.4.2 "), "{text:?}");
    assert!(
        closed >= Duration::from_millis(2500) && closed < Duration::from_millis(5500),
        "DATA held for {closed:?}"
    );
    settle_logs();
    assert!(records(&d, "Reception").is_empty());
    let rejections = records(&d, "Rejection");
    let cut = rejections
        .iter()
        .find(|r| r["response"]["code"] == 421)
        .unwrap_or_else(|| panic!("a Rejection record for the cut-off DATA: {rejections:?}"));
    assert_eq!(cut["response"]["enhanced_code"], "4.4.2", "{cut}");
    assert_eq!(cut["sender"], "a@example.test", "{cut}");
}

#[tokio::test]
async fn max_connections() {
    let d = start(&policy("max_connections = 2,", ""));
    let mut c1 = connect_ehlo(&d).await;
    let _c2 = connect_ehlo(&d).await;
    let (mut c3, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    check(&greeting, 421, "4.3.2", "third connection");
    assert!(c3.expect_closed().await, "refused connection is closed");

    // Freeing a slot lets the next client in.
    expect(&mut c1, "QUIT", 221, "2.0.0").await;
    assert!(c1.expect_closed().await);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
        if greeting.code == 220 {
            c.ehlo("client.test").await.unwrap();
            send_ok(
                &mut c,
                "a@example.test",
                &["b@example.test"],
                &message("slot"),
            )
            .await;
            break;
        }
        check(&greeting, 421, "4.3.2", "while the slot is freed");
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn line_length_hard_limit() {
    let d = start(&policy("line_length_hard_limit = 100,", ""));
    let mut c = connect_ehlo(&d).await;
    let ok = format!("Subject: lines\r\n\r\n{}\r\n", "a".repeat(100));
    send_ok(&mut c, "a@example.test", &["b@example.test"], ok.as_bytes()).await;
    let long = format!("Subject: lines\r\n\r\n{}\r\n", "a".repeat(101));
    let r = c
        .send_message("a@example.test", &["b@example.test"], long.as_bytes())
        .await
        .unwrap();
    check(&r, 552, "5.6.0", "line over the limit");
    assert!(r.text().contains("100"), "{r}");
    expect(&mut c, "NOOP", 250, "2.0.0").await;
    assert_eq!(spool_of(&d).len(), 1);

    // The default is 998.
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    let ok = format!("Subject: lines\r\n\r\n{}\r\n", "b".repeat(998));
    send_ok(&mut c, "a@example.test", &["b@example.test"], ok.as_bytes()).await;
    let long = format!("Subject: lines\r\n\r\n{}\r\n", "b".repeat(999));
    let r = c
        .send_message("a@example.test", &["b@example.test"], long.as_bytes())
        .await
        .unwrap();
    check(&r, 552, "5.6.0", "line over 998");
}

#[tokio::test]
async fn invalid_limits_stop_the_daemon() {
    for (fields, key) in [
        ("max_connections = 0,", "max_connections"),
        ("line_length_hard_limit = 10,", "line_length_hard_limit"),
        ("client_timeout = 'soon',", "client_timeout"),
        (
            "invalid_line_endings = 'Sometimes',",
            "invalid_line_endings",
        ),
    ] {
        let opts = ironpost_testkit::DaemonOptions::new(BIN).policy(policy(fields, ""));
        let (code, stderr) = ironpost_testkit::Daemon::try_start_expect_failure(opts).unwrap();
        assert_ne!(code, 0, "{fields}");
        assert!(stderr.contains(key), "{fields}: {stderr}");
    }
}

/// One address cannot take every slot: past `max_connections_per_ip` it
/// gets `421 4.7.0` at once (and a Rejection record); another address still
/// gets its greeting, and a freed slot is usable again. `relay_hosts`
/// clients are not counted.
#[tokio::test]
async fn max_connections_per_ip() {
    let d = start(&policy(
        "max_connections_per_ip = 3, relay_hosts = { '127.0.0.9' },",
        "",
    ));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&d).await);
    }
    let (mut extra, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    check(
        &greeting,
        421,
        "4.7.0",
        "fourth connection from one address",
    );
    assert!(extra.expect_closed().await);
    let (_other, greeting) = SmtpClient::connect_from("127.0.0.2".parse().unwrap(), d.smtp_addr())
        .await
        .unwrap();
    assert_eq!(greeting.code, 220, "another address: {greeting}");
    let (_relay, greeting) = SmtpClient::connect_from("127.0.0.9".parse().unwrap(), d.smtp_addr())
        .await
        .unwrap();
    assert_eq!(
        greeting.code, 220,
        "relay_hosts are not counted: {greeting}"
    );
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = connect(&d).await;
    let rec = d
        .wait_for_log(
            |r| r["type"] == "Rejection" && r["response"]["code"] == 421,
            Duration::from_secs(5),
        )
        .expect("Rejection record");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.1", "{rec}");
}

/// A NOOP loop cannot hold a slot for ever: past `max_idle_commands`
/// outside a transaction the connection is closed with `421 4.7.0`; MAIL
/// starts the count again.
#[tokio::test]
async fn max_idle_commands() {
    let d = start(&policy("max_idle_commands = 5,", ""));
    let mut c = connect_ehlo(&d).await;
    for _ in 0..4 {
        expect(&mut c, "NOOP", 250, "2.0.0").await;
    }
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    for _ in 0..5 {
        expect(&mut c, "NOOP", 250, "2.0.0").await;
    }
    expect(&mut c, "NOOP", 421, "4.7.0").await;
    assert!(c.expect_closed().await);
}

/// Out of file descriptors, a client is told `421 4.3.2` at once instead
/// of waiting without a greeting.
#[tokio::test]
async fn out_of_descriptors_is_a_421() {
    let d = start(&policy(
        "max_connections = 1000, max_connections_per_ip = 1000,",
        "",
    ));
    let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .count();
    // Room for a few more descriptors only.
    let limit = open + 4;
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", d.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit");
    assert!(status.success());
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let (c, greeting) =
            tokio::time::timeout(Duration::from_secs(3), SmtpClient::connect(d.smtp_addr()))
                .await
                .expect("an answer within 3 s, never a hang")
                .unwrap();
        match greeting.code {
            220 => held.push(c),
            421 => {
                check(&greeting, 421, "4.3.2", "out of descriptors");
                refused += 1;
            }
            other => panic!("unexpected greeting {other}: {greeting}"),
        }
    }
    assert!(refused > 0, "some clients beyond the limit were told 421");
    assert!(!held.is_empty());
}
