use thiserror::Error;

#[derive(Debug, Error)]
pub enum SignerError {
    #[error("signer protocol: {0}")]
    Protocol(String),
    #[error("signer I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("seccomp filter: {0}")]
    Sandbox(String),
    /// The signer did not answer in time, even after a restart.
    #[error("the signer process is unavailable: {0}")]
    Unavailable(String),
}
