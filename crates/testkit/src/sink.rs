//! A capture SMTP sink for delivery tests: a tokio server on a loopback
//! address that plays the receiving MTA and records everything it saw.
//!
//! What it can do:
//! - STARTTLS: not offered, offered with a given certificate, offered and
//!   then broken (garbage instead of a handshake, or a close), or stripped
//!   (a man in the middle rewrote the EHLO keyword and the command).
//! - AUTH PLAIN (and LOGIN) with given credentials, advertised only after
//!   TLS or always, optionally required before MAIL. Every attempt is
//!   recorded with whether it arrived under TLS, even when it is refused.
//! - Scripted replies ([`Rule`]): per stage, optionally for commands or
//!   recipients matching a pattern, for the first N matches only, after a
//!   delay, and then close or hang.
//! - Records the raw bytes of every session (cleartext and, separately, what
//!   arrived inside TLS), every command, and every transaction that reached
//!   the end of DATA (envelope, un-stuffed content, the reply given), behind
//!   a shared handle ([`SinkHandle`]) that tests read while it runs.
//!
//! It binds only loopback addresses. Dropping the [`Sink`] closes the
//! listener and every session.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest command line or message line the sink accepts.
const MAX_LINE: usize = 1 << 20;
/// Largest message the sink accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// How the sink treats STARTTLS.
#[derive(Clone, Debug, Default)]
pub enum SinkTls {
    /// STARTTLS is not advertised; the command gets 502.
    #[default]
    None,
    /// STARTTLS with this certificate chain and private key (PEM).
    Offer { cert_pem: String, key_pem: String },
    /// Advertised and answered 220, then garbage instead of a ServerHello.
    BreakWithGarbage,
    /// Advertised and answered 220, then the connection is closed.
    BreakWithClose,
    /// A man in the middle stripped it: EHLO shows `XXXXXXXA` instead of
    /// STARTTLS and the command itself is refused (500).
    Stripped,
}

impl SinkTls {
    pub fn offer(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> SinkTls {
        SinkTls::Offer {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        }
    }

    /// [`SinkTls::Offer`] from a (cert, key) pair such as
    /// [`TestCa::issue_server`](crate::TestCa::issue_server) returns.
    pub fn offer_pair((cert_pem, key_pem): (String, String)) -> SinkTls {
        SinkTls::Offer { cert_pem, key_pem }
    }

    fn advertised(&self) -> Option<&'static str> {
        match self {
            SinkTls::None => None,
            SinkTls::Stripped => Some("XXXXXXXA"),
            _ => Some("STARTTLS"),
        }
    }
}

/// AUTH the sink offers and checks.
#[derive(Clone, Debug)]
pub struct SinkAuth {
    pub username: String,
    pub password: String,
    /// Advertise AUTH (and accept it) only once TLS is up. Attempts before
    /// TLS are still recorded, then refused with 530.
    pub only_after_tls: bool,
    /// MAIL before a successful AUTH gets `530 5.7.0`.
    pub required: bool,
}

impl SinkAuth {
    /// Required, advertised only after TLS.
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> SinkAuth {
        SinkAuth {
            username: username.into(),
            password: password.into(),
            only_after_tls: true,
            required: true,
        }
    }

    /// Advertise AUTH in cleartext too.
    pub fn always_offered(mut self) -> SinkAuth {
        self.only_after_tls = false;
        self
    }
}

/// Where a scripted reply applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The 220 banner (the pattern is ignored).
    Greeting,
    /// EHLO / HELO (pattern: the command line).
    Ehlo,
    /// MAIL (pattern: the command line).
    Mail,
    /// RCPT (pattern: the recipient address).
    Rcpt,
    /// The DATA command (pattern: the accepted recipients).
    Data,
    /// The reply after the final dot (pattern: the accepted recipients).
    DataDot,
}

/// What happens after a scripted reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Then {
    #[default]
    Continue,
    /// Close the connection after the reply.
    Close,
    /// Send no reply at all; wait until the client goes away.
    Hang,
}

