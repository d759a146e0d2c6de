//! The SMTP-phase policy events run at their phase, with KumoMTA's
//! arguments, and `kumo.reject` there gives that reply at that phase. The
//! connection's metadata object lives for the whole connection.

use crate::common::*;
use ironpost_testkit::SmtpClient;

fn with_events(events: &str) -> String {
    policy("", events)
}

fn reception(d: &ironpost_testkit::Daemon, id: &str) -> serde_json::Value {
    d.wait_for_log(
        |r| r["type"] == "Reception" && r["id"] == id,
        std::time::Duration::from_secs(5),
    )
    .expect("Reception record")
}

#[tokio::test]
async fn connection_accepted_can_refuse_the_client() {
    let d = start(&with_events(
        r#"kumo.on('smtp_server_connection_accepted', function(conn_meta)
  local peer = conn_meta:get_meta('received_from')
  if peer:sub(1, 10) == '127.0.0.1:' then
    kumo.reject(421, string.format('service not accepted from %s', peer))
  end
end)"#,
    ));
    let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    check(&greeting, 421, "4.0.0", "greeting");
    assert!(greeting
        .text()
        .contains("service not accepted from 127.0.0.1:"));
    assert!(c.expect_closed().await, "refused connections are closed");
}

#[tokio::test]
async fn ehlo_sees_the_extensions_and_may_change_them() {
    let d = start(&with_events(
        r#"kumo.on('smtp_server_ehlo', function(domain, conn_meta, extensions)
  if domain == 'bad.actor' then kumo.reject(550, '5.7.1 go away') end
  local out = {}
  for _, e in ipairs(extensions) do
    if e ~= 'SMTPUTF8' then table.insert(out, e) end
  end
  table.insert(out, 'X-SOMETHING')
  conn_meta:set_meta('x_greeted', domain)
  return out
end)"#,
    ));
    let mut c = connect(&d).await;
    let r = c.ehlo("bad.actor").await.unwrap();
    check(&r, 550, "5.7.1", "EHLO bad.actor");
    // The refused greeting does not count.
    expect(&mut c, "MAIL FROM:<a@example.test>", 503, "5.5.1").await;
    let r = c.ehlo("client.test").await.unwrap();
    assert_eq!(r.code, 250, "{r}");
    assert_eq!(r.lines[0], "mx.test Hello client.test");
    assert!(r.lines.contains(&"X-SOMETHING".to_string()), "{r}");
    assert!(r.lines.contains(&"PIPELINING".to_string()), "{r}");
    assert!(!r.lines.contains(&"SMTPUTF8".to_string()), "{r}");
}

#[tokio::test]
async fn mail_from_and_rcpt_to_can_refuse_and_see_the_address() {
    let d = start(&with_events(
        r#"kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if sender.domain == 'bad.test' then kumo.reject(550, '5.7.1 sender ' .. sender.user .. ' refused') end
  conn_meta:set_meta('x_sender', tostring(sender))
end)
kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if recipient.domain == 'blocked.test' then kumo.reject(450, 'not now') end
  if conn_meta:get_meta('x_sender') ~= 'a@good.test' then error('conn_meta lost the sender') end
end)"#,
    ));
    let mut c = connect_ehlo(&d).await;
    let r = expect(&mut c, "MAIL FROM:<eve@bad.test>", 550, "5.7.1").await;
    assert_eq!(r.text(), "5.7.1 sender eve refused");
    // No transaction was opened.
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    expect(&mut c, "MAIL FROM:<a@good.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<x@blocked.test>", 450, "4.0.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    let r = c.cmd("Subject: t\r\n\r\nbody\r\n.").await.unwrap();
    let id = accepted_id(&r);
    let rec = reception(&d, &id);
    assert_eq!(rec["recipients"], serde_json::json!(["b@example.test"]));
    // Set on the connection in MAIL, copied into the message's metadata.
    assert_eq!(rec["meta"]["x_sender"], "a@good.test", "{rec}");
}

#[tokio::test]
async fn a_failing_mail_from_handler_is_a_temporary_failure() {
    let d = start(&with_events(
        "kumo.on('smtp_server_mail_from', function(sender) error('database down') end)",
    ));
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 451, "4.3.0").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
}

#[tokio::test]
async fn smtp_server_data_sees_the_content_before_the_trace_header() {
    let d = start(&with_events(
        r#"kumo.on('smtp_server_data', function(msg, conn_meta)
  if msg:get_first_named_header_value('Received') ~= nil then error('trace header already added') end
  if msg:get_first_named_header_value('Subject') == 'reject me' then kumo.reject(550, '5.7.1 content refused') end
  msg:set_meta('x_data_saw', msg:get_first_named_header_value('Subject'))
end)
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  if msg:get_meta('x_data_saw') == nil then error('smtp_server_data did not run first') end
end)"#,
    ));
    let mut c = connect_ehlo(&d).await;
    let r = c
        .send_message(
            "a@example.test",
            &["b@example.test"],
            b"Subject: reject me\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    check(&r, 550, "5.7.1", "DATA");
    let r = c
        .send_message(
            "a@example.test",
            &["b@example.test"],
            b"Subject: fine\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    let id = accepted_id(&r);
    let rec = reception(&d, &id);
    assert_eq!(rec["meta"]["x_data_saw"], "fine", "{rec}");
}
