//! The crate's one error type: configuration problems, and what can go
//! wrong in an SMTP session (which the statistics group by [`Error::key`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use ironpost_smtp_client::{EnhancedCode, Reply};

/// The step of an SMTP session an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Connect,
    Banner,
    Ehlo,
    StartTls,
    TlsHandshake,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// Writing the message and waiting for the reply to the final dot.
    DataEnd,
    Rset,
    Quit,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Ehlo => "ehlo",
            Phase::StartTls => "starttls",
            Phase::TlsHandshake => "tls-handshake",
            Phase::Auth => "auth",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::DataEnd => "data-end",
            Phase::Rset => "rset",
            Phase::Quit => "quit",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can fail in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad option or combination of options.
    #[error("{0}")]
    Config(String),
    /// A certificate, key or CA that could not be used.
    #[error("TLS: {0}")]
    TlsConfig(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The TCP connection could not be made.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    #[error("timeout during {0}")]
    Timeout(Phase),
    #[error("connection closed by the server during {0}")]
    Closed(Phase),
    #[error("i/o error during {phase}: {source}")]
    Io {
        phase: Phase,
        #[source]
        source: io::Error,
    },
    /// The server answered with a reply that is not the expected one.
    #[error("{phase}: {code} {text}")]
    Rejected {
        phase: Phase,
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: String,
    },
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("{phase}: protocol error: {detail}")]
    Protocol { phase: Phase, detail: String },
    #[error("{0} not offered by the server")]
    NotOffered(&'static str),
}

impl Error {
    pub(crate) fn rejected(phase: Phase, reply: &Reply) -> Error {
        Error::Rejected {
            phase,
            code: reply.code,
            enhanced: reply.enhanced,
            text: reply.text(),
        }
    }

    /// The phase of the session the error happened in (None for
    /// configuration errors).
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Error::Connect(_) => Some(Phase::Connect),
            Error::Timeout(p) | Error::Closed(p) => Some(*p),
            Error::Io { phase, .. } | Error::Rejected { phase, .. } => Some(*phase),
            Error::Protocol { phase, .. } => Some(*phase),
            Error::Tls(_) => Some(Phase::TlsHandshake),
            Error::NotOffered(what) if what.starts_with("AUTH") => Some(Phase::Auth),
            Error::NotOffered(_) => Some(Phase::StartTls),
            Error::Config(_) | Error::TlsConfig(_) | Error::File { .. } | Error::Bind { .. } => {
                None
            }
        }
    }

    /// What errors are grouped by in the report: the reply code and its
    /// enhanced code (`451 4.3.0`), or a short description of a failure
    /// that is not a reply (`connect refused`, `timeout`).
    pub fn key(&self) -> String {
        match self {
            Error::Rejected {
                code,
                enhanced: Some(e),
                ..
            } => format!("{code} {e}"),
            Error::Rejected { code, .. } => code.to_string(),
            Error::Connect(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => "connect refused".into(),
                io::ErrorKind::TimedOut => "connect timeout".into(),
                io::ErrorKind::AddrNotAvailable => "connect: address not available".into(),
                _ => format!("connect: {e}"),
            },
            Error::Timeout(_) => "timeout".into(),
            Error::Closed(_) => "connection closed".into(),
            Error::Io { source, .. } => format!("i/o: {}", source.kind()),
            Error::Tls(m) => format!("tls: {m}"),
            Error::Protocol { detail, .. } => format!("protocol: {detail}"),
            Error::NotOffered(w) => format!("{w} not offered"),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_reply_code() {
        let e = Error::Rejected {
            phase: Phase::DataEnd,
            code: 451,
            enhanced: EnhancedCode::parse_prefix("4.3.0"),
            text: "4.3.0 try later".into(),
        };
        assert_eq!(e.key(), "451 4.3.0");
        assert_eq!(e.phase(), Some(Phase::DataEnd));
        assert_eq!(e.to_string(), "data-end: 451 4.3.0 try later");
        let e = Error::Connect(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(e.key(), "connect refused");
        assert_eq!(e.phase(), Some(Phase::Connect));
        let e = Error::Rejected {
            phase: Phase::Mail,
            code: 550,
            enhanced: None,
            text: String::new(),
        };
        assert_eq!(e.key(), "550");
    }
}