/// A scripted reply. Rules are tried in order; the first whose stage and
/// pattern match and whose count is not used up applies.
#[derive(Clone, Debug)]
pub struct Rule {
    pub stage: Stage,
    /// Case-insensitive substring the subject of the stage must contain.
    pub pattern: Option<String>,
    /// The full reply line without CRLF, e.g. `451 4.3.0 Try again later`.
    pub reply: String,
    /// Apply to the first N matches only (counted across sessions).
    pub times: Option<usize>,
    pub delay: Duration,
    pub then: Then,
}

impl Rule {
    pub fn new(stage: Stage, reply: impl Into<String>) -> Rule {
        Rule {
            stage,
            pattern: None,
            reply: reply.into(),
            times: None,
            delay: Duration::ZERO,
            then: Then::Continue,
        }
    }

    /// No reply at this stage: the sink waits until the client closes.
    pub fn hang(stage: Stage) -> Rule {
        Rule {
            then: Then::Hang,
            ..Rule::new(stage, "")
        }
    }

    pub fn matching(mut self, pattern: impl Into<String>) -> Rule {
        self.pattern = Some(pattern.into().to_ascii_lowercase());
        self
    }

    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }

    pub fn delay(mut self, d: Duration) -> Rule {
        self.delay = d;
        self
    }

    pub fn then_close(mut self) -> Rule {
        self.then = Then::Close;
        self
    }
}

/// Sink configuration; build with the methods.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub hostname: String,
    pub tls: SinkTls,
    pub auth: Option<SinkAuth>,
    pub rules: Vec<Rule>,
    pub pipelining: bool,
    /// Limit for each read from the client.
    pub io_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            hostname: "sink.test".into(),
            tls: SinkTls::None,
            auth: None,
            rules: Vec::new(),
            pipelining: true,
            io_timeout: Duration::from_secs(30),
        }
    }
}

impl SinkConfig {
    pub fn new() -> SinkConfig {
        SinkConfig::default()
    }

    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    pub fn tls(mut self, tls: SinkTls) -> Self {
        self.tls = tls;
        self
    }

    pub fn auth(mut self, auth: SinkAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn pipelining(mut self, on: bool) -> Self {
        self.pipelining = on;
        self
    }
}

/// One command line as the sink received it.
#[derive(Clone, Debug)]
pub struct SinkCommand {
    /// The line without CRLF (AUTH lines included verbatim).
    pub line: String,
    /// Whether it arrived inside TLS.
    pub tls: bool,
    pub at: Instant,
}

impl SinkCommand {
    /// The upper-cased first word.
    pub fn verb(&self) -> String {
        self.line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    }
}

/// One TCP connection.
#[derive(Clone, Debug)]
pub struct SinkSession {
    pub id: usize,
    pub peer: SocketAddr,
    pub started: Instant,
    pub ended: Option<Instant>,
    /// Every byte received in cleartext, in order.
    pub received_plain: Vec<u8>,
    /// Every byte received inside TLS (decrypted), in order.
    pub received_tls: Vec<u8>,
    /// Every byte the sink sent (before encryption).
    pub sent: Vec<u8>,
    pub commands: Vec<SinkCommand>,
    /// The client sent STARTTLS.
    pub starttls_requested: bool,
    /// (protocol version, cipher suite) once TLS is up.
    pub tls: Option<(String, String)>,
    /// Why TLS did not come up after a 220 (deliberate breaks included).
    pub tls_error: Option<String>,
    /// Cleartext that followed STARTTLS before the handshake (discarded).
    pub injected_after_starttls: Vec<u8>,
}

impl SinkSession {
    /// True if a command with this verb arrived in cleartext.
    pub fn sent_in_clear(&self, verb: &str) -> bool {
        self.commands
            .iter()
            .any(|c| !c.tls && c.verb().eq_ignore_ascii_case(verb))
    }

