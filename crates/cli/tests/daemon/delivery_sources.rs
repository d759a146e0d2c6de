//! Egress sources and pools: mail leaves from its queue's pool, spread over
//! the pool's sources by weight, each connection bound to the source's
//! address and saying its EHLO name (the egress path's, when it sets one,
//! which `get_egress_path_config` chooses knowing the source). A source
//! whose address the host lacks holds its mail, never sending it from
//! another address; a pool defined nowhere holds its queue's mail.
//!
//! Loopback answers on all of 127.0.0.0/8, so sources on 127.0.0.2 and
//! 127.0.0.3 are real, distinct source addresses the sink can see.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig, SinkRecord};
use ironpost_testkit::SmtpClient;

const MESSAGES: usize = 300;
const WAIT: Duration = Duration::from_secs(60);

/// Sources and pools as an operator writes them; `ip-2`'s egress path sets
/// its own EHLO name.
fn sources_policy(egress: &str) -> String {
    format!(
        r#"
local SOURCES = {{
  ['ip-1'] = {{ source_address = '127.0.0.2', ehlo_domain = 'mta1.test' }},
  ['ip-2'] = {{ source_address = '127.0.0.3', ehlo_domain = 'mta2.test' }},
  ['ip-0'] = {{ source_address = '127.0.0.4', ehlo_domain = 'never.test' }},
  ['unplumbed'] = {{ source_address = '192.0.2.77' }},
}}
kumo.on('get_egress_source', function(name)
  local s = SOURCES[name]
  if not s then return nil end
  return kumo.make_egress_source {{
    name = name, source_address = s.source_address, ehlo_domain = s.ehlo_domain,
  }}
end)
local POOLS = {{
  ['pool-1'] = {{ {{ name = 'ip-1', weight = 2 }}, {{ name = 'ip-2' }}, {{ name = 'ip-0', weight = 0 }} }},
  ['dead'] = {{ {{ name = 'unplumbed' }} }},
}}
kumo.on('get_egress_pool', function(name)
  local e = POOLS[name]
  if not e then return nil end
  return kumo.make_egress_pool {{ name = name, entries = e }}
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  if source == 'ip-2' then
    return kumo.make_egress_path {{ {egress} ehlo_domain = 'via-path.test' }}
  end
  return kumo.make_egress_path {{ {egress} }}
end)
"#
    )
}

async fn start(sink: &Sink) -> (ironpost_testkit::Daemon, Pki) {
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let to_sink = queue_to(&[&sink.addr().to_string()]);
    let d = Policy::new(dns.addr)
        .init(
            "kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }",
        )
        .route(
            "pool.test",
            format!("{to_sink} egress_pool = 'pool-1',"),
            "",
        )
        .route("dead.test", format!("{to_sink} egress_pool = 'dead',"), "")
        .route(
            "nopool.test",
            format!("{to_sink} egress_pool = 'missing',"),
            "",
        )
        .route("plain.test", to_sink.clone(), "")
        .extra(&sources_policy(&pki.egress("")))
        .start();
    (d, pki)
}

