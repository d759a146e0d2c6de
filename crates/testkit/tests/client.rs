//! SmtpClient against tiny in-test fake servers on 127.0.0.1.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use ironpost_testkit::tls::{parse_certs, server_config};
use ironpost_testkit::{self_signed, SmtpClient, TestCa, TlsTrust};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Accepts one connection on an ephemeral loopback port and runs `script`.
async fn serve_once<F, Fut, T>(script: F) -> (SocketAddr, JoinHandle<anyhow::Result<T>>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await?;
        script(sock).await
    });
    (addr, task)
}

async fn line<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> anyhow::Result<String> {
    let mut s = String::new();
    r.read_line(&mut s).await?;
    Ok(s.trim_end().to_string())
}

async fn say<S: AsyncWrite + Unpin>(w: &mut S, text: &str) -> anyhow::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.flush().await?;
    Ok(())
}

#[tokio::test]
async fn multi_line_reply_split_across_packets() {
    let (addr, server) = serve_once(|sock| async move {
        let mut r = BufReader::new(sock);
        say(r.get_mut(), "220-fake.test ESMTP\r\n220 second line\r\n").await?;
        assert_eq!(line(&mut r).await?, "EHLO client.test");
        say(r.get_mut(), "250-fake.test hello\r\n250-PIPE").await?;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        say(r.get_mut(), "LINING\r\n250-STARTTLS\r\n250 SIZE 1000\r\n").await?;
        // Two replies in one write must come back as two reads.
        assert_eq!(line(&mut r).await?, "NOOP");
        say(r.get_mut(), "250 2.0.0 one\r\n251 2.1.5 two\r\n").await
    })
    .await;
    let (mut c, greeting) = SmtpClient::connect(addr).await.unwrap();
    assert_eq!(greeting.code, 220);
    assert_eq!(greeting.lines, ["fake.test ESMTP", "second line"]);
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert!(ehlo.is(250));
    assert_eq!(
        ehlo.lines,
        ["fake.test hello", "PIPELINING", "STARTTLS", "SIZE 1000"]
    );
    assert_eq!(ehlo.enhanced(), None);
    let one = c.cmd("NOOP").await.unwrap();
    assert_eq!((one.code, one.enhanced().as_deref()), (250, Some("2.0.0")));
    let two = c.read_reply().await.unwrap();
    assert_eq!((two.code, two.text()), (251, "2.1.5 two".to_string()));
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_replies_are_errors() {
    for bad in [
        "250-a\r\n251 b\r\n",
        "250 bare lf\n",
        "hello\r\n",
        "250-cut",
    ] {
        let (addr, _server) = serve_once(move |mut sock| async move {
            say(&mut sock, bad).await?;
            // Close so the truncated case sees EOF rather than a timeout.
            sock.shutdown().await?;
            Ok(())
        })
        .await;
        let err = SmtpClient::connect(addr).await.err();
        assert!(err.is_some(), "{bad:?} should be rejected");
    }
}

#[tokio::test]
async fn refuses_non_loopback() {
    let err = SmtpClient::connect("192.0.2.1:25".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopback"), "{err:#}");
}

#[tokio::test]
async fn connect_from_binds_source_address() {
    let (addr, server) = serve_once(|mut sock| async move {
        let peer = sock.peer_addr()?;
        say(&mut sock, "220 hi\r\n").await?;
        Ok(peer)
    })
    .await;
    let local = "127.0.0.2".parse().unwrap();
    let (_c, greeting) = SmtpClient::connect_from(local, addr).await.unwrap();
    assert!(greeting.is(220));
    assert_eq!(server.await.unwrap().unwrap().ip(), local);
}

/// Minimal transaction handler; returns the raw DATA bytes including the
/// terminating dot line.
async fn fake_transaction(sock: TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut r = BufReader::new(sock);
    say(r.get_mut(), "220 fake\r\n").await?;
    assert_eq!(line(&mut r).await?, "MAIL FROM:<a@example.test>");
    say(r.get_mut(), "250 2.1.0 ok\r\n").await?;
    loop {
        let cmd = line(&mut r).await?;
        if cmd == "DATA" {
            break;
        }
        let reply = if cmd.contains("bad") {
            "550 5.1.1 no\r\n"
        } else {
            "250 2.1.5 ok\r\n"
        };
        say(r.get_mut(), reply).await?;
    }
    say(r.get_mut(), "354 go\r\n").await?;
    let mut data = Vec::new();
    while !data.ends_with(b"\r\n.\r\n") {
        let n = r.read_until(b'\n', &mut data).await?;
        anyhow::ensure!(n > 0, "eof in DATA");
    }
    say(r.get_mut(), "250 2.0.0 queued as X\r\n").await?;
    Ok(data)
}

#[tokio::test]
async fn send_message_dot_stuffs_and_terminates() {
    let (addr, server) = serve_once(fake_transaction).await;
    let (mut c, _) = SmtpClient::connect(addr).await.unwrap();
    let body = b"Subject: t\r\n\r\n.leading dot\r\n..two\r\nno newline at end";
    let reply = c
        .send_message(
            "a@example.test",
            &["b@example.test", "c@example.test"],
            body,
        )
        .await
        .unwrap();
    assert_eq!(reply.enhanced().as_deref(), Some("2.0.0"));
    let data = server.await.unwrap().unwrap();
    assert_eq!(
        data,
        b"Subject: t\r\n\r\n..leading dot\r\n...two\r\nno newline at end\r\n.\r\n"
    );
}

#[tokio::test]
async fn send_message_fails_on_rejected_rcpt() {
    let (addr, _server) = serve_once(fake_transaction).await;
    let (mut c, _) = SmtpClient::connect(addr).await.unwrap();
    let err = c
        .send_message(
            "a@example.test",
            &["ok@example.test", "bad@example.test"],
            b"x",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("550"), "{err:#}");
}

#[tokio::test]
async fn expect_closed_sees_close_and_keeps_last_reply() {
    let (addr, _server) = serve_once(|mut sock| async move {
        say(&mut sock, "220 hi\r\n421 4.3.2 going away\r\n").await?;
        Ok(())
    })
    .await;
    let (mut c, _) = SmtpClient::connect(addr).await.unwrap();
    assert!(c.expect_closed().await);
    assert!(c.read_reply().await.unwrap().is(421));
    assert!(c.read_reply().await.is_err());
}

/// Plaintext EHLO, STARTTLS, handshake, then EHLO again over TLS. Returns
/// whether the client presented a certificate.
async fn fake_starttls(
    sock: TcpStream,
    acceptor: TlsAcceptor,
    starttls_reply: &'static str,
) -> anyhow::Result<bool> {
    let mut r = BufReader::new(sock);
    say(r.get_mut(), "220 fake\r\n").await?;
    assert_eq!(line(&mut r).await?, "EHLO c");
    say(r.get_mut(), "250-fake\r\n250 STARTTLS\r\n").await?;
    assert_eq!(line(&mut r).await?, "STARTTLS");
    say(r.get_mut(), starttls_reply).await?;
    if !starttls_reply.starts_with("220") {
        return Ok(false);
    }
    assert!(r.buffer().is_empty());
    let tls = acceptor.accept(r.into_inner()).await.context("accept")?;
    let had_client_cert = tls.get_ref().1.peer_certificates().is_some();
    let mut r = BufReader::new(tls);
    assert_eq!(line(&mut r).await?, "EHLO c");
    say(r.get_mut(), "250 fake over tls\r\n").await?;
    Ok(had_client_cert)
}

fn acceptor(cert: &str, key: &str, client_ca: Option<&str>) -> TlsAcceptor {
    let config = server_config(
        cert.as_bytes(),
        key.as_bytes(),
        client_ca.map(str::as_bytes),
    )
    .unwrap();
    TlsAcceptor::from(config)
}

async fn connect_and_ehlo(addr: SocketAddr) -> SmtpClient {
    let (mut c, _) = SmtpClient::connect(addr).await.unwrap();
    assert!(c.ehlo("c").await.unwrap().is(250));
    c
}

#[tokio::test]
async fn starttls_with_test_ca() {
    let ca = TestCa::new("Test CA");
    let (cert, key) = ca.issue_server(&["mx.test", "127.0.0.1"]);
    let acc = acceptor(&cert, &key, None);
    let (addr, server) = serve_once(move |s| fake_starttls(s, acc, "220 2.0.0 go\r\n")).await;

    let mut c = connect_and_ehlo(addr).await;
    assert_eq!(c.tls_info(), None);
    let trust = TlsTrust::CaPem(ca.cert_pem.clone().into_bytes());
    let reply = c.starttls("mx.test", trust).await.unwrap();
    assert!(reply.is(220));
    let (version, suite) = c.tls_info().unwrap();
    assert_eq!(version, "TLSv1_3");
    assert!(suite.starts_with("TLS13_"), "{suite}");
    let leaf = parse_certs(cert.as_bytes()).unwrap().remove(0);
    assert_eq!(c.peer_certificates_der().unwrap(), vec![leaf.to_vec()]);
    assert_eq!(c.ehlo("c").await.unwrap().text(), "fake over tls");
    assert!(!server.await.unwrap().unwrap());
}

#[tokio::test]
async fn starttls_presents_client_certificate() {
    let ca = TestCa::new("Test CA");
    let (cert, key) = ca.issue_server(&["mx.test"]);
    let (ccert, ckey) = ca.issue_client("client.test");
    let acc = acceptor(&cert, &key, Some(&ca.cert_pem));
    let (addr, server) = serve_once(move |s| fake_starttls(s, acc, "220 go\r\n")).await;

    let mut c = connect_and_ehlo(addr).await;
    let trust = TlsTrust::CaPem(ca.cert_pem.clone().into_bytes());
    c.starttls_with_client_cert("mx.test", trust, ccert.as_bytes(), ckey.as_bytes())
        .await
        .unwrap();
    assert!(c.ehlo("c").await.unwrap().is(250));
    assert!(server.await.unwrap().unwrap(), "server saw no client cert");
}

#[tokio::test]
async fn starttls_refused_stays_plaintext() {
    let (cert, key) = self_signed(&["mx.test"]);
    let acc = acceptor(&cert, &key, None);
    let (addr, _server) = serve_once(move |s| fake_starttls(s, acc, "454 4.7.0 not now\r\n")).await;
    let mut c = connect_and_ehlo(addr).await;
    let reply = c
        .starttls("mx.test", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    assert!(reply.is(454));
    assert!(!c.is_tls());
}

#[tokio::test]
async fn insecure_trust_accepts_self_signed_and_wrong_name() {
    let (cert, key) = self_signed(&["other.test"]);
    let acc = acceptor(&cert, &key, None);
    let (addr, server) = serve_once(move |s| fake_starttls(s, acc, "220 go\r\n")).await;
    let mut c = connect_and_ehlo(addr).await;
    c.starttls("mx.test", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    assert!(c.ehlo("c").await.unwrap().is(250));
    server.await.unwrap().unwrap();
}

async fn handshake_error(cert: &str, key: &str, trust: TlsTrust) -> String {
    let acc = acceptor(cert, key, None);
    let (addr, _server) = serve_once(move |s| fake_starttls(s, acc, "220 go\r\n")).await;
    let mut c = connect_and_ehlo(addr).await;
    let err = c.starttls("mx.test", trust).await.unwrap_err();
    format!("{err:#}")
}

#[tokio::test]
async fn verification_failures_fail_the_handshake() {
    let ca = TestCa::new("Test CA");
    let trust = || TlsTrust::CaPem(ca.cert_pem.clone().into_bytes());

    let (cert, key) = TestCa::new("Other CA").issue_server(&["mx.test"]);
    let err = handshake_error(&cert, &key, trust()).await;
    assert!(err.contains("UnknownIssuer"), "{err}");

    let (cert, key) = ca.issue_expired_server(&["mx.test"]);
    let err = handshake_error(&cert, &key, trust()).await;
    assert!(err.contains("expired"), "{err}");

    let (cert, key) = ca.issue_server(&["elsewhere.test"]);
    let err = handshake_error(&cert, &key, trust()).await;
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn plaintext_after_starttls_220_is_rejected() {
    let (addr, _server) = serve_once(|sock| async move {
        let mut r = BufReader::new(sock);
        say(r.get_mut(), "220 fake\r\n").await?;
        line(&mut r).await?;
        say(r.get_mut(), "220 go\r\n250 injected\r\n").await?;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Ok(())
    })
    .await;
    let (mut c, _) = SmtpClient::connect(addr).await.unwrap();
    c.send_raw(b"STARTTLS\r\n").await.unwrap();
    assert!(c.read_reply().await.unwrap().is(220));
    let err = c
        .tls_handshake_only("mx.test", TlsTrust::AcceptAnyInsecure, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plaintext"), "{err:#}");
}
