//! Shared helpers for the delivery suites (`delivery_*.rs`): a test PKI on
//! disk, the in-process test DNS server, policies that route test domains
//! to capture sinks on loopback, message injection and log-record checks.
//!
//! Every policy points the daemon's resolver at the in-process DNS server,
//! so no test ever asks the host's resolver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ironpost_testkit::dns::{TestDnsServer, TestZone};
use ironpost_testkit::sink::SinkRecord;
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient, TestCa};
use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_ironpost");

/// EHLO name and listener hostname of the sending daemon.
pub const SENDER_HOST: &str = "out.ironpost.test";

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

pub fn any_port(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, 0)
}

/// A trusted test CA (written to `ca.pem`, for `tls_extra_ca`) and a second,
/// untrusted one, with a directory for certificates, keys and other files.
pub struct Pki {
    pub dir: TempDir,
    pub ca: TestCa,
    pub other_ca: TestCa,
    pub ca_path: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("ironpost-delivery-")
            .tempdir()
            .expect("tempdir");
        let ca = TestCa::new("Ironpost delivery test CA");
        let other_ca = TestCa::new("Some other CA");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).expect("write ca.pem");
        Pki {
            dir,
            ca,
            other_ca,
            ca_path,
        }
    }

    /// Writes `content` to a file in the PKI directory; returns its path.
    /// Private to the owner (0600), as an operator keeps key files;
    /// Ironpost refuses a private key other users can read.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    }

    /// (cert, key) for `names`, issued by the trusted CA.
    pub fn valid(&self, names: &[&str]) -> (String, String) {
        self.ca.issue_server(names)
    }

    /// (cert, key) for `names`, issued by the untrusted CA.
    pub fn untrusted(&self, names: &[&str]) -> (String, String) {
        self.other_ca.issue_server(names)
    }

    /// Egress path fields every test uses: loopback allowed, short
    /// timeouts, the test CA trusted. `extra` is appended (Lua fields).
    pub fn egress(&self, extra: &str) -> String {
        format!(
            "prohibited_hosts = {{}}, tls_extra_ca = '{}', {TIMEOUTS} {extra}",
            self.ca_path.display()
        )
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// Short per-phase client timeouts, so a stuck peer cannot stall a test.
pub const TIMEOUTS: &str = "connect_timeout = '2s', banner_timeout = '5s', ehlo_timeout = '5s', \
starttls_timeout = '5s', auth_timeout = '5s', mail_from_timeout = '5s', rcpt_to_timeout = '5s', \
data_timeout = '5s', data_dot_timeout = '5s',";

/// Queue fields: retry after 1 s, then 2 s, expire after `max_age`.
pub fn queue(max_age: &str) -> String {
    format!("retry_interval = '1s', max_retry_interval = '2s', max_age = '{max_age}',")
}

/// Queue fields routing straight to `targets` ("host:port" or "ip:port").
pub fn queue_to(targets: &[&str]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "{} protocol = {{ smtp = {{ mx_list = {{ {} }} }} }},",
        queue("1h"),
        list.join(", ")
    )
}

/// Starts the in-process DNS server for `zone`.
pub async fn start_dns(zone: TestZone) -> TestDnsServer {
    TestDnsServer::start(zone).await.expect("start test DNS")
}

/// A sending daemon's policy: a listener on 127.0.0.1:0 relaying for
/// loopback clients, the resolver pointed at the test DNS, and per-domain
/// `get_queue_config` / `get_egress_path_config` answers.
pub struct Policy {
    dns: SocketAddr,
    routes: Vec<(String, String, String)>,
    extra: String,
    resolver: Option<String>,
    init: String,
    logs: Option<String>,
}

fn lua_str(s: &str) -> String {
    format!("{s:?}")
}

impl Policy {
    pub fn new(dns: SocketAddr) -> Policy {
        Policy {
            dns,
            routes: Vec::new(),
            extra: String::new(),
            resolver: None,
            init: String::new(),
            logs: None,
        }
    }

