//! The inbound ESMTP server: sockets, STARTTLS, limits and timeouts around
//! the I/O-free state machine in `ironpost-wire`, with relay decisions from
//! the policy engine and durable storage in the spool.

pub mod auth;
pub mod budget;
mod conn;
mod listener;
mod per_ip;
mod received;
pub mod reception;
mod relay;
mod session;
pub mod spill;
pub mod stop;
pub mod tls;

pub use listener::{BoundListener, PreparedListener, Services};
pub use reception::Reception;
pub use tls::{TlsError, TlsSource};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("listener {listen}: {source}")]
    Tls {
        listen: String,
        source: Box<TlsError>,
    },
    #[error("listener {listen}: {reason}")]
    Config { listen: String, reason: String },
}

/// The machine's host name, for listeners that do not set `hostname`.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
