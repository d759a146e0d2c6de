//! Routing by message metadata, as KumoMTA does it, and failing closed: the
//! `queue` meta (a domain, `null`, an address literal), `routing_domain`,
//! the two `mx_list` entry forms, and an erroring `get_queue_config`, which
//! holds the message instead of routing it with defaults.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig};

const WAIT: Duration = Duration::from_secs(15);

/// Sets message metadata from `X-Set-<key>: value` headers.
const META_FROM_HEADERS: &str = r#"
kumo.on('smtp_server_message_received', function(msg)
  for _, k in ipairs({ 'queue', 'routing_domain', 'tenant' }) do
    local v = msg:get_first_named_header_value('X-Set-' .. k)
    if v then msg:set_meta(k, v) end
  end
end)
"#;

async fn send(d: &ironpost_testkit::Daemon, to: &str, headers: &str) -> String {
    let (mut c, _) = ironpost_testkit::SmtpClient::connect(d.smtp_addr())
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    let body = format!("{headers}Subject: routing\r\n\r\nbody\r\n");
    let r = c
        .send_message("a@origin.test", &[to], body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    r.text().trim_start_matches("2.0.0 OK id=").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_null_queue_discards_and_logs() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route("*", queue_to(&[&sink.addr().to_string()]), pki.egress(""))
        .extra(META_FROM_HEADERS)
        .start();
    let id = send(&d, "u@dest.test", "X-Set-queue: null\r\n").await;
    let rec = wait_kind(&d, "Reception", &id, WAIT).await;
    assert_eq!(rec["queue"], "null", "{rec}");
    sleep(Duration::from_millis(1500)).await;
    assert!(sink.snapshot().messages().is_empty());
    assert!(records_for(&d, "TransientFailure", &id).is_empty());
    assert!(records_for(&d, "Delivery", &id).is_empty());
    d.restart().unwrap();
    assert_eq!(d.recovered, Some(0), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_domain_and_queue_meta_choose_the_mx() {
    let pki = Pki::new();
    let relay = Sink::start(any_port(loopback(2)), SinkConfig::new())
        .await
        .unwrap();
    let port = relay.port();
    let other = Sink::start(
        std::net::SocketAddr::new(loopback(3), port),
        SinkConfig::new(),
    )
    .await
    .unwrap();
    let zone = TestZone::new();
    // dest.test's own MX is 127.0.0.3; relay.test's is 127.0.0.2.
    zone.mx("dest.test", 10, "mx.dest.test")
        .ip("mx.dest.test", loopback(3))
        .mx("relay.test", 10, "mx.relay.test")
        .ip("mx.relay.test", loopback(2))
        .mx("elsewhere.test", 10, "mx.relay.test");
    let dns = start_dns(zone).await;
    let d = Policy::new(dns.addr)
        .route("*", queue("1h"), pki.egress(&format!("smtp_port = {port}")))
        .extra(META_FROM_HEADERS)
        .start();
    // routing_domain: relay.test's MX, queue named as KumoMTA names it.
    let id = send(&d, "u@dest.test", "X-Set-routing_domain: relay.test\r\n").await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["queue"], "dest.test!relay.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.2", "{rec}");
    // queue meta naming another domain (with a tenant).
    let id = send(&d, "v@dest.test", "X-Set-queue: acme@elsewhere.test\r\n").await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["queue"], "acme@elsewhere.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.2", "{rec}");
    // An address literal queue goes straight there.
    let id = send(&d, "w@dest.test", "X-Set-queue: [127.0.0.2]\r\n").await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.2", "{rec}");
    // Without metadata, dest.test's own MX.
    let id = send(&d, "x@dest.test", "").await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.3", "{rec}");
    assert_eq!(relay.snapshot().messages().len(), 3);
    assert_eq!(other.snapshot().messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_queue_config_sees_the_routing_domain() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let lua = Policy::new(dns.addr)
        .route(
            "smarthost.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(""),
        )
        .route("*", queue("1h"), pki.egress(""))
        .extra(META_FROM_HEADERS)
        .build();
    // The test policy picks its queue config by the routing domain.
    let from = "local f = QUEUES[domain] or QUEUES['*']";
    assert!(lua.contains(from));
    let lua = lua.replace(
        from,
        "local f = QUEUES[routing_domain or domain] or QUEUES['*']",
    );
    let d = start_daemon(ironpost_testkit::DaemonOptions::new(BIN).policy(lua));
    let id = send(
        &d,
        "u@dest.test",
        "X-Set-routing_domain: smarthost.test\r\n",
    )
    .await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["queue"], "dest.test!smarthost.test", "{rec}");
    assert_eq!(sink.snapshot().messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_list_takes_names_ports_and_name_addr_tables() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(loopback(2)), SinkConfig::new())
        .await
        .unwrap();
    let port = sink.port();
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "pinned.test",
            format!(
                "protocol = {{ smtp = {{ mx_list = {{ {{ name = 'mx.pinned.test', addr = '127.0.0.2:{port}' }} }} }} }}"
            ),
            pki.egress(""),
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@pinned.test"], "pinned").await;
    let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
    assert_eq!(rec["peer_address"]["name"], "mx.pinned.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.2", "{rec}");
}

/// An `mx_list` entry in a form the config does not take is a policy error
/// in `get_queue_config`: the message waits with the error logged, and
/// nothing is delivered anywhere (not to the recipient's MX either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_get_queue_config_holds_the_message() {
    let pki = Pki::new();
    let mx = Sink::start(any_port(loopback(2)), SinkConfig::new())
        .await
        .unwrap();
    let port = mx.port();
    let zone = TestZone::new();
    zone.mx("dest.test", 10, "mx.dest.test")
        .ip("mx.dest.test", loopback(2));
    let dns = start_dns(zone).await;
    let d = Policy::new(dns.addr)
        .route(
            "dest.test",
            "protocol = { smtp = { mx_list = { { host = 'smart.host' } } } }",
            pki.egress(&format!("smtp_port = {port}")),
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@dest.test"], "held").await;
    let rec = wait_kind(&d, "TransientFailure", &id, WAIT).await;
    let content = rec["response"]["content"].as_str().unwrap();
    assert!(content.contains("get_queue_config"), "{rec}");
    assert!(
        content.contains("mx_list"),
        "the Lua error is in the record: {rec}"
    );
    sleep(Duration::from_millis(1000)).await;
    assert!(
        mx.snapshot().messages().is_empty(),
        "never routed with defaults"
    );
    assert!(mx.snapshot().sessions.is_empty(), "not even a connection");
    assert!(records_for(&d, "Bounce", &id).is_empty());
    assert!(records_for(&d, "Delivery", &id).is_empty());
}

/// As in KumoMTA, the message event runs once per recipient, so a policy
/// that routes by `msg:recipient()` routes each recipient its own way; a
/// rejection of any one refuses the whole transaction, and nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_event_runs_per_recipient() {
    let pki = Pki::new();
    let a = Sink::start(any_port(loopback(2)), SinkConfig::new())
        .await
        .unwrap();
    let port = a.port();
    let b = Sink::start(
        std::net::SocketAddr::new(loopback(3), port),
        SinkConfig::new(),
    )
    .await
    .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route("*", queue("1h"), pki.egress(&format!("smtp_port = {port}")))
        .extra(
            r#"
kumo.on('smtp_server_message_received', function(msg)
  local domain = msg:recipient().domain
  if domain == 'refused.test' then kumo.reject(550, '5.7.1 not for ' .. domain) end
  if domain == 'one.test' then msg:set_meta('queue', '[127.0.0.2]') end
  if domain == 'two.test' then msg:set_meta('queue', '[127.0.0.3]') end
  msg:set_meta('x_for', domain)
end)
"#,
        )
        .start();
    let (mut c, _) = ironpost_testkit::SmtpClient::connect(d.smtp_addr())
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_message(
            "a@origin.test",
            &["x@one.test", "y@two.test"],
            b"Subject: split\r\n\r\nbody\r\n",
        )
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    let deadline = std::time::Instant::now() + WAIT;
    while records_of(&d, "Delivery").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", dump(&d));
        sleep(Duration::from_millis(50)).await;
    }
    let receptions = records_of(&d, "Reception");
    assert_eq!(receptions.len(), 2, "one message per recipient");
    for r in &receptions {
        let rcpt = r["recipients"][0].as_str().unwrap();
        assert_eq!(r["meta"]["x_for"], rcpt.split('@').nth(1).unwrap(), "{r}");
    }
    assert_eq!(a.snapshot().messages().len(), 1);
    assert_eq!(b.snapshot().messages().len(), 1);
    // Each copy's trace header names its own recipient.
    assert!(describe_sink(&a.snapshot()).contains("x@one.test"));

    let r = c
        .send_message(
            "a@origin.test",
            &["x@one.test", "z@refused.test"],
            b"Subject: all or none\r\n\r\nbody\r\n",
        )
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (550, Some("5.7.1")),
        "{r}"
    );
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        records_of(&d, "Reception").len(),
        2,
        "nothing more was received"
    );
    d.restart().unwrap();
    assert_eq!(d.recovered, Some(0), "the accepted copy was unwound");
}
