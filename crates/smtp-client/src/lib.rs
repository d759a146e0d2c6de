//! Outbound SMTP client for the delivery engine.
//!
//! The protocol pieces are pure functions and types, unit-tested and
//! usable from fuzz targets without sockets:
//!
//! - [`parse_reply`]: one (multi-line) reply from untrusted bytes;
//! - [`Capabilities::from_lines`]: EHLO keywords;
//! - [`DotStuffer`] / [`dot_stuff`] / [`check_data_stream`]: CRLF
//!   normalisation and dot-stuffing that can never emit a smuggled message;
//! - the [`command`] builders, which refuse arguments that could inject
//!   commands;
//! - [`fuzz`]: the same, wrapped with invariant checks for fuzz targets.
//!
//! [`SmtpClient`] drives them over TCP and STARTTLS with a timeout per
//! phase; [`tls`] builds the rustls configurations it uses, [`dane`] the
//! DANE (RFC 7672) one, and [`tls_report`] maps TLS failures to RFC 8460
//! result types.

pub mod body;
pub mod caps;
pub mod client;
pub mod command;
pub mod dane;
pub mod error;
pub mod fuzz;
pub mod reply;
pub mod tls;
pub mod tls_report;

pub use body::{check_data_stream, dot_stuff, DotStuffer};
pub use caps::Capabilities;
pub use client::{SmtpClient, Timeouts, TlsInfo};
pub use command::{MailParams, TransactionResult};
pub use dane::{dane_config, DaneFailure, DaneFailureKind, DaneVerifier, Tlsa};
pub use error::{ClientError, Phase, TlsError};
pub use reply::{parse_reply, EnhancedCode, Reply, ReplyError};
pub use tls_report::TlsResultType;
