//! Mail being received shares one memory budget (`--max-inflight-memory`):
//! a transaction that would go past it is refused with `452 4.3.1` once its
//! content has been read (and thrown away), a MAIL FROM while the budget is
//! spent is refused the same way, and the transactions within it go through.

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
async fn a_transaction_past_the_budget_is_refused_after_its_content() {
    let d = start_with_budget("6M");
    // A holds about 4 MiB (its buffer's capacity) without finishing.
    let mut a = connect_ehlo(&d).await;
    start_transaction(&mut a).await;
    a.send_raw(&body(2_600_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // B starts (2 MiB of headroom left) but cannot grow past the budget.
    let mut b = connect_ehlo(&d).await;
    start_transaction(&mut b).await;
    b.send_raw(&body(2_600_000)).await.unwrap();
    b.send_raw(b"\r\n.\r\n").await.unwrap();
    let r = b.read_reply().await.unwrap();
    check(&r, 452, "4.3.1", "B past the budget");
    // The dialogue stays in step after the refusal.
    expect(&mut b, "NOOP", 250, "2.0.0").await;

    // A, within the budget, is accepted.
    a.send_raw(b"\r\n.\r\n").await.unwrap();
    let r = a.read_reply().await.unwrap();
    assert_eq!(r.code, 250, "{r}");
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
    let d = start_with_budget("4500K");
    let mut a = connect_ehlo(&d).await;
    start_transaction(&mut a).await;
    a.send_raw(&body(2_600_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Less than 1 MiB of headroom: MAIL is refused.
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
