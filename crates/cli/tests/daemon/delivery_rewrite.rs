//! `smtp_client_rewrite_delivery_status`: the policy turns a full mailbox
//! (4xx) into a bounce, with the rewrite noted; a failing handler never
//! turns a refusal into a bounce.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, Stage};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_rewrites_a_refusal_and_a_failing_handler_keeps_mail() {
    let pki = Pki::new();
    let sink = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new()
            .rule(
                Rule::new(
                    Stage::Rcpt,
                    "452 4.2.2 The email account that you tried to reach is over quota.",
                )
                .matching("full@"),
            )
            .rule(Rule::new(Stage::Rcpt, "550 5.1.1 no such user").matching("gone@")),
    )
    .await
    .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "*",
            format!("max_age = '1h', {}", queue_to(&[&sink.addr().to_string()])),
            pki.egress(""),
        )
        .extra(
            r#"
local rewrites = kumo.regex_set_map.new {
  ['4\\.2\\.2 .*over quota'] = 500,
}
kumo.on('smtp_client_rewrite_delivery_status', function(response, domain, tenant, campaign, routing_domain)
  if response:find('no such user') and domain == 'broken.test' then error('classifier down') end
  return rewrites[response]
end)
"#,
        )
        .start();
    let full = inject(&d, "a@origin.test", &["full@rewrite.test"], "full").await;
    let rec = wait_kind(&d, "Bounce", &full, WAIT).await;
    let text = rec["response"]["content"].as_str().unwrap();
    assert_eq!(rec["response"]["code"], 500, "{rec}");
    assert!(
        text.contains("over quota") && text.contains("rewritten from 452 -> 500"),
        "{rec}"
    );
    assert!(records_for(&d, "TransientFailure", &full).is_empty());

    // The handler fails on this one: the 550 is kept as a temporary failure.
    let gone = inject(&d, "a@origin.test", &["gone@broken.test"], "gone").await;
    let rec = wait_kind(&d, "TransientFailure", &gone, WAIT).await;
    assert_eq!(rec["response"]["code"], 451, "{rec}");
    assert!(records_for(&d, "Bounce", &gone).is_empty());
}

/// `requeue_message` (KumoMTA's example: after a transient failure, re-route
/// to a smart host) moves the message to the new queue at once; a
/// `kumo.reject` there bounces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_message_reroutes_or_bounces() {
    let pki = Pki::new();
    let smart = Sink::start(any_port(loopback(2)), SinkConfig::new())
        .await
        .unwrap();
    let port = smart.port();
    let busy = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(Rule::new(Stage::Greeting, "421 4.3.2 busy").then_close()),
    )
    .await
    .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "busy.test",
            format!("max_age = '1h', {}", queue_to(&[&busy.addr().to_string()])),
            pki.egress(""),
        )
        .route(
            "doomed.test",
            format!("max_age = '1h', {}", queue_to(&[&busy.addr().to_string()])),
            pki.egress(""),
        )
        .route(
            "*",
            "max_age = '1h'",
            pki.egress(&format!("smtp_port = {port}")),
        )
        .extra(
            r#"
local SMART_HOST = '[127.0.0.2]'
kumo.on('requeue_message', function(msg, smtp_response, insert_context, increment_attempts, delay)
  if msg:recipient().domain == 'doomed.test' then
    kumo.reject(550, 'no second chances')
  end
  local queue = msg:queue_name()
  if queue ~= SMART_HOST and msg:num_attempts() >= 0 then
    msg:set_meta('queue', SMART_HOST)
    msg:set_scheduling(nil)
  end
end)
"#,
        )
        .start();
    let id = inject(&d, "a@origin.test", &["u@busy.test"], "rerouted").await;
    let first = wait_kind(&d, "TransientFailure", &id, WAIT).await;
    assert_eq!(first["queue"], "busy.test", "{first}");
    let deadline = std::time::Instant::now() + WAIT;
    let moved = loop {
        if let Some(r) = records_of(&d, "Delivery")
            .into_iter()
            .find(|r| r["queue"] == "[127.0.0.2]")
        {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{}", dump(&d));
        sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(moved["peer_address"]["addr"], "127.0.0.2", "{moved}");
    assert_eq!(smart.snapshot().messages().len(), 1);
    assert!(records_for(&d, "Bounce", &id).is_empty());

    let doomed = inject(&d, "a@origin.test", &["u@doomed.test"], "doomed").await;
    let rec = wait_kind(&d, "Bounce", &doomed, WAIT).await;
    assert!(
        rec["response"]["content"]
            .as_str()
            .unwrap()
            .contains("busy")
            || rec["response"]["code"] == 421,
        "{rec}"
    );
}
