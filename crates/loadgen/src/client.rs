//! The SMTP client of traffic-gen.
//!
//! [`Transaction`] is the mail transaction as a state machine without I/O:
//! it writes the commands (MAIL, RCPT and DATA together when the server
//! offers PIPELINING) and, fed each reply, says what comes next. Reply
//! parsing and EHLO capabilities are smtp-client's pure pieces.
//! [`Connection`] drives them over TCP and STARTTLS, timing each phase.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_smtp_client::{parse_reply, Capabilities, Reply};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Phase};
use crate::stats::{Recorder, Timing};

/// What a connection does once a transaction is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Ready for the next transaction.
    Reuse,
    /// A transaction may still be open on the server: RSET first.
    Reset,
    /// The connection cannot be used any more.
    Close,
}

/// What the driver does next.
#[derive(Debug)]
pub enum Step {
    /// Write what was appended to the output buffer (if anything), then
    /// read the next reply.
    Read,
    /// Write the message (ending with `.` CRLF), then read the reply.
    Body,
    /// The transaction is over.
    Done(Result<(), Error>, After),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    Mail,
    Rcpt,
    Data,
    Dot,
    Over,
}

/// One mail transaction with one recipient.
#[derive(Debug)]
pub struct Transaction {
    pipelined: bool,
    waiting: Waiting,
    rcpt_line: Vec<u8>,
    mail: Option<Reply>,
    rcpt: Option<Reply>,
}

