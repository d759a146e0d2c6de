//! The client against a scripted server on real loopback sockets.

use ironpost_smtp_client::tls::{
    check_certificate, insecure_config, root_store, verifying_config, webpki_verifier,
};
use ironpost_smtp_client::{dot_stuff, ClientError, MailParams, Phase, SmtpClient, Timeouts};
use ironpost_testkit::fake_smtp::{plain, Behaviour, Event, FakeServer};
use ironpost_testkit::TestCa;
use ironpost_wire::{DataOptions, DataReceiver};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

fn timeouts() -> Timeouts {
    Timeouts::all(Duration::from_secs(10))
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn connect(server: &FakeServer) -> SmtpClient {
    let (client, greeting) = SmtpClient::connect(server.addr, None, &timeouts())
        .await
        .expect("connect");
    assert_eq!(greeting.code, 220);
    client
}

#[tokio::test]
async fn ehlo_capabilities() {
    let server = FakeServer::start(Behaviour::default().with("SMTPUTF8")).await;
    let mut c = connect(&server).await;
    let caps = c.ehlo("client.test").await.unwrap();
    assert!(caps.esmtp && caps.pipelining && caps.eight_bit_mime && caps.smtputf8);
    assert!(caps.enhanced_status_codes && !caps.starttls && caps.auth.is_empty());
    assert_eq!(caps.size, Some(10_000_000));
    assert_eq!(caps.domain, "fake.test");
    assert_eq!(c.capabilities(), &caps);
    c.quit().await;
    let rec = server.recording();
    assert_eq!(rec.commands(), vec!["EHLO client.test", "QUIT"]);
}

#[tokio::test]
async fn helo_fallback_when_ehlo_refused() {
    let server = FakeServer::start(Behaviour {
        ehlo_keywords: None,
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    let caps = c.ehlo("client.test").await.unwrap();
    assert!(!caps.esmtp && !caps.pipelining);
    assert_eq!(caps.domain, "fake.test");
    // Without PIPELINING every command waits for its reply.
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"hi\r\n",
            MailParams::default(),
        )
        .await
        .unwrap();
    assert!(r.data_reply.unwrap().is_positive());
    let rec = server.recording();
    assert_eq!(
        rec.commands(),
        vec![
            "EHLO client.test",
            "HELO client.test",
            "MAIL FROM:<a@x.test>",
            "RCPT TO:<b@y.test>",
            "DATA"
        ]
    );
}

#[tokio::test]
async fn negative_greeting_is_an_error_with_the_reply() {
    for (greeting, transient) in [
        ("554 5.3.2 no service here\r\n", false),
        ("421 4.3.2 busy\r\n", true),
    ] {
        let server = FakeServer::start(Behaviour {
            greeting: Some(greeting.into()),
            ..Behaviour::default()
        })
        .await;
        let e = SmtpClient::connect(server.addr, None, &timeouts())
            .await
            .unwrap_err();
        match &e {
            ClientError::Rejected { phase, reply } => {
                assert_eq!(*phase, Phase::Banner);
                assert_eq!(reply.to_string(), greeting.trim_end());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.is_transient_for_host(), transient);
    }
}

#[tokio::test]
async fn pipelined_transaction_with_per_recipient_results() {
    // The server holds its MAIL and RCPT replies until DATA arrives: a
    // client that waited for them would stall.
    let server = FakeServer::start(Behaviour {
        hold_until_data: true,
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let list = rcpts(&["ok1@y.test", "reject@y.test", "later@y.test", "ok2@y.test"]);
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &list,
            b"Subject: t\r\n\r\nbody\r\n",
            MailParams {
                eight_bit: true,
                ..MailParams::default()
            },
        )
        .await
        .unwrap();
    let codes: Vec<(String, u16)> = r
        .recipients
        .iter()
        .map(|(a, r)| (a.clone(), r.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("ok1@y.test".into(), 250),
            ("reject@y.test".into(), 550),
            ("later@y.test".into(), 451),
            ("ok2@y.test".into(), 250)
        ]
    );
    assert_eq!(r.accepted(), 2);
    assert_eq!(
        r.delivered().collect::<Vec<_>>(),
        vec!["ok1@y.test", "ok2@y.test"]
    );
    let outcomes: Vec<u16> = r.outcomes().map(|(_, r)| r.code).collect();
    assert_eq!(outcomes, vec![250, 550, 451, 250]);
    assert_eq!(
        r.data_reply.as_ref().unwrap().to_string(),
        "250 2.0.0 queued as 1"
    );
    assert!(r.recipients[1].1.is_permanent() && r.recipients[2].1.is_transient());

    let rec = server.recording();
    let batch: Vec<(String, usize)> = rec
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Command { line, batch } => Some((line.clone(), *batch)),
            _ => None,
        })
        .collect();
    // MAIL, four RCPTs and DATA arrived in one read.
    assert_eq!(batch[1].0, "MAIL FROM:<a@x.test> SIZE=20 BODY=8BITMIME");
    assert!(batch[1..7].iter().all(|(_, n)| *n == 6), "{batch:?}");
    assert_eq!(batch[6].0, "DATA");
    assert_eq!(
        rec.data(),
        vec![b"Subject: t\r\n\r\nbody\r\n.\r\n".to_vec()]
    );
}

#[tokio::test]
async fn without_pipelining_commands_go_one_by_one() {
    let server = FakeServer::start(Behaviour::default().without("PIPELINING")).await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_envelope_and_data(
            "",
            &rcpts(&["a@y.test", "reject@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.accepted(), 1);
    assert!(r.data_reply.unwrap().is_positive());
    let rec = server.recording();
    for e in &rec.events {
        if let Event::Command { line, batch } = e {
            assert_eq!(*batch, 1, "{line} arrived with other commands");
        }
    }
    assert_eq!(
        rec.commands()[1..],
        [
            "MAIL FROM:<> SIZE=1",
            "RCPT TO:<a@y.test>",
            "RCPT TO:<reject@y.test>",
            "DATA"
        ]
    );
    assert_eq!(rec.data(), vec![b"x\r\n.\r\n".to_vec()]);
}

#[tokio::test]
async fn no_recipient_accepted_resets_and_connection_is_reused() {
    for pipelining in [true, false] {
        let b = if pipelining {
            Behaviour::default()
        } else {
            Behaviour::default().without("PIPELINING")
        };
        let server = FakeServer::start(b).await;
        let mut c = connect(&server).await;
        c.ehlo("client.test").await.unwrap();
        let r = c
            .send_envelope_and_data(
                "a@x.test",
                &rcpts(&["reject@y.test", "later@y.test"]),
                b"never sent\r\n",
                MailParams::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.accepted(), 0);
        assert_eq!(r.data_reply, None);
        let codes: Vec<u16> = r.outcomes().map(|(_, r)| r.code).collect();
        assert_eq!(codes, vec![550, 451]);
        assert!(c.is_usable());
        // The same connection carries the next message.
        let r = c
            .send_envelope_and_data(
                "a@x.test",
                &rcpts(&["b@y.test"]),
                b"second\r\n",
                MailParams::default(),
            )
            .await
            .unwrap();
        assert!(r.data_reply.unwrap().is_positive());
        c.quit().await;
        let rec = server.recording();
        let cmds = rec.commands();
        let rset = cmds.iter().position(|c| c == "RSET").expect("RSET sent");
        assert!(cmds[rset + 1].starts_with("MAIL FROM:"), "{cmds:?}");
        if !pipelining {
            assert_eq!(cmds.iter().filter(|c| *c == "DATA").count(), 1, "{cmds:?}");
        }
        assert_eq!(
            rec.data(),
            vec![b"second\r\n.\r\n".to_vec()],
            "pipelining {pipelining}"
        );
    }
}

#[tokio::test]
async fn refused_mail_from_and_data() {
    let server = FakeServer::start(
        Behaviour::default().reply_to("MAIL FROM:<bad@x.test> SIZE=1", "550 5.7.1 go away\r\n"),
    )
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .send_envelope_and_data(
            "bad@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Rejected { phase: Phase::MailFrom, reply } if reply.code == 550)
    );
    assert!(!e.is_transient_for_host());
    assert!(c.is_usable());

    let server = FakeServer::start(
        Behaviour::default()
            .without("PIPELINING")
            .reply_to("DATA", "451 4.3.0 not now\r\n"),
    )
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.data_reply.as_ref().unwrap().code, 451);
    assert_eq!(r.outcomes().next().unwrap().1.code, 451);
    assert!(server.recording().commands().contains(&"RSET".to_string()));
}

#[tokio::test]
async fn data_accepted_without_recipients_is_a_desync() {
    // The server says 354 although the client saw every RCPT refused: the
    // two sides disagree, so no byte of the message may be sent.
    for pipelining in [true, false] {
        let b = Behaviour::default().reply_to("DATA", "354 go ahead\r\n");
        let b = if pipelining {
            b
        } else {
            b.without("PIPELINING")
        };
        let server = FakeServer::start(b).await;
        let mut c = connect(&server).await;
        c.ehlo("client.test").await.unwrap();
        let e = c
            .send_envelope_and_data(
                "a@x.test",
                &rcpts(&["reject@y.test"]),
                b"secret body",
                MailParams::default(),
            )
            .await;
        if pipelining {
            let e = e.unwrap_err();
            assert!(
                matches!(
                    e,
                    ClientError::Protocol {
                        phase: Phase::Data,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(!c.is_usable());
        } else {
            // Sequentially, DATA is never sent without an accepted recipient.
            assert_eq!(e.unwrap().data_reply, None);
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rec = server.recording();
        assert!(rec.data().is_empty());
        assert!(!rec.raw.windows(6).any(|w| w == b"secret"));
    }
}

#[tokio::test]
async fn final_reply_failure_is_reported() {
    let server = FakeServer::start(Behaviour {
        data_reply: "554 5.6.0 content rejected\r\n".into(),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap();
    let reply = r.data_reply.unwrap();
    assert!(reply.is_permanent());
    assert_eq!(reply.enhanced.unwrap().to_string(), "5.6.0");
}

/// The on-the-wire body: line endings normalised, dots stuffed even after
/// bare CR or LF, and nothing a receiver could take for an early end.
#[tokio::test]
async fn dot_stuffing_and_crlf_normalisation_on_the_wire() {
    let server = FakeServer::start(Behaviour::default()).await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let body: &[u8] = b".leading dot\nbare lf\n.\nafter lf-dot-lf\r.\rafter cr-dot-cr\r\n..two\r\n.\r\nend\r\n.\n.\r\nno final newline";
    let want: &[u8] = b"..leading dot\r\nbare lf\r\n..\r\nafter lf-dot-lf\r\n..\r\nafter cr-dot-cr\r\n...two\r\n..\r\nend\r\n..\r\n..\r\nno final newline\r\n.\r\n";
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            body,
            MailParams::default(),
        )
        .await
        .unwrap();
    assert!(r.data_reply.unwrap().is_positive());
    let rec = server.recording();
    assert_eq!(rec.data(), vec![want.to_vec()]);
    // The raw bytes after "DATA\r\n" are exactly that stream.
    let raw = &rec.raw;
    let start = raw.windows(6).position(|w| w == b"DATA\r\n").unwrap() + 6;
    assert_eq!(&raw[start..], want);
    // A strict receiver (bare line endings refused) sees one message that
    // ends exactly at the end of the stream.
    let mut rx = DataReceiver::new(DataOptions::default());
    let mut out = Vec::new();
    let (used, done) = rx.feed(want, &mut out);
    assert!(done && used == want.len());
    assert_eq!(rx.outcome(), ironpost_wire::DataOutcome::Ok);
}

#[tokio::test]
async fn large_message_is_streamed_in_chunks() {
    // 300 KB with a CRLF split across the 64 KiB chunk boundary, and bare
    // line endings and dots spread through it.
    let mut body = Vec::with_capacity(300_000);
    let mut i = 0u32;
    while body.len() < 300_000 {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
        match i % 11 {
            0 => body.push(b'\n'),
            1 => body.push(b'\r'),
            2 => body.extend_from_slice(b"\r\n."),
            3 => body.push(b'.'),
            _ => body.extend_from_slice(b"abcdefgh"),
        }
    }
    body[65535] = b'\r';
    body[65536] = b'\n';
    body[65537] = b'.';
    let server = FakeServer::start(Behaviour::default()).await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            &body,
            MailParams::default(),
        )
        .await
        .unwrap();
    assert!(r.data_reply.unwrap().is_positive());
    let rec = server.recording();
    let data = rec.data();
    assert_eq!(data.len(), 1);
    assert!(data[0] == dot_stuff(&body), "streamed output differs");
    assert_eq!(ironpost_smtp_client::check_data_stream(&data[0]), None);
}

#[tokio::test]
async fn starttls_with_a_verifying_config() {
    let ca = TestCa::new("Test CA");
    let server = FakeServer::start(Behaviour {
        tls: Some(ca.server_config(&["mx.test"])),
        auth: Some(("user".into(), "hunter2-secret".into())),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    let caps = c.ehlo("client.test").await.unwrap();
    assert!(caps.starttls);
    let config = verifying_config(Some(ca.cert_pem.as_bytes()), None).unwrap();
    let info = c.starttls("mx.test", config).await.unwrap();
    assert!(c.is_tls());
    assert!(info.protocol_version.starts_with("TLSv1."), "{info:?}");
    assert!(info.cipher.starts_with("TLS"), "{info:?}");
    assert_eq!(info.peer_certificates.len(), 1);
    // Capabilities are forgotten until the next EHLO.
    assert!(!c.capabilities().esmtp);
    let caps = c.ehlo("client.test").await.unwrap();
    assert!(!caps.starttls && caps.supports_auth("PLAIN"));
    let ok = c.auth_plain("user", b"hunter2-secret").await.unwrap();
    assert_eq!(ok.code, 235);
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"over tls\r\n",
            MailParams::default(),
        )
        .await
        .unwrap();
    assert!(r.data_reply.unwrap().is_positive());
    c.quit().await;
    let rec = server.recording();
    let cmds = rec.commands();
    assert_eq!(
        cmds[..4],
        [
            "EHLO client.test",
            "STARTTLS",
            "EHLO client.test",
            &format!("AUTH PLAIN {}", plain("user", "hunter2-secret"))
        ]
    );
    let tls_at = rec
        .events
        .iter()
        .position(|e| *e == Event::TlsStarted)
        .unwrap();
    let auth_at = rec
        .events
        .iter()
        .position(|e| matches!(e, Event::Command { line, .. } if line.starts_with("AUTH")))
        .unwrap();
    assert!(tls_at < auth_at, "credentials sent before TLS");
    assert_eq!(rec.data(), vec![b"over tls\r\n.\r\n".to_vec()]);
}

#[tokio::test]
async fn certificate_from_another_ca_fails_verification() {
    let trusted = TestCa::new("Trusted CA");
    let other = TestCa::new("Other CA");
    let server = FakeServer::start(Behaviour {
        tls: Some(other.server_config(&["mx.test"])),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let config = verifying_config(Some(trusted.cert_pem.as_bytes()), None).unwrap();
    let e = c.starttls("mx.test", config).await.unwrap_err();
    let ClientError::Tls(tls) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        tls.certificate_error(),
        Some(&rustls::CertificateError::UnknownIssuer),
        "{tls}"
    );
    assert!(e.is_transient_for_host());
    assert!(!c.is_usable());
    assert!(matches!(c.rset().await, Err(ClientError::Unusable)));

    // A wrong name with the right CA fails too.
    let server = FakeServer::start(Behaviour {
        tls: Some(trusted.server_config(&["other.test"])),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let config = verifying_config(Some(trusted.cert_pem.as_bytes()), None).unwrap();
    let e = c.starttls("mx.test", config).await.unwrap_err();
    let ClientError::Tls(tls) = &e else {
        panic!("{e:?}")
    };
    assert!(
        matches!(
            tls.certificate_error(),
            Some(rustls::CertificateError::NotValidForNameContext { .. })
                | Some(rustls::CertificateError::NotValidForName)
        ),
        "{tls}"
    );
}

#[tokio::test]
async fn insecure_config_accepts_and_records_validity() {
    let trusted = TestCa::new("Trusted CA");
    let other = TestCa::new("Other CA");
    let server = FakeServer::start(Behaviour {
        tls: Some(other.server_config(&["mx.test", "127.0.0.1"])),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let info = c
        .starttls("127.0.0.1", insecure_config(None).unwrap())
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap();
    assert!(r.data_reply.unwrap().is_positive());
    // Whether it would have validated, against each root store.
    let chain = &info.peer_certificates;
    let v_trusted =
        webpki_verifier(root_store(Some(trusted.cert_pem.as_bytes())).unwrap()).unwrap();
    let v_other = webpki_verifier(root_store(Some(other.cert_pem.as_bytes())).unwrap()).unwrap();
    assert!(check_certificate(&*v_trusted, "mx.test", chain).is_err());
    check_certificate(&*v_other, "mx.test", chain).unwrap();
    check_certificate(&*v_other, "127.0.0.1", chain).unwrap();
    assert!(check_certificate(&*v_other, "wrong.test", chain).is_err());
    assert!(check_certificate(&*v_other, "mx.test", &[]).is_err());
}

#[tokio::test]
async fn starttls_not_offered_or_refused() {
    let server = FakeServer::start(Behaviour::default()).await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .starttls("mx.test", insecure_config(None).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotOffered("STARTTLS")));
    assert!(!server
        .recording()
        .commands()
        .contains(&"STARTTLS".to_string()));

    let ca = TestCa::new("CA");
    let server = FakeServer::start(Behaviour {
        tls: Some(ca.server_config(&["mx.test"])),
        starttls_reply: "454 4.7.0 TLS not available\r\n".into(),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .starttls("mx.test", insecure_config(None).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Rejected { phase: Phase::StartTls, reply } if reply.code == 454)
    );
    assert!(e.is_transient_for_host());
    // Still usable in clear; the caller decides whether that is allowed.
    assert!(c.is_usable() && !c.is_tls());
    c.rset().await.unwrap();
}

#[tokio::test]
async fn reply_injected_before_the_handshake_is_refused() {
    let ca = TestCa::new("CA");
    let server = FakeServer::start(Behaviour {
        tls: Some(ca.server_config(&["mx.test"])),
        starttls_reply: "220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n".into(),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .starttls("mx.test", insecure_config(None).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Protocol {
                phase: Phase::StartTls,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!c.is_usable());
}

#[tokio::test]
async fn auth_plain_failure_never_reveals_the_password() {
    let password = "correct-horse-battery";
    let ca = TestCa::new("CA");
    let server = FakeServer::start(Behaviour {
        tls: Some(ca.server_config(&["mx.test"])),
        auth: Some(("user".into(), "something-else".into())),
        auth_echo: true,
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    c.starttls(
        "mx.test",
        verifying_config(Some(ca.cert_pem.as_bytes()), None).unwrap(),
    )
    .await
    .unwrap();
    c.ehlo("client.test").await.unwrap();
    let e = c.auth_plain("user", password.as_bytes()).await.unwrap_err();
    assert!(matches!(&e, ClientError::Rejected { phase: Phase::Auth, reply } if reply.code == 535));
    assert!(!e.is_transient_for_host());
    let encoded = plain("user", password);
    for shown in [e.to_string(), format!("{e:?}"), format!("{c:?}")] {
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains(&encoded), "{shown}");
    }
    assert!(e.to_string().contains("<redacted>"), "{e}");
    // The server did receive exactly that response (once).
    let cmds = server.recording().commands();
    assert_eq!(
        cmds.iter()
            .filter(|c| c.starts_with("AUTH PLAIN"))
            .collect::<Vec<_>>(),
        vec![&format!("AUTH PLAIN {encoded}")]
    );
    // The session goes on after a refused AUTH.
    assert!(c.is_usable());
    c.rset().await.unwrap();
}

#[tokio::test]
async fn auth_plain_needs_the_mechanism_and_clean_arguments() {
    let server = FakeServer::start(Behaviour::default()).await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c.auth_plain("user", b"pw").await.unwrap_err();
    assert!(matches!(e, ClientError::NotOffered("AUTH PLAIN")));

    let server = FakeServer::start(Behaviour {
        auth: Some(("user".into(), "pw".into())),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .auth_plain("user", b"pw\0with-nul-secret")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidArgument(_)));
    assert!(!format!("{e} {e:?}").contains("with-nul-secret"));
    assert!(!server
        .recording()
        .commands()
        .iter()
        .any(|c| c.starts_with("AUTH")));
    c.auth_plain("user", b"pw").await.unwrap();
}

#[tokio::test]
async fn silent_server_times_out_quickly() {
    let server = FakeServer::start(Behaviour {
        greeting: None,
        ..Behaviour::default()
    })
    .await;
    let mut t = timeouts();
    t.banner = Duration::from_millis(200);
    let start = Instant::now();
    let e = SmtpClient::connect(server.addr, None, &t)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout(Phase::Banner)), "{e:?}");
    assert!(e.is_transient_for_host());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn stalled_transaction_times_out_and_poisons_the_session() {
    for (stall, phase) in [("RCPT", Phase::RcptTo), ("MAIL", Phase::MailFrom)] {
        let server = FakeServer::start(Behaviour {
            stall_on: Some(stall.into()),
            ..Behaviour::default().without("PIPELINING")
        })
        .await;
        let mut c = connect(&server).await;
        c.ehlo("client.test").await.unwrap();
        let t = c.timeouts_mut();
        t.mail_from = Duration::from_millis(200);
        t.rcpt_to = Duration::from_millis(200);
        let start = Instant::now();
        let e = c
            .send_envelope_and_data(
                "a@x.test",
                &rcpts(&["b@y.test"]),
                b"x",
                MailParams::default(),
            )
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(matches!(e, ClientError::Timeout(p) if p == phase), "{e:?}");
        assert!(!c.is_usable());
    }

    // The final dot.
    let server = FakeServer::start(Behaviour {
        data_reply: String::new(),
        ..Behaviour::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    c.timeouts_mut().data_dot = Duration::from_millis(200);
    let e = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout(Phase::DataDot)), "{e:?}");
}

#[tokio::test]
async fn connect_errors_and_source_address() {
    // Nothing listens on a port just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let e = SmtpClient::connect(addr, None, &timeouts())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect(_)), "{e:?}");
    assert!(e.is_transient_for_host());

    let server = FakeServer::start(Behaviour::default()).await;
    let source: IpAddr = [127, 0, 0, 2].into();
    let (c, _) = SmtpClient::connect(server.addr, Some(source), &timeouts())
        .await
        .unwrap();
    assert_eq!(c.local_addr().ip(), source);
    c.quit().await;
    assert_eq!(server.recording().peer.unwrap().ip(), source);
}

#[tokio::test]
async fn malformed_and_closing_replies() {
    let server = FakeServer::start(Behaviour {
        greeting: Some("hello there\r\n".into()),
        ..Behaviour::default()
    })
    .await;
    let e = SmtpClient::connect(server.addr, None, &timeouts())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Protocol {
                phase: Phase::Banner,
                ..
            }
        ),
        "{e:?}"
    );

    let server = FakeServer::start(
        Behaviour::default().reply_to("RCPT TO:<b@y.test>", "421 4.3.2 shutting down\r\n"),
    )
    .await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Rejected { phase: Phase::RcptTo, reply } if reply.code == 421)
    );
    assert!(e.is_transient_for_host());
    assert!(!c.is_usable());
}

#[tokio::test]
async fn message_requirements_checked_before_sending() {
    let server = FakeServer::start(Behaviour::default().with("SIZE 100")).await;
    let mut c = connect(&server).await;
    c.ehlo("client.test").await.unwrap();
    let e = c
        .send_envelope_and_data(
            "ä@x.test",
            &rcpts(&["b@y.test"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotOffered("SMTPUTF8")), "{e:?}");
    // The last SIZE line wins: 100.
    let e = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test"]),
            &[b'x'; 101],
            MailParams::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::MessageTooLarge {
                size: 101,
                max: 100
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_transient_for_host());
    let e = c
        .send_envelope_and_data(
            "a@x.test",
            &rcpts(&["b@y.test>\r\nDATA"]),
            b"x",
            MailParams::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidArgument(_)), "{e:?}");
    assert!(c.is_usable());
    c.quit().await;
    assert_eq!(
        server.recording().commands(),
        vec!["EHLO client.test", "QUIT"]
    );
}
