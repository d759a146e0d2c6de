//! A client connection that is either cleartext or TLS, behind one type so
//! the session loop does not care which.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::server::TlsStream;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Placeholder while the stream is being upgraded to TLS.
    Closed,
}

#[derive(Debug)]
pub enum ReadError {
    Closed,
    Timeout,
    Io(std::io::Error),
}

/// Most reads fit here; a 10 KB message arrives in one or two reads.
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    /// Append whatever is available to `buf`, waiting until `deadline`.
    pub async fn read_more(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, ReadError> {
        buf.reserve(READ_CHUNK);
        let read = async {
            match self {
                Conn::Plain(s) => s.read_buf(buf).await,
                Conn::Tls(s) => s.read_buf(buf).await,
                Conn::Closed => Ok(0),
            }
        };
        match timeout_at(deadline, read).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ReadError::Io(e)),
        }
    }

    /// Write all of `data`; a client that does not read its replies cannot
    /// hold the connection longer than `limit`.
    pub async fn write_all(&mut self, data: &[u8], limit: Duration) -> std::io::Result<()> {
        let write = async {
            match self {
                Conn::Plain(s) => s.write_all(data).await,
                Conn::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
                Conn::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
    }

    pub async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::Closed => Ok(()),
        };
    }

    /// The client's verified certificate: (subject, SHA-256 fingerprint).
    pub fn client_certificate(&self) -> Option<(String, String)> {
        let Conn::Tls(s) = self else { return None };
        let leaf = s.get_ref().1.peer_certificates()?.first()?;
        use sha2::Digest;
        let fingerprint = hex::encode(sha2::Sha256::digest(leaf.as_ref()));
        let subject = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_default();
        Some((subject, fingerprint))
    }

    /// (protocol version, cipher suite) once TLS is up.
    pub fn tls_info(&self) -> Option<(String, String)> {
        match self {
            Conn::Plain(_) | Conn::Closed => None,
            Conn::Tls(s) => {
                let (_, c) = s.get_ref();
                let version = c
                    .protocol_version()
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string();
                let cipher = c
                    .negotiated_cipher_suite()
                    .and_then(|cs| cs.suite().as_str())
                    .unwrap_or("unknown")
                    .to_string();
                Some((version, cipher))
            }
        }
    }
}