    pub fn has_command(&self, verb: &str) -> bool {
        self.commands
            .iter()
            .any(|c| c.verb().eq_ignore_ascii_case(verb))
    }
}

/// One AUTH attempt, recorded whether or not it was accepted.
#[derive(Clone, Debug)]
pub struct AuthAttempt {
    pub session: usize,
    pub mechanism: String,
    pub tls: bool,
    pub authzid: String,
    pub username: String,
    pub password: String,
    pub accepted: bool,
    /// The reply code the sink gave.
    pub reply: u16,
}

/// A transaction that reached the end of DATA.
#[derive(Clone, Debug)]
pub struct SinkMessage {
    pub session: usize,
    /// Reverse path without the angle brackets (empty for `<>`).
    pub mail_from: String,
    /// The MAIL command line as received.
    pub mail_line: String,
    /// Recipients the sink accepted.
    pub rcpt_to: Vec<String>,
    /// Content as received on the wire, dot-stuffed, without the final dot.
    pub raw_data: Vec<u8>,
    /// Content after dot-unstuffing.
    pub data: Vec<u8>,
    pub tls: bool,
    /// User name of a successful AUTH on this session.
    pub auth_user: Option<String>,
    /// The reply the sink gave to the final dot.
    pub reply: String,
    /// Whether that reply was 2xx.
    pub accepted: bool,
    pub at: Instant,
}

impl SinkMessage {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header with this name (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_string());
                }
            }
        }
        value
    }
}

/// Everything the sink saw so far.
#[derive(Clone, Debug, Default)]
pub struct SinkRecord {
    pub sessions: Vec<SinkSession>,
    pub auth: Vec<AuthAttempt>,
    /// Every transaction that reached the end of DATA, accepted or not.
    pub transactions: Vec<SinkMessage>,
}

impl SinkRecord {
    /// Transactions the sink accepted (2xx after the dot).
    pub fn messages(&self) -> Vec<&SinkMessage> {
        self.transactions.iter().filter(|m| m.accepted).collect()
    }

    /// Accepted messages whose content contains `needle`.
    pub fn messages_containing(&self, needle: &str) -> Vec<&SinkMessage> {
        self.transactions
            .iter()
            .filter(|m| m.accepted && m.text().contains(needle))
            .collect()
    }

    /// True if any session sent this verb in cleartext.
    pub fn any_in_clear(&self, verb: &str) -> bool {
        self.sessions.iter().any(|s| s.sent_in_clear(verb))
    }

