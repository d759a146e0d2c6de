//! Webhooks (`policy-extras.log_hooks`): log records reach a loopback HTTP
//! endpoint as JSON through their own durable queue. While the endpoint is
//! down the records wait; once it is back every one arrives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, Stage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A minimal HTTP/1.1 endpoint that records each POST body and answers
/// `status`.
struct Endpoint {
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    async fn start(
        addr: std::net::SocketAddr,
        status: u16,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    ) -> Endpoint {
        let listener = TcpListener::bind(addr).await.unwrap();
        let store = bodies;
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body_start = loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < body_start + len {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    if let Ok(v) = serde_json::from_slice(&buf[body_start..body_start + len]) {
                        store.lock().unwrap().push(v);
                    }
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        Endpoint { task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

fn seen(bodies: &Arc<Mutex<Vec<serde_json::Value>>>, kind: &str, id: &str) -> usize {
    bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == kind && b["id"] == id)
        .count()
}

async fn wait_for(bodies: &Arc<Mutex<Vec<serde_json::Value>>>, kind: &str, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen(bodies, kind, id) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} record for {id} at the webhook: {:?}",
            bodies.lock().unwrap()
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_bounce_records_reach_the_webhook_through_an_outage() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let hook_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let refuser = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().rule(Rule::new(Stage::Rcpt, "550 5.1.1 no such user")),
    )
    .await
    .unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let endpoint = Endpoint::start(hook_addr, 200, bodies.clone()).await;
    let dns = start_dns(TestZone::new()).await;
    let to_sink = queue_to(&[&sink.addr().to_string()]);
    let d = Policy::new(dns.addr)
        .route("ok.test", to_sink.clone(), pki.egress(""))
        // Refused for good by the destination: a Bounce.
        .route(
            "gone.test",
            queue_to(&[&refuser.addr().to_string()]),
            pki.egress(""),
        )
        .extra(&format!(
            r#"
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json {{
  name = 'webhook',
  url = 'http://{hook_addr}/log',
  queue_config = {{ retry_interval = '1s', max_retry_interval = '1s' }},
}}
"#
        ))
        .start();
    let first = inject(&d, "a@origin.test", &["u@ok.test"], "one").await;
    wait_for(&bodies, "Reception", &first).await;
    wait_for(&bodies, "Delivery", &first).await;
    let rec = bodies
        .lock()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "Delivery" && b["id"] == first.as_str())
        .cloned()
        .unwrap();
    assert_eq!(rec["recipients"], serde_json::json!(["u@ok.test"]), "{rec}");
    let bounced = inject(&d, "a@origin.test", &["nobody@gone.test"], "gone").await;
    wait_for(&bodies, "Bounce", &bounced).await;

    // The endpoint goes away; records wait in their queue.
    endpoint.stop();
    sleep(Duration::from_millis(200)).await;
    let mut during = Vec::new();
    for i in 0..3 {
        during.push(inject(&d, "a@origin.test", &["u@ok.test"], &format!("out{i}")).await);
    }
    for id in &during {
        wait_kind(&d, "Delivery", id, Duration::from_secs(15)).await;
    }
    sleep(Duration::from_millis(1500)).await;
    for id in &during {
        assert_eq!(seen(&bodies, "Delivery", id), 0);
    }
    // The hook's own attempts are logged, and not fed back to the hook.
    let waiting = records_of(&d, "TransientFailure");
    assert!(
        waiting.iter().any(|r| r["queue"] == "webhook.log_hook"),
        "{}",
        dump(&d)
    );

    // Back again: every record arrives, once.
    let _endpoint = Endpoint::start(hook_addr, 200, bodies.clone()).await;
    for id in &during {
        wait_for(&bodies, "Reception", id).await;
        wait_for(&bodies, "Delivery", id).await;
    }
    sleep(Duration::from_millis(1500)).await;
    for id in during.iter().chain([&first]) {
        assert_eq!(seen(&bodies, "Delivery", id), 1, "{id}");
    }
    assert!(
        bodies
            .lock()
            .unwrap()
            .iter()
            .all(|b| b["queue"] != "webhook.log_hook"),
        "no record of a webhook delivery goes to the webhook"
    );
    assert_eq!(sink.snapshot().messages().len(), 4);
}

/// `log_hooks:new` with the policy's own constructor (kumo.http) and a
/// filter: only Delivery records are kept, and they are posted by Lua.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_constructor_and_filter_choose_and_send_records() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let hook_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let _endpoint = Endpoint::start(hook_addr, 200, bodies.clone()).await;
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "ok.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(""),
        )
        .extra(&format!(
            r#"
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new {{
  name = 'lua_hook',
  queue_config = {{ retry_interval = '1s' }},
  filter = function(msg, hook_name)
    return msg:get_meta('log_record').type ~= 'Delivery'
  end,
  constructor = function(domain, tenant, campaign)
    local connection = {{}}
    local client = kumo.http.build_client {{}}
    function connection:send(message)
      local response = client:post('http://{hook_addr}/lua')
        :header('Content-Type', 'application/json')
        :body(message:get_data())
        :send()
      if response:status_is_success() then
        return 'posted ' .. response:status_code()
      end
      kumo.reject(500, 'endpoint said ' .. response:status_code())
    end
    return connection
  end,
}}
"#
        ))
        .start();
    let id = inject(&d, "a@origin.test", &["u@ok.test"], "lua").await;
    wait_for(&bodies, "Delivery", &id).await;
    sleep(Duration::from_millis(800)).await;
    assert_eq!(seen(&bodies, "Reception", &id), 0, "filtered out");
    let hook_delivery = records_of(&d, "Delivery")
        .into_iter()
        .find(|r| r["queue"] == "lua_hook.log_hook")
        .expect("the hook's own Delivery record");
    assert_eq!(hook_delivery["response"]["content"], "posted 200");
    assert_eq!(hook_delivery["reception_protocol"], "LogRecord");
}
