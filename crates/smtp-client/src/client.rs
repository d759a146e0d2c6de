//! The SMTP client session over a socket: the I/O around the pure pieces.
//!
//! Any error other than a server's rejection leaves the connection
//! unusable (the protocol state is unknown), and so does a 421 reply;
//! further commands then fail with [`ClientError::Unusable`].

use crate::body::DotStuffer;
use crate::caps::Capabilities;
use crate::command::{
    auth_plain_response, hello_command, mail_from_command, needs_smtputf8, rcpt_to_command,
    MailParams, TransactionResult,
};
use crate::error::{ClientError, Phase, TlsError};
use crate::reply::{parse_reply, Reply};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

/// Size of the message chunks read and written during DATA.
const CHUNK: usize = 64 * 1024;

/// How long each phase may take. RFC 5321 §4.5.3.2 gives the minimums a
/// client should wait; the connect, TLS, AUTH, RSET and QUIT limits, which
/// it does not cover, are shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Waiting for the 220 greeting.
    pub banner: Duration,
    /// EHLO, and HELO after a refused EHLO.
    pub ehlo: Duration,
    /// The STARTTLS command and, separately, the handshake.
    pub starttls: Duration,
    pub auth: Duration,
    pub mail_from: Duration,
    pub rcpt_to: Duration,
    /// The DATA command, until the 354.
    pub data: Duration,
    /// Writing each chunk of the message.
    pub data_block: Duration,
    /// The reply after the final dot.
    pub data_dot: Duration,
    pub rset: Duration,
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: Duration::from_secs(60),
            banner: min(5),
            ehlo: min(5),
            starttls: Duration::from_secs(60),
            auth: Duration::from_secs(60),
            mail_from: min(5),
            rcpt_to: min(5),
            data: min(2),
            data_block: min(3),
            data_dot: min(10),
            rset: Duration::from_secs(60),
            quit: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// The same limit for every phase (tests).
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            banner: d,
            ehlo: d,
            starttls: d,
            auth: d,
            mail_from: d,
            rcpt_to: d,
            data: d,
            data_block: d,
            data_dot: d,
            rset: d,
            quit: d,
        }
    }
}

/// What STARTTLS negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub protocol_version: String,
    /// IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The chain the server presented, leaf first.
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Lost during a failed TLS handshake.
    Gone,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Gone => Ok(()),
        };
    }
}

/// One SMTP connection to one server.
pub struct SmtpClient {
    stream: Stream,
    rbuf: Vec<u8>,
    timeouts: Timeouts,
    caps: Capabilities,
    tls: Option<TlsInfo>,
    usable: bool,
    peer: SocketAddr,
    local: SocketAddr,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("tls", &self.tls.as_ref().map(|t| &t.protocol_version))
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

async fn within<T>(
    phase: Phase,
    limit: Duration,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout(phase)))
}

