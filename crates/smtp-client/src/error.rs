//! Errors of an SMTP client session, classified for the delivery engine.
//!
//! No variant ever holds a credential: AUTH failures carry the server's
//! reply (with any echo of the credentials redacted), never what was sent.

use crate::reply::{Reply, ReplyError};
use std::fmt;
use std::io;

/// The step of the session an error or timeout happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Connect,
    Banner,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    DataBlock,
    DataDot,
    Rset,
    Quit,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Ehlo => "EHLO",
            Phase::Helo => "HELO",
            Phase::StartTls => "STARTTLS",
            Phase::TlsHandshake => "TLS handshake",
            Phase::Auth => "AUTH",
            Phase::MailFrom => "MAIL FROM",
            Phase::RcptTo => "RCPT TO",
            Phase::Data => "DATA",
            Phase::DataBlock => "message body",
            Phase::DataDot => "end of data",
            Phase::Rset => "RSET",
            Phase::Quit => "QUIT",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed TLS handshake or TLS setup.
#[derive(Clone, Debug)]
pub struct TlsError {
    /// Human-readable description.
    pub message: String,
    /// The rustls error, when the failure came from rustls (certificate
    /// problems included), for classification such as RFC 8460 result types.
    pub rustls: Option<rustls::Error>,
}

impl TlsError {
    pub(crate) fn new(message: impl Into<String>) -> TlsError {
        TlsError {
            message: message.into(),
            rustls: None,
        }
    }

    /// The certificate problem, when the handshake failed because the
    /// server's certificate was refused by the verifier.
    pub fn certificate_error(&self) -> Option<&rustls::CertificateError> {
        match &self.rustls {
            Some(rustls::Error::InvalidCertificate(e)) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// Reading or writing failed after the connection was made.
    #[error("I/O error during {phase}: {source}")]
    Io {
        phase: Phase,
        #[source]
        source: io::Error,
    },
    /// The server closed the connection while a reply was awaited.
    #[error("connection closed by the server during {0}")]
    Closed(Phase),
    #[error("timed out during {0}")]
    Timeout(Phase),
    #[error("TLS failure: {0}")]
    Tls(TlsError),
    /// The server's reply was not valid SMTP, or it broke the protocol.
    #[error("protocol error during {phase}: {detail}")]
    Protocol { phase: Phase, detail: String },
    /// The server answered with a negative (or unexpected) reply.
    #[error("{phase} rejected: {reply}")]
    Rejected { phase: Phase, reply: Reply },
    /// An extension the operation needs was not advertised.
    #[error("the server does not offer {0}")]
    NotOffered(&'static str),
    /// The message exceeds the SIZE the server declared.
    #[error("message of {size} octets exceeds the server's limit of {max}")]
    MessageTooLarge { size: u64, max: u64 },
    /// A command argument cannot be sent (it holds a CR, LF or NUL, or is
    /// otherwise unusable). Never includes the argument when it is a secret.
    #[error("invalid {0}")]
    InvalidArgument(&'static str),
    /// An earlier error left the connection unusable.
    #[error("the connection is no longer usable after an earlier error")]
    Unusable,
}

impl ClientError {
    /// Whether the failure is about this host (connection, TLS, timeouts,
    /// protocol breakage, or a 4xx reply) so that the message should be
    /// retried, possibly on the next MX; false for 5xx replies and for
    /// problems with the message itself.
    pub fn is_transient_for_host(&self) -> bool {
        match self {
            ClientError::Rejected { reply, .. } => !reply.is_permanent(),
            ClientError::MessageTooLarge { .. } | ClientError::InvalidArgument(_) => false,
            ClientError::Connect(_)
            | ClientError::Io { .. }
            | ClientError::Closed(_)
            | ClientError::Timeout(_)
            | ClientError::Tls(_)
            | ClientError::Protocol { .. }
            | ClientError::NotOffered(_)
            | ClientError::Unusable => true,
        }
    }

    /// The server's reply, when the error is a rejection.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    pub(crate) fn protocol(phase: Phase, e: ReplyError) -> ClientError {
        ClientError::Protocol {
            phase,
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_reply;

    fn reply(s: &[u8]) -> Reply {
        parse_reply(s).unwrap().unwrap().0
    }

    #[test]
    fn classification() {
        let r4 = ClientError::Rejected {
            phase: Phase::RcptTo,
            reply: reply(b"450 4.2.0 busy\r\n"),
        };
        let r5 = ClientError::Rejected {
            phase: Phase::MailFrom,
            reply: reply(b"550 5.7.1 no\r\n"),
        };
        assert!(r4.is_transient_for_host());
        assert!(!r5.is_transient_for_host());
        assert_eq!(r5.to_string(), "MAIL FROM rejected: 550 5.7.1 no");
        assert_eq!(r5.reply().unwrap().code, 550);
        assert!(ClientError::Timeout(Phase::Banner).is_transient_for_host());
        assert!(ClientError::Tls(TlsError::new("x")).is_transient_for_host());
        assert!(
            ClientError::Connect(io::ErrorKind::ConnectionRefused.into()).is_transient_for_host()
        );
        assert!(!ClientError::MessageTooLarge { size: 2, max: 1 }.is_transient_for_host());
        assert_eq!(
            ClientError::Timeout(Phase::DataDot).to_string(),
            "timed out during end of data"
        );
    }
}
