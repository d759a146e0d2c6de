//! Durability: `kill -9` during a load of concurrent sessions loses no
//! message that got a 250, and a restart recovers every one of them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use ironpost_testkit::SmtpClient;

const SESSIONS: usize = 16;
/// Upper bound per session, so the test's work is bounded whatever the
/// machine's speed.
const MAX_PER_SESSION: usize = 400;
/// How long the load runs before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);

/// One client session: sends messages until told to stop, the daemon
/// dies, or its quota is reached. Every id that got a 250 goes into `acked`.
async fn client(
    addr: std::net::SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let mut sent = 0;
    while sent < MAX_PER_SESSION && !stop.load(Ordering::Relaxed) {
        let (mut c, greeting) = match SmtpClient::connect(addr).await {
            Ok(x) => x,
            Err(_) => return, // the daemon is gone
        };
        if greeting.code != 220 || c.ehlo("load.test").await.is_err() {
            return;
        }
        // Reconnect now and then, as real clients do.
        for _ in 0..25 {
            if sent >= MAX_PER_SESSION || stop.load(Ordering::Relaxed) {
                return;
            }
            let body = format!(
                "Subject: load {n}/{sent}\r\n\r\n{}",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(16)
            );
            let r = match c
                .send_message("load@example.test", &["sink@example.test"], body.as_bytes())
                .await
            {
                Ok(r) => r,
                Err(_) => return, // the daemon is gone
            };
            sent += 1;
            // Before the kill nothing but 250 is acceptable.
            assert!(
                r.code == 250 || stop.load(Ordering::Relaxed),
                "client {n}: unexpected reply under load: {r}"
            );
            if r.code == 250 {
                acked.lock().unwrap().push(accepted_id(&r));
            }
        }
        let _ = c.quit().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_no_acknowledged_message() {
    let mut d = start_default();
    let addr = d.smtp_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|n| tokio::spawn(client(addr, n, stop.clone(), acked.clone())))
        .collect();

    // Let the load run, then crash the daemon in the middle of it.
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    let before_kill = acked.lock().unwrap().len();
    tokio::task::block_in_place(|| d.kill9());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no message was acknowledged before the kill"
    );
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "spool ids are unique");

    // Restart on the same workdir: the start-up line counts the recovered
    // messages, which include every acknowledged one (plus possibly some
    // made durable just before the kill, whose 250 never left).
    tokio::task::block_in_place(|| d.restart()).expect("restart after kill -9");
    let recovered = d.recovered.expect("recovered count printed");
    eprintln!(
        "acknowledged {} ({before_kill} before the kill), recovered {recovered}",
        acked.len()
    );
    assert!(
        before_kill < SESSIONS * MAX_PER_SESSION,
        "the load was over before the kill; raise MAX_PER_SESSION"
    );
    assert!(
        recovered >= acked.len() as u64,
        "recovered {recovered} < acknowledged {}",
        acked.len()
    );

    // The restarted daemon takes mail again.
    let mut c = connect_ehlo(&d).await;
    let after = send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test"],
        &message("after restart"),
    )
    .await;
    let _ = c.quit().await;

    // Stop cleanly and compare ids one by one.
    tokio::task::block_in_place(|| d.stop());
    let stored = spool_of(&d);
    let ids: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    for id in &acked {
        assert!(ids.contains(id.as_str()), "acknowledged {id} lost");
    }
    assert!(ids.contains(after.as_str()));
    assert_eq!(stored.len() as u64, recovered + 1);
    for m in &stored {
        assert_eq!(m.meta["id"], m.id.as_str(), "meta id matches record id");
        assert!(m.data.starts_with(b"Received: "), "complete content");
    }

    // And a clean restart reports the same set.
    tokio::task::block_in_place(|| d.restart()).expect("second restart");
    assert_eq!(d.recovered, Some(recovered + 1));
}

#[tokio::test]
async fn clean_restart_keeps_every_message() {
    let mut d = start_default();
    let mut c = connect_ehlo(&d).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            send_ok(
                &mut c,
                "a@example.test",
                &["b@example.test"],
                &message(&format!("m{i}")),
            )
            .await,
        );
    }
    let _ = c.quit().await;
    d.restart().expect("restart");
    assert_eq!(d.recovered, Some(5));
    d.stop();
    let stored: HashSet<String> = spool_of(&d).into_iter().map(|m| m.id).collect();
    assert_eq!(stored, ids.into_iter().collect());
}
