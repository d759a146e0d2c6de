//! SMTP TLS Reporting (RFC 8460), sending side.
//!
//! - [`Session`] ([`model`]): what one outbound session produced; delivery
//!   hands it to a [`Recorder`], which never blocks it.
//! - [`Store`]: the per-day aggregate in SQLite, and the state of each
//!   day's reports per destination (retries, giving up, pruning).
//! - [`build_report`], [`gzip`], [`file_name`] ([`report`]): the §4.4 JSON
//!   report and its §5.1 file name.
//! - [`parse_txt`] ([`rua`]): the `_smtp._tls` record.
//! - [`build_message`]: the §5.3 report mail for `mailto:` destinations.
//! - [`post_https`]: the §5.4 POST for `https:` destinations.
//!
//! DNS, the queue and scheduling are the caller's; nothing here does I/O
//! but the store and the POST.
//!
//! A day's report, put together:
//! 1. `store.days_ready(today)`; for each (day, domain) look up
//!    [`record_name`] and [`parse_txt`]: no valid record →
//!    [`Store::mark_no_rua`], else [`Store::start_sends`] with the URIs.
//! 2. For each of `store.pending_sends(now)`: [`Store::aggregate`],
//!    [`render`] with [`report_id`], then [`build_message`] and enqueue,
//!    or [`post_https`]; then [`Store::mark_sent`] or
//!    [`Store::mark_failed`] (next try: now + [`retry_delay`]).
//! 3. Daily, [`Store::prune`].

mod error;
pub mod message;
pub mod model;
pub mod post;
mod recorder;
pub mod report;
pub mod rua;
pub mod store;

pub use error::{Error, Result};
pub use message::{build_message, ReportMessage};
pub use model::{
    Aggregate, Failure, FailureCount, PolicyAggregate, PolicyType, Session, SessionPolicy,
};
pub use post::{post_https, CONTENT_TYPE_GZIP};
pub use recorder::{Recorder, DEFAULT_CAPACITY};
pub use report::{
    build_report, file_name, gzip, render, report_id, RenderedReport, Report, ReportOptions,
};
pub use rua::{join_strings, parse_record, parse_txt, record_name, Rua, TlsRptRecord};
pub use store::{retry_delay, FailOutcome, SendRecord, SendState, Store, GIVE_UP_AFTER, KEEP_DAYS};
