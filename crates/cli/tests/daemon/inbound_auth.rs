//! Inbound authentication end to end: `policy-extras.mail_auth` in the
//! daemon, against DNS served on loopback. A spoofed `From:` of a domain
//! at `p=reject` is refused with `550 5.7.1`; an aligned message is
//! accepted with our Authentication-Results, a forged one claiming our
//! `serv_id` is gone, another server's stays, and the Reception record
//! carries the results.

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig};
use ironpost_testkit::SmtpClient;
use std::time::Duration;

const HANDLER: &str = r#"
local mail_auth = require 'policy-extras.mail_auth'
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  local auth = mail_auth.check(msg)
  local dmarc = auth.dmarc
  if dmarc and dmarc.result == 'fail' and dmarc.props['policy.dmarc'] == 'reject' then
    kumo.reject(550, '5.7.1 rejected by the DMARC policy of the From domain')
  end
end)
"#;

fn zone() -> TestZone {
    let zone = TestZone::new();
    zone.txt("bank.test", "v=spf1 ip4:192.0.2.1 -all")
        .txt("_dmarc.bank.test", "v=DMARC1; p=reject")
        .txt("good.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.good.test", "v=DMARC1; p=reject; aspf=r");
    zone
}

fn mail(from_header: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "{extra_headers}From: <{from_header}>\r\nTo: <rcpt@dest.test>\r\nSubject: auth\r\n\
         Message-ID: <auth-{}@client.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n",
        from_header.replace('@', ".")
    )
    .into_bytes()
}

#[tokio::test]
async fn mail_auth_refuses_a_spoofed_from_and_strips_forged_results() {
    let dns = start_dns(zone()).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), SinkConfig::new())
        .await
        .unwrap();
    let target = sink.addr().to_string();
    let d = Policy::new(dns.addr)
        .route(
            "dest.test",
            queue_to(&[&target]),
            format!("enable_tls = 'Disabled', prohibited_hosts = {{}}, {TIMEOUTS}"),
        )
        .extra(HANDLER)
        .start();

    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    // The envelope is the attacker's own; the From: is the bank's.
    let r = c
        .send_message(
            "attacker@evil.test",
            &["rcpt@dest.test"],
            &mail("ceo@bank.test", ""),
        )
        .await
        .unwrap();
    assert_eq!(r.code, 550, "{r}");
    assert_eq!(r.enhanced().as_deref(), Some("5.7.1"), "{r}");

    // Aligned SPF pass; a forged verdict for our serv_id and another
    // server's header ride along.
    let forged = format!(
        "Authentication-Results: {SENDER_HOST};\r\n\tdmarc=pass header.from=bank.test\r\n\
         Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n"
    );
    let r = c
        .send_message(
            "user@good.test",
            &["rcpt@dest.test"],
            &mail("user@good.test", &forged),
        )
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    let id = r.text().trim_start_matches("2.0.0 OK id=").to_string();
    let _ = c.quit().await;

    let rec = wait_kind(&d, "Reception", &id, Duration::from_secs(10)).await;
    let results = rec["authentication_results"].as_array().expect("results");
    let of = |m: &str| {
        results
            .iter()
            .find(|r| r["method"] == m)
            .unwrap_or_else(|| panic!("no {m} result: {rec:#}"))
    };
    assert_eq!(of("spf")["result"], "pass", "{rec:#}");
    assert_eq!(of("dmarc")["result"], "pass", "{rec:#}");
    assert_eq!(of("dkim")["result"], "none", "{rec:#}");
    assert!(results.iter().all(|r| r["serv_id"] == SENDER_HOST));

    wait_kind(&d, "Delivery", &id, Duration::from_secs(20)).await;
    let got = sink.snapshot();
    let msg = got.messages().into_iter().next().expect("delivered");
    let text = msg.text();
    let ours: Vec<&str> = text
        .split("\r\n")
        .filter(|l| l.starts_with("Authentication-Results:"))
        .collect();
    assert_eq!(ours.len(), 2, "ours and other.example's:\n{text}");
    assert!(
        ours[0].starts_with(&format!("Authentication-Results: {SENDER_HOST};")),
        "{text}"
    );
    assert!(text.contains("other.example; spf=pass"), "{text}");
    assert!(
        !text.contains("header.from=bank.test"),
        "the forged verdict is gone:\n{text}"
    );
    assert!(text.contains("dmarc=pass"), "{text}");
}
