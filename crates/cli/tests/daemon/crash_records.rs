//! Records survive a crash. Over ten `kill -9` cycles under a load that is
//! being received and delivered at once: no message that got a 250 is lost,
//! each of them has a Reception record, and each message the remote server
//! accepted has a Delivery record.
//!
//! A message may reach the remote twice (the crash fell between the remote's
//! 250 and the spool forgetting it); that is at-least-once delivery, not a
//! loss, and the second attempt writes its own record.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig, SinkRecord};
use ironpost_testkit::SmtpClient;

const CYCLES: usize = 10;
const SESSIONS: usize = 6;
/// Bounds each session's work per cycle whatever the machine's speed.
const MAX_PER_SESSION: usize = 150;
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(700);
const DRAIN: Duration = Duration::from_secs(90);

/// Sends until stopped, the daemon dies or the quota is reached; every
/// spool id that got a 250 goes into `acked`.
async fn client(
    addr: std::net::SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let rcpt = format!("u{n}@crash.test");
    let Ok((mut c, greeting)) = SmtpClient::connect(addr).await else {
        return;
    };
    if greeting.code != 220 || c.ehlo("load.test").await.is_err() {
        return;
    }
    for i in 0..MAX_PER_SESSION {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let body = message("load@origin.test", &[&rcpt], &format!("c{n}-{i}"));
        let Ok(r) = c.send_message("load@origin.test", &[&rcpt], &body).await else {
            return; // the daemon is gone
        };
        if r.code == 250 {
            let text = r.text();
            let id = text.strip_prefix("2.0.0 OK id=").expect("id in the 250");
            acked.lock().unwrap().push(id.to_string());
        } else {
            assert!(stop.load(Ordering::Relaxed), "under load: {r}");
            return;
        }
    }
}

/// The sending daemon's spool ids found in the `Received:` headers of what
/// the sink accepted.
fn ids_at_sink(seen: &SinkRecord) -> HashSet<String> {
    seen.messages()
        .iter()
        .filter_map(|m| {
            let text = m.text();
            let at = text.find(" id ")? + 4;
            let id: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            (!id.is_empty()).then_some(id)
        })
        .collect()
}

fn ids_of(d: &ironpost_testkit::Daemon, kind: &str) -> HashSet<String> {
    records_of(d, kind)
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_cycles_lose_no_message_and_no_record() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let mut d = Policy::new(dns.addr)
        .route(
            "crash.test",
            queue_to(&[&sink.addr().to_string()]),
            pki.egress(""),
        )
        .start();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = d.smtp_addr();
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|n| tokio::spawn(client(addr, n, stop.clone(), acked.clone())))
            .collect();
        sleep(LOAD_BEFORE_KILL).await;
        tokio::task::block_in_place(|| d.kill9());
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        tokio::task::block_in_place(|| d.restart())
            .unwrap_or_else(|e| panic!("restart after kill -9 #{cycle}: {e}"));
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() > CYCLES,
        "the load got through: {}",
        acked.len()
    );

    // Let the restarted daemon deliver what is left.
    let deadline = Instant::now() + DRAIN;
    let mut delivered = ids_at_sink(&sink.snapshot());
    while !acked.is_subset(&delivered) && Instant::now() < deadline {
        sleep(Duration::from_millis(250)).await;
        delivered = ids_at_sink(&sink.snapshot());
    }
    // A record follows the remote's 250 by moments.
    let mut with_delivery = ids_of(&d, "Delivery");
    while !delivered.is_subset(&with_delivery) && Instant::now() < deadline {
        sleep(Duration::from_millis(250)).await;
        with_delivery = ids_of(&d, "Delivery");
    }
    tokio::task::block_in_place(|| d.stop());
    let with_reception = ids_of(&d, "Reception");

    let lost: Vec<_> = acked.difference(&delivered).collect();
    let no_reception: Vec<_> = acked.difference(&with_reception).collect();
    let no_delivery: Vec<_> = delivered.difference(&with_delivery).collect();
    eprintln!(
        "{CYCLES} kill -9 cycles: {} acknowledged, {} delivered; lost {}, \
         without Reception {}, without Delivery {}",
        acked.len(),
        delivered.len(),
        lost.len(),
        no_reception.len(),
        no_delivery.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    assert!(
        no_reception.is_empty(),
        "acknowledged without a Reception record: {no_reception:?}"
    );
    assert!(
        no_delivery.is_empty(),
        "delivered without a Delivery record: {no_delivery:?}"
    );
}
