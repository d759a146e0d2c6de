//! Shared helpers for the `ironpost` integration tests: every test starts
//! the real binary through `ironpost_testkit::Daemon` and talks to it over
//! loopback sockets.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use ironpost_spool::{Spool, SpoolConfig};
use ironpost_testkit::{Daemon, DaemonOptions, Reply, SmtpClient};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ironpost");

/// Listener host name used by every test policy, so replies are predictable.
pub const HOST: &str = "mx.test";

/// Lua that keeps every accepted message in the spool: each queue routes
/// to a loopback target, which the default egress `prohibited_hosts`
/// refuses, so delivery defers for an hour and never connects anywhere.
/// These tests are about reception; delivery has its own suite.
pub const HOLD_IN_SPOOL: &str = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '1h',
    protocol = { smtp = { mx_list = { '127.0.0.1:9' } } },
  }
end)
"#;

/// A complete policy: spool and logs under `./ironpost-data/`, one listener
/// on `127.0.0.1:0` named `mx.test`, accepted mail held in the spool
/// ([`HOLD_IN_SPOOL`]). `listener_fields` are extra Lua table fields for
/// `start_esmtp_listener` (comma-separated); `relay_hosts` defaults to
/// `{ '127.0.0.1' }` unless given there. `extra` is Lua appended after the
/// `init` handler (other event handlers).
pub fn policy(listener_fields: &str, extra: &str) -> String {
    let relay = if listener_fields.contains("relay_hosts") {
        ""
    } else {
        "relay_hosts = { '127.0.0.1' },"
    };
    format!(
        r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{
    listen = '127.0.0.1:0',
    hostname = '{HOST}',
    {relay}
    {listener_fields}
  }}
end)
{HOLD_IN_SPOOL}
{extra}
"#
    )
}

pub fn start(policy: &str) -> Daemon {
    Daemon::start(DaemonOptions::new(BIN).policy(policy)).expect("daemon starts")
}

/// Daemon with the plain test policy.
pub fn start_default() -> Daemon {
    start(&policy("", ""))
}

/// Connects and checks the greeting.
pub async fn connect(d: &Daemon) -> SmtpClient {
    let (c, greeting) = SmtpClient::connect(d.smtp_addr()).await.expect("connect");
    assert_eq!(greeting.code, 220, "greeting: {greeting}");
    c
}

/// Connects and says EHLO.
pub async fn connect_ehlo(d: &Daemon) -> SmtpClient {
    let mut c = connect(d).await;
    let r = c.ehlo("client.test").await.expect("EHLO");
    assert_eq!(r.code, 250, "EHLO: {r}");
    c
}

/// Asserts the basic and enhanced code of a reply.
#[track_caller]
pub fn check(r: &Reply, code: u16, enhanced: &str, what: &str) {
    assert_eq!(r.code, code, "{what}: got {r}");
    assert_eq!(
        r.enhanced().as_deref(),
        Some(enhanced),
        "{what}: enhanced code of {r}"
    );
    // Every line of a multi-line reply carries the code too.
    for line in &r.lines {
        assert!(
            line.starts_with(enhanced),
            "{what}: line {line:?} lacks {enhanced}"
        );
    }
}

/// Sends one command and asserts its reply codes.
pub async fn expect(c: &mut SmtpClient, line: &str, code: u16, enhanced: &str) -> Reply {
    let r = c
        .cmd(line)
        .await
        .unwrap_or_else(|e| panic!("{line:?}: {e:#}"));
    check(&r, code, enhanced, line);
    r
}

/// Reads one reply and asserts its codes.
pub async fn expect_reply(c: &mut SmtpClient, code: u16, enhanced: &str, what: &str) -> Reply {
    let r = c
        .read_reply()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    check(&r, code, enhanced, what);
    r
}

