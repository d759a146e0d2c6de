//! Test support for Ironpost integration tests: run the real `ironpost`
//! binary, talk SMTP to it over loopback sockets (plain and TLS), and mint
//! throwaway certificates.
//!
//! Everything here is test-only; in particular [`tls::InsecureAcceptAnyServerCert`]
//! must never be used outside tests.

pub mod client;
pub mod daemon;
pub mod https;
pub mod pki;
pub mod sink;
pub mod tls;
pub mod vault;

pub use client::{dot_stuff, Reply, SmtpClient};
pub use daemon::{Daemon, DaemonOptions};
pub use pki::{self_signed, TestCa};
pub use tls::TlsTrust;
