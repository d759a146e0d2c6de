//! The crate's single error type.

/// Errors from parsing, configuration and the on-disk cache.
///
/// Fetch problems are not errors of this type: they are data
/// ([`FetchFailure`](crate::FetchFailure)) because the delivery engine
/// carries on without a policy and only reports them (TLS-RPT).
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    /// The policy body violates RFC 8461 §3.2.
    #[error("invalid MTA-STS policy: {0}")]
    InvalidPolicy(String),
    /// A domain name that cannot be an MTA-STS policy domain.
    #[error("invalid domain {0:?}")]
    InvalidDomain(String),
    /// Bad resolver configuration (extra CA, HTTP client).
    #[error("MTA-STS configuration: {0}")]
    Config(String),
    /// Reading or writing the policy cache.
    #[error("MTA-STS cache {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
