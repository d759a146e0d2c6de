//! Relay control: `relay_hosts`, the listener-domains helper (`relay_to`,
//! `relay_from`), and the classic open-relay address tricks, from a client
//! that is not trusted.

use std::net::{IpAddr, Ipv4Addr};

use crate::common::*;
use ironpost_testkit::{Daemon, SmtpClient};

const DOMAINS: &str = r#"
["ours.test"]
relay_to = true

["send.test"]
relay_from = ["127.0.0.1"]
"#;

/// 127.0.0.1 is NOT in relay_hosts; ours.test accepts mail, send.test may
/// send from 127.0.0.1. Returns the daemon and the dir holding domains.toml.
fn untrusted_daemon() -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("domains.toml");
    std::fs::write(&file, DOMAINS).unwrap();
    let extra = format!(
        "local ld = require 'policy-extras.listener_domains'\nkumo.on('get_listener_domain', ld:setup {{ '{}' }})\n",
        file.display()
    );
    let d = start(&policy("relay_hosts = { '127.0.0.2' },", &extra));
    (d, dir)
}

async fn connect_from(d: &Daemon, last_octet: u8) -> SmtpClient {
    let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet));
    let (mut c, greeting) = SmtpClient::connect_from(local, d.smtp_addr())
        .await
        .expect("connect from alternate loopback address");
    assert_eq!(greeting.code, 220);
    assert_eq!(c.ehlo("client.test").await.unwrap().code, 250);
    c
}

/// (recipient, code, enhanced) for an untrusted client whose sender's
/// domain grants nothing.
const MATRIX: &[(&str, u16, &str)] = &[
    ("<a@ours.test>", 250, "2.1.5"),
    ("<a@OURS.TEST>", 250, "2.1.5"),
    ("<First.Last+tag@Ours.Test>", 250, "2.1.5"),
    ("<\"quoted name\"@ours.test>", 250, "2.1.5"),
    ("<postmaster@ours.test>", 250, "2.1.5"),
    // A source route is ignored (RFC 5321 3.3): the mailbox decides.
    ("<@evil.test:a@ours.test>", 250, "2.1.5"),
    ("<a@evil.test>", 550, "5.7.1"),
    ("<a@sub.ours.test>", 550, "5.7.1"),
    ("<a@ours.test.evil.test>", 550, "5.7.1"),
    ("<a@evilours.test>", 550, "5.7.1"),
    // Percent hack.
    ("<victim%evil.test@ours.test>", 550, "5.7.1"),
    ("<victim%evil.test%ours.test@ours.test>", 550, "5.7.1"),
    // Quoted local part containing @ or %.
    ("<\"victim@evil.test\"@ours.test>", 550, "5.7.1"),
    ("<\"victim%evil.test\"@ours.test>", 550, "5.7.1"),
    ("<\"victim\\@evil.test\"@ours.test>", 550, "5.7.1"),
    // Bang path.
    ("<evil.test!victim@ours.test>", 550, "5.7.1"),
    ("<\"evil.test!victim\"@ours.test>", 550, "5.7.1"),
    // Source routes towards a foreign mailbox.
    ("<@ours.test:victim@evil.test>", 550, "5.7.1"),
    ("<@ours.test,@relay.test:victim@evil.test>", 550, "5.7.1"),
    // Address literals.
    ("<victim@[127.0.0.1]>", 550, "5.7.1"),
    ("<victim@[IPv6:::1]>", 550, "5.7.1"),
    // Not RFC 5321 syntax at all.
    ("<a@ours.test.>", 501, "5.1.3"),
    ("<a@OURS.TEST.>", 501, "5.1.3"),
    ("<victim@evil.test@ours.test>", 501, "5.1.3"),
    ("<ours.test!victim>", 501, "5.1.3"),
    ("<victim%evil.test>", 501, "5.1.3"),
    ("<victim@[127.1]>", 501, "5.1.3"),
    ("<victim@[0177.0.0.1]>", 501, "5.1.3"),
    ("<@ours.test:>", 501, "5.1.3"),
    ("<a@ours..test>", 501, "5.1.3"),
    ("<Postmaster>", 550, "5.1.1"),
];

