use std::time::Duration;

/// Why a check could not reach a verdict of its own; the checks turn these
/// into `temperror` or `permerror` results whose reason is the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("{0}")]
    Message(String),
    /// A DNS failure other than "no such name" or "no such record"
    /// (SERVFAIL, REFUSED, a network timeout, a bogus DNSSEC answer).
    #[error("DNS lookup of {name} failed: {error}")]
    Dns { name: String, error: String },
    /// The check ran past [`Limits::timeout`](crate::Limits::timeout).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A record (SPF, DMARC, DKIM key or signature) breaks its grammar.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A processing limit was exceeded (SPF's 10 DNS lookups, 2 void
    /// lookups, 10 MX records).
    #[error("{0}")]
    Limit(String),
}
