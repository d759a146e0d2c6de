//! The HTTP admin listener of the running daemon: trusted hosts, Basic
//! credentials checked by the policy, injection that is spooled and logged,
//! the body limit, metrics and administrative bounces.

use ironpost_testkit::Daemon;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

fn client(from: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const POLICY: &str = r#"
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = './ironpost-data/spool' }
  kumo.configure_local_logs { log_dir = './ironpost-data/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' }, request_body_limit = 4096 }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:9' } } }, retry_interval = '1h' }
end)
kumo.on('http_server_validate_auth_basic', function(user, password)
  return user == 'admin' and password == 'correct horse'
end)
kumo.on('http_message_generated', function(msg)
  msg:set_meta('via_http', true)
end)
"#;

#[test]
fn trusted_untrusted_and_injection() {
    let d = Daemon::start_policy(Path::new(env!("CARGO_BIN_EXE_ironpost")), POLICY).unwrap();
    let base: SocketAddr = d.http[0];
    let url = |p: &str| format!("http://{base}{p}");
    let trusted = client("127.0.0.1");
    let untrusted = client("127.0.0.2");

    assert_eq!(
        untrusted
            .get(url("/api/check-liveness/v1"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(untrusted.get(url("/metrics")).send().unwrap().status(), 401);
    let wrong = untrusted
        .get(url("/metrics"))
        .basic_auth("admin", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let good = untrusted
        .get(url("/metrics"))
        .basic_auth("admin", Some("correct horse"))
        .send()
        .unwrap();
    assert_eq!(good.status(), 200);
    assert!(good
        .text()
        .unwrap()
        .contains("ironpost_messages_received_total"));

    let body = json!({
        "envelope_sender": "sender@example.test",
        "recipients": [{ "email": "rcpt@dest.test" }],
        "content": { "subject": "hello", "text_body": "hi there", "from": { "email": "sender@example.test" } },
    });
    let r = trusted
        .post(url("/api/inject/v1"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["success_count"], 1, "{v}");
    let rec = d
        .wait_for_log(
            |r| r["type"] == "Reception" && r["reception_protocol"] == "HTTP",
            Duration::from_secs(5),
        )
        .expect("injected message logged");
    assert_eq!(rec["meta"]["via_http"], true);
    assert_eq!(rec["meta"]["http_auth"], "127.0.0.1");

    // The queued message, with its typed spool record as it now stands.
    let id = rec["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let inspected: serde_json::Value = loop {
        let r = trusted
            .get(url(&format!("/api/admin/inspect-message/v1?id={id}")))
            .send()
            .unwrap();
        if r.status() == 200 {
            break r.json().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.status());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(inspected["id"], id, "{inspected}");
    assert_eq!(
        inspected["recipients"],
        json!(["rcpt@dest.test"]),
        "{inspected}"
    );
    assert_eq!(inspected["meta"]["version"], 2, "{inspected}");
    assert_eq!(inspected["meta"]["meta"]["via_http"], true, "{inspected}");
    assert!(
        inspected["headers"]
            .as_str()
            .unwrap()
            .contains("Subject: hello"),
        "{inspected}"
    );

    // Untrusted peers may inject with credentials; http_auth records who.
    let r = untrusted
        .post(url("/api/inject/v1"))
        .basic_auth("admin", Some("correct horse"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(d
        .wait_for_log(
            |r| r["type"] == "Reception" && r["meta"]["http_auth"] == "admin",
            Duration::from_secs(5)
        )
        .is_some());

    let big = json!({ "envelope_sender": "a@b.test", "recipients": [{ "email": "c@d.test" }], "content": "x".repeat(8000) });
    assert_eq!(
        trusted
            .post(url("/api/inject/v1"))
            .json(&big)
            .send()
            .unwrap()
            .status(),
        413
    );

    // A message being routed is briefly in neither list: poll.
    let mut summary = json!({});
    for _ in 0..50 {
        summary = trusted
            .get(url("/api/admin/queue-summary/v1"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if summary["queues"]["dest.test"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(summary["queues"]["dest.test"], 2, "{summary}");
    let r = untrusted
        .post(url("/api/admin/bounce/v1"))
        .json(&json!({ "domain": "dest.test", "reason": "test" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "admin endpoints need authorization");
    let r: serde_json::Value = trusted
        .post(url("/api/admin/bounce/v1"))
        .json(&json!({ "domain": "dest.test", "reason": "test" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["bounced"], 2, "{r}");
    assert!(d
        .wait_for_log(|r| r["type"] == "Bounce", Duration::from_secs(5))
        .is_some());
    let all = format!("{:?}{}", d.read_log_records(), d.stderr());
    assert!(
        !all.contains("correct horse"),
        "the admin password reached the logs"
    );
}
