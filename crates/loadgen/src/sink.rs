//! `traffic-gen sink`: accepts mail and throws it away, counting it.
//!
//! It is the far end of benchmarks, so it does as little as it can per
//! message: each connection has one read buffer, replies are built from
//! constants and sent in one write per batch of pipelined commands, and the
//! message content is never copied: [`DataScan`] looks for the end of DATA
//! (`CRLF . CRLF`) in the read buffer as it passes.
//!
//! The protocol is [`SessionState::command`], free of I/O; [`Sink`] drives
//! it over TCP and STARTTLS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use memchr::memmem::Finder;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// Read buffer of a connection.
const BUF: usize = 64 * 1024;
/// Longest command line.
const MAX_LINE: usize = 4096;
/// Most recipients in one transaction.
const MAX_RCPTS: u32 = 1000;
/// How often the count file is rewritten (when the count changed).
pub const COUNT_FILE_INTERVAL: Duration = Duration::from_millis(50);

/// What the sink does.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub listen: SocketAddr,
    /// The name in the banner and the EHLO reply.
    pub hostname: String,
    /// Offer STARTTLS with this config.
    pub tls: Option<Arc<ServerConfig>>,
    /// MAIL before STARTTLS gets `530 5.7.0` (needs `tls`).
    pub require_starttls: bool,
    /// Advertised as SIZE; larger messages get `552 5.3.4`.
    pub max_message_size: u64,
    /// Rewritten (temporary file, then rename) with the number of accepted
    /// messages every [`COUNT_FILE_INTERVAL`] while it changes.
    pub count_file: Option<PathBuf>,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2600)),
            hostname: "sink.traffic-gen.test".into(),
            tls: None,
            require_starttls: false,
            max_message_size: 64 << 20,
            count_file: None,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// What the sink counted so far.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Messages answered `250` after the final dot.
    pub accepted: AtomicU64,
    /// Messages refused after the final dot (too big).
    pub rejected: AtomicU64,
    pub connections: AtomicU64,
    /// Connections that completed a TLS handshake.
    pub tls_sessions: AtomicU64,
}

impl SinkCounters {
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// The replies that depend on the configuration, built once.
struct Replies {
    banner: Vec<u8>,
    ehlo_plain: Vec<u8>,
    ehlo_tls: Vec<u8>,
    helo: Vec<u8>,
}

impl Replies {
    fn new(cfg: &SinkConfig) -> Replies {
        let ehlo = |starttls: bool| {
            let mut lines = vec![
                cfg.hostname.clone(),
                "PIPELINING".into(),
                format!("SIZE {}", cfg.max_message_size),
                "8BITMIME".into(),
                "ENHANCEDSTATUSCODES".into(),
            ];
            if starttls {
                lines.push("STARTTLS".into());
            }
            let n = lines.len();
            let mut out = String::new();
            for (i, l) in lines.iter().enumerate() {
                let sep = if i + 1 == n { ' ' } else { '-' };
                out.push_str(&format!("250{sep}{l}\r\n"));
            }
            out.into_bytes()
        };
        Replies {
            banner: format!("220 {} ESMTP traffic-gen sink\r\n", cfg.hostname).into_bytes(),
            ehlo_plain: ehlo(cfg.tls.is_some()),
            ehlo_tls: ehlo(false),
            helo: format!("250 {}\r\n", cfg.hostname).into_bytes(),
        }
    }
}

/// What the driver does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// The reply was 354: message content follows.
    Data,
    /// The reply was 220 to STARTTLS: flush it, then the handshake.
    StartTls,
    /// Flush the replies, then close.
    Close,
}

/// One session's protocol state.
#[derive(Clone, Debug, Default)]
pub struct SessionState {
    pub tls: bool,
    greeted: bool,
    mail: bool,
    rcpts: u32,
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The SIZE= parameter of a MAIL command, if any.
fn size_param(line: &[u8]) -> Option<u64> {
    let params = &line[memchr::memrchr(b'>', line).map_or(line.len(), |p| p + 1)..];
    params
        .split(|&b| b == b' ')
        .find(|w| starts_with_ci(w, b"SIZE="))
        .and_then(|w| std::str::from_utf8(&w[5..]).ok()?.parse().ok())
}

impl SessionState {
    fn reset(&mut self) {
        self.mail = false;
        self.rcpts = 0;
    }

    /// After the TLS handshake: everything from before is forgotten
    /// (RFC 3207 §4.2).
    pub fn start_tls(&mut self) {
        *self = SessionState {
            tls: true,
            ..SessionState::default()
        };
    }

