//! SMTP TLS Reporting (RFC 8460) end to end: a day of mixed outbound
//! sessions, counted across a crash and a restart, becomes one report per
//! recipient domain, mailed through the daemon's own queue to a capture
//! sink and POSTed to a loopback HTTPS endpoint. The reports are checked
//! field by field and against the RFC 8460 JSON schema
//! (crates/tls-report/tests/rfc8460-report.schema.json, with Python's
//! jsonschema: `IRONPOST_PYTHON`, else `python3`).
//!
//! One recipient domain per outcome, each with its own MX host and sink:
//! - ok.test: MTA-STS enforce, valid certificate: success;
//! - plain.test: no policy, no STARTTLS: `starttls-not-supported`
//!   (delivered in clear, `Opportunistic`);
//! - mismatch.test: MTA-STS enforce, certificate for another name:
//!   `certificate-host-mismatch` (deferred, next retry in an hour);
//! - fetchfail.test: `_mta-sts` TXT but the policy host answers 404:
//!   `sts-policy-fetch-error` (delivered anyway);
//! - reports.test: where mailed reports go (its own MX, so its sessions
//!   count, except those carrying our reports).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{NaiveDate, Utc};
use serde_json::{json, Value};

use crate::delivery_common::*;
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use ironpost_testkit::https::{HttpResponse, PolicyServer};
use ironpost_testkit::sink::{Sink, SinkConfig, SinkMessage, SinkTls};
use ironpost_testkit::Daemon;
use ironpost_tls_report::{SendState, Store};

const OK: &str = "ok.test";
const PLAIN: &str = "plain.test";
const MISMATCH: &str = "mismatch.test";
const FETCHFAIL: &str = "fetchfail.test";
const REPORTS: &str = "reports.test";
const DOMAINS: [&str; 5] = [OK, PLAIN, MISMATCH, FETCHFAIL, REPORTS];

/// Where mailed reports go, and who sends them.
const REPORT_RCPT: &str = "tlsrpt@reports.test";
const REPORT_FROM: &str = "noreply-tls-reports@sender.test";
const SUBMITTER: &str = "sender.test";

const WAIT: Duration = Duration::from_secs(30);

fn mx(domain: &str) -> String {
    format!("mx.{domain}")
}

fn sts_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

fn enforce(domain: &str) -> String {
    format!(
        "version: STSv1\r\nmode: enforce\r\nmx: {}\r\nmax_age: 86400\r\n",
        mx(domain)
    )
}

/// Everything the daemon talks to: DNS, the MTA-STS policy host, one sink
/// per domain and the HTTPS report endpoint.
struct World {
    pki: Pki,
    dns: TestDnsServer,
    sts: PolicyServer,
    posts: PostServer,
    sinks: BTreeMap<&'static str, Sink>,
}

async fn world() -> World {
    let pki = Pki::new();
    let zone = TestZone::new();
    let dns = start_dns(zone.clone()).await;

    let names: Vec<String> = [OK, MISMATCH, FETCHFAIL].map(sts_host).to_vec();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (cert, key) = pki.valid(&names);
    let sts = PolicyServer::start(&cert, &key)
        .await
        .expect("MTA-STS server");
    sts.set(&sts_host(OK), HttpResponse::policy(&enforce(OK)));
    sts.set(
        &sts_host(MISMATCH),
        HttpResponse::policy(&enforce(MISMATCH)),
    );
    sts.set(&sts_host(FETCHFAIL), HttpResponse::status(404));
    for d in [OK, MISMATCH, FETCHFAIL] {
        zone.txt(&format!("_mta-sts.{d}"), "v=STSv1; id=20260101;")
            .ip(&sts_host(d), LOCALHOST);
    }

    let mut sinks = BTreeMap::new();
    for d in DOMAINS {
        let tls = match d {
            PLAIN => SinkTls::None,
            MISMATCH => SinkTls::offer_pair(pki.valid(&["someone-else.test"])),
            _ => SinkTls::offer_pair(pki.valid(&[&mx(d)])),
        };
        let sink = Sink::start(
            any_port(LOCALHOST),
            SinkConfig::new().hostname(mx(d)).tls(tls),
        )
        .await
        .expect("sink");
        zone.mx(d, 10, &mx(d)).ip(&mx(d), LOCALHOST);
        sinks.insert(d, sink);
    }

    // The report endpoint is reached by address: the daemon's HTTP client
    // resolves names with the system resolver, not the test DNS.
    let posts = PostServer::start(pki.valid(&["127.0.0.1"]));
    let https_rua = |d: &str| format!("https://{}/tlsrpt/{d}", posts.addr);
    for (d, rua) in [
        (OK, format!("mailto:{REPORT_RCPT},{}", https_rua(OK))),
        (PLAIN, format!("mailto:{REPORT_RCPT}")),
        (MISMATCH, https_rua(MISMATCH)),
        (FETCHFAIL, format!("mailto:{REPORT_RCPT}")),
    ] {
        zone.txt(
            &format!("_smtp._tls.{d}"),
            &format!("v=TLSRPTv1; rua={rua}"),
        );
    }
    World {
        pki,
        dns,
        sts,
        posts,
        sinks,
    }
}