impl SmtpClient {
    /// Connect to `addr`, from `source` when given, and read the greeting.
    /// A greeting other than 2xx is an error carrying the reply.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        timeouts: &Timeouts,
    ) -> Result<(SmtpClient, Reply), ClientError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ClientError::Connect)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(ClientError::Connect)?;
        }
        let tcp = match tokio::time::timeout(timeouts.connect, socket.connect(addr)).await {
            Err(_) => return Err(ClientError::Timeout(Phase::Connect)),
            Ok(r) => r.map_err(ClientError::Connect)?,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(ClientError::Connect)?;
        let mut client = SmtpClient {
            stream: Stream::Plain(tcp),
            rbuf: Vec::with_capacity(4096),
            timeouts: *timeouts,
            caps: Capabilities::default(),
            tls: None,
            usable: true,
            peer: addr,
            local,
        };
        let greeting = client.read(Phase::Banner, timeouts.banner).await?;
        if !greeting.is_positive() {
            client.usable = false;
            return Err(ClientError::Rejected {
                phase: Phase::Banner,
                reply: greeting,
            });
        }
        Ok((client, greeting))
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// False once an error left the session in an unknown state.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn timeouts_mut(&mut self) -> &mut Timeouts {
        &mut self.timeouts
    }

    /// EHLO, falling back to HELO when the server refuses EHLO with a 5xx.
    /// The capabilities are kept for the following commands.
    pub async fn ehlo(&mut self, name: &str) -> Result<Capabilities, ClientError> {
        let line = hello_command("EHLO", name)?;
        let reply = self.command(Phase::Ehlo, &line, self.timeouts.ehlo).await?;
        if reply.is_positive() {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(self.caps.clone());
        }
        if !reply.is_permanent() {
            return Err(ClientError::Rejected {
                phase: Phase::Ehlo,
                reply,
            });
        }
        let line = hello_command("HELO", name)?;
        let reply = self.command(Phase::Helo, &line, self.timeouts.ehlo).await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected {
                phase: Phase::Helo,
                reply,
            });
        }
        self.caps = Capabilities {
            esmtp: false,
            domain: reply
                .lines
                .first()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("")
                .to_string(),
            ..Capabilities::default()
        };
        Ok(self.caps.clone())
    }

    /// STARTTLS and the handshake with `config`, which decides how the
    /// server's certificate is checked. `server_name` is a DNS name or an IP
    /// address. Afterwards the capabilities are cleared: call
    /// [`ehlo`](Self::ehlo) again. A refusal of STARTTLS leaves the session
    /// usable in clear; a failed handshake does not.
    pub async fn starttls(
        &mut self,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<TlsInfo, ClientError> {
        self.check_usable()?;
        if self.tls.is_some() {
            return Err(ClientError::InvalidArgument("STARTTLS: already in TLS"));
        }
        if !self.caps.starttls {
            return Err(ClientError::NotOffered("STARTTLS"));
        }
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            ClientError::Tls(TlsError::new(format!(
                "invalid server name {server_name:?}"
            )))
        })?;
        let reply = self
            .command(Phase::StartTls, b"STARTTLS\r\n", self.timeouts.starttls)
            .await?;
        if reply.code != 220 {
            return Err(ClientError::Rejected {
                phase: Phase::StartTls,
                reply,
            });
        }
        if !self.rbuf.is_empty() {
            // Anything sent before the handshake could be an injected reply
            // that would be read as coming over TLS (CVE-2011-0411 style).
            self.usable = false;
            return Err(ClientError::Protocol {
                phase: Phase::StartTls,
                detail: "data after the STARTTLS reply, before the handshake".into(),
            });
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            self.usable = false;
            return Err(ClientError::Unusable);
        };
        // The stream stays Gone, and the session unusable, unless this works.
        self.usable = false;
        let connector = TlsConnector::from(config);
        let tls = match tokio::time::timeout(self.timeouts.starttls, connector.connect(name, tcp))
            .await
        {
            Err(_) => return Err(ClientError::Timeout(Phase::TlsHandshake)),
            Ok(Err(e)) => return Err(ClientError::Tls(handshake_error(e))),
            Ok(Ok(tls)) => tls,
        };
        let conn = tls.get_ref().1;
        let info = TlsInfo {
            protocol_version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                Some(v) => format!("{v:?}"),
                None => "unknown".into(),
            },
            cipher: conn
                .negotiated_cipher_suite()
                .map(|s| {
                    let s = s.suite();
                    s.as_str().map_or_else(|| format!("{s:?}"), str::to_string)
                })
                .unwrap_or_else(|| "unknown".into()),
            peer_certificates: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        };
        tracing::debug!(
            peer = %self.peer,
            "TLS established: {} {}",
            info.protocol_version,
            info.cipher
        );
        self.stream = Stream::Tls(Box::new(tls));
        self.usable = true;
        self.caps = Capabilities::default();
        self.tls = Some(info.clone());
        Ok(info)
    }

    /// AUTH PLAIN with an initial response. The credentials are never
    /// logged, and neither the password nor its encoding appears in any
    /// error or returned reply. Requires that the server advertised PLAIN;
    /// whether it is safe to send (TLS, validated certificate) is the
    /// caller's decision.
    pub async fn auth_plain(
        &mut self,
        username: &str,
        password: &[u8],
    ) -> Result<Reply, ClientError> {
        self.check_usable()?;
        if !self.caps.supports_auth("PLAIN") {
            return Err(ClientError::NotOffered("AUTH PLAIN"));
        }
        let encoded = auth_plain_response(username, password)?;
        let mut line = Zeroizing::new(Vec::with_capacity(encoded.len() + 13));
        line.extend_from_slice(b"AUTH PLAIN ");
        line.extend_from_slice(encoded.as_bytes());
        line.extend_from_slice(b"\r\n");
        tracing::debug!(peer = %self.peer, "> AUTH PLAIN <credentials redacted>");
        let limit = self.timeouts.auth;
        let result = within(Phase::Auth, limit, async {
            self.write(Phase::Auth, &line).await?;
            self.read_one(Phase::Auth).await
        })
        .await;
        let reply = self.settle(result)?;
        let redact = |r: Reply| {
            let r = r.redact(&encoded);
            match std::str::from_utf8(password) {
                Ok(p) if p.len() >= 3 => r.redact(p),
                _ => r,
            }
        };
        let reply = redact(reply);
        if reply.is_positive() {
            return Ok(reply);
        }
        if reply.code == 334 {
            // The server wants another round although it got the initial
            // response: cancel (RFC 4954 §4) rather than guess.
            let cancel = self.command(Phase::Auth, b"*\r\n", limit).await?;
            tracing::debug!(peer = %self.peer, "AUTH cancelled: {cancel}");
            return Err(ClientError::Protocol {
                phase: Phase::Auth,
                detail: "server asked for more after AUTH PLAIN with an initial response".into(),
            });
        }
        Err(ClientError::Rejected {
            phase: Phase::Auth,
            reply,
        })
    }

    /// One mail transaction: MAIL, RCPT for each recipient, DATA and the
    /// message, pipelined when the server offers PIPELINING (RFC 2920).
    ///
    /// `sender` and `recipients` are bare addresses (empty sender for the
    /// null reverse path). A refused MAIL is an error; per-recipient
    /// refusals are in the result, and when no recipient was accepted the
    /// transaction is reset and no message is sent. The message is
    /// normalised to CRLF and dot-stuffed as it is sent.
    pub async fn send_envelope_and_data(
        &mut self,
        sender: &str,
        recipients: &[String],
        data: &[u8],
        params: MailParams,
    ) -> Result<TransactionResult, ClientError> {
        let params = MailParams {
            size: params.size.or(Some(data.len() as u64)),
            ..params
        };
        let mut reader = data;
        self.send_envelope_and_data_from(sender, recipients, &mut reader, params)
            .await
    }

    /// As [`send_envelope_and_data`](Self::send_envelope_and_data), reading
    /// the message from `message` in chunks (from the spool file, say).
    pub async fn send_envelope_and_data_from<R: AsyncRead + Unpin>(
        &mut self,
        sender: &str,
        recipients: &[String],
        message: &mut R,
        params: MailParams,
    ) -> Result<TransactionResult, ClientError> {
        self.check_usable()?;
        if recipients.is_empty() {
            return Err(ClientError::InvalidArgument("recipient list (empty)"));
        }
        let smtputf8 = needs_smtputf8(sender, recipients, &params);
        if smtputf8 && !self.caps.smtputf8 {
            return Err(ClientError::NotOffered("SMTPUTF8"));
        }
        if let (Some(size), Some(max)) = (params.size, self.caps.size) {
            if self.caps.exceeds_size(size) {
                return Err(ClientError::MessageTooLarge { size, max });
            }
        }
        let mail = mail_from_command(sender, &params, smtputf8, &self.caps)?;
        let rcpts = recipients
            .iter()
            .map(|r| rcpt_to_command(r))
            .collect::<Result<Vec<_>, _>>()?;

        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            self.pipelined_envelope(&mail, &rcpts).await?
        } else {
            self.sequential_envelope(&mail, &rcpts).await?
        };
        let accepted = rcpt_replies.iter().filter(|r| r.is_positive()).count();
        let mut result = TransactionResult {
            recipients: recipients.iter().cloned().zip(rcpt_replies).collect(),
            data_reply: None,
        };
        // A 354 means the server expects a message: it must agree that the
        // envelope is complete, or the two sides are out of step.
        if let Some(data) = &data_reply {
            if data.code == 354 && (!mail_reply.is_positive() || accepted == 0) {
                self.usable = false;
                return Err(ClientError::Protocol {
                    phase: Phase::Data,
                    detail: format!(
                        "server accepted DATA although MAIL got {} and {accepted} recipients were accepted",
                        mail_reply.code
                    ),
                });
            }
        }
        if !mail_reply.is_positive() {
            return Err(ClientError::Rejected {
                phase: Phase::MailFrom,
                reply: mail_reply,
            });
        }
        if accepted == 0 {
            self.reset_quietly().await;
            return Ok(result);
        }
        let data_reply = data_reply.expect("DATA was sent when a recipient was accepted");
        if data_reply.code != 354 {
            if data_reply.code != 421 {
                self.reset_quietly().await;
            }
            result.data_reply = Some(data_reply);
            return Ok(result);
        }
        let final_reply = self.send_body(message).await?;
        result.data_reply = Some(final_reply);
        Ok(result)
    }

    /// RSET.
    pub async fn rset(&mut self) -> Result<Reply, ClientError> {
        let reply = self
            .command(Phase::Rset, b"RSET\r\n", self.timeouts.rset)
            .await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            self.usable = false;
            Err(ClientError::Rejected {
                phase: Phase::Rset,
                reply,
            })
        }
    }

    /// QUIT and close. Errors are ignored: the session is over either way.
    pub async fn quit(mut self) {
        if self.usable {
            let limit = self.timeouts.quit;
            let _ = self.command(Phase::Quit, b"QUIT\r\n", limit).await;
        }
        let _ = tokio::time::timeout(self.timeouts.quit, self.stream.shutdown()).await;
    }

    async fn pipelined_envelope(
        &mut self,
        mail: &[u8],
        rcpts: &[Vec<u8>],
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), ClientError> {
        let mut batch = Vec::with_capacity(mail.len() + rcpts.len() * 40 + 6);
        batch.extend_from_slice(mail);
        for r in rcpts {
            batch.extend_from_slice(r);
        }
        batch.extend_from_slice(b"DATA\r\n");
        self.log_sent(&batch);
        let result = within(Phase::MailFrom, self.timeouts.mail_from, async {
            self.write(Phase::MailFrom, &batch).await?;
            self.read_one(Phase::MailFrom).await
        })
        .await;
        let mail_reply = self.settle(result)?;
        self.stop_on_421(Phase::MailFrom, &mail_reply)?;
        let mut replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            let reply = self.read(Phase::RcptTo, self.timeouts.rcpt_to).await?;
            self.stop_on_421(Phase::RcptTo, &reply)?;
            replies.push(reply);
        }
        let data = self.read(Phase::Data, self.timeouts.data).await?;
        self.stop_on_421(Phase::Data, &data)?;
        Ok((mail_reply, replies, Some(data)))
    }

    async fn sequential_envelope(
        &mut self,
        mail: &[u8],
        rcpts: &[Vec<u8>],
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), ClientError> {
        let mail_reply = self
            .command(Phase::MailFrom, mail, self.timeouts.mail_from)
            .await?;
        if !mail_reply.is_positive() {
            return Ok((mail_reply, Vec::new(), None));
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            let reply = self
                .command(Phase::RcptTo, r, self.timeouts.rcpt_to)
                .await?;
            self.stop_on_421(Phase::RcptTo, &reply)?;
            replies.push(reply);
        }
        if !replies.iter().any(Reply::is_positive) {
            return Ok((mail_reply, replies, None));
        }
        let data = self
            .command(Phase::Data, b"DATA\r\n", self.timeouts.data)
            .await?;
        Ok((mail_reply, replies, Some(data)))
    }

    /// The message, stuffed, in chunks; then the reply to the final dot.
    async fn send_body<R: AsyncRead + Unpin>(
        &mut self,
        message: &mut R,
    ) -> Result<Reply, ClientError> {
        let mut stuffer = DotStuffer::new();
        let mut input = vec![0u8; CHUNK];
        let mut out = Vec::with_capacity(2 * CHUNK + 8);
        let mut total = 0u64;
        loop {
            let n = match message.read(&mut input).await {
                Ok(n) => n,
                Err(e) => {
                    // The server is mid-DATA: the only safe way out is to
                    // drop the connection, so nothing partial is accepted.
                    self.usable = false;
                    return Err(ClientError::Io {
                        phase: Phase::DataBlock,
                        source: io::Error::new(e.kind(), format!("reading the message: {e}")),
                    });
                }
            };
            if n == 0 {
                // The terminator goes with the last chunk.
                stuffer.finish(&mut out);
                total += out.len() as u64;
                let limit = self.timeouts.data_block;
                let result =
                    within(Phase::DataBlock, limit, self.write(Phase::DataBlock, &out)).await;
                self.settle(result)?;
                break;
            }
            if !out.is_empty() {
                total += out.len() as u64;
                let limit = self.timeouts.data_block;
                let result =
                    within(Phase::DataBlock, limit, self.write(Phase::DataBlock, &out)).await;
                self.settle(result)?;
                out.clear();
            }
            stuffer.push(&input[..n], &mut out);
        }
        tracing::debug!(peer = %self.peer, "> [message, {total} octets on the wire]");
        let reply = self.read(Phase::DataDot, self.timeouts.data_dot).await?;
        if reply.code == 421 {
            self.usable = false;
        }
        Ok(reply)
    }

    async fn reset_quietly(&mut self) {
        if let Err(e) = self.rset().await {
            tracing::debug!(peer = %self.peer, "RSET failed: {e}");
        }
    }

    fn stop_on_421(&mut self, phase: Phase, reply: &Reply) -> Result<(), ClientError> {
        if reply.code == 421 {
            self.usable = false;
            return Err(ClientError::Rejected {
                phase,
                reply: reply.clone(),
            });
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        if self.usable {
            Ok(())
        } else {
            Err(ClientError::Unusable)
        }
    }

    /// Record the outcome of an exchange: anything but a reply poisons the
    /// session, and so does a 421.
    fn settle<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if result.is_err() {
            self.usable = false;
        }
        result
    }

    /// Send one command line and read its reply within `limit`.
    async fn command(
        &mut self,
        phase: Phase,
        line: &[u8],
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        self.check_usable()?;
        self.log_sent(line);
        let result = within(phase, limit, async {
            self.write(phase, line).await?;
            self.read_one(phase).await
        })
        .await;
        let reply = self.settle(result)?;
        if reply.code == 421 {
            self.usable = false;
        }
        Ok(reply)
    }

    /// Read one reply within `limit`.
    async fn read(&mut self, phase: Phase, limit: Duration) -> Result<Reply, ClientError> {
        let result = within(phase, limit, self.read_one(phase)).await;
        self.settle(result)
    }

    async fn write(&mut self, phase: Phase, data: &[u8]) -> Result<(), ClientError> {
        self.stream
            .write_all(data)
            .await
            .map_err(|source| ClientError::Io { phase, source })
    }

    async fn read_one(&mut self, phase: Phase) -> Result<Reply, ClientError> {
        let mut tmp = [0u8; 4096];
        loop {
            if !self.rbuf.is_empty() {
                match parse_reply(&self.rbuf) {
                    Some(Ok((reply, used))) => {
                        self.rbuf.drain(..used);
                        tracing::debug!(peer = %self.peer, "< {reply}");
                        return Ok(reply);
                    }
                    Some(Err(e)) => return Err(ClientError::protocol(phase, e)),
                    None => {}
                }
            }
            let n = self
                .stream
                .read(&mut tmp)
                .await
                .map_err(|source| ClientError::Io { phase, source })?;
            if n == 0 {
                return Err(ClientError::Closed(phase));
            }
            self.rbuf.extend_from_slice(&tmp[..n]);
        }
    }

    fn log_sent(&self, lines: &[u8]) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let line = String::from_utf8_lossy(line);
                tracing::debug!(peer = %self.peer, "> {}", line.trim_end());
            }
        }
    }
}

/// tokio-rustls reports handshake failures as io::Error wrapping the
/// rustls::Error; keep the latter for classification.
fn handshake_error(e: io::Error) -> TlsError {
    let rustls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    let message = match &rustls {
        Some(r) => format!("handshake failed: {r}"),
        None => format!("handshake failed: {e}"),
    };
    TlsError { message, rustls }
}