    /// One command line (its line ending removed or not): appends the
    /// reply to `out` and says what happens next.
    fn command(
        &mut self,
        cfg: &SinkConfig,
        replies: &Replies,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Action {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let verb_len = memchr::memchr(b' ', line).unwrap_or(line.len());
        let verb = &line[..verb_len];
        let mut reply = |r: &[u8]| out.extend_from_slice(r);
        let is = |v: &[u8]| verb.eq_ignore_ascii_case(v);
        if is(b"EHLO") || is(b"HELO") {
            if verb_len == line.len() {
                reply(b"501 5.5.4 Syntax: EHLO hostname\r\n");
                return Action::Continue;
            }
            self.reset();
            self.greeted = true;
            if is(b"HELO") {
                reply(&replies.helo);
            } else if self.tls {
                reply(&replies.ehlo_tls);
            } else {
                reply(&replies.ehlo_plain);
            }
        } else if is(b"MAIL") {
            if !self.greeted {
                reply(b"503 5.5.1 Send EHLO first\r\n");
            } else if cfg.require_starttls && !self.tls {
                reply(b"530 5.7.0 Must issue a STARTTLS command first\r\n");
            } else if self.mail {
                reply(b"503 5.5.1 Nested MAIL command\r\n");
            } else if !starts_with_ci(line, b"MAIL FROM:") {
                reply(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
            } else if size_param(line).is_some_and(|n| n > cfg.max_message_size) {
                reply(b"552 5.3.4 Message size exceeds fixed limit\r\n");
            } else {
                self.mail = true;
                reply(b"250 2.1.0 Ok\r\n");
            }
        } else if is(b"RCPT") {
            if !self.mail {
                reply(b"503 5.5.1 Need MAIL command\r\n");
            } else if !starts_with_ci(line, b"RCPT TO:") {
                reply(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n");
            } else if self.rcpts >= MAX_RCPTS {
                reply(b"452 4.5.3 Too many recipients\r\n");
            } else {
                self.rcpts += 1;
                reply(b"250 2.1.5 Ok\r\n");
            }
        } else if is(b"DATA") {
            if !self.mail {
                reply(b"503 5.5.1 Need MAIL command\r\n");
            } else if self.rcpts == 0 {
                reply(b"554 5.5.1 No valid recipients\r\n");
            } else {
                reply(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                return Action::Data;
            }
        } else if is(b"RSET") {
            self.reset();
            reply(b"250 2.0.0 Ok\r\n");
        } else if is(b"NOOP") {
            reply(b"250 2.0.0 Ok\r\n");
        } else if is(b"QUIT") {
            reply(b"221 2.0.0 Bye\r\n");
            return Action::Close;
        } else if is(b"STARTTLS") {
            if self.tls {
                reply(b"503 5.5.1 TLS already active\r\n");
            } else if cfg.tls.is_none() {
                reply(b"502 5.5.1 STARTTLS not available\r\n");
            } else {
                reply(b"220 2.0.0 Ready to start TLS\r\n");
                return Action::StartTls;
            }
        } else if is(b"VRFY") {
            reply(b"252 2.5.0 Cannot VRFY user\r\n");
        } else if is(b"AUTH") || is(b"BDAT") || is(b"EXPN") || is(b"HELP") {
            reply(b"502 5.5.1 Command not implemented\r\n");
        } else {
            reply(b"500 5.5.2 Command not recognized\r\n");
        }
        Action::Continue
    }

    /// The final dot of a message of `size` bytes was seen.
    fn end_of_data(
        &mut self,
        cfg: &SinkConfig,
        counters: &SinkCounters,
        size: u64,
        out: &mut Vec<u8>,
    ) {
        self.reset();
        if size > cfg.max_message_size {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            out.extend_from_slice(b"552 5.3.4 Message too big\r\n");
        } else {
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
        }
    }
}

static END_OF_DATA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n.\r\n"));

/// Finds the end of DATA in content that arrives in pieces, without
/// copying it: only the last four bytes of each piece are kept.
#[derive(Clone, Debug)]
pub struct DataScan {
    tail: [u8; 4],
    tail_len: usize,
    /// Bytes seen so far.
    seen: u64,
}

impl Default for DataScan {
    fn default() -> Self {
        // Content starts at the beginning of a line: as if after a CRLF,
        // so that `.` CRLF at once is an empty message.
        DataScan {
            tail: [b'\r', b'\n', 0, 0],
            tail_len: 2,
            seen: 0,
        }
    }
}

impl DataScan {
    /// The next piece. `Some((used, size))` when the end of DATA is in it:
    /// `used` bytes of `chunk` up to and including the final `.` CRLF, and
    /// the size of the message (its content without the final `.` CRLF).
    pub fn feed(&mut self, chunk: &[u8]) -> Option<(usize, u64)> {
        let t = self.tail_len;
        let head = chunk.len().min(4);
        let mut window = [0u8; 8];
        window[..t].copy_from_slice(&self.tail[..t]);
        window[t..t + head].copy_from_slice(&chunk[..head]);
        let window = &window[..t + head];
        let end = END_OF_DATA
            .find(window)
            .map(|p| p + 5 - t)
            .or_else(|| END_OF_DATA.find(chunk).map(|p| p + 5));
        if let Some(end) = end {
            let size = (self.seen + end as u64).saturating_sub(3);
            *self = DataScan::default();
            return Some((end, size));
        }
        self.seen += chunk.len() as u64;
        let keep = window.len().min(4);
        if chunk.len() >= 4 {
            self.tail.copy_from_slice(&chunk[chunk.len() - 4..]);
        } else {
            let w = window.len();
            self.tail[..keep].copy_from_slice(&window[w - keep..]);
        }
        self.tail_len = keep;
        None
    }
}

struct Shared {
    cfg: SinkConfig,
    replies: Replies,
    counters: Arc<SinkCounters>,
}

enum Next {
    Close,
    StartTls,
}

struct Session<'a> {
    shared: &'a Shared,
    state: SessionState,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    data: Option<DataScan>,
}

impl Session<'_> {
    /// Serves commands (and message content) until the client leaves or
    /// STARTTLS is accepted.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<Next> {
        let Shared {
            cfg,
            replies,
            counters,
        } = self.shared;
        loop {
            while self.start < self.end {
                let avail = &self.buf[self.start..self.end];
                if let Some(scan) = &mut self.data {
                    match scan.feed(avail) {
                        Some((used, size)) => {
                            self.start += used;
                            self.data = None;
                            self.state.end_of_data(cfg, counters, size, &mut self.out);
                        }
                        None => self.start = self.end,
                    }
                    continue;
                }
                let Some(nl) = memchr::memchr(b'\n', avail) else {
                    if avail.len() > MAX_LINE {
                        self.out.extend_from_slice(b"500 5.5.6 Line too long\r\n");
                        self.flush(io).await?;
                        return Ok(Next::Close);
                    }
                    break;
                };
                let action = self
                    .state
                    .command(cfg, replies, &avail[..=nl], &mut self.out);
                self.start += nl + 1;
                match action {
                    Action::Continue => {}
                    Action::Data => self.data = Some(DataScan::default()),
                    Action::Close => {
                        self.flush(io).await?;
                        return Ok(Next::Close);
                    }
                    Action::StartTls => {
                        self.flush(io).await?;
                        // Whatever was sent behind STARTTLS in clear is
                        // dropped, never read as if it came over TLS.
                        self.start = 0;
                        self.end = 0;
                        return Ok(Next::StartTls);
                    }
                }
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.buf.len() - self.end < MAX_LINE {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            self.flush(io).await?;
            let read = io.read(&mut self.buf[self.end..]);
            let n = match tokio::time::timeout(cfg.idle_timeout, read).await {
                Ok(r) => r?,
                Err(_) => {
                    self.out
                        .extend_from_slice(b"421 4.4.2 Idle for too long, closing\r\n");
                    self.flush(io).await?;
                    return Ok(Next::Close);
                }
            };
            if n == 0 {
                return Ok(Next::Close);
            }
            self.end += n;
        }
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        if !self.out.is_empty() {
            io.write_all(&self.out).await?;
            io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }
}

async fn handle(mut tcp: TcpStream, shared: Arc<Shared>) {
    let mut session = Session {
        shared: &shared,
        state: SessionState::default(),
        buf: vec![0u8; BUF],
        start: 0,
        end: 0,
        out: Vec::with_capacity(1024),
        data: None,
    };
    session.out.extend_from_slice(&shared.replies.banner);
    let Ok(Next::StartTls) = session.drive(&mut tcp).await else {
        let _ = tcp.shutdown().await;
        return;
    };
    let Some(config) = shared.cfg.tls.clone() else {
        return;
    };
    let accept = TlsAcceptor::from(config).accept(tcp);
    let Ok(Ok(mut tls)) = tokio::time::timeout(shared.cfg.idle_timeout, accept).await else {
        return;
    };
    shared.counters.tls_sessions.fetch_add(1, Ordering::Relaxed);
    session.state.start_tls();
    let _ = session.drive(&mut tls).await;
    let _ = tls.shutdown().await;
}

/// Writes `count` to `path` through a temporary file and a rename, so a
/// reader never sees a partial number.
fn write_count(path: &Path, count: u64) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{count}\n"))?;
    std::fs::rename(&tmp, path)
}

async fn count_file_loop(path: PathBuf, counters: Arc<SinkCounters>) {
    let mut tick = tokio::time::interval(COUNT_FILE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    let mut warned = false;
    loop {
        tick.tick().await;
        let n = counters.accepted();
        if last == Some(n) {
            continue;
        }
        match write_count(&path, n) {
            Ok(()) => last = Some(n),
            Err(e) if !warned => {
                warned = true;
                eprintln!("traffic-gen sink: {}: {e}", path.display());
            }
            Err(_) => {}
        }
    }
}

/// A bound sink; [`serve`](Sink::serve) runs it.
pub struct Sink {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Sink {
    pub async fn bind(cfg: SinkConfig) -> Result<Sink, Error> {
        if cfg.require_starttls && cfg.tls.is_none() {
            return Err(Error::Config(
                "requiring STARTTLS needs a TLS configuration".into(),
            ));
        }
        if cfg.hostname.is_empty() || !cfg.hostname.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "host name {:?} is not a domain",
                cfg.hostname
            )));
        }
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: cfg.listen.to_string(),
                source,
            })?;
        Ok(Sink {
            listener,
            shared: Arc::new(Shared {
                replies: Replies::new(&cfg),
                cfg,
                counters: Arc::default(),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.cfg.listen)
    }

    /// The counters, readable while the sink runs.
    pub fn counters(&self) -> Arc<SinkCounters> {
        self.shared.counters.clone()
    }

    /// Accepts connections until `shutdown` completes, then closes them
    /// all, writes the count file a last time and returns the number of
    /// accepted messages.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<u64, Error> {
        let counters = self.shared.counters.clone();
        let count_file = self.shared.cfg.count_file.clone();
        let writer = match &count_file {
            Some(path) => {
                write_count(path, 0).map_err(|source| Error::File {
                    path: path.clone(),
                    source,
                })?;
                Some(tokio::spawn(count_file_loop(
                    path.clone(),
                    counters.clone(),
                )))
            }
            None => None,
        };
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        counters.connections.fetch_add(1, Ordering::Relaxed);
                        sessions.spawn(handle(tcp, self.shared.clone()));
                    }
                    // Out of descriptors, say: wait rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        sessions.abort_all();
        if let Some(w) = writer {
            w.abort();
        }
        let total = counters.accepted();
        if let Some(path) = &count_file {
            write_count(path, total).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(pieces: &[&[u8]]) -> Option<(usize, usize, u64)> {
        let mut s = DataScan::default();
        for (i, p) in pieces.iter().enumerate() {
            if let Some((used, size)) = s.feed(p) {
                return Some((i, used, size));
            }
        }
        None
    }

    #[test]
    fn end_of_data_in_one_piece() {
        assert_eq!(scan_all(&[b".\r\n"]), Some((0, 3, 0)));
        assert_eq!(scan_all(&[b"a\r\n.\r\nMAIL"]), Some((0, 6, 3)));
        assert_eq!(scan_all(&[b"a\r\n..\r\nb\r\n.\r\n"]), Some((0, 13, 10)));
        // Bare LF does not end it; a dot inside a line does not either.
        assert_eq!(scan_all(&[b"a\n.\nb.\r\n"]), None);
    }

    #[test]
    fn end_of_data_split_anywhere() {
        let msg = b"Subject: x\r\n\r\nline\r\n..dot\r\n.\r\nQUIT\r\n";
        let end = msg.len() - 6;
        for cut1 in 0..msg.len() {
            for cut2 in cut1..msg.len() {
                let pieces: [&[u8]; 3] = [&msg[..cut1], &msg[cut1..cut2], &msg[cut2..]];
                let mut s = DataScan::default();
                let mut offset = 0;
                let mut found = None;
                for p in pieces {
                    if let Some((used, size)) = s.feed(p) {
                        found = Some((offset + used, size));
                        break;
                    }
                    offset += p.len();
                }
                assert_eq!(found, Some((end, (end - 3) as u64)), "cuts {cut1} {cut2}");
            }
        }
        // Byte by byte, starting with the dot line.
        let mut s = DataScan::default();
        assert_eq!(s.feed(b"."), None);
        assert_eq!(s.feed(b"\r"), None);
        assert_eq!(s.feed(b"\n"), Some((1, 0)));
    }

    fn session(cfg: &SinkConfig) -> (SessionState, Replies) {
        (SessionState::default(), Replies::new(cfg))
    }

    fn say(st: &mut SessionState, cfg: &SinkConfig, r: &Replies, line: &str) -> (Action, String) {
        let mut out = Vec::new();
        let a = st.command(cfg, r, line.as_bytes(), &mut out);
        (a, String::from_utf8(out).unwrap())
    }

    #[test]
    fn dialogue() {
        let cfg = SinkConfig::default();
        let (mut st, r) = session(&cfg);
        assert!(say(&mut st, &cfg, &r, "MAIL FROM:<a@b>\r\n")
            .1
            .starts_with("503 5.5.1"));
        let (_, ehlo) = say(&mut st, &cfg, &r, "EHLO me\r\n");
        assert!(ehlo.contains("250-PIPELINING\r\n"), "{ehlo}");
        assert!(ehlo.contains("8BITMIME"), "{ehlo}");
        assert!(ehlo.contains("SIZE 67108864"), "{ehlo}");
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(ehlo.ends_with("250 ENHANCEDSTATUSCODES\r\n"), "{ehlo}");
        assert!(say(&mut st, &cfg, &r, "DATA\r\n").1.starts_with("503"));
        assert_eq!(
            say(&mut st, &cfg, &r, "mail from:<a@b> SIZE=100000000").1,
            "552 5.3.4 Message size exceeds fixed limit\r\n"
        );
        assert_eq!(
            say(&mut st, &cfg, &r, "MAIL FROM:<a@b> SIZE=10\r\n").1,
            "250 2.1.0 Ok\r\n"
        );
        assert!(say(&mut st, &cfg, &r, "DATA\r\n")
            .1
            .starts_with("554 5.5.1"));
        assert_eq!(
            say(&mut st, &cfg, &r, "RCPT TO:<c@d>\r\n").1,
            "250 2.1.5 Ok\r\n"
        );
        let (a, reply) = say(&mut st, &cfg, &r, "DATA\r\n");
        assert_eq!(a, Action::Data);
        assert!(reply.starts_with("354 "));
        let counters = SinkCounters::default();
        let mut out = Vec::new();
        st.end_of_data(&cfg, &counters, 10, &mut out);
        assert_eq!(out, b"250 2.0.0 Ok: queued\r\n");
        assert_eq!(counters.accepted(), 1);
        assert!(say(&mut st, &cfg, &r, "RCPT TO:<c@d>\r\n")
            .1
            .starts_with("503"));
        assert!(say(&mut st, &cfg, &r, "STARTTLS\r\n").1.starts_with("502"));
        assert!(say(&mut st, &cfg, &r, "XYZZY\r\n")
            .1
            .starts_with("500 5.5.2"));
        assert_eq!(
            say(&mut st, &cfg, &r, "QUIT\r\n"),
            (Action::Close, "221 2.0.0 Bye\r\n".into())
        );
    }

    #[test]
    fn starttls_required() {
        let tls = crate::tls::self_signed_server_config(&["localhost".into()]).unwrap();
        let cfg = SinkConfig {
            tls: Some(tls),
            require_starttls: true,
            ..SinkConfig::default()
        };
        let (mut st, r) = session(&cfg);
        assert!(say(&mut st, &cfg, &r, "EHLO me")
            .1
            .contains("250 STARTTLS\r\n"));
        assert_eq!(
            say(&mut st, &cfg, &r, "MAIL FROM:<a@b>").1,
            "530 5.7.0 Must issue a STARTTLS command first\r\n"
        );
        assert_eq!(say(&mut st, &cfg, &r, "STARTTLS").0, Action::StartTls);
        st.start_tls();
        assert!(say(&mut st, &cfg, &r, "MAIL FROM:<a@b>")
            .1
            .starts_with("503"));
        assert!(!say(&mut st, &cfg, &r, "EHLO me").1.contains("STARTTLS"));
        assert!(say(&mut st, &cfg, &r, "MAIL FROM:<a@b>")
            .1
            .starts_with("250"));
        assert!(say(&mut st, &cfg, &r, "STARTTLS").1.starts_with("503"));
    }
}