impl World {
    fn sink(&self, d: &str) -> &Sink {
        &self.sinks[d]
    }

    /// Connections each sink has seen: with one MX address per domain and
    /// one message per connection, the sessions the report must count.
    fn sessions(&self) -> BTreeMap<&'static str, usize> {
        self.sinks
            .iter()
            .map(|(d, s)| (*d, s.snapshot().sessions.len()))
            .collect()
    }

    /// Every domain routed by its own MX to its sink; one message per
    /// connection; mismatch.test retries only after an hour.
    fn policy(&self) -> Policy {
        let mut p = Policy::new(self.dns.addr);
        for d in DOMAINS {
            let q = match d {
                MISMATCH => "retry_interval = '1h', max_age = '2h',".to_string(),
                _ => queue("1h"),
            };
            let e = self.pki.egress(&format!(
                "enable_tls = 'Opportunistic', smtp_port = {}, max_deliveries_per_connection = 1,",
                self.sink(d).port()
            ));
            p = p.route(d, q, e);
        }
        p.extra(&format!(
            r#"
local posture = require 'policy-extras.posture'
posture:setup {{ {{ tls_reports = {{ organization_name = 'Ironpost Test',
  contact_info = 'mailto:postmaster@sender.test', submitter = '{SUBMITTER}' }} }} }}
kumo.on('http_message_generated', function(msg)
  msg:prepend_header('X-Generated-Seen', 'yes')
end)
"#
        ))
    }

    fn daemon(&self) -> Daemon {
        start_daemon(
            self.policy()
                .options()
                .env(
                    "IRONPOST_TEST_MTA_STS_PORT",
                    self.sts.addr.port().to_string(),
                )
                .env(
                    "IRONPOST_TEST_MTA_STS_CA",
                    self.pki.ca_path.display().to_string(),
                )
                .env(
                    "IRONPOST_TEST_TLSRPT_CA",
                    self.pki.ca_path.display().to_string(),
                ),
        )
    }
}

/// Sends one message to `user@domain`; returns its spool id.
async fn send(d: &Daemon, domain: &str, tag: &str) -> String {
    inject(d, "sender@origin.test", &[&format!("user@{domain}")], tag).await
}

/// Waits for each (id, record kind) outcome.
async fn outcomes(d: &Daemon, wanted: &[(String, &str)]) {
    for (id, kind) in wanted {
        wait_kind(d, kind, id, WAIT).await;
    }
}

/// Counts committed to `<spool>/tls-reports.sqlite` for `domain` on `day`:
/// (successful, failed) sessions.
fn stored(d: &Daemon, day: NaiveDate, domain: &str) -> (u64, u64) {
    let db = d
        .spool_dir
        .as_ref()
        .expect("spool dir")
        .join("tls-reports.sqlite");
    let agg = Store::open(&db)
        .and_then(|s| s.aggregate(day, domain))
        .expect("read the TLS report store");
    agg.policies.iter().fold((0, 0), |(s, f), p| {
        (s + p.successful_sessions, f + p.failed_sessions)
    })
}

