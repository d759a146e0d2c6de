//! What every inbound listener (SMTP in `ironpost-server`, HTTP in
//! `ironpost-admin`) shares:
//!
//! - [`TlsSource`]: the server certificate, from keysources and re-read at
//!   most every [`RELOAD_INTERVAL`] so rotation needs no restart, or
//!   self-signed and generated in memory when none is configured; with
//!   optional client-certificate verification and ALPN.
//! - [`AuthThrottle`]: failed authentication attempts counted per key
//!   (client IP, user name) across connections, with the time until a
//!   locked-out key may try again.

pub mod throttle;
pub mod tls;

pub use throttle::{ip_key, user_key, AuthThrottle};
pub use tls::{client_verifier, ClientCertMode, TlsError, TlsOptions, TlsSource, RELOAD_INTERVAL};
