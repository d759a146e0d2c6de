//! Test support for Ironpost integration tests: run the real `ironpost`
//! binary, talk SMTP to it over loopback sockets (plain and TLS), mint
//! throwaway certificates, and play the other side: SMTP servers, an
//! MTA-STS HTTPS server, DNS servers (plain and DNSSEC-signed) and Vault.
//!
//! testkit depends on `ironpost-smtp-client`, whose own tests use testkit:
//! those see a second copy of the smtp-client types, so the APIs they use
//! ([`pki`], [`fake_smtp`], [`https`], [`dns`]) deal only in PEM, DER,
//! rustls and hickory types. testkit must not depend on other Ironpost
//! crates whose tests use it (`ironpost-dns`, `ironpost-mta-sts`).
//!
//! Everything here is test-only; in particular [`tls::InsecureAcceptAnyServerCert`]
//! must never be used outside tests.

pub mod client;
pub mod daemon;
pub mod dns;
pub mod fake_smtp;
pub mod https;
pub mod pki;
pub mod redis;
pub mod sink;
pub mod tls;
pub mod vault;

pub use client::{dot_stuff, Reply, SmtpClient};
pub use daemon::{Daemon, DaemonOptions};
pub use pki::{self_signed, Leaf, TestCa};
pub use tls::TlsTrust;
