//! MTA-STS (RFC 8461), sender side.
//!
//! - [`Policy`]: strict parsing of the policy file and MX matching;
//! - [`parse_txt`]: the `_mta-sts` TXT record;
//! - [`PolicyFetcher`]: the HTTPS fetch, with WebPKI validation, no
//!   redirects, size and time limits, and failures classified for
//!   TLS-RPT ([`FetchFailureKind`]);
//! - [`StsResolver`]: all of it plus a cache on disk that survives
//!   restarts, following the §5.1 rules on when a cached policy stays in
//!   force.
//!
//! DNS is supplied by the caller through [`StsDns`]; the policy host is
//! resolved through it too, never through the system resolver.
//! Applying the policy to MX selection and TLS is the caller's job.

mod cache;
mod dns;
mod domain;
mod error;
mod fetch;
mod policy;
mod resolver;
mod txt;

pub use cache::CachedPolicy;
pub use dns::{StsDns, TxtError};
pub use error::StsError;
pub use fetch::{
    FetchConfig, FetchFailure, FetchFailureKind, PolicyFetcher, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FETCH_TIMEOUT, MAX_POLICY_SIZE,
};
pub use policy::{Mode, Policy, MAX_AGE_LIMIT};
pub use resolver::{Source, StsConfig, StsOutcome, StsResolver};
pub use txt::{parse_txt, TxtOutcome};

/// Error details quote what a policy host sent; keep them short, since they
/// go into logs and into every delivery record while the failure lasts.
pub(crate) fn clip(mut s: String) -> String {
    const MAX: usize = 300;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}
