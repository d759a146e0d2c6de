//! Temporary and permanent failures: retries with exponential backoff
//! (capped by `max_retry_interval`), expiry after `max_age` with exactly
//! one Expiration and one DSN, a 5xx with exactly one Bounce and one DSN
//! (RFC 3464 multipart/report), and no DSN for a null sender, so a bounce
//! never bounces.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Rule, Sink, SinkConfig, SinkMessage, SinkRecord, Stage};

const WAIT: Duration = Duration::from_secs(15);

async fn sink(cfg: SinkConfig) -> Sink {
    Sink::start(any_port(LOCALHOST), cfg).await.expect("sink")
}

fn to(s: &Sink) -> String {
    queue_to(&[&s.addr().to_string()])
}

fn show(rec: &SinkRecord) -> String {
    rec.transactions
        .iter()
        .map(|m| {
            format!(
                "from={:?} to={:?} reply={:?}\n{}",
                m.mail_from,
                m.rcpt_to,
                m.reply,
                m.text()
            )
        })
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// Checks a DSN as the sink received it: null sender, to `sender`,
/// multipart/report with a message/delivery-status part naming `failed`
/// with `status`, and the original headers.
#[track_caller]
fn check_dsn(m: &SinkMessage, sender: &str, failed: &str, status: &str, original_tag: &str) {
    let text = m.text();
    assert_eq!(m.mail_from, "", "a DSN has a null sender: {text}");
    assert_eq!(m.rcpt_to, vec![sender.to_string()], "{text}");
    let ctype = m.header("Content-Type").expect("Content-Type");
    assert!(ctype.starts_with("multipart/report"), "{ctype}");
    assert!(ctype.contains("report-type=delivery-status"), "{ctype}");
    let boundary = ctype
        .split("boundary=\"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .expect("boundary");
    assert!(text.contains(&format!("\r\n--{boundary}--")), "{text}");
    assert!(m
        .header("Auto-Submitted")
        .is_some_and(|v| v.starts_with("auto-replied")));
    assert_eq!(
        m.header("To").as_deref(),
        Some(format!("<{sender}>").as_str())
    );
    // The delivery-status part.
    let status_part = text
        .split(&format!("--{boundary}"))
        .find(|p| p.contains("Content-Type: message/delivery-status"))
        .unwrap_or_else(|| panic!("no message/delivery-status part: {text}"));
    assert!(
        status_part.contains("Reporting-MTA: dns; "),
        "{status_part}"
    );
    assert!(
        status_part.contains(&format!("Final-Recipient: rfc822; {failed}")),
        "{status_part}"
    );
    assert!(status_part.contains("Action: failed"), "{status_part}");
    assert!(
        status_part.contains(&format!("Status: {status}")),
        "{status_part}"
    );
    assert!(status_part.contains("Diagnostic-Code: "), "{status_part}");
    // The original message's headers come back, not its body.
    let headers_part = text
        .split(&format!("--{boundary}"))
        .find(|p| p.contains("Content-Type: text/rfc822-headers"))
        .unwrap_or_else(|| panic!("no text/rfc822-headers part: {text}"));
    assert!(
        headers_part.contains(&format!("Message-ID: <{original_tag}@client.test>")),
        "{headers_part}"
    );
    assert!(
        !text.contains(&format!("This is {original_tag}.")),
        "body returned: {text}"
    );
}

/// 451 three times, then 250: TransientFailure for attempts 1..3, Delivery
/// on attempt 4; the waits grow 1 s, 2 s and then stay at the 2 s cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_exponential_backoff_until_delivered() {
    let pki = Pki::new();
    let s = sink(
        SinkConfig::new().rule(Rule::new(Stage::DataDot, "451 4.3.0 Try again later").times(3)),
    )
    .await;
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route("retry.test", to(&s), pki.egress(""))
        .start();
    let id = inject(&d, "a@origin.test", &["u@retry.test"], "retry").await;
    let rec = wait_kind(&d, "Delivery", &id, Duration::from_secs(20)).await;
    assert_eq!(rec["num_attempts"], 4, "{rec}");
    assert_eq!(rec["response"]["code"], 250, "{rec}");

    let failures = records_for(&d, "TransientFailure", &id);
    let attempts: Vec<u64> = failures
        .iter()
        .map(|r| r["num_attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3], "{failures:?}");
    for f in &failures {
        assert_eq!(f["response"]["code"], 451, "{f}");
        assert_eq!(f["response"]["enhanced_code"], "4.3.0", "{f}");
        assert_eq!(f["response"]["content"], "4.3.0 Try again later", "{f}");
        assert_eq!(f["peer_address"]["addr"], "127.0.0.1", "{f}");
    }

    let seen = s.snapshot();
    let t: Vec<_> = seen.transactions.iter().map(|m| m.at).collect();
    assert_eq!(t.len(), 4, "{}", show(&seen));
    assert_eq!(seen.messages().len(), 1, "delivered once");
    assert!(seen.transactions[..3].iter().all(|m| !m.accepted));
    let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    // Lower bounds are the backoff itself; upper bounds allow for a slow
    // machine but would catch a missing cap (4 s) or a lost doubling.
    let expect = [1.0, 2.0, 2.0];
    for (gap, want) in gaps.iter().zip(expect) {
        assert!(
            *gap >= want - 0.1 && *gap < want + 1.8,
            "gaps {gaps:?}, expected about {expect:?}"
        );
    }
    assert!(seen.messages()[0].text().contains(&spool_id_marker(&id)));
}

/// Always 451 with `max_age = '3s'`: exactly one Expiration, no Bounce, and
/// exactly one DSN (status 4.4.7) to the sender's domain; then silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_produces_one_expiration_and_one_dsn() {
    let pki = Pki::new();
    let busy = sink(SinkConfig::new().rule(Rule::new(Stage::Rcpt, "451 4.2.1 Mailbox busy"))).await;
    let dsn = sink(SinkConfig::new()).await;
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route(
            "expire.test",
            format!(
                "retry_interval = '1s', max_retry_interval = '1s', max_age = '3s', \
                 protocol = {{ smtp = {{ mx_list = {{ '{}' }} }} }},",
                busy.addr()
            ),
            pki.egress(""),
        )
        .route("origin.test", to(&dsn), pki.egress(""))
        .start();
    let id = inject(&d, "a@origin.test", &["u@expire.test"], "expiring").await;
    let exp = wait_kind(&d, "Expiration", &id, WAIT).await;
    assert!(has_rcpt(&exp, "u@expire.test"), "{exp}");
    assert_eq!(exp["response"]["code"], 451, "last error: {exp}");
    assert!(exp["num_attempts"].as_u64().unwrap() >= 2, "{exp}");

    assert!(
        dsn.wait_until(WAIT, |r| !r.messages().is_empty()).await,
        "no DSN arrived; records:\n{}",
        dump(&d)
    );
    let dsn_delivery = wait_record(&d, WAIT, "DSN delivery", |r| {
        is(r, "Delivery") && r["sender"] == "" && has_rcpt(r, "a@origin.test")
    })
    .await;
    assert_eq!(dsn_delivery["num_attempts"], 1);
    let busy_sessions = busy.snapshot().sessions.len();
    // Long enough for a duplicate DSN or another retry to show up.
    sleep(Duration::from_millis(2500)).await;

    assert_eq!(records_for(&d, "Expiration", &id).len(), 1, "{}", dump(&d));
    assert!(records_for(&d, "Bounce", &id).is_empty(), "{}", dump(&d));
    assert!(records_for(&d, "Delivery", &id).is_empty());
    assert!(records_of(&d, "Bounce").is_empty(), "{}", dump(&d));
    assert_eq!(records_of(&d, "Expiration").len(), 1);
    let seen = dsn.snapshot();
    assert_eq!(seen.messages().len(), 1, "{}", show(&seen));
    let m = seen.messages()[0];
    check_dsn(m, "a@origin.test", "u@expire.test", "4.4.7", "expiring");
    assert!(
        m.header("Subject").unwrap().contains("expired"),
        "{}",
        m.text()
    );
    assert!(m.text().contains(&format!("X-Ironpost-Queue-ID: {id}")));
    assert_eq!(
        busy.snapshot().sessions.len(),
        busy_sessions,
        "no attempts after expiry"
    );
    assert!(busy.snapshot().transactions.is_empty());
}

/// A 550 for one recipient (another is delivered, a third deferred once
/// with 451) and a 554 after DATA for another message: one Bounce each,
/// carrying the reply that failed it, one DSN each naming only the failed
/// recipients, and no retry of a permanent failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_bounce_once_with_one_dsn() {
    let pki = Pki::new();
    let rcpt550 = sink(
        SinkConfig::new()
            .rule(Rule::new(Stage::Rcpt, "550 5.1.1 No such user here").matching("nobody@"))
            .rule(
                Rule::new(Stage::Rcpt, "451 4.2.0 Greylisted, come back later")
                    .matching("later@")
                    .times(1),
            ),
    )
    .await;
    let data554 = sink(SinkConfig::new().rule(Rule::new(
        Stage::DataDot,
        "554 5.7.1 Message rejected as spam",
    )))
    .await;
    let dsn = sink(SinkConfig::new()).await;
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route("bounce.test", to(&rcpt550), pki.egress(""))
        .route("spam.test", to(&data554), pki.egress(""))
        .route("origin.test", to(&dsn), pki.egress(""))
        .start();
    let id1 = inject(
        &d,
        "a@origin.test",
        &["nobody@bounce.test", "ok@bounce.test", "later@bounce.test"],
        "partly-bounced",
    )
    .await;
    let id2 = inject(&d, "b@origin.test", &["x@spam.test"], "spammy").await;

    let b1 = wait_kind(&d, "Bounce", &id1, WAIT).await;
    assert_eq!(
        b1["recipients"],
        serde_json::json!(["nobody@bounce.test"]),
        "{b1}"
    );
    assert_eq!(b1["response"]["code"], 550, "{b1}");
    assert_eq!(b1["response"]["enhanced_code"], "5.1.1", "{b1}");
    assert_eq!(b1["num_attempts"], 1, "{b1}");
    let ok = wait_kind(&d, "Delivery", &id1, WAIT).await;
    assert_eq!(
        ok["recipients"],
        serde_json::json!(["ok@bounce.test"]),
        "{ok}"
    );
    assert_eq!(ok["response"]["code"], 250, "{ok}");
    let t = wait_kind(&d, "TransientFailure", &id1, WAIT).await;
    assert_eq!(
        t["recipients"],
        serde_json::json!(["later@bounce.test"]),
        "{t}"
    );
    assert_eq!(t["response"]["code"], 451, "{t}");
    assert_eq!(t["num_attempts"], 1, "{t}");
    let later = wait_record(&d, WAIT, "later@ delivered", |r| {
        is(r, "Delivery") && r["id"] == id1.as_str() && has_rcpt(r, "later@bounce.test")
    })
    .await;
    assert_eq!(later["num_attempts"], 2, "{later}");
    let b2 = wait_kind(&d, "Bounce", &id2, WAIT).await;
    assert_eq!(b2["response"]["code"], 554, "{b2}");
    assert!(has_rcpt(&b2, "x@spam.test"));

    assert!(
        dsn.wait_until(WAIT, |r| r.messages().len() >= 2).await,
        "DSNs: {}\nrecords:\n{}",
        show(&dsn.snapshot()),
        dump(&d)
    );
    sleep(Duration::from_millis(2000)).await;
    assert_eq!(records_for(&d, "Bounce", &id1).len(), 1, "{}", dump(&d));
    assert_eq!(records_for(&d, "Bounce", &id2).len(), 1, "{}", dump(&d));
    assert_eq!(records_for(&d, "TransientFailure", &id1).len(), 1);
    assert!(records_for(&d, "TransientFailure", &id2).is_empty());
    assert_eq!(records_of(&d, "Bounce").len(), 2);

    let seen = dsn.snapshot();
    assert_eq!(seen.messages().len(), 2, "{}", show(&seen));
    let for_a: Vec<_> = seen
        .messages()
        .into_iter()
        .filter(|m| m.rcpt_to == ["a@origin.test"])
        .collect();
    assert_eq!(for_a.len(), 1, "{}", show(&seen));
    check_dsn(
        for_a[0],
        "a@origin.test",
        "nobody@bounce.test",
        "5.1.1",
        "partly-bounced",
    );
    let text = for_a[0].text();
    assert!(text.contains("550 5.1.1 No such user here"), "{text}");
    assert!(
        !text.contains("Final-Recipient: rfc822; ok@bounce.test"),
        "{text}"
    );
    assert!(!text.contains("Final-Recipient: rfc822; later@"), "{text}");
    let for_b: Vec<_> = seen
        .messages()
        .into_iter()
        .filter(|m| m.rcpt_to == ["b@origin.test"])
        .collect();
    assert_eq!(for_b.len(), 1, "{}", show(&seen));
    check_dsn(for_b[0], "b@origin.test", "x@spam.test", "5.7.1", "spammy");

    // A permanent failure is not retried: nobody@ was tried once, and the
    // retry carried only later@.
    let seen = rcpt550.snapshot();
    let rcpts: Vec<String> = seen
        .sessions
        .iter()
        .flat_map(|s| s.commands.iter())
        .filter(|c| c.verb() == "RCPT")
        .map(|c| c.line.clone())
        .collect();
    assert_eq!(
        rcpts,
        [
            "RCPT TO:<nobody@bounce.test>",
            "RCPT TO:<ok@bounce.test>",
            "RCPT TO:<later@bounce.test>",
            "RCPT TO:<later@bounce.test>"
        ],
        "{rcpts:?}"
    );
    assert_eq!(seen.messages().len(), 2);
    assert_eq!(data554.snapshot().transactions.len(), 1);
}

/// A failed message with a null sender produces no DSN; neither does a
/// DSN that itself bounces (a bounce never bounces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sender_failures_produce_no_dsn() {
    let pki = Pki::new();
    let reject =
        sink(SinkConfig::new().rule(Rule::new(Stage::Rcpt, "550 5.1.1 No such user"))).await;
    let catch_all = sink(SinkConfig::new()).await;
    let dns = start_dns(TestZone::new()).await;
    let d = Policy::new(dns.addr)
        .route("bounce.test", to(&reject), pki.egress(""))
        // The sender domain of the second message rejects everything too,
        // so its DSN bounces.
        .route("rejecting-origin.test", to(&reject), pki.egress(""))
        .route("*", to(&catch_all), pki.egress(""))
        .start();
    let id1 = inject(&d, "", &["nobody@bounce.test"], "null-sender").await;
    let b = wait_kind(&d, "Bounce", &id1, WAIT).await;
    assert_eq!(b["sender"], "", "{b}");

    let id2 = inject(
        &d,
        "someone@rejecting-origin.test",
        &["nobody@bounce.test"],
        "dsn-bounces",
    )
    .await;
    wait_kind(&d, "Bounce", &id2, WAIT).await;
    // The DSN for id2 is tried and bounced...
    let dsn_bounce = wait_record(&d, WAIT, "the DSN bouncing", |r| {
        is(r, "Bounce") && r["sender"] == "" && has_rcpt(r, "someone@rejecting-origin.test")
    })
    .await;
    assert_ne!(dsn_bounce["id"], id2.as_str());
    // ... and nothing follows.
    sleep(Duration::from_millis(2500)).await;
    let bounces = records_of(&d, "Bounce");
    assert_eq!(bounces.len(), 3, "{}", dump(&d));
    assert!(records_of(&d, "Delivery").is_empty(), "{}", dump(&d));
    assert!(
        records_of(&d, "TransientFailure").is_empty(),
        "{}",
        dump(&d)
    );
    let seen = reject.snapshot();
    // null-sender message, id2, id2's DSN: three transactions tried, no more.
    let mails: Vec<String> = seen
        .sessions
        .iter()
        .flat_map(|s| s.commands.iter())
        .filter(|c| c.verb() == "MAIL")
        .map(|c| c.line.clone())
        .collect();
    assert_eq!(mails.len(), 3, "{mails:?}");
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.starts_with("MAIL FROM:<>"))
            .count(),
        2,
        "{mails:?}"
    );
    let catch = catch_all.snapshot();
    assert!(catch.sessions.is_empty(), "{}", show(&catch));
}