    /// True if `needle` occurs in any byte the sink received, cleartext or
    /// decrypted.
    pub fn received_contains(&self, needle: &[u8]) -> bool {
        self.sessions
            .iter()
            .any(|s| contains(&s.received_plain, needle) || contains(&s.received_tls, needle))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

struct RuleState {
    rule: Rule,
    used: usize,
}

struct Shared {
    record: Mutex<SinkRecord>,
    rules: Mutex<Vec<RuleState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cloneable view of a running sink's records.
#[derive(Clone)]
pub struct SinkHandle(Arc<Shared>);

impl SinkHandle {
    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> SinkRecord {
        lock(&self.0.record).clone()
    }

    /// Replaces the scripted replies (their counters start again).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *lock(&self.0.rules) = rules
            .into_iter()
            .map(|rule| RuleState { rule, used: 0 })
            .collect();
    }

    /// Polls until `pred` holds for the record or `limit` passes.
    pub async fn wait_until(&self, limit: Duration, pred: impl Fn(&SinkRecord) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&lock(&self.0.record)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn take_rule(&self, stage: Stage, subject: &str) -> Option<Rule> {
        let subject = subject.to_ascii_lowercase();
        let mut rules = lock(&self.0.rules);
        for st in rules.iter_mut() {
            let r = &st.rule;
            if r.stage != stage {
                continue;
            }
            if stage != Stage::Greeting {
                if let Some(p) = &r.pattern {
                    if !subject.contains(p.as_str()) {
                        continue;
                    }
                }
            }
            if r.times.is_some_and(|n| st.used >= n) {
                continue;
            }
            st.used += 1;
            return Some(st.rule.clone());
        }
        None
    }

    fn session<R>(&self, idx: usize, f: impl FnOnce(&mut SinkSession) -> R) -> R {
        let mut rec = lock(&self.0.record);
        f(&mut rec.sessions[idx])
    }
}

/// A running sink. Dropping it stops the listener and all sessions.
pub struct Sink {
    addr: SocketAddr,
    handle: SinkHandle,
    task: JoinHandle<()>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("addr", &self.addr).finish()
    }
}

impl Sink {
    /// Binds `bind` (a loopback address; port 0 picks one) and serves
    /// `cfg` until dropped. Must be called inside a tokio runtime.
    pub async fn start(bind: SocketAddr, cfg: SinkConfig) -> anyhow::Result<Sink> {
        if !bind.ip().is_loopback() {
            bail!("the sink only binds loopback addresses, not {}", bind.ip());
        }
        let tls = match &cfg.tls {
            SinkTls::Offer { cert_pem, key_pem } => Some(TlsAcceptor::from(
                crate::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes(), None)
                    .context("sink TLS certificate")?,
            )),
            _ => None,
        };
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("sink: bind {bind}"))?;
        let addr = listener.local_addr()?;
        let handle = SinkHandle(Arc::new(Shared {
            record: Mutex::new(SinkRecord::default()),
            rules: Mutex::new(Vec::new()),
        }));
        handle.set_rules(cfg.rules.clone());
        let cfg = Arc::new(cfg);
        let h = handle.clone();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts
            // every session.
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, peer)) = accepted else { continue };
                        let _ = tcp.set_nodelay(true);
                        let conn = Conn::new(h.clone(), cfg.clone(), tls.clone(), tcp, peer);
                        sessions.spawn(conn.serve());
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(Sink { addr, handle, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn handle(&self) -> SinkHandle {
        self.handle.clone()
    }

    pub fn snapshot(&self) -> SinkRecord {
        self.handle.snapshot()
    }

    pub async fn wait_until(&self, limit: Duration, pred: impl Fn(&SinkRecord) -> bool) -> bool {
        self.handle.wait_until(limit, pred).await
    }

    /// Stops accepting and closes every session; the records stay readable
    /// through handles taken earlier.
    pub fn stop(self) {}
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

#[derive(Default)]
struct Txn {
    mail: Option<(String, String)>,
    rcpts: Vec<String>,
}

enum Flow {
    Continue,
    End,
}

struct Conn {
    h: SinkHandle,
    cfg: Arc<SinkConfig>,
    acceptor: Option<TlsAcceptor>,
    io: Io,
    buf: Vec<u8>,
    idx: usize,
    ehlo: bool,
    auth_user: Option<String>,
    txn: Txn,
    accepted: usize,
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let t = text.trim().as_bytes();
    let chunks = t.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for chunk in chunks {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || chunk[..4 - pad].contains(&b'=') {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

pub(crate) fn encode_base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn path_of(line: &str) -> String {
    let rest = line.split_once(':').map(|(_, r)| r).unwrap_or("");
    let rest = rest.trim_start();
    match rest.strip_prefix('<').and_then(|r| r.split_once('>')) {
        Some((p, _)) => p.to_string(),
        None => rest.split_whitespace().next().unwrap_or("").to_string(),
    }
}

fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at_start = true;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if at_start && b == b'.' {
            i += 1;
            at_start = false;
            continue;
        }
        out.push(b);
        at_start = b == b'\n';
        i += 1;
    }
    out
}

impl Conn {
    fn new(
        h: SinkHandle,
        cfg: Arc<SinkConfig>,
        acceptor: Option<TlsAcceptor>,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Conn {
        let idx = {
            let mut rec = lock(&h.0.record);
            let idx = rec.sessions.len();
            rec.sessions.push(SinkSession {
                id: idx,
                peer,
                started: Instant::now(),
                ended: None,
                received_plain: Vec::new(),
                received_tls: Vec::new(),
                sent: Vec::new(),
                commands: Vec::new(),
                starttls_requested: false,
                tls: None,
                tls_error: None,
                injected_after_starttls: Vec::new(),
            });
            idx
        };
        Conn {
            h,
            cfg,
            acceptor,
            io: Io::Plain(tcp),
            buf: Vec::new(),
            idx,
            ehlo: false,
            auth_user: None,
            txn: Txn::default(),
            accepted: 0,
        }
    }

    async fn serve(mut self) {
        let _ = self.run().await;
        self.shutdown().await;
        let idx = self.idx;
        self.h.session(idx, |s| s.ended = Some(Instant::now()));
    }

    fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    async fn shutdown(&mut self) {
        let _ = match &mut self.io {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
            Io::Gone => Ok(()),
        };
        self.io = Io::Gone;
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.h
            .session(self.idx, |s| s.sent.extend_from_slice(bytes));
        match &mut self.io {
            Io::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn reply(&mut self, line: &str) -> std::io::Result<()> {
        self.write(format!("{line}\r\n").as_bytes()).await
    }

    /// Reads more bytes (recording them); 0 at EOF or timeout.
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let limit = self.cfg.io_timeout;
        let read = match &mut self.io {
            Io::Plain(s) => timeout(limit, s.read(&mut chunk)).await,
            Io::Tls(s) => timeout(limit, s.read(&mut chunk)).await,
            Io::Gone => return 0,
        };
        let n = match read {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        let tls = self.is_tls();
        self.h.session(self.idx, |s| {
            if tls {
                s.received_tls.extend_from_slice(&chunk[..n]);
            } else {
                s.received_plain.extend_from_slice(&chunk[..n]);
            }
        });
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next line including its line ending (LF or CRLF); None at EOF.
    async fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=pos).collect());
            }
            if self.buf.len() > MAX_LINE || self.fill().await == 0 {
                return None;
            }
        }
    }

    async fn read_command(&mut self) -> Option<String> {
        let raw = self.read_line().await?;
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let tls = self.is_tls();
        let l = line.clone();
        self.h.session(self.idx, |s| {
            s.commands.push(SinkCommand {
                line: l,
                tls,
                at: Instant::now(),
            })
        });
        Some(line)
    }

    /// Applies a rule if one matches. Some(flow) when the rule answered.
    async fn scripted(&mut self, stage: Stage, subject: &str) -> Option<std::io::Result<Flow>> {
        let rule = self.h.take_rule(stage, subject)?;
        if !rule.delay.is_zero() {
            tokio::time::sleep(rule.delay).await;
        }
        Some(match rule.then {
            Then::Hang => {
                while self.fill().await > 0 {}
                Ok(Flow::End)
            }
            Then::Close => self.reply(&rule.reply).await.map(|_| Flow::End),
            Then::Continue => self.reply(&rule.reply).await.map(|_| Flow::Continue),
        })
    }

    async fn run(&mut self) -> std::io::Result<()> {
        let greeting = format!("220 {} ESMTP Ironpost test sink", self.cfg.hostname);
        match self.scripted(Stage::Greeting, "").await {
            Some(r) => {
                if let Flow::End = r? {
                    return Ok(());
                }
            }
            None => self.reply(&greeting).await?,
        }
        while let Some(line) = self.read_command().await {
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let flow = match verb.as_str() {
                "EHLO" | "HELO" => self.ehlo(&verb, &line).await?,
                "STARTTLS" => self.starttls().await?,
                "AUTH" => self.auth(&line).await?,
                "MAIL" => self.mail(&line).await?,
                "RCPT" => self.rcpt(&line).await?,
                "DATA" => self.data().await?,
                "RSET" => {
                    self.txn = Txn::default();
                    self.reply("250 2.0.0 Ok").await?;
                    Flow::Continue
                }
                "NOOP" => {
                    self.reply("250 2.0.0 Ok").await?;
                    Flow::Continue
                }
                "QUIT" => {
                    self.reply("221 2.0.0 Bye").await?;
                    Flow::End
                }
                _ => {
                    self.reply("500 5.5.2 Command not recognized").await?;
                    Flow::Continue
                }
            };
            if let Flow::End = flow {
                break;
            }
        }
        Ok(())
    }

    fn auth_advertised(&self) -> bool {
        self.cfg
            .auth
            .as_ref()
            .is_some_and(|a| self.is_tls() || !a.only_after_tls)
    }

    async fn ehlo(&mut self, verb: &str, line: &str) -> std::io::Result<Flow> {
        self.txn = Txn::default();
        if let Some(r) = self.scripted(Stage::Ehlo, line).await {
            return r;
        }
        self.ehlo = true;
        let host = self.cfg.hostname.clone();
        if verb == "HELO" {
            self.reply(&format!("250 {host}")).await?;
            return Ok(Flow::Continue);
        }
        let mut lines = vec![host];
        if self.cfg.pipelining {
            lines.push("PIPELINING".into());
        }
        lines.push("SIZE 67108864".into());
        lines.push("8BITMIME".into());
        if !self.is_tls() {
            if let Some(kw) = self.cfg.tls.advertised() {
                lines.push(kw.into());
            }
        }
        if self.auth_advertised() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        let n = lines.len();
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.push_str(&format!("250{sep}{l}\r\n"));
        }
        self.write(out.as_bytes()).await?;
        Ok(Flow::Continue)
    }

    async fn starttls(&mut self) -> std::io::Result<Flow> {
        self.h.session(self.idx, |s| s.starttls_requested = true);
        if self.is_tls() {
            self.reply("503 5.5.1 TLS already active").await?;
            return Ok(Flow::Continue);
        }
        let tls = self.cfg.tls.clone();
        match tls {
            SinkTls::None => {
                self.reply("502 5.5.1 STARTTLS not available").await?;
                Ok(Flow::Continue)
            }
            SinkTls::Stripped => {
                self.reply("500 5.5.2 Command not recognized").await?;
                Ok(Flow::Continue)
            }
            SinkTls::BreakWithClose => {
                self.reply("220 2.0.0 Ready to start TLS").await?;
                self.h.session(self.idx, |s| {
                    s.tls_error = Some("closed after 220 (by design)".into())
                });
                Ok(Flow::End)
            }
            SinkTls::BreakWithGarbage => {
                self.reply("220 2.0.0 Ready to start TLS").await?;
                self.buf.clear();
                // Take the ClientHello off the wire (not recorded as
                // cleartext), then answer with something that is not TLS.
                let mut hello = [0u8; 4096];
                if let Io::Plain(s) = &mut self.io {
                    let _ = timeout(self.cfg.io_timeout, s.read(&mut hello)).await;
                    let _ = s
                        .write_all(b"this is not a TLS server hello\r\n\x00\xff\x00\xff")
                        .await;
                    let _ = s.flush().await;
                }
                self.h.session(self.idx, |s| {
                    s.tls_error = Some("garbage instead of a handshake (by design)".into())
                });
                Ok(Flow::End)
            }
            SinkTls::Offer { .. } => {
                self.reply("220 2.0.0 Ready to start TLS").await?;
                let leftover = std::mem::take(&mut self.buf);
                if !leftover.is_empty() {
                    self.h.session(self.idx, |s| {
                        s.injected_after_starttls.extend_from_slice(&leftover)
                    });
                }
                let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
                    return Ok(Flow::End);
                };
                let acceptor = self.acceptor.clone().expect("acceptor for Offer");
                match timeout(self.cfg.io_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let conn = tls.get_ref().1;
                        let info = (
                            conn.protocol_version()
                                .map(|v| format!("{v:?}"))
                                .unwrap_or_default(),
                            conn.negotiated_cipher_suite()
                                .map(|c| format!("{:?}", c.suite()))
                                .unwrap_or_default(),
                        );
                        self.io = Io::Tls(Box::new(tls));
                        self.h.session(self.idx, |s| s.tls = Some(info));
                        // RFC 3207 4.2: forget everything from before TLS.
                        self.ehlo = false;
                        self.auth_user = None;
                        self.txn = Txn::default();
                        Ok(Flow::Continue)
                    }
                    Ok(Err(e)) => {
                        let msg = e.to_string();
                        self.h.session(self.idx, |s| s.tls_error = Some(msg));
                        Ok(Flow::End)
                    }
                    Err(_) => {
                        self.h.session(self.idx, |s| {
                            s.tls_error = Some("handshake timed out".into())
                        });
                        Ok(Flow::End)
                    }
                }
            }
        }
    }

    async fn auth(&mut self, line: &str) -> std::io::Result<Flow> {
        let mut words = line.split_whitespace().skip(1);
        let mech = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_string);
        let Some(cfg) = self.cfg.auth.clone() else {
            self.reply("502 5.5.1 AUTH not available").await?;
            return Ok(Flow::Continue);
        };
        if self.auth_user.is_some() {
            self.reply("503 5.5.1 Already authenticated").await?;
            return Ok(Flow::Continue);
        }
        let creds: Option<(String, String, String)> = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => {
                        self.reply("334 ").await?;
                        match self.read_command().await {
                            Some(l) => l,
                            None => return Ok(Flow::End),
                        }
                    }
                };
                if resp.trim() == "*" {
                    self.reply("501 5.0.0 AUTH cancelled").await?;
                    return Ok(Flow::Continue);
                }
                decode_base64(&resp).and_then(|raw| {
                    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
                    (parts.len() == 3).then(|| {
                        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                        (s(parts[0]), s(parts[1]), s(parts[2]))
                    })
                })
            }
            "LOGIN" => {
                let user = self.login_prompt("Username:").await?;
                let pass = match user {
                    Some(_) => self.login_prompt("Password:").await?,
                    None => None,
                };
                user.zip(pass).map(|(u, p)| (String::new(), u, p))
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type")
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        let Some((authzid, username, password)) = creds else {
            self.reply("501 5.5.2 Cannot decode AUTH response").await?;
            return Ok(Flow::Continue);
        };
        let tls = self.is_tls();
        let (code, reply) = if cfg.only_after_tls && !tls {
            (530, "530 5.7.0 Must issue a STARTTLS command first")
        } else if username == cfg.username
            && password == cfg.password
            && (authzid.is_empty() || authzid == username)
        {
            (235, "235 2.7.0 Authentication successful")
        } else {
            (535, "535 5.7.8 Authentication credentials invalid")
        };
        let accepted = code == 235;
        if accepted {
            self.auth_user = Some(username.clone());
        }
        lock(&self.h.0.record).auth.push(AuthAttempt {
            session: self.idx,
            mechanism: mech,
            tls,
            authzid,
            username,
            password,
            accepted,
            reply: code,
        });
        self.reply(reply).await?;
        Ok(Flow::Continue)
    }

    /// One AUTH LOGIN round: the base64 prompt, the decoded answer.
    async fn login_prompt(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.reply(&format!("334 {}", encode_base64(prompt.as_bytes())))
            .await?;
        Ok(self
            .read_command()
            .await
            .and_then(|l| decode_base64(&l).map(|b| String::from_utf8_lossy(&b).into_owned())))
    }

    async fn mail(&mut self, line: &str) -> std::io::Result<Flow> {
        if !self.ehlo {
            self.reply("503 5.5.1 Send EHLO first").await?;
            return Ok(Flow::Continue);
        }
        if self.txn.mail.is_some() {
            self.reply("503 5.5.1 Nested MAIL command").await?;
            return Ok(Flow::Continue);
        }
        if self.cfg.auth.as_ref().is_some_and(|a| a.required) && self.auth_user.is_none() {
            self.reply("530 5.7.0 Authentication required").await?;
            return Ok(Flow::Continue);
        }
        if let Some(r) = self.scripted(Stage::Mail, line).await {
            return r;
        }
        self.txn.mail = Some((path_of(line), line.to_string()));
        self.reply("250 2.1.0 Ok").await?;
        Ok(Flow::Continue)
    }

    async fn rcpt(&mut self, line: &str) -> std::io::Result<Flow> {
        if self.txn.mail.is_none() {
            self.reply("503 5.5.1 Need MAIL first").await?;
            return Ok(Flow::Continue);
        }
        let addr = path_of(line);
        let rule = self.h.take_rule(Stage::Rcpt, &addr);
        if let Some(rule) = rule {
            if !rule.delay.is_zero() {
                tokio::time::sleep(rule.delay).await;
            }
            match rule.then {
                Then::Hang => {
                    while self.fill().await > 0 {}
                    return Ok(Flow::End);
                }
                then => {
                    if rule.reply.starts_with('2') {
                        self.txn.rcpts.push(addr);
                    }
                    self.reply(&rule.reply).await?;
                    if then == Then::Close {
                        return Ok(Flow::End);
                    }
                    return Ok(Flow::Continue);
                }
            }
        }
        self.txn.rcpts.push(addr);
        self.reply("250 2.1.5 Ok").await?;
        Ok(Flow::Continue)
    }

    async fn data(&mut self) -> std::io::Result<Flow> {
        if self.txn.mail.is_none() {
            self.reply("503 5.5.1 Need MAIL first").await?;
            return Ok(Flow::Continue);
        }
        if self.txn.rcpts.is_empty() {
            self.reply("554 5.5.1 No valid recipients").await?;
            return Ok(Flow::Continue);
        }
        let subject = self.txn.rcpts.join(" ");
        if let Some(r) = self.scripted(Stage::Data, &subject).await {
            self.txn = Txn::default();
            return r;
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
        let mut raw = Vec::new();
        loop {
            let Some(line) = self.read_line().await else {
                return Ok(Flow::End);
            };
            if line == b".\r\n" {
                break;
            }
            raw.extend_from_slice(&line);
            if raw.len() > MAX_MESSAGE {
                self.reply("552 5.3.4 Message too big").await?;
                return Ok(Flow::End);
            }
        }
        let txn = std::mem::take(&mut self.txn);
        let (mail_from, mail_line) = txn.mail.unwrap_or_default();
        let mut msg = SinkMessage {
            session: self.idx,
            mail_from,
            mail_line,
            rcpt_to: txn.rcpts,
            data: unstuff(&raw),
            raw_data: raw,
            tls: self.is_tls(),
            auth_user: self.auth_user.clone(),
            reply: String::new(),
            accepted: false,
            at: Instant::now(),
        };
        let rule = self.h.take_rule(Stage::DataDot, &subject);
        let (reply, then) = match rule {
            Some(rule) => {
                if !rule.delay.is_zero() {
                    tokio::time::sleep(rule.delay).await;
                }
                if rule.then == Then::Hang {
                    msg.reply = "(no reply: hang)".into();
                    lock(&self.h.0.record).transactions.push(msg);
                    while self.fill().await > 0 {}
                    return Ok(Flow::End);
                }
                (rule.reply, rule.then)
            }
            None => {
                self.accepted += 1;
                (
                    format!("250 2.0.0 Ok: queued as S{}M{}", self.idx, self.accepted),
                    Then::Continue,
                )
            }
        };
        msg.accepted = reply.starts_with('2');
        msg.reply = reply.clone();
        lock(&self.h.0.record).transactions.push(msg);
        self.reply(&reply).await?;
        Ok(if then == Then::Close {
            Flow::End
        } else {
            Flow::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"\0scott\0tiger",
            b"Username:",
        ] {
            assert_eq!(decode_base64(&encode_base64(s)).unwrap(), s);
        }
        assert_eq!(encode_base64(b"\0scott\0tiger"), "AHNjb3R0AHRpZ2Vy");
        assert!(decode_base64("abc").is_none());
        assert!(decode_base64("a=bc").is_none());
    }

    #[test]
    fn paths_and_unstuffing() {
        assert_eq!(path_of("MAIL FROM:<a@b.test> SIZE=10"), "a@b.test");
        assert_eq!(path_of("MAIL FROM:<>"), "");
        assert_eq!(path_of("RCPT TO: <x@y>"), "x@y");
        assert_eq!(unstuff(b"..a\r\nb\r\n..\r\n"), b".a\r\nb\r\n.\r\n");
    }

    #[test]
    fn headers() {
        let m = SinkMessage {
            session: 0,
            mail_from: String::new(),
            mail_line: String::new(),
            rcpt_to: vec![],
            raw_data: vec![],
            data: b"Subject: a\r\n b\r\nX: y\r\n\r\nSubject: no\r\n".to_vec(),
            tls: false,
            auth_user: None,
            reply: String::new(),
            accepted: true,
            at: Instant::now(),
        };
        assert_eq!(m.header("subject").as_deref(), Some("a b"));
        assert_eq!(m.header("x").as_deref(), Some("y"));
        assert_eq!(m.header("z"), None);
    }
}