/// Waits until the store holds at least `want` for each domain.
async fn wait_stored(d: &Daemon, day: NaiveDate, want: &[(&str, (u64, u64))]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now: Vec<(u64, u64)> = want.iter().map(|(dom, _)| stored(d, day, dom)).collect();
        if want
            .iter()
            .zip(&now)
            .all(|((_, w), n)| n.0 >= w.0 && n.1 >= w.1)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store has {now:?}, want {want:?}\nrecords:\n{}",
            dump(d)
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// If UTC midnight is near, waits for it to pass: every session of the
/// test must fall on one day.
async fn away_from_midnight() {
    let now = Utc::now();
    let midnight = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let left = (midnight - now.naive_utc()).num_seconds();
    if left < 120 {
        sleep(Duration::from_secs(left.max(0) as u64 + 2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_report_by_mail_and_https() {
    away_from_midnight().await;
    let today = Utc::now().date_naive();
    let w = world().await;
    let mut d = w.daemon();

    // Morning: two successes, one of each failure, and one ordinary
    // message to reports.test (its sessions do count).
    let mut wanted = vec![
        (send(&d, OK, "ok-1").await, "Delivery"),
        (send(&d, OK, "ok-2").await, "Delivery"),
        (send(&d, PLAIN, "plain-1").await, "Delivery"),
        (send(&d, MISMATCH, "mismatch-1").await, "TransientFailure"),
        (send(&d, FETCHFAIL, "fetchfail-1").await, "Delivery"),
        (send(&d, REPORTS, "reports-1").await, "Delivery"),
    ];
    outcomes(&d, &wanted).await;
    // Once committed, the counts survive a crash.
    wait_stored(
        &d,
        today,
        &[
            (OK, (2, 0)),
            (PLAIN, (0, 1)),
            (MISMATCH, (0, 1)),
            (FETCHFAIL, (0, 1)),
            (REPORTS, (1, 0)),
        ],
    )
    .await;
    d.kill9();

    // Afternoon, after the crash: one more of each, then a clean stop.
    d.restart().expect("restart after the crash");
    wanted = vec![
        (send(&d, OK, "ok-3").await, "Delivery"),
        (send(&d, PLAIN, "plain-2").await, "Delivery"),
        (send(&d, MISMATCH, "mismatch-2").await, "TransientFailure"),
        (send(&d, FETCHFAIL, "fetchfail-2").await, "Delivery"),
    ];
    outcomes(&d, &wanted).await;
    check_log_results(&d);
    d.stop();
    let sessions = w.sessions();
    let planned = [
        (OK, 3),
        (PLAIN, 2),
        (MISMATCH, 2),
        (FETCHFAIL, 2),
        (REPORTS, 1),
    ];
    for (dom, n) in planned {
        assert_eq!(sessions[dom], n, "{dom}: sink sessions {sessions:?}");
    }

    // The next day: yesterday's reports go out at start.
    let tomorrow = today.succ_opt().unwrap();
    d.restart_with(|o| {
        o.env
            .push(("IRONPOST_TEST_TLSRPT_TODAY".into(), tomorrow.to_string()))
    })
    .expect("restart on the next day");

    // By mail: ok.test, plain.test and fetchfail.test.
    let mails = wait_messages(&w, &d, 3).await;
    // By HTTPS: ok.test and mismatch.test.
    let posts = w.posts.wait(2, WAIT).await;
    wait_sent(&d, today).await;

    // The mailed reports: well-formed multipart/report messages.
    let raws: Vec<Vec<u8>> = mails.iter().map(|m| m.data.clone()).collect();
    let parsed = python_json(MIME_SCRIPT, &[], &json!(b64_all(&raws)));
    let mut reports: BTreeMap<String, Value> = BTreeMap::new();
    for (m, p) in mails.iter().zip(parsed.as_array().unwrap()) {
        let domain = m.header("TLS-Report-Domain").expect("TLS-Report-Domain");
        let ctx = format!("report mail for {domain}:\n{}\nparsed: {p:#}", m.text());
        check_mail(m, p, &domain, today, &ctx);
        assert!(
            reports
                .insert(domain.clone(), p["report"].clone())
                .is_none(),
            "two reports mailed for {domain}"
        );
    }
    assert_eq!(
        reports.keys().collect::<Vec<_>>(),
        [FETCHFAIL, OK, PLAIN],
        "mailed reports"
    );

    // The POSTs: gzipped JSON, the ok.test one identical to its mail.
    let bodies: Vec<Vec<u8>> = posts.iter().map(|p| p.body.clone()).collect();
    let unzipped = python_json(GUNZIP_SCRIPT, &[], &json!(b64_all(&bodies)));
    let mut posted: BTreeMap<String, Value> = BTreeMap::new();
    for (p, report) in posts.iter().zip(unzipped.as_array().unwrap()) {
        assert_eq!(p.method, "POST", "{p:?}");
        assert_eq!(
            p.header("content-type").as_deref(),
            Some("application/tlsrpt+gzip"),
            "{p:?}"
        );
        assert_eq!(&p.body[..2], &[0x1f, 0x8b], "not gzip: {p:?}");
        let domain = p.path.strip_prefix("/tlsrpt/").expect("path").to_string();
        posted.insert(domain, report.clone());
    }
    assert_eq!(posted.keys().collect::<Vec<_>>(), [MISMATCH, OK], "POSTs");
    assert_eq!(
        posted[OK], reports[OK],
        "mailed and posted ok.test reports differ"
    );
    reports.insert(MISMATCH.into(), posted[MISMATCH].clone());

    // The counts: morning and afternoon sessions, one report per domain.
    for (domain, report) in &reports {
        let ctx = format!("{domain}: {report:#}");
        assert_eq!(report["organization-name"], "Ironpost Test", "{ctx}");
        assert_eq!(
            report["contact-info"], "mailto:postmaster@sender.test",
            "{ctx}"
        );
        assert_eq!(
            report["report-id"],
            format!("{}.{domain}@{SUBMITTER}", today.format("%Y%m%d")),
            "{ctx}"
        );
        assert_eq!(
            report["date-range"],
            json!({
                "start-datetime": format!("{today}T00:00:00Z"),
                "end-datetime": format!("{today}T23:59:59Z"),
            }),
            "{ctx}"
        );
        if domain == PLAIN {
            // What a report looks like (see it with --nocapture).
            println!("{}", serde_json::to_string_pretty(&report).unwrap());
        }
        let policies = report["policies"].as_array().expect("policies");
        assert_eq!(policies.len(), 1, "{ctx}");
        let p = &policies[0];
        assert_eq!(p["policy"]["policy-domain"], domain.as_str(), "{ctx}");
        let n = sessions[domain.as_str()] as u64;
        let (policy_type, ok, failed, result) = match domain.as_str() {
            OK => (Some("sts"), n, 0, None),
            PLAIN => (
                Some("no-policy-found"),
                0,
                n,
                Some("starttls-not-supported"),
            ),
            MISMATCH => (Some("sts"), 0, n, Some("certificate-host-mismatch")),
            // The policy could not be had: the session went ahead without.
            FETCHFAIL => (
                Some("no-policy-found"),
                0,
                n,
                Some("sts-policy-fetch-error"),
            ),
            other => panic!("unexpected report for {other}"),
        };
        if let Some(t) = policy_type {
            assert_eq!(p["policy"]["policy-type"], t, "{ctx}");
        }
        if policy_type == Some("sts") {
            let policy = enforce(domain);
            let lines: Vec<&str> = policy.lines().collect();
            assert_eq!(p["policy"]["policy-string"], json!(lines), "{ctx}");
            assert_eq!(p["policy"]["mx-host"], json!([mx(domain)]), "{ctx}");
        }
        assert_eq!(
            p["summary"],
            json!({
                "total-successful-session-count": ok,
                "total-failure-session-count": failed,
            }),
            "{ctx}"
        );
        let details = p["failure-details"].as_array().cloned().unwrap_or_default();
        match result {
            None => assert!(details.is_empty(), "{ctx}"),
            Some(result) => {
                let mut total = 0;
                for f in &details {
                    assert_eq!(f["result-type"], result, "{ctx}");
                    total += f["failed-session-count"].as_u64().unwrap();
                    if result != "sts-policy-fetch-error" {
                        assert_eq!(f["receiving-mx-hostname"], mx(domain), "{ctx}");
                        assert_eq!(f["receiving-ip"], "127.0.0.1", "{ctx}");
                    }
                }
                assert_eq!(total, failed, "{ctx}");
            }
        }
    }

    // Our report messages are not sessions: reports.test still counts
    // only the ordinary morning message, and no MX saw anything new.
    sleep(Duration::from_millis(500)).await;
    let seen = w.sink(REPORTS).snapshot();
    assert_eq!(seen.sessions.len(), 4, "{}", describe_sink(&seen));
    assert_eq!(
        stored(&d, today, REPORTS),
        (1, 0),
        "report mail was counted"
    );
    let after = w.sessions();
    for dom in [OK, PLAIN, MISMATCH, FETCHFAIL] {
        assert_eq!(
            after[dom], sessions[dom],
            "{dom}: new sessions after the day"
        );
    }

    // Every report validates against the RFC 8460 schema.
    let all: Vec<Value> = reports.values().cloned().collect();
    let errors = python_json(VALIDATE_SCRIPT, &[SCHEMA], &json!(all));
    let invalid: Vec<String> = reports
        .iter()
        .zip(errors.as_array().unwrap())
        .filter(|(_, errs)| errs != &&json!([]))
        .map(|((domain, report), errs)| format!("{domain}: {errs}\n{report:#}"))
        .collect();
    assert!(
        invalid.is_empty(),
        "invalid reports:\n{}",
        invalid.join("\n")
    );
}

/// The delivery log says what the report will say, for every attempt.
fn check_log_results(d: &Daemon) {
    let records = d.read_log_records();
    for (rcpt, kind, field, want) in [
        ("user@ok.test", "Delivery", "tls_result", "success"),
        (
            "user@plain.test",
            "Delivery",
            "tls_result",
            "starttls-not-supported",
        ),
        (
            "user@mismatch.test",
            "TransientFailure",
            "tls_result",
            "certificate-host-mismatch",
        ),
        (
            "user@fetchfail.test",
            "Delivery",
            "tls_policy_discovery_failure",
            "sts-policy-fetch-error",
        ),
    ] {
        let found = for_rcpt(&records, kind, rcpt);
        assert!(!found.is_empty(), "no {kind} for {rcpt}:\n{}", dump(d));
        for r in found {
            let got = if field == "tls_result" {
                &r[field]
            } else {
                &r[field]["result"]
            };
            assert_eq!(got, want, "{rcpt}: {r}");
        }
    }
}

/// Waits until the store marks all five report destinations of `day`
/// sent (ok.test has two) and the three report mails are delivered.
async fn wait_sent(d: &Daemon, day: NaiveDate) {
    let db = d
        .spool_dir
        .as_ref()
        .expect("spool dir")
        .join("tls-reports.sqlite");
    let deadline = Instant::now() + WAIT;
    loop {
        let store = Store::open(&db).expect("open the TLS report store");
        let sends: Vec<_> = [OK, PLAIN, MISMATCH, FETCHFAIL]
            .iter()
            .flat_map(|dom| store.sends(day, dom).expect("sends"))
            .collect();
        let delivered = for_rcpt(&d.read_log_records(), "Delivery", REPORT_RCPT).len();
        if sends.len() == 5 && sends.iter().all(|s| s.state == SendState::Sent) && delivered >= 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "report sends: {sends:#?}\n{delivered} report mails delivered\nrecords:\n{}\nstderr:\n{}",
            dump(d),
            d.stderr()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `n` report messages at the reports.test sink.
async fn wait_messages(w: &World, d: &Daemon, n: usize) -> Vec<SinkMessage> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = w.sink(REPORTS).snapshot();
        let mails: Vec<SinkMessage> = seen
            .messages()
            .into_iter()
            .filter(|m| m.mail_from == REPORT_FROM)
            .cloned()
            .collect();
        if mails.len() >= n {
            return mails;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} report mails arrived\nsink:\n{}records:\n{}\nstderr:\n{}",
            mails.len(),
            describe_sink(&seen),
            dump(d),
            d.stderr()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// One mailed report: envelope, headers, MIME structure and attachment.
fn check_mail(m: &SinkMessage, p: &Value, domain: &str, day: NaiveDate, ctx: &str) {
    assert_eq!(m.rcpt_to, [REPORT_RCPT], "{ctx}");
    assert!(m.tls, "report sent in clear: {ctx}");
    let report_id = format!("{}.{domain}@{SUBMITTER}", day.format("%Y%m%d"));
    for (name, want) in [
        ("From", format!("<{REPORT_FROM}>")),
        ("To", format!("<{REPORT_RCPT}>")),
        ("TLS-Report-Submitter", SUBMITTER.to_string()),
        (
            "Subject",
            format!("Report Domain: {domain} Submitter: {SUBMITTER} Report-ID: <{report_id}>"),
        ),
        // http_message_generated ran on it.
        ("X-Generated-Seen", "yes".to_string()),
    ] {
        assert_eq!(
            m.header(name).as_deref(),
            Some(want.as_str()),
            "{name}: {ctx}"
        );
    }
    assert_eq!(p["content_type"], "multipart/report", "{ctx}");
    assert_eq!(p["report_type"], "tlsrpt", "{ctx}");
    assert_eq!(p["defects"], json!([]), "{ctx}");
    let start = day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let file = format!("{SUBMITTER}!{domain}!{start}!{}.json.gz", start + 86399);
    let attachments: Vec<&Value> = p["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|part| part["content_type"] == "application/tlsrpt+gzip")
        .collect();
    assert_eq!(attachments.len(), 1, "{ctx}");
    assert_eq!(attachments[0]["filename"], file, "{ctx}");
    assert_eq!(attachments[0]["gzip"], true, "{ctx}");
}

fn b64_all(blobs: &[Vec<u8>]) -> Vec<String> {
    blobs
        .iter()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .collect()
}

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tls-report/tests/rfc8460-report.schema.json"
);

/// Parses base64 messages: structure, the attachment's name and JSON.
const MIME_SCRIPT: &str = r#"
import base64, email, email.policy, gzip, json, sys
out = []
for raw in json.load(sys.stdin):
    msg = email.message_from_bytes(base64.b64decode(raw), policy=email.policy.default)
    parts, report = [], None
    for part in (msg.iter_parts() if msg.is_multipart() else []):
        data = part.get_payload(decode=True) or b""
        is_gzip = data[:2] == b"\x1f\x8b"
        if part.get_content_type() == "application/tlsrpt+gzip" and is_gzip:
            report = json.loads(gzip.decompress(data))
        parts.append({"content_type": part.get_content_type(),
                      "filename": part.get_filename(), "gzip": is_gzip})
    out.append({"content_type": msg.get_content_type(),
                "report_type": msg.get_param("report-type"),
                "defects": [str(d) for d in msg.defects],
                "parts": parts, "report": report})
print(json.dumps(out))
"#;

const GUNZIP_SCRIPT: &str = r#"
import base64, gzip, json, sys
print(json.dumps([json.loads(gzip.decompress(base64.b64decode(b)))
                  for b in json.load(sys.stdin)]))
"#;

/// Validation errors of each instance against the schema (argv[1]).
const VALIDATE_SCRIPT: &str = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.stderr.write("jsonschema")
    sys.exit(3)
with open(sys.argv[1]) as f:
    schema = json.load(f)
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
out = []
for instance in json.load(sys.stdin):
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    out.append(["/".join(map(str, e.path)) + ": " + e.message for e in errors])
print(json.dumps(out))
"#;

/// Runs `script` with `input` as JSON on stdin; its stdout as JSON.
fn python_json(script: &str, args: &[&str], input: &Value) -> Value {
    let py = std::env::var("IRONPOST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {py:?} ({e}); set IRONPOST_PYTHON"));
    let stdin = serde_json::to_vec(input).unwrap();
    child.stdin.take().unwrap().write_all(&stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "Python module {} is missing for {py:?}: install it or set IRONPOST_PYTHON",
        stderr.trim()
    );
    assert!(
        out.status.success(),
        "{py} failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// One request the report endpoint received.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// A tiny HTTPS server on 127.0.0.1 recording each request (HTTP/1.1, one
/// per connection) and answering 200. Stops when dropped.
struct PostServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PostServer {
    fn start((cert_pem, key_pem): (String, String)) -> PostServer {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        if let Ok(r) = serve(tcp, config.clone()) {
                            reqs.lock().unwrap().push(r);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        PostServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) for `n` requests; returns them.
    async fn wait(&self, n: usize, limit: Duration) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} HTTPS requests arrived: {got:?}",
                got.len()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PostServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (Content-Length or chunked body) and answers 200.
fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> std::io::Result<Request> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 || buf.len() > 65536 {
            return Err(std::io::Error::other("no complete request head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let mut rest = buf[head_end + 4..].to_vec();
    let mut more = |rest: &mut Vec<u8>| -> std::io::Result<()> {
        let n = tls.read(&mut chunk)?;
        if n == 0 || rest.len() > (1 << 20) {
            return Err(std::io::Error::other("request body cut short"));
        }
        rest.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        while rest.len() < len {
            more(&mut rest)?;
        }
        req.body = rest[..len].to_vec();
    } else if req
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        // size CRLF data CRLF ... 0 CRLF CRLF
        let mut at = 0;
        loop {
            let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                more(&mut rest)?;
                continue;
            };
            let size_line = String::from_utf8_lossy(&rest[at..at + eol]).to_string();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .map_err(std::io::Error::other)?;
            let data = at + eol + 2;
            while rest.len() < data + size + 2 {
                more(&mut rest)?;
            }
            if size == 0 {
                break;
            }
            req.body.extend_from_slice(&rest[data..data + size]);
            at = data + size + 2;
        }
    }
    tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(req)
}
