//! The SMTP wire protocol, free of I/O.
//!
//! Everything here operates on byte slices and returns values, so the
//! security-relevant parts (command parsing, address syntax, DATA framing,
//! command sequencing) are unit-tested and fuzzed without sockets. The
//! inbound server drives these types from its socket loop.

pub mod address;
pub mod command;
pub mod data;
pub mod line;
pub mod reply;
pub mod sasl;
pub mod session;

pub use address::{Domain, Mailbox, ReversePath};
pub use command::{Command, MailParams};
pub use data::{DataOptions, DataOutcome, DataReceiver, LineEndings};
pub use line::{LineError, LineReader};
pub use reply::Reply;
pub use session::{Action, Session, SessionConfig, Transaction};