#[tokio::test]
async fn open_relay_matrix_for_an_untrusted_client() {
    let (d, _dir) = untrusted_daemon();
    for (rcpt, code, enhanced) in MATRIX {
        // One connection per address keeps far away from the error limit.
        let mut c = connect_from(&d, 1).await;
        expect(&mut c, "MAIL FROM:<sender@example.test>", 250, "2.1.0").await;
        expect(&mut c, &format!("RCPT TO:{rcpt}"), *code, enhanced).await;
    }
    // Every relay refusal is logged with its reason.
    let denied = MATRIX
        .iter()
        .filter(|(_, code, e)| *code == 550 && *e == "5.7.1")
        .count();
    let rejections = wait_records(&d, "Rejection", denied);
    assert_eq!(rejections.len(), denied, "{rejections:#?}");
    for rec in &rejections {
        assert!(
            rec["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("Relaying denied"),
            "{rec}"
        );
        assert_eq!(rec["sender"], "sender@example.test");
        assert!(rec["recipient"].is_string(), "{rec}");
    }
}

#[tokio::test]
async fn accepted_recipient_does_not_open_the_transaction() {
    let (d, _dir) = untrusted_daemon();
    let mut c = connect_from(&d, 1).await;
    expect(&mut c, "MAIL FROM:<sender@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@ours.test>", 250, "2.1.5").await;
    expect(&mut c, "RCPT TO:<victim@evil.test>", 550, "5.7.1").await;
    expect(&mut c, "RCPT TO:<victim%evil.test@ours.test>", 550, "5.7.1").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await.unwrap();
    let id = accepted_id(&c.read_reply().await.unwrap());
    let rec = reception(&d, &id);
    assert_eq!(rec["recipients"], serde_json::json!(["a@ours.test"]));
}

#[tokio::test]
async fn relay_refusals_count_towards_the_error_limit() {
    let (d, _dir) = untrusted_daemon();
    let mut c = connect_from(&d, 1).await;
    expect(&mut c, "MAIL FROM:<sender@example.test>", 250, "2.1.0").await;
    for i in 0..20 {
        expect(&mut c, &format!("RCPT TO:<v{i}@evil.test>"), 550, "5.7.1").await;
    }
    expect_reply(&mut c, 421, "4.7.0", "error limit").await;
    assert!(c.expect_closed().await);
}

#[tokio::test]
async fn trusted_client_relays_anywhere() {
    let (d, _dir) = untrusted_daemon();
    let mut c = connect_from(&d, 2).await;
    expect(&mut c, "MAIL FROM:<sender@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 250, "2.1.5").await;
    expect(&mut c, "RCPT TO:<a@ours.test>", 250, "2.1.5").await;
    expect(&mut c, "RCPT TO:<b@[192.0.2.1]>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await.unwrap();
    let id = accepted_id(&c.read_reply().await.unwrap());
    let rec = reception(&d, &id);
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.2");
    // Malformed addresses are still malformed for a trusted client.
    expect(&mut c, "MAIL FROM:<sender@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<victim@evil.test@ours.test>", 501, "5.1.3").await;
    expect(&mut c, "RCPT TO:<a@evil.test.>", 501, "5.1.3").await;
}

#[tokio::test]
async fn relay_from_grants_relay_for_that_sender_domain_only() {
    let (d, _dir) = untrusted_daemon();
    let mut c = connect_from(&d, 1).await;
    expect(&mut c, "MAIL FROM:<x@send.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 250, "2.1.5").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    expect(&mut c, "MAIL FROM:<x@SEND.TEST>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 250, "2.1.5").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    // The grant ends with the transaction that earned it.
    expect(&mut c, "MAIL FROM:<x@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 550, "5.7.1").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    expect(&mut c, "MAIL FROM:<>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 550, "5.7.1").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;
    expect(&mut c, "MAIL FROM:<x@sub.send.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 550, "5.7.1").await;

    // relay_from lists 127.0.0.1 only.
    let mut c = connect_from(&d, 3).await;
    expect(&mut c, "MAIL FROM:<x@send.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@evil.test>", 550, "5.7.1").await;
    expect(&mut c, "RCPT TO:<a@ours.test>", 250, "2.1.5").await;
}

#[tokio::test]
async fn tricks_never_reach_relay_to_even_when_policy_grants_everything() {
    // A careless policy that grants relay_to for every domain it is asked
    // about: routing tricks and literals must still be refused, because the
    // daemon never asks about them.
    let extra = r#"
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain ~= string.lower(domain) or domain:find('[%%!@%[%]]') then
    kumo.reject(550, '5.7.1 handler saw an unparsed domain: ' .. domain)
  end
  return kumo.make_listener_domain { relay_to = true }
end)
"#;
    let d = start(&policy("relay_hosts = { '127.0.0.2' },", extra));
    let cases: &[(&str, u16)] = &[
        ("<a@Anything.Test>", 250),
        ("<victim%evil.test@ours.test>", 550),
        ("<\"victim@evil.test\"@ours.test>", 550),
        ("<evil.test!victim@ours.test>", 550),
        ("<victim@[127.0.0.1]>", 550),
        ("<victim@[IPv6:::1]>", 550),
    ];
    for (rcpt, code) in cases {
        let mut c = connect_from(&d, 1).await;
        expect(&mut c, "MAIL FROM:<sender@example.test>", 250, "2.1.0").await;
        let r = c.cmd(&format!("RCPT TO:{rcpt}")).await.unwrap();
        assert_eq!(r.code, *code, "{rcpt}: {r}");
        assert!(!r.text().contains("unparsed"), "{rcpt}: {r}");
    }
}

#[tokio::test]
async fn relay_hosts_default_and_cidr() {
    // Without relay_hosts only 127.0.0.1 and ::1 are trusted.
    let lua = policy("", "").replace("relay_hosts = { '127.0.0.1' },", "");
    assert!(!lua.contains("relay_hosts"));
    let d = start(&lua);
    let mut c = connect_from(&d, 1).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@evil.test>", 250, "2.1.5").await;
    let mut c = connect_from(&d, 2).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<b@evil.test>", 550, "5.7.1").await;
    drop(d);

    let d = start(&policy("relay_hosts = { '127.0.0.0/30' },", ""));
    for (octet, code) in [(1u8, 250u16), (3, 250), (4, 550), (9, 550)] {
        let mut c = connect_from(&d, octet).await;
        expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
        let r = c.cmd("RCPT TO:<b@evil.test>").await.unwrap();
        assert_eq!(r.code, code, "from 127.0.0.{octet}: {r}");
    }
}

#[tokio::test]
async fn malformed_relay_hosts_stop_the_daemon() {
    let opts = ironpost_testkit::DaemonOptions::new(BIN)
        .policy(policy("relay_hosts = { '127.0.0.1/33' },", ""));
    let (code, stderr) = Daemon::try_start_expect_failure(opts).unwrap();
    assert_ne!(code, 0);
    assert!(stderr.contains("relay_hosts"), "{stderr}");
}
