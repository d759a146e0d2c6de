//! A scripted SMTP server on loopback for SMTP client tests: byte-exact
//! replies chosen per command, PIPELINING checks (each command records how
//! many complete lines arrived in the same read, and replies can be held
//! until DATA), STARTTLS and AUTH PLAIN, and a recording of every byte and
//! event. Connections are served one after another.
//!
//! For delivery tests that need a receiving MTA with scripted failures per
//! stage, use [`crate::sink`] instead.

use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the fake server behaves. The defaults make a plain ESMTP server
/// with PIPELINING that accepts everything.
#[derive(Clone)]
pub struct Behaviour {
    /// The greeting, CRLF included; `None` never says anything.
    pub greeting: Option<String>,
    /// EHLO keyword lines (after the domain line); `None` refuses EHLO with
    /// 502.
    pub ehlo_keywords: Option<Vec<String>>,
    /// Hold every reply until the DATA command arrives (a client that does
    /// not pipeline stalls).
    pub hold_until_data: bool,
    pub tls: Option<Arc<ServerConfig>>,
    /// Reply to STARTTLS (default 220), CRLF included.
    pub starttls_reply: String,
    /// Expected AUTH PLAIN credentials.
    pub auth: Option<(String, String)>,
    /// Quote the client's AUTH response in the failure reply.
    pub auth_echo: bool,
    /// Reply to the final dot, CRLF included.
    pub data_reply: String,
    /// Stop answering (but keep the connection) when a command starts
    /// with this.
    pub stall_on: Option<String>,
    /// Per-command override: a command line (without CRLF) to a reply
    /// (with CRLF), or `None` for the default handling.
    pub overrides: Vec<(String, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            greeting: Some("220 fake.test ESMTP\r\n".into()),
            ehlo_keywords: Some(vec![
                "PIPELINING".into(),
                "SIZE 10000000".into(),
                "8BITMIME".into(),
                "ENHANCEDSTATUSCODES".into(),
            ]),
            hold_until_data: false,
            tls: None,
            starttls_reply: "220 2.0.0 go ahead\r\n".into(),
            auth: None,
            auth_echo: false,
            data_reply: "250 2.0.0 queued as 1\r\n".into(),
            stall_on: None,
            overrides: Vec::new(),
        }
    }
}

impl Behaviour {
    pub fn without(mut self, keyword: &str) -> Behaviour {
        if let Some(k) = &mut self.ehlo_keywords {
            k.retain(|l| !l.starts_with(keyword));
        }
        self
    }

    pub fn with(mut self, keyword: &str) -> Behaviour {
        self.ehlo_keywords
            .get_or_insert_with(Vec::new)
            .push(keyword.into());
        self
    }

