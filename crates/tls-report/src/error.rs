use thiserror::Error;

/// Everything this crate can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// SQLite failed (open, migrate, read or write).
    #[error("TLS-RPT store: {0}")]
    Store(#[from] rusqlite::Error),

    /// The database was written by a newer build; refusing it keeps that
    /// build's data intact.
    #[error("TLS-RPT store: schema version {found} is newer than this build's {supported}")]
    SchemaTooNew { found: i64, supported: i64 },

    /// The store holds something this build cannot read back.
    #[error("TLS-RPT store: corrupt row: {0}")]
    Corrupt(String),

    /// The writer thread is gone, or a batch it wrote was lost.
    #[error("TLS-RPT recorder: {0}")]
    Recorder(String),

    /// The domain publishes no `v=TLSRPTv1` record.
    #[error("no TLS-RPT record")]
    NoRecord,

    /// RFC 8460 §3: more than one record means the domain does not
    /// implement TLS-RPT.
    #[error("{0} TLS-RPT records (exactly one is allowed)")]
    MultipleRecords(usize),

    /// The record is there but does not follow RFC 8460 §3.
    #[error("invalid TLS-RPT record: {0}")]
    InvalidRecord(String),

    /// A report, file name or message could not be built from the given
    /// values.
    #[error("TLS-RPT report: {0}")]
    Report(String),

    /// The HTTPS endpoint answered with a non-2xx status.
    #[error("POST {url}: HTTP {status}{detail}")]
    HttpStatus {
        url: String,
        status: u16,
        /// The start of the response body, if any (": ..."), for the log.
        detail: String,
    },

    /// The POST failed before a status: URL, TLS, connection or timeout.
    #[error("POST {url}: {reason}")]
    Http { url: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
