//! A deliberately small SMTP client for driving the daemon in tests.
//!
//! It is strict where a lax client would hide server bugs: replies must be
//! CRLF-terminated, multi-line replies must repeat the same code, and
//! plaintext left over after a STARTTLS 220 is an error. It refuses to
//! connect anywhere but loopback.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls::{client_config, TlsTrust};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Guards against a misbehaving server streaming an endless line at us.
const MAX_BUFFERED: usize = 1 << 20;

/// One (possibly multi-line) SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text of each line without the "250-" / "250 " prefix.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Enhanced status code ("2.0.0") at the start of the first line, if any.
    pub fn enhanced(&self) -> Option<String> {
        let first = self.lines.first()?.split_whitespace().next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let ok = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| first.to_string())
    }

    pub fn is(&self, code: u16) -> bool {
        self.code == code
    }

    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// After a failed TLS handshake (the socket is consumed) or a close.
    Closed,
}

pub struct SmtpClient {
    stream: Stream,
    buf: Vec<u8>,
}

fn ensure_loopback(ip: IpAddr) -> anyhow::Result<()> {
    if !ip.is_loopback() {
        bail!("testkit only talks to loopback addresses, not {ip}");
    }
    Ok(())
}

impl SmtpClient {
    /// Connects and returns the greeting (whatever its code).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<(SmtpClient, Reply)> {
        ensure_loopback(addr.ip())?;
        let tcp = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        Self::greet(tcp).await
    }

    /// Like `connect`, but from a chosen source address such as 127.0.0.2,
    /// so tests can exercise per-client-IP policy.
    pub async fn connect_from(
        local: IpAddr,
        addr: SocketAddr,
    ) -> anyhow::Result<(SmtpClient, Reply)> {
        ensure_loopback(local)?;
        ensure_loopback(addr.ip())?;
        let socket = match local {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("bind {local}"))?;
        let tcp = timeout(IO_TIMEOUT, socket.connect(addr))
            .await
            .with_context(|| format!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr} from {local}"))?;
        Self::greet(tcp).await
    }

    async fn greet(tcp: TcpStream) -> anyhow::Result<(SmtpClient, Reply)> {
        let mut client = SmtpClient {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
        };
        let greeting = client.read_reply().await.context("reading greeting")?;
        Ok((client, greeting))
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let io = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        timeout(IO_TIMEOUT, io)
            .await
            .context("write timed out")?
            .context("write failed")
    }

    /// Reads more bytes into the buffer; Ok(0) means the peer closed.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut chunk).await?,
            Stream::Tls(s) => s.read(&mut chunk).await?,
            Stream::Closed => 0,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Next CRLF-terminated line, without the CRLF.
    async fn read_line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let Some(body) = line.strip_suffix(b"\r\n") else {
                    bail!(
                        "reply line not terminated by CRLF: {:?}",
                        String::from_utf8_lossy(&line)
                    );
                };
                return Ok(String::from_utf8_lossy(body).into_owned());
            }
            if self.buf.len() > MAX_BUFFERED {
                bail!("reply line longer than {MAX_BUFFERED} bytes");
            }
            if self.fill().await.context("read failed")? == 0 {
                bail!(
                    "connection closed by server (unterminated data: {:?})",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads one complete (possibly multi-line) reply within 10 s.
    pub async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        timeout(IO_TIMEOUT, self.read_reply_inner())
            .await
            .context("timed out waiting for a reply")?
    }

    async fn read_reply_inner(&mut self) -> anyhow::Result<Reply> {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let (this_code, more, text) = parse_reply_line(&line)?;
            if *code.get_or_insert(this_code) != this_code {
                bail!("multi-line reply changed code mid-way: {line:?}");
            }
            lines.push(text.to_string());
            if !more {
                return Ok(Reply {
                    code: this_code,
                    lines,
                });
            }
        }
    }

    pub async fn cmd(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply()
            .await
            .with_context(|| format!("reply to {line:?}"))
    }

    pub async fn ehlo(&mut self, name: &str) -> anyhow::Result<Reply> {
        self.cmd(&format!("EHLO {name}")).await
    }

    pub async fn quit(&mut self) -> anyhow::Result<Reply> {
        self.cmd("QUIT").await
    }

    /// Sends STARTTLS; on 220 performs the handshake. Any other reply is
    /// returned as is, leaving the connection in plaintext.
    pub async fn starttls(&mut self, server_name: &str, trust: TlsTrust) -> anyhow::Result<Reply> {
        self.starttls_inner(server_name, client_config(&trust, None)?)
            .await
    }

    pub async fn starttls_with_client_cert(
        &mut self,
        server_name: &str,
        trust: TlsTrust,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> anyhow::Result<Reply> {
        let config = client_config(&trust, Some((cert_pem, key_pem)))?;
        self.starttls_inner(server_name, config).await
    }

    async fn starttls_inner(
        &mut self,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> anyhow::Result<Reply> {
        let reply = self.cmd("STARTTLS").await?;
        if reply.is(220) {
            self.tls_handshake_with_config(server_name, config).await?;
        }
        Ok(reply)
    }

    /// TLS handshake on the current plaintext connection, for tests that
    /// send STARTTLS (or something odd around it) themselves.
    pub async fn tls_handshake_only(
        &mut self,
        server_name: &str,
        trust: TlsTrust,
        client_cert: Option<(Vec<u8>, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let cert = client_cert
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()));
        let config = client_config(&trust, cert)?;
        self.tls_handshake_with_config(server_name, config).await
    }

    /// Handshake with a caller-built config (e.g. to pin TLS 1.2 only).
    /// On failure the connection is dropped.
    pub async fn tls_handshake_with_config(
        &mut self,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> anyhow::Result<()> {
        if !self.buf.is_empty() {
            // Bytes the server sent after its 220 would be plaintext that a
            // real client might wrongly treat as protected (CVE-2011-0411 class).
            bail!(
                "server sent plaintext after STARTTLS 220: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
        let name = ServerName::try_from(server_name.to_string())
            .with_context(|| format!("invalid TLS server name {server_name:?}"))?;
        let tcp = match std::mem::replace(&mut self.stream, Stream::Closed) {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => {
                self.stream = Stream::Tls(tls);
                bail!("TLS is already active");
            }
            Stream::Closed => bail!("connection is closed"),
        };
        let tls = timeout(IO_TIMEOUT, TlsConnector::from(config).connect(name, tcp))
            .await
            .context("TLS handshake timed out")?
            .context("TLS handshake failed")?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Negotiated (protocol version, cipher suite) as rustls' Debug names,
    /// e.g. ("TLSv1_3", "TLS13_AES_256_GCM_SHA384").
    pub fn tls_info(&self) -> Option<(String, String)> {
        let Stream::Tls(tls) = &self.stream else {
            return None;
        };
        let conn = tls.get_ref().1;
        let version = conn.protocol_version()?;
        let suite = conn.negotiated_cipher_suite()?;
        Some((format!("{version:?}"), format!("{:?}", suite.suite())))
    }

    pub fn peer_certificates_der(&self) -> Option<Vec<Vec<u8>>> {
        let Stream::Tls(tls) = &self.stream else {
            return None;
        };
        let certs = tls.get_ref().1.peer_certificates()?;
        Some(certs.iter().map(|c| c.to_vec()).collect())
    }

    /// Full MAIL/RCPT/DATA transaction. Fails if MAIL or any RCPT is not
    /// 2xx or DATA is not 354; returns the reply to the final dot.
    pub async fn send_message(
        &mut self,
        from: &str,
        rcpts: &[&str],
        data: &[u8],
    ) -> anyhow::Result<Reply> {
        let reply = self.cmd(&format!("MAIL FROM:<{from}>")).await?;
        if !reply.is_positive() {
            bail!("MAIL FROM:<{from}> rejected: {reply}");
        }
        for rcpt in rcpts {
            let reply = self.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
            if !reply.is_positive() {
                bail!("RCPT TO:<{rcpt}> rejected: {reply}");
            }
        }
        let reply = self.cmd("DATA").await?;
        if !reply.is(354) {
            bail!("DATA rejected: {reply}");
        }
        self.send_raw(&data_payload(data)).await?;
        self.read_reply().await.context("reply to end of DATA")
    }

    /// True if the server closes the connection within 5 s. Anything it
    /// sends first stays buffered for `read_reply`.
    pub async fn expect_closed(&mut self) -> bool {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            match timeout_at(deadline, self.fill()).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.stream = Stream::Closed;
                    return true;
                }
                Ok(Ok(_)) if self.buf.len() > MAX_BUFFERED => return false,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Splits "250-text" into (250, more_follows, "text").
fn parse_reply_line(line: &str) -> anyhow::Result<(u16, bool, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(anyhow!("malformed reply line: {line:?}"));
    }
    let code: u16 = line[..3].parse()?;
    if !(200..600).contains(&code) {
        bail!("reply code out of range: {line:?}");
    }
    match bytes.get(3) {
        None => Ok((code, false, "")),
        Some(b' ') => Ok((code, false, &line[4..])),
        Some(b'-') => Ok((code, true, &line[4..])),
        Some(_) => Err(anyhow!("malformed reply line: {line:?}")),
    }
}

/// RFC 5321 4.5.2 transparency: doubles a leading '.' on every line.
/// Lines are CRLF-delimited; a bare LF or CR does not start a line, so
/// smuggling-style payloads pass through unchanged.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at_line_start = true;
    for (i, &b) in data.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n' && i > 0 && data[i - 1] == b'\r';
    }
    out
}

/// Stuffed message body plus the terminating CRLF.CRLF.
fn data_payload(data: &[u8]) -> Vec<u8> {
    let mut out = dot_stuff(data);
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_leading_dots_only_after_crlf() {
        assert_eq!(
            dot_stuff(b".a\r\n.b\r\nc.\r\n..\r\n"),
            b"..a\r\n..b\r\nc.\r\n...\r\n"
        );
        assert_eq!(dot_stuff(b"a\n.b\r.c"), b"a\n.b\r.c");
        assert_eq!(dot_stuff(b""), b"");
    }

    #[test]
    fn payload_is_terminated() {
        assert_eq!(data_payload(b"x"), b"x\r\n.\r\n");
        assert_eq!(data_payload(b"x\r\n"), b"x\r\n.\r\n");
        assert_eq!(data_payload(b"."), b"..\r\n.\r\n");
        assert_eq!(data_payload(b""), b".\r\n");
    }

    #[test]
    fn parses_reply_lines() {
        assert_eq!(parse_reply_line("250-a b").unwrap(), (250, true, "a b"));
        assert_eq!(parse_reply_line("250 ok").unwrap(), (250, false, "ok"));
        assert_eq!(parse_reply_line("250").unwrap(), (250, false, ""));
        assert!(parse_reply_line("25").is_err());
        assert!(parse_reply_line("250x").is_err());
        assert!(parse_reply_line("abc ok").is_err());
        assert!(parse_reply_line("999 ok").is_err());
    }

    #[test]
    fn enhanced_code() {
        let r = |s: &str| Reply {
            code: 250,
            lines: vec![s.to_string()],
        };
        assert_eq!(r("2.1.0 ok").enhanced().as_deref(), Some("2.1.0"));
        assert_eq!(r("5.7.1").enhanced().as_deref(), Some("5.7.1"));
        assert_eq!(r("mx.example ready").enhanced(), None);
        assert_eq!(r("3.0.0 no").enhanced(), None);
        assert_eq!(r("2.0.1234 no").enhanced(), None);
    }
}