    pub fn reply_to(mut self, command: &str, reply: &str) -> Behaviour {
        self.overrides.push((command.into(), reply.into()));
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A command line, and how many complete lines the same read delivered.
    Command {
        line: String,
        batch: usize,
    },
    /// A DATA stream, terminator included.
    Data(Vec<u8>),
    Reply(String),
    TlsStarted,
}

#[derive(Debug, Default)]
pub struct Recording {
    /// Every byte received (decrypted after STARTTLS).
    pub raw: Vec<u8>,
    pub events: Vec<Event>,
    pub peer: Option<SocketAddr>,
}

impl Recording {
    pub fn commands(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Command { line, .. } => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn data(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Data(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub recording: Arc<Mutex<Recording>>,
}

impl FakeServer {
    /// Listen on `ip`:0 and serve connections one after another.
    pub async fn start_on(ip: &str, behaviour: Behaviour) -> FakeServer {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let recording = Arc::new(Mutex::new(Recording::default()));
        let rec = recording.clone();
        tokio::spawn(async move {
            while let Ok((sock, peer)) = listener.accept().await {
                rec.lock().unwrap().peer = Some(peer);
                let _ = serve(Box::new(sock), behaviour.clone(), rec.clone()).await;
            }
        });
        FakeServer { addr, recording }
    }

    pub async fn start(behaviour: Behaviour) -> FakeServer {
        FakeServer::start_on("127.0.0.1", behaviour).await
    }

    pub fn recording(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.recording.lock().unwrap()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve(
    mut stream: Box<dyn Io>,
    b: Behaviour,
    rec: Arc<Mutex<Recording>>,
) -> std::io::Result<()> {
    let Some(greeting) = &b.greeting else {
        // Say nothing; keep the connection open until the client leaves.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        return Ok(());
    };
    stream.write_all(greeting.as_bytes()).await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    let mut in_data = false;
    let mut recipients = 0usize;
    let mut tls_active = false;
    let mut mail_ok = false;
    let mut tmp = [0u8; 65536];
    loop {
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        rec.lock().unwrap().raw.extend_from_slice(&tmp[..n]);
        buf.extend_from_slice(&tmp[..n]);
        let batch = if in_data {
            0
        } else {
            buf.windows(2).filter(|w| w == b"\r\n").count()
        };
        let mut out = Vec::new();
        let mut start_tls = false;
        loop {
            if in_data {
                let end = if buf.starts_with(b".\r\n") {
                    Some(3)
                } else {
                    find(&buf, b"\r\n.\r\n").map(|i| i + 5)
                };
                let Some(end) = end else { break };
                let data: Vec<u8> = buf.drain(..end).collect();
                rec.lock().unwrap().events.push(Event::Data(data));
                in_data = false;
                recipients = 0;
                mail_ok = false;
                out.extend_from_slice(b.data_reply.as_bytes());
                continue;
            }
            let Some(i) = find(&buf, b"\r\n") else { break };
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            rec.lock().unwrap().events.push(Event::Command {
                line: line.clone(),
                batch,
            });
            if let Some(stall) = &b.stall_on {
                if line.starts_with(stall.as_str()) {
                    stream.write_all(&out).await?;
                    let mut sink = [0u8; 1024];
                    while stream.read(&mut sink).await? > 0 {}
                    return Ok(());
                }
            }
            let upper = line.to_ascii_uppercase();
            let reply = if let Some((_, r)) = b.overrides.iter().find(|(c, _)| *c == line) {
                r.clone()
            } else if upper.starts_with("EHLO ") {
                match &b.ehlo_keywords {
                    None => "502 5.5.1 EHLO not implemented\r\n".into(),
                    Some(keywords) => {
                        let mut r = String::from("250-fake.test greets you\r\n");
                        let mut kws = keywords.clone();
                        if b.tls.is_some() && !tls_active {
                            kws.push("STARTTLS".into());
                        }
                        if b.auth.is_some() {
                            kws.push("AUTH PLAIN LOGIN".into());
                        }
                        kws.push("HELP".into());
                        let last = kws.len() - 1;
                        for (i, k) in kws.iter().enumerate() {
                            r.push_str(&format!(
                                "250{}{}\r\n",
                                if i == last { ' ' } else { '-' },
                                k
                            ));
                        }
                        r
                    }
                }
            } else if upper.starts_with("HELO ") {
                "250 fake.test\r\n".into()
            } else if upper.starts_with("MAIL FROM:") {
                "250 2.1.0 sender ok\r\n".into()
            } else if upper.starts_with("RCPT TO:") {
                if !mail_ok {
                    "503 5.5.1 need MAIL first\r\n".into()
                } else if line.contains("reject") {
                    "550 5.1.1 no such user\r\n".into()
                } else if line.contains("later") {
                    "451 4.3.0 try later\r\n".into()
                } else {
                    recipients += 1;
                    "250 2.1.5 recipient ok\r\n".into()
                }
            } else if upper == "DATA" {
                if recipients == 0 {
                    "554 5.5.1 no valid recipients\r\n".into()
                } else {
                    "354 go ahead\r\n".into()
                }
            } else if upper == "RSET" {
                recipients = 0;
                mail_ok = false;
                "250 2.0.0 reset\r\n".into()
            } else if upper == "QUIT" {
                "221 2.0.0 bye\r\n".into()
            } else if upper == "STARTTLS" && b.tls.is_some() {
                start_tls = b.starttls_reply.starts_with("220");
                b.starttls_reply.clone()
            } else if upper.starts_with("AUTH PLAIN ") {
                let given = &line["AUTH PLAIN ".len()..];
                let expected = b.auth.as_ref().map(|(u, p)| plain(u, p));
                if expected.as_deref() == Some(given) {
                    "235 2.7.0 authenticated\r\n".into()
                } else if b.auth_echo {
                    format!("535 5.7.8 bad credentials {given}\r\n")
                } else {
                    "535 5.7.8 bad credentials\r\n".into()
                }
            } else {
                "500 5.5.2 what?\r\n".into()
            };
            if upper.starts_with("MAIL FROM:") {
                mail_ok = reply.starts_with('2');
            }
            if upper == "DATA" && reply.starts_with("354") {
                in_data = true;
                mail_ok = false;
            }
            rec.lock()
                .unwrap()
                .events
                .push(Event::Reply(reply.trim_end().to_string()));
            out.extend_from_slice(reply.as_bytes());
            if upper == "DATA" {
                out.splice(0..0, held.drain(..));
            } else if b.hold_until_data
                && (upper.starts_with("MAIL FROM:") || upper.starts_with("RCPT TO:"))
            {
                held.append(&mut out);
            }
            if start_tls || upper == "QUIT" {
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if out.starts_with(b"221") {
            return Ok(());
        }
        if start_tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(b.tls.clone().unwrap());
            match acceptor.accept(stream).await {
                Ok(tls) => {
                    rec.lock().unwrap().events.push(Event::TlsStarted);
                    stream = Box::new(tls);
                    tls_active = true;
                }
                Err(_) => return Ok(()),
            }
        }
    }
}

/// The AUTH PLAIN initial response for `user` and `pass`.
pub fn plain(user: &str, pass: &str) -> String {
    crate::sink::encode_base64(format!("\0{user}\0{pass}").as_bytes())
}