    /// `domain` ("*" for any other) gets `kumo.make_queue_config{queue}`
    /// and `kumo.make_egress_path{egress}`.
    pub fn route(
        mut self,
        domain: &str,
        queue: impl Into<String>,
        egress: impl Into<String>,
    ) -> Self {
        self.routes
            .push((domain.to_string(), queue.into(), egress.into()));
        self
    }

    /// Replaces the `kumo.dns.configure_resolver` call in `init` (Lua
    /// statement; it must still point at loopback).
    pub fn resolver(mut self, lua: impl Into<String>) -> Self {
        self.resolver = Some(lua.into());
        self
    }

    /// Replaces the `kumo.configure_local_logs` call in `init` (Lua
    /// statement; the log must stay under `./ironpost-data/logs`).
    pub fn logs(mut self, lua: &str) -> Self {
        self.logs = Some(lua.to_string());
        self
    }

    /// Lua statements appended to the `init` handler.
    pub fn init(mut self, lua: &str) -> Self {
        self.init.push_str(lua);
        self.init.push('\n');
        self
    }

    /// Lua appended at the end (e.g. a different egress path handler).
    pub fn extra(mut self, lua: &str) -> Self {
        self.extra.push_str(lua);
        self
    }

    pub fn build(&self) -> String {
        let mut lua = format!(
            r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  {}
  kumo.start_esmtp_listener {{
    listen = '127.0.0.1:0',
    hostname = '{SENDER_HOST}',
    relay_hosts = {{ '127.0.0.1' }},
  }}
  {}
  {}
end)
local QUEUES = {{}}
local PATHS = {{}}
"#,
            self.logs.clone().unwrap_or_else(|| {
                "kumo.configure_local_logs { log_dir = './ironpost-data/logs', \
                 headers = { 'Message-ID', 'Subject' } }"
                    .to_string()
            }),
            self.resolver.clone().unwrap_or_else(|| format!(
                "kumo.dns.configure_resolver {{ name_servers = {{ '{}' }} }}",
                self.dns
            )),
            self.init
        );
        for (domain, q, e) in &self.routes {
            let d = lua_str(domain);
            lua.push_str(&format!(
                "QUEUES[{d}] = function() return kumo.make_queue_config {{ {q} }} end\n\
                 PATHS[{d}] = function() return kumo.make_egress_path {{ {e} }} end\n"
            ));
        }
        lua.push_str(
            r#"kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local f = QUEUES[domain] or QUEUES['*']
  if f == nil then error('test policy: no queue config for ' .. domain) end
  return f()
end)
"#,
        );
        if !self.extra.contains("get_egress_path_config") {
            lua.push_str(
                r#"kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  local f = PATHS[domain] or PATHS['*']
  if f == nil then error('test policy: no egress path for ' .. domain) end
  return f()
end)
"#,
            );
        }
        lua.push_str(&self.extra);
        lua
    }

    pub fn options(&self) -> DaemonOptions {
        DaemonOptions::new(BIN).policy(self.build())
    }

    pub fn start(&self) -> Daemon {
        start_daemon(self.options())
    }
}

pub fn start_daemon(opts: DaemonOptions) -> Daemon {
    Daemon::start(opts).expect("daemon starts")
}

/// A message whose Message-ID and Subject carry `tag`.
pub fn message(from: &str, to: &[&str], tag: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: {tag}\r\nMessage-ID: <{tag}@client.test>\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nThis is {tag}.\r\n.leading dot line\r\n",
        to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .into_bytes()
}

/// Submits a message to the daemon; returns its spool id.
pub async fn inject(d: &Daemon, from: &str, to: &[&str], tag: &str) -> String {
    let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.expect("connect");
    assert_eq!(greeting.code, 220, "{greeting}");
    let r = c.ehlo("client.test").await.expect("EHLO");
    assert_eq!(r.code, 250, "{r}");
    let r = c
        .send_message(from, to, &message(from, to, tag))
        .await
        .expect("message accepted");
    assert_eq!(r.code, 250, "{r}");
    let text = r.text();
    let id = text
        .strip_prefix("2.0.0 OK id=")
        .unwrap_or_else(|| panic!("unexpected reply {text:?}"))
        .to_string();
    let _ = c.quit().await;
    id
}

