//! Keys out of the network process.
//!
//! The process that parses untrusted SMTP holds no DKIM or ARC private key
//! and no Vault token for them. A separate signer process (the same binary,
//! started by `ironpost serve` before it drops privileges, as its own user,
//! undumpable, under a seccomp allowlist) loads and caches the keys and
//! answers signing requests: the network process sends the bytes to sign
//! and a key's location, and gets a signature back.
//!
//! - [`protocol`]: the versioned, length-prefixed frames (`Sign`, `Health`).
//! - [`keys`]: which keys the signer serves, and the TTL cache.
//! - [`service`]: one connection's loop, rate-limited.
//! - [`supervisor`]: forks a sandboxed signer per connection the daemon
//!   opens, so a dead signer is replaced without privileges.
//! - [`client`]: the daemon's side, which queues and retries across a
//!   signer restart.
//! - [`sandbox`]: the seccomp filters of both processes.

pub mod client;
mod error;
pub mod keys;
pub mod protocol;
pub mod sandbox;
pub mod service;
pub mod supervisor;

pub use client::{RemoteKey, SignFailure, SignerClient};
pub use error::SignerError;
pub use keys::KeyPolicy;
