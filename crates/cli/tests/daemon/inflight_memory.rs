//! Mail being received shares one memory budget (`--max-inflight-memory`).
//! Content past 256 KiB waits on disk while it arrives; a finished message
//! is read back under the budget, waiting for room, and one that can never
//! fit is refused `452 4.3.1`; a MAIL FROM while the budget is spent is
//! refused the same way.

use std::time::Duration;

use crate::common::*;
use ironpost_testkit::{DaemonOptions, SmtpClient};

const BIN: &str = env!("CARGO_BIN_EXE_ironpost");

/// About `n` bytes of message content, without the final dot.
fn body(n: usize) -> Vec<u8> {
    let line = format!("{}\r\n", "x".repeat(998));
    let mut b = b"Subject: big\r\n\r\n".to_vec();
    while b.len() < n {
        b.extend_from_slice(line.as_bytes());
    }
    b
}

async fn start_transaction(c: &mut SmtpClient) {
    expect(c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
}

fn start_with_budget(budget: &str) -> ironpost_testkit::Daemon {
    ironpost_testkit::Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy("max_message_size = 10000000,", ""))
            .arg("--max-inflight-memory")
            .arg(budget),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_budget_is_refused_after_its_content() {
    let d = start_with_budget("2M");
    let mut a = connect_ehlo(&d).await;
    start_transaction(&mut a).await;
    a.send_raw(&body(2_600_000)).await.unwrap();
    a.send_raw(b"\r\n.\r\n").await.unwrap();
    let r = a.read_reply().await.unwrap();
    check(&r, 452, "4.3.1", "larger than the budget");
    // The dialogue stays in step after the refusal, and a message that
    // fits goes through.
    expect(&mut a, "NOOP", 250, "2.0.0").await;
    start_transaction(&mut a).await;
    a.send_raw(&body(1_000_000)).await.unwrap();
    a.send_raw(b"\r\n.\r\n").await.unwrap();
    assert_eq!(a.read_reply().await.unwrap().code, 250);
    let rejected = d
        .wait_for_log(
            |r| r["type"] == "Rejection" && r["response"]["enhanced_code"] == "4.3.1",
            Duration::from_secs(5),
        )
        .expect("the refusal is logged");
    assert!(rejected["size"].as_u64().unwrap() > 2_000_000, "{rejected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transaction_starts_while_the_budget_is_spent() {
    // A's DATA buffer (up to the 128 KiB kept in memory before content
    // goes to disk) leaves less than 1 MiB of this budget.
    let d = start_with_budget("1088KiB");
    let mut a = connect_ehlo(&d).await;
    start_transaction(&mut a).await;
    a.send_raw(&body(200_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut b = connect_ehlo(&d).await;
    expect(&mut b, "MAIL FROM:<a@example.test>", 452, "4.3.1").await;

    a.send_raw(b"\r\n.\r\n").await.unwrap();
    assert_eq!(a.read_reply().await.unwrap().code, 250);
    // The budget is given back once A is stored.
    start_transaction(&mut b).await;
    b.send_raw(&body(100_000)).await.unwrap();
    b.send_raw(b"\r\n.\r\n").await.unwrap();
    assert_eq!(b.read_reply().await.unwrap().code, 250);
}

/// Resident memory of a process, in KiB, from /proc (`VmRSS` or `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The flood the budget exists for: many clients each sending a large
/// message without its final dot. Their content waits on disk; when they
/// all finish at once, the messages take turns in the budget (none is
/// refused), the daemon's memory stays within the budget plus a fixed
/// overhead, and once the clients are gone the memory is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_large_messages_stays_within_the_budget() {
    const CLIENTS: usize = 300;
    const EACH: usize = 2_000_000;
    const BUDGET_MIB: u64 = 192;
    /// Per-connection buffers, the runtime and the policy engine's states.
    const OVERHEAD_MIB: u64 = 96;
    let d = ironpost_testkit::Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy(
                "max_message_size = 25000000, max_connections = 1000,",
                "",
            ))
            .arg("--max-inflight-memory")
            .arg(format!("{BUDGET_MIB}MiB")),
    )
    .unwrap();
    let pid = d.pid();
    // Idle, after one message has gone through (so the lazily built parts
    // of the daemon exist).
    let mut c = connect_ehlo(&d).await;
    send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test"],
        &message("warm up"),
    )
    .await;
    let _ = c.quit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = memory_kib(pid, "VmRSS:");

    let content = std::sync::Arc::new(body(EACH));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let addr = d.smtp_addr();
        let content = content.clone();
        clients.push(tokio::spawn(async move {
            let (mut c, greeting) = SmtpClient::connect(addr).await.unwrap();
            assert_eq!(greeting.code, 220, "{greeting}");
            c.ehlo("flood.test").await.unwrap();
            let r = c.cmd("MAIL FROM:<a@example.test>").await.unwrap();
            if r.code != 250 {
                check(&r, 452, "4.3.1", "MAIL while the budget is spent");
                return (c, false);
            }
            expect(&mut c, "RCPT TO:<b@example.test>", 250, "2.1.5").await;
            assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
            // In pieces: each write has its own timeout, and the daemon
            // reads the 300 connections in turn.
            for piece in content.chunks(64 * 1024) {
                c.send_raw(piece).await.unwrap();
            }
            (c, true)
        }));
    }
    let mut sessions = Vec::new();
    for t in clients {
        sessions.push(t.await.unwrap());
    }
    // Everything is sent and unfinished, and held on disk: another client
    // still gets its message through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut late = connect_ehlo(&d).await;
    send_ok(
        &mut late,
        "a@example.test",
        &["b@example.test"],
        &message("late"),
    )
    .await;

    let mut accepted = 0;
    let mut refused = 0;
    // Every client sends its final dot at once.
    let finish: Vec<_> = sessions
        .into_iter()
        .map(|(mut c, in_data)| {
            tokio::spawn(async move {
                if !in_data {
                    return (c, None);
                }
                c.send_raw(b"\r\n.\r\n").await.unwrap();
                // A message waits (up to 30 s) for room in the budget: keep
                // listening past the client's own read timeout.
                let mut tries = 0;
                let r = loop {
                    match c.read_reply().await {
                        Ok(r) => break r,
                        Err(e) if tries < 5 => {
                            tries += 1;
                            eprintln!("still waiting for the reply: {e}");
                        }
                        Err(e) => panic!("no reply to the final dot: {e}"),
                    }
                };
                (c, Some(r))
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for t in finish {
        let (c, reply) = t.await.unwrap();
        match reply {
            Some(r) if r.code == 250 => accepted += 1,
            Some(r) => panic!("refused: {r}"),
            None => refused += 1,
        }
        sessions.push(c);
    }
    let peak = memory_kib(pid, "VmHWM:");
    drop(sessions);
    drop(late);
    // The daemon gives memory back within a few seconds of a peak.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = memory_kib(pid, "VmRSS:");
    eprintln!(
        "{CLIENTS} clients x {EACH} bytes, budget {BUDGET_MIB} MiB: idle {} MiB, \
         peak {} MiB, after {} MiB; {accepted} accepted, {refused} refused",
        idle / 1024,
        peak / 1024,
        after / 1024
    );
    assert_eq!(accepted, CLIENTS, "{refused} refused");
    assert!(
        peak <= idle + (BUDGET_MIB + OVERHEAD_MIB) * 1024,
        "peak {peak} KiB over idle {idle} KiB + budget + overhead"
    );
    assert!(after <= 2 * idle, "after {after} KiB, idle {idle} KiB");
}