impl Transaction {
    /// Starts a transaction: appends to `out` what to send first (MAIL,
    /// RCPT and DATA at once with `pipelining`, else MAIL alone). `size`
    /// goes in `SIZE=` when given (when the server advertised SIZE).
    pub fn begin(
        pipelining: bool,
        sender: &str,
        recipient: &str,
        size: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Transaction {
        let _ = write!(out, "MAIL FROM:<{sender}>");
        if let Some(n) = size {
            let _ = write!(out, " SIZE={n}");
        }
        out.extend_from_slice(b"\r\n");
        let mut rcpt_line = Vec::with_capacity(recipient.len() + 12);
        let _ = write!(rcpt_line, "RCPT TO:<{recipient}>\r\n");
        if pipelining {
            out.extend_from_slice(&rcpt_line);
            out.extend_from_slice(b"DATA\r\n");
        }
        Transaction {
            pipelined: pipelining,
            waiting: Waiting::Mail,
            rcpt_line,
            mail: None,
            rcpt: None,
        }
    }

    /// The next reply from the server; may append the next command to `out`.
    pub fn on_reply(&mut self, reply: Reply, out: &mut Vec<u8>) -> Step {
        let done = |r: Result<(), Error>, after: After| Step::Done(r, after);
        match self.waiting {
            Waiting::Mail => {
                if reply.code == 421 {
                    self.waiting = Waiting::Over;
                    return done(Err(Error::rejected(Phase::Mail, &reply)), After::Close);
                }
                if self.pipelined {
                    self.mail = Some(reply);
                    self.waiting = Waiting::Rcpt;
                    return Step::Read;
                }
                if !reply.is_positive() {
                    self.waiting = Waiting::Over;
                    return done(Err(Error::rejected(Phase::Mail, &reply)), After::Reuse);
                }
                out.extend_from_slice(&self.rcpt_line);
                self.waiting = Waiting::Rcpt;
                Step::Read
            }
            Waiting::Rcpt => {
                if reply.code == 421 {
                    self.waiting = Waiting::Over;
                    return done(Err(Error::rejected(Phase::Rcpt, &reply)), After::Close);
                }
                if self.pipelined {
                    self.rcpt = Some(reply);
                    self.waiting = Waiting::Data;
                    return Step::Read;
                }
                if !reply.is_positive() {
                    self.waiting = Waiting::Over;
                    return done(Err(Error::rejected(Phase::Rcpt, &reply)), After::Reset);
                }
                out.extend_from_slice(b"DATA\r\n");
                self.waiting = Waiting::Data;
                Step::Read
            }
            Waiting::Data => {
                let mail_ok = self.mail.as_ref().is_none_or(Reply::is_positive);
                let rcpt_ok = self.rcpt.as_ref().is_none_or(Reply::is_positive);
                if reply.code == 354 {
                    if mail_ok && rcpt_ok {
                        self.waiting = Waiting::Dot;
                        return Step::Body;
                    }
                    // The two sides disagree about the envelope: sending
                    // anything now could be taken as a message.
                    self.waiting = Waiting::Over;
                    return done(
                        Err(Error::Protocol {
                            phase: Phase::Data,
                            detail: "354 after a refused MAIL or RCPT".into(),
                        }),
                        After::Close,
                    );
                }
                self.waiting = Waiting::Over;
                let (phase, failed) = match (&self.mail, &self.rcpt) {
                    (Some(m), _) if !m.is_positive() => (Phase::Mail, m),
                    (_, Some(r)) if !r.is_positive() => (Phase::Rcpt, r),
                    _ => (Phase::Data, &reply),
                };
                let after = if reply.code == 421 {
                    After::Close
                } else if mail_ok {
                    After::Reset
                } else {
                    After::Reuse
                };
                done(Err(Error::rejected(phase, failed)), after)
            }
            Waiting::Dot => {
                self.waiting = Waiting::Over;
                if reply.is_positive() {
                    done(Ok(()), After::Reuse)
                } else {
                    let after = if reply.code == 421 {
                        After::Close
                    } else {
                        After::Reuse
                    };
                    done(Err(Error::rejected(Phase::DataEnd, &reply)), after)
                }
            }
            Waiting::Over => done(
                Err(Error::Protocol {
                    phase: Phase::DataEnd,
                    detail: "reply after the end of the transaction".into(),
                }),
                After::Close,
            ),
        }
    }

    /// The phase whose reply is awaited (for timeouts and closed
    /// connections).
    pub fn phase(&self) -> Phase {
        match self.waiting {
            Waiting::Mail => Phase::Mail,
            Waiting::Rcpt => Phase::Rcpt,
            Waiting::Data => Phase::Data,
            Waiting::Dot | Waiting::Over => Phase::DataEnd,
        }
    }
}

/// How to reach the server and what to do before sending mail.
#[derive(Clone)]
pub struct ClientSettings {
    pub addr: SocketAddr,
    pub ehlo_name: String,
    /// STARTTLS with this config and server name (SNI and verification).
    pub starttls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// AUTH PLAIN with this initial response (base64), after TLS.
    pub auth_plain: Option<String>,
    /// Limit for each step (connect, each reply, each write).
    pub timeout: Duration,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An open SMTP session, past EHLO (and STARTTLS and AUTH when asked).
pub struct Connection {
    stream: Stream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    caps: Capabilities,
    timeout: Duration,
}

async fn within<T>(
    phase: Phase,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(Error::Timeout(phase)))
}

impl Connection {
    /// Connects, reads the banner, EHLO, then STARTTLS, EHLO again and AUTH
    /// as `settings` ask, recording the time of each phase in `stats`.
    pub async fn open(
        settings: &ClientSettings,
        stats: &mut impl Recorder,
    ) -> Result<Connection, Error> {
        let limit = settings.timeout;
        let t = Instant::now();
        let tcp = tokio::time::timeout(limit, TcpStream::connect(settings.addr))
            .await
            .map_err(|_| Error::Timeout(Phase::Connect))?
            .map_err(Error::Connect)?;
        let _ = tcp.set_nodelay(true);
        stats.record(Timing::Connect, t.elapsed());
        let mut c = Connection {
            stream: Stream::Plain(tcp),
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(1024),
            caps: Capabilities::default(),
            timeout: limit,
        };
        let t = Instant::now();
        let banner = c.read_reply(Phase::Banner).await?;
        if !banner.is_positive() {
            return Err(Error::rejected(Phase::Banner, &banner));
        }
        stats.record(Timing::Banner, t.elapsed());
        c.ehlo(&settings.ehlo_name, stats).await?;
        if let Some((config, name)) = &settings.starttls {
            if !c.caps.starttls {
                return Err(Error::NotOffered("STARTTLS"));
            }
            let t = Instant::now();
            let reply = c.command(Phase::StartTls, b"STARTTLS\r\n").await?;
            if reply.code != 220 {
                return Err(Error::rejected(Phase::StartTls, &reply));
            }
            if !c.rbuf.is_empty() {
                return Err(Error::Protocol {
                    phase: Phase::StartTls,
                    detail: "data after the STARTTLS reply, before the handshake".into(),
                });
            }
            let Stream::Plain(tcp) = c.stream else {
                unreachable!("STARTTLS is only sent in clear")
            };
            let connector = TlsConnector::from(config.clone());
            let tls = tokio::time::timeout(limit, connector.connect(name.clone(), tcp))
                .await
                .map_err(|_| Error::Timeout(Phase::TlsHandshake))?
                .map_err(|e| Error::Tls(handshake_error(&e)))?;
            c.stream = Stream::Tls(Box::new(tls));
            stats.record(Timing::StartTls, t.elapsed());
            c.ehlo(&settings.ehlo_name, stats).await?;
        }
        if let Some(initial) = &settings.auth_plain {
            if !c.caps.supports_auth("PLAIN") {
                return Err(Error::NotOffered("AUTH PLAIN"));
            }
            let t = Instant::now();
            let line = format!("AUTH PLAIN {initial}\r\n");
            let reply = c.command(Phase::Auth, line.as_bytes()).await?;
            if reply.code != 235 {
                return Err(Error::rejected(Phase::Auth, &reply));
            }
            stats.record(Timing::Auth, t.elapsed());
        }
        Ok(c)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    async fn ehlo(&mut self, name: &str, stats: &mut impl Recorder) -> Result<(), Error> {
        let t = Instant::now();
        let line = format!("EHLO {name}\r\n");
        let reply = self.command(Phase::Ehlo, line.as_bytes()).await?;
        if !reply.is_positive() {
            return Err(Error::rejected(Phase::Ehlo, &reply));
        }
        self.caps = Capabilities::from_ehlo(&reply);
        stats.record(Timing::Ehlo, t.elapsed());
        Ok(())
    }

    /// One transaction: `message` is the content as on the wire, ending
    /// with `.` CRLF. Returns its outcome and what the connection is good
    /// for afterwards (a reset, when needed, is done here).
    pub async fn send(
        &mut self,
        sender: &str,
        recipient: &str,
        message: &[u8],
    ) -> (Result<(), Error>, After) {
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        let size = self.caps.size.map(|_| (message.len() - 3) as u64);
        let mut txn = Transaction::begin(self.caps.pipelining, sender, recipient, size, &mut out);
        let result = loop {
            let phase = txn.phase();
            if !out.is_empty() {
                if let Err(e) = self.write(phase, &out).await {
                    break (Err(e), After::Close);
                }
                out.clear();
            }
            let reply = match self.read_reply(phase).await {
                Ok(r) => r,
                Err(e) => break (Err(e), After::Close),
            };
            match txn.on_reply(reply, &mut out) {
                Step::Read => {}
                Step::Body => {
                    if let Err(e) = self.write(Phase::DataEnd, message).await {
                        break (Err(e), After::Close);
                    }
                }
                Step::Done(r, after) => break (r, after),
            }
        };
        self.wbuf = out;
        match result {
            (r, After::Reset) => {
                let after = match self.command(Phase::Rset, b"RSET\r\n").await {
                    Ok(reply) if reply.is_positive() => After::Reuse,
                    _ => After::Close,
                };
                (r, after)
            }
            other => other,
        }
    }

    /// QUIT (its reply is waited for briefly) and close.
    pub async fn quit(mut self) {
        let limit = self.timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(limit, async {
            if self.write(Phase::Quit, b"QUIT\r\n").await.is_ok() {
                let _ = self.read_reply(Phase::Quit).await;
            }
            let _ = match &mut self.stream {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
            };
        })
        .await;
    }

    async fn command(&mut self, phase: Phase, line: &[u8]) -> Result<Reply, Error> {
        self.write(phase, line).await?;
        self.read_reply(phase).await
    }

    async fn write(&mut self, phase: Phase, data: &[u8]) -> Result<(), Error> {
        let io = |source| Error::Io { phase, source };
        within(phase, self.timeout, async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(data).await.map_err(io),
                Stream::Tls(s) => {
                    s.write_all(data).await.map_err(io)?;
                    s.flush().await.map_err(io)
                }
            }
        })
        .await
    }