/// The source address and EHLO name of the session each accepted message
/// arrived in.
fn arrivals(seen: &SinkRecord) -> Vec<(IpAddr, String)> {
    seen.messages()
        .iter()
        .map(|m| {
            let s = &seen.sessions[m.session];
            let ehlo = s
                .commands
                .iter()
                .rev()
                .find(|c| c.verb() == "EHLO")
                .map(|c| c.line[5..].to_string())
                .unwrap_or_default();
            (s.peer.ip(), ehlo)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_spreads_mail_over_its_sources_by_weight() {
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let (d, _pki) = start(&sink).await;
    let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    assert_eq!(greeting.code, 220);
    c.ehlo("client.test").await.unwrap();
    for i in 0..MESSAGES {
        let to = format!("u{i}@pool.test");
        let r = c
            .send_message(
                "a@origin.test",
                &[&to],
                &message("a@origin.test", &[&to], &format!("w{i}")),
            )
            .await
            .unwrap();
        assert_eq!(r.code, 250, "{r}");
    }
    let _ = c.quit().await;
    // One plain message: no pool named, the kernel's address.
    inject(&d, "a@origin.test", &["p@plain.test"], "plain").await;

    let deadline = Instant::now() + WAIT;
    while records_of(&d, "Delivery").len() < MESSAGES + 1 && Instant::now() < deadline {
        sleep(Duration::from_millis(200)).await;
    }
    let delivered = records_of(&d, "Delivery");
    assert_eq!(delivered.len(), MESSAGES + 1, "{}", dump(&d));

    let seen = sink.snapshot();
    let mut by_source: HashMap<(IpAddr, String), usize> = HashMap::new();
    for a in arrivals(&seen) {
        *by_source.entry(a).or_default() += 1;
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let from_1 = by_source
        .get(&(ip("127.0.0.2"), "mta1.test".into()))
        .copied()
        .unwrap_or(0);
    let from_2 = by_source
        .get(&(ip("127.0.0.3"), "via-path.test".into()))
        .copied()
        .unwrap_or(0);
    let plain = by_source
        .get(&(ip("127.0.0.1"), SENDER_HOST.into()))
        .copied()
        .unwrap_or(0);
    eprintln!("by source address and EHLO: {by_source:?}");
    assert_eq!(
        from_1 + from_2 + plain,
        MESSAGES + 1,
        "nothing else: {by_source:?}"
    );
    assert_eq!(plain, 1, "{by_source:?}");
    // 2:1 within 10 %.
    let share = from_1 as f64 / MESSAGES as f64;
    assert!(
        (share - 2.0 / 3.0).abs() <= 2.0 / 3.0 * 0.1,
        "{from_1} vs {from_2}"
    );

    // The records say the same.
    let count = |source: &str| {
        delivered
            .iter()
            .filter(|r| r["egress_source"] == source && r["egress_pool"] == "pool-1")
            .count()
    };
    assert_eq!(count("ip-1"), from_1);
    assert_eq!(count("ip-2"), from_2);
    assert_eq!(count("ip-0"), 0);
    let p = delivered
        .iter()
        .find(|r| r["recipients"][0] == "p@plain.test")
        .unwrap();
    assert_eq!(p["egress_source"], "unspecified", "{p}");
    assert_eq!(p["egress_pool"], "unspecified", "{p}");

    // The metrics count per source and site.
    let url = format!("http://{}/metrics", d.http[0]);
    let text =
        tokio::task::block_in_place(|| reqwest::blocking::get(&url).unwrap().text().unwrap());
    let line = |source: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("ironpost_egress_attempts_total{")
                    && l.contains(&format!("source=\"{source}\""))
                    && l.contains("outcome=\"delivered\"")
            })
            .unwrap_or_else(|| panic!("no delivered count for {source}:\n{text}"))
            .to_string()
    };
    assert!(
        line("ip-1").ends_with(&format!(" {from_1}")),
        "{}",
        line("ip-1")
    );
    assert!(
        line("ip-2").ends_with(&format!(" {from_2}")),
        "{}",
        line("ip-2")
    );
    assert!(
        text.contains("# TYPE ironpost_ready_queue_size gauge"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_source_or_undefined_pool_holds_the_mail() {
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let (d, _pki) = start(&sink).await;
    let dead = inject(&d, "a@origin.test", &["x@dead.test"], "dead").await;
    let missing = inject(&d, "a@origin.test", &["x@nopool.test"], "nopool").await;

    let t = wait_kind(&d, "TransientFailure", &dead, WAIT).await;
    let why = t["response"]["content"].as_str().unwrap_or_default();
    assert!(
        why.contains("'unplumbed'") && why.contains("192.0.2.77"),
        "{t}"
    );
    assert_eq!(t["egress_source"], "unplumbed", "{t}");
    let t = wait_kind(&d, "TransientFailure", &missing, WAIT).await;
    let why = t["response"]["content"].as_str().unwrap_or_default();
    assert!(why.contains("egress pool 'missing' is not defined"), "{t}");

    // Neither left, from any address.
    sleep(Duration::from_millis(500)).await;
    assert!(sink.snapshot().messages().is_empty());
    assert!(records_of(&d, "Delivery").is_empty());
    assert!(records_of(&d, "Bounce").is_empty());
}

/// Rates and connection limits hold against a real server: 20 messages at
/// `5/s` (a burst of 5, then one every 200 ms) take at least 3 s, and the
/// sink never sees more than `connection_limit` sessions at once. New
/// connections are paced by `max_connection_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_and_connection_rates_hold() {
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let to_sink = queue_to(&[&sink.addr().to_string()]);
    let d = Policy::new(dns.addr)
        .route(
            "rate.test",
            to_sink.clone(),
            pki.egress("max_message_rate = '5/s', connection_limit = '2',"),
        )
        .route(
            "conn.test",
            to_sink,
            pki.egress(
                "max_connection_rate = '4/s,max_burst=1', max_deliveries_per_connection = 1, connection_limit = 4,",
            ),
        )
        .start();
    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    for i in 0..20 {
        let to = format!("r{i}@rate.test");
        let body = message("a@origin.test", &[&to], &format!("rate{i}"));
        assert_eq!(
            c.send_message("a@origin.test", &[&to], &body)
                .await
                .unwrap()
                .code,
            250
        );
    }
    for i in 0..8 {
        let to = format!("c{i}@conn.test");
        let body = message("a@origin.test", &[&to], &format!("conn{i}"));
        assert_eq!(
            c.send_message("a@origin.test", &[&to], &body)
                .await
                .unwrap()
                .code,
            250
        );
    }
    let _ = c.quit().await;
    let deadline = Instant::now() + WAIT;
    while records_of(&d, "Delivery").len() < 28 && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records_of(&d, "Delivery").len(), 28, "{}", dump(&d));

    let seen = sink.snapshot();
    let span = |tag: &str| {
        let at: Vec<Instant> = seen
            .messages()
            .iter()
            .filter(|m| m.text().contains(tag))
            .map(|m| m.at)
            .collect();
        let first = at.iter().min().unwrap();
        let last = at.iter().max().unwrap();
        (at.len(), last.duration_since(*first))
    };
    let (n, rate_span) = span("Subject: rate");
    assert_eq!(n, 20);
    assert!(
        rate_span >= Duration::from_millis(2900),
        "20 at 5/s in {rate_span:?}"
    );
    // Sessions open at once, per destination.
    let peak = |host_tag: &str| {
        let sessions: Vec<_> = seen
            .sessions
            .iter()
            .filter(|s| {
                seen.messages()
                    .iter()
                    .any(|m| seen.sessions[m.session].id == s.id && m.text().contains(host_tag))
            })
            .collect();
        sessions
            .iter()
            .map(|s| {
                sessions
                    .iter()
                    .filter(|o| o.started <= s.started && o.ended.is_none_or(|e| e > s.started))
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    assert!(peak("Subject: rate") <= 2, "connection_limit 2 exceeded");
    let conns: Vec<Instant> = seen
        .sessions
        .iter()
        .filter(|s| {
            seen.messages()
                .iter()
                .any(|m| seen.sessions[m.session].id == s.id && m.text().contains("Subject: conn"))
        })
        .map(|s| s.started)
        .collect();
    assert_eq!(conns.len(), 8, "one connection per message");
    let spread = conns
        .iter()
        .max()
        .unwrap()
        .duration_since(*conns.iter().min().unwrap());
    assert!(
        spread >= Duration::from_millis(1650),
        "8 connections at 4/s in {spread:?}"
    );
}

/// Operator suspensions by source and by domain: a suspended source is
/// passed over by its pool; a suspended domain's mail waits; both outlast
/// a restart, are listed, and a cancelled one lets the mail go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_hold_mail_and_outlast_a_restart() {
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let pki = Pki::new();
    let dns = start_dns(TestZone::new()).await;
    let to_sink = queue_to(&[&sink.addr().to_string()]);
    let mut d = Policy::new(dns.addr)
        .init(
            "kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }",
        )
        .route(
            "pool.test",
            format!("{to_sink} egress_pool = 'pool-1',"),
            "",
        )
        .route("held.test", to_sink.clone(), "")
        .extra(&sources_policy(&pki.egress("")))
        .start();
    // The blocking client lives and dies inside block_in_place.
    let call = |d: &ironpost_testkit::Daemon, method: &str, body: serde_json::Value| {
        let url = format!("http://{}/api/admin/suspend/v1", d.http[0]);
        tokio::task::block_in_place(|| {
            let c = reqwest::blocking::Client::new();
            let req = match method {
                "POST" => c.post(&url).json(&body),
                "DELETE" => c.delete(&url).json(&body),
                _ => c.get(&url),
            };
            let r = req.send().unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().unwrap_or_default())
        })
    };
    let (status, by_source) = call(
        &d,
        "POST",
        serde_json::json!({ "source": "ip-1", "reason": "warming", "duration": "1h" }),
    );
    assert_eq!(status, 200, "{by_source}");
    let (status, by_domain) = call(
        &d,
        "POST",
        serde_json::json!({ "domain": "held.test", "reason": "complaints", "duration": "1h" }),
    );
    assert_eq!(status, 200, "{by_domain}");

    for i in 0..6 {
        inject(
            &d,
            "a@origin.test",
            &[&format!("s{i}@pool.test")],
            &format!("s{i}"),
        )
        .await;
    }
    let held = inject(&d, "a@origin.test", &["x@held.test"], "held").await;
    let deadline = Instant::now() + WAIT;
    while records_of(&d, "Delivery").len() < 6 && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    let from: Vec<IpAddr> = arrivals(&sink.snapshot())
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(from.len(), 6, "{from:?}");
    assert!(
        from.iter()
            .all(|ip| *ip == "127.0.0.3".parse::<IpAddr>().unwrap()),
        "the suspended source sent nothing: {from:?}"
    );

    // Listed, and still there after a restart; the held message waits.
    tokio::task::block_in_place(|| d.restart()).unwrap();
    let (_, list) = call(&d, "GET", serde_json::Value::Null);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    sleep(Duration::from_secs(1)).await;
    assert!(records_for(&d, "Delivery", &held).is_empty());
    assert!(records_for(&d, "TransientFailure", &held).is_empty());

    // Cancelled, the domain's mail goes.
    let id = by_domain["suspended"]["id"].clone();
    let (status, _) = call(&d, "DELETE", serde_json::json!({ "id": id }));
    assert_eq!(status, 200);
    let (status, _) = call(&d, "DELETE", serde_json::json!({ "id": id }));
    assert_eq!(status, 404);
    wait_kind(&d, "Delivery", &held, WAIT).await;
    let (_, list) = call(&d, "GET", serde_json::Value::Null);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}
