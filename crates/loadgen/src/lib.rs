//! `ironpost traffic-gen`: an SMTP load generator and the counting sink
//! that benchmarks send to.
//!
//! - [`generator`]: the run (workers, budget, progress line) behind
//!   `traffic-gen`; [`client`] its SMTP client (pipelining, STARTTLS, AUTH
//!   PLAIN), the transaction kept as a state machine without I/O;
//!   [`message`] the messages; [`stats`] and [`report`] what is measured
//!   and how it is shown (a table or JSON).
//! - [`sink`]: `traffic-gen sink`, which accepts and discards mail as
//!   cheaply as it can, counts it, and can require STARTTLS.
//! - [`tls`]: the rustls configurations of both (ring provider).

pub mod client;
pub mod error;
pub mod generator;
pub mod message;
pub mod report;
pub mod sink;
pub mod stats;
pub mod tls;

pub use error::{Error, Phase};
pub use generator::{run, GenConfig, Progress};
pub use message::{numbered_domains, Addressing, MessageTemplate};
pub use report::Report;
pub use sink::{Sink, SinkConfig, SinkCounters};
pub use tls::ClientTls;