    async fn read_reply(&mut self, phase: Phase) -> Result<Reply, Error> {
        within(phase, self.timeout, async {
            let mut tmp = [0u8; 4096];
            loop {
                if !self.rbuf.is_empty() {
                    match parse_reply(&self.rbuf) {
                        Some(Ok((reply, used))) => {
                            self.rbuf.drain(..used);
                            return Ok(reply);
                        }
                        Some(Err(e)) => {
                            return Err(Error::Protocol {
                                phase,
                                detail: e.to_string(),
                            })
                        }
                        None => {}
                    }
                }
                let n = match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut tmp).await,
                    Stream::Tls(s) => s.read(&mut tmp).await,
                }
                .map_err(|source| Error::Io { phase, source })?;
                if n == 0 {
                    return Err(Error::Closed(phase));
                }
                self.rbuf.extend_from_slice(&tmp[..n]);
            }
        })
        .await
    }
}

/// The rustls error inside tokio-rustls's io::Error, when there is one.
fn handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Reply {
        let raw = format!("{text}\r\n");
        parse_reply(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn pipelined_success() {
        let mut out = Vec::new();
        let mut t = Transaction::begin(true, "a@b.test", "c@d.test", Some(100), &mut out);
        assert_eq!(
            out,
            b"MAIL FROM:<a@b.test> SIZE=100\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        );
        out.clear();
        assert!(matches!(
            t.on_reply(reply("250 2.1.0 ok"), &mut out),
            Step::Read
        ));
        assert!(matches!(
            t.on_reply(reply("250 2.1.5 ok"), &mut out),
            Step::Read
        ));
        assert!(matches!(t.on_reply(reply("354 go"), &mut out), Step::Body));
        assert!(out.is_empty());
        assert!(matches!(
            t.on_reply(reply("250 2.0.0 ok"), &mut out),
            Step::Done(Ok(()), After::Reuse)
        ));
    }

    #[test]
    fn pipelined_refused_recipient_resets() {
        let mut out = Vec::new();
        let mut t = Transaction::begin(true, "a@b.test", "c@d.test", None, &mut out);
        t.on_reply(reply("250 ok"), &mut out);
        t.on_reply(reply("550 5.1.1 no such user"), &mut out);
        match t.on_reply(reply("554 5.5.1 no valid recipients"), &mut out) {
            Step::Done(Err(e), After::Reset) => {
                assert_eq!(e.key(), "550 5.1.1");
                assert_eq!(e.phase(), Some(Phase::Rcpt));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pipelined_354_after_refusal_closes() {
        let mut out = Vec::new();
        let mut t = Transaction::begin(true, "a@b.test", "c@d.test", None, &mut out);
        t.on_reply(reply("550 no"), &mut out);
        t.on_reply(reply("503 need mail"), &mut out);
        assert!(matches!(
            t.on_reply(reply("354 go"), &mut out),
            Step::Done(Err(Error::Protocol { .. }), After::Close)
        ));
    }

    #[test]
    fn pipelined_421_stops_at_once() {
        let mut out = Vec::new();
        let mut t = Transaction::begin(true, "a@b.test", "c@d.test", None, &mut out);
        assert!(matches!(
            t.on_reply(reply("421 4.3.2 shutting down"), &mut out),
            Step::Done(Err(_), After::Close)
        ));
    }

    #[test]
    fn sequential_steps_and_final_refusal() {
        let mut out = Vec::new();
        let mut t = Transaction::begin(false, "a@b.test", "c@d.test", None, &mut out);
        assert_eq!(out, b"MAIL FROM:<a@b.test>\r\n");
        out.clear();
        assert!(matches!(t.on_reply(reply("250 ok"), &mut out), Step::Read));
        assert_eq!(out, b"RCPT TO:<c@d.test>\r\n");
        out.clear();
        assert!(matches!(t.on_reply(reply("250 ok"), &mut out), Step::Read));
        assert_eq!(out, b"DATA\r\n");
        out.clear();
        assert!(matches!(t.on_reply(reply("354 go"), &mut out), Step::Body));
        match t.on_reply(reply("451 4.3.0 later"), &mut out) {
            Step::Done(Err(e), After::Reuse) => assert_eq!(e.key(), "451 4.3.0"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sequential_refused_mail_is_reusable() {
        let mut out = Vec::new();
        let mut t = Transaction::begin(false, "a@b.test", "c@d.test", None, &mut out);
        out.clear();
        assert!(matches!(
            t.on_reply(reply("530 5.7.0 starttls first"), &mut out),
            Step::Done(Err(_), After::Reuse)
        ));
        assert!(out.is_empty());
    }
}