pub fn is(rec: &Value, kind: &str) -> bool {
    rec["type"] == kind
}

/// Records of `kind` (Delivery, TransientFailure, ...) for message `id`.
pub fn records_for(d: &Daemon, kind: &str, id: &str) -> Vec<Value> {
    d.read_log_records()
        .into_iter()
        .filter(|r| is(r, kind) && r["id"] == id)
        .collect()
}

pub fn records_of(d: &Daemon, kind: &str) -> Vec<Value> {
    d.read_log_records()
        .into_iter()
        .filter(|r| is(r, kind))
        .collect()
}

/// Does the record list `rcpt` among its recipients?
pub fn has_rcpt(rec: &Value, rcpt: &str) -> bool {
    rec["recipients"]
        .as_array()
        .is_some_and(|a| a.iter().any(|r| r == rcpt))
}

/// Waits (polling, without blocking the runtime) for a record matching
/// `pred`; panics with every record on timeout.
pub async fn wait_record(
    d: &Daemon,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = d.read_log_records().into_iter().find(|r| pred(r)) {
            return r;
        }
        if Instant::now() >= deadline {
            panic!(
                "no log record for {what} within {limit:?}; records:\n{}",
                dump(d)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a record of `kind` for message `id` (and `rcpt` if given).
pub async fn wait_kind(d: &Daemon, kind: &str, id: &str, limit: Duration) -> Value {
    wait_record(d, limit, &format!("{kind} of {id}"), |r| {
        is(r, kind) && r["id"] == id
    })
    .await
}

pub fn dump(d: &Daemon) -> String {
    d.read_log_records()
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything the daemon wrote: log files, stdout and stderr.
pub fn everything_written(d: &Daemon) -> String {
    let mut out = d.stdout();
    out.push_str(&d.stderr());
    let mut files = Vec::new();
    collect(&d.log_dir(), &mut files);
    for f in files {
        if let Ok(b) = std::fs::read(&f) {
            out.push_str(&String::from_utf8_lossy(&b));
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The `Received:` trace the sending daemon adds names its spool id, so a
/// sink can count copies of one spooled message.
pub fn spool_id_marker(id: &str) -> String {
    format!("id {id}")
}

pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await
}

/// Records of `kind` that list `rcpt`.
pub fn for_rcpt<'a>(records: &'a [Value], kind: &str, rcpt: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| is(r, kind) && has_rcpt(r, rcpt))
        .collect()
}

/// What a capture sink saw, for assertion messages.
pub fn describe_sink(rec: &SinkRecord) -> String {
    let mut s = String::new();
    for sess in &rec.sessions {
        s.push_str(&format!(
            "  session {}: tls={:?} tls_error={:?} commands={:?}\n",
            sess.id,
            sess.tls,
            sess.tls_error,
            sess.commands
                .iter()
                .map(|c| format!("{}{}", if c.tls { "[tls] " } else { "" }, c.line))
                .collect::<Vec<_>>()
        ));
    }
    for m in &rec.transactions {
        s.push_str(&format!(
            "  message from {:?} to {:?} tls={} reply={:?}\n",
            m.mail_from, m.rcpt_to, m.tls, m.reply
        ));
    }
    s
}

/// Waits until each of `rcpts` has an outcome: a Delivery, or two
/// TransientFailures (so a retry was watched too).
pub async fn settle(d: &Daemon, rcpts: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let records = d.read_log_records();
        let pending: Vec<&String> = rcpts
            .iter()
            .filter(|r| {
                for_rcpt(&records, "Delivery", r).is_empty()
                    && for_rcpt(&records, "TransientFailure", r).len() < 2
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no outcome for {pending:?}; records:\n{}\nstderr:\n{}",
            dump(d),
            d.stderr()
        );
        sleep(Duration::from_millis(100)).await;
    }
}