/// The spool id from `250 2.0.0 OK id=<32 hex>`, checking the format.
#[track_caller]
pub fn accepted_id(r: &Reply) -> String {
    assert_eq!(r.code, 250, "message not accepted: {r}");
    assert_eq!(r.enhanced().as_deref(), Some("2.0.0"), "{r}");
    let text = r.text();
    let id = text
        .strip_prefix("2.0.0 OK id=")
        .unwrap_or_else(|| panic!("unexpected 250 text: {text:?}"));
    assert_eq!(id.len(), 32, "id {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "id {id:?} is not lower-case hex"
    );
    id.to_string()
}

/// A small well-formed message.
pub fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: <sender@example.test>\r\nTo: <rcpt@example.test>\r\nSubject: {subject}\r\n\r\nHello from the test suite.\r\n"
    )
    .into_bytes()
}

/// Full transaction that must succeed; returns the spool id.
pub async fn send_ok(c: &mut SmtpClient, from: &str, rcpts: &[&str], data: &[u8]) -> String {
    let r = c
        .send_message(from, rcpts, data)
        .await
        .expect("transaction");
    accepted_id(&r)
}

/// Log records of one type ("Reception", "Rejection").
pub fn records(d: &Daemon, kind: &str) -> Vec<Value> {
    d.read_log_records()
        .into_iter()
        .filter(|r| r["type"] == kind)
        .collect()
}

/// Waits until at least `n` records of `kind` exist, then returns them all.
pub fn wait_records(d: &Daemon, kind: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let recs = records(d, kind);
        if recs.len() >= n || std::time::Instant::now() >= deadline {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits for the Reception record of `id`.
pub fn reception(d: &Daemon, id: &str) -> Value {
    d.wait_for_log(
        |r| r["type"] == "Reception" && r["id"] == id,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no Reception record for {id}"))
}

/// The daemon's stderr once it contains every one of `needles` (the pipe
/// is drained by a thread, so a line can lag behind the SMTP reply that
/// followed it); after 5 s, whatever is there.
pub fn stderr_with(d: &Daemon, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let err = d.stderr();
        if needles.iter().all(|n| err.contains(n)) || std::time::Instant::now() >= deadline {
            return err;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Gives the log writer a moment, so a record that should not exist has
/// had the chance to appear.
pub fn settle_logs() {
    std::thread::sleep(Duration::from_millis(300));
}

/// One message as stored in the spool.
#[derive(Debug)]
pub struct Stored {
    pub id: String,
    pub meta: Value,
    pub data: Vec<u8>,
}

/// Reads every live message of a spool directory. Works on a private copy,
/// so the daemon may still be running (a record it is writing right now
/// shows up as a torn tail and is cut off the copy).
pub fn read_spool(spool_dir: &Path) -> Vec<Stored> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("spool");
    std::fs::create_dir(&copy).expect("mkdir");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for entry in std::fs::read_dir(spool_dir).expect("read spool dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
        }
    }
    let (spool, recovery) = Spool::open(SpoolConfig::new(&copy)).expect("open spool copy");
    let out = recovery
        .messages
        .iter()
        .map(|m| {
            let (meta, data) = spool.read(&m.location).expect("read message");
            Stored {
                id: m.id.to_string(),
                meta: serde_json::from_slice(&meta).expect("meta is JSON"),
                data,
            }
        })
        .collect();
    spool.shutdown();
    out
}

/// The daemon's spool, read as above.
pub fn spool_of(d: &Daemon) -> Vec<Stored> {
    read_spool(d.spool_dir.as_deref().expect("daemon reported a spool"))
}

/// Finds a byte string inside another.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// True if every CR is followed by LF and every LF preceded by CR.
pub fn only_crlf(data: &[u8]) -> bool {
    data.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => data.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && data[i - 1] == b'\r',
        _ => true,
    })
}

/// A field of `/proc/PID/status` ("Uid:", "Seccomp:", ...), trimmed.
pub fn status_field(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(name))
        .map(|l| l[name.len()..].trim().to_string())
        .unwrap_or_default()
}
