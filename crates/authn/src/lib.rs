//! Inbound authentication: what a receiving server checks on the mail it
//! accepts, built on `mail-auth` and Ironpost's own resolver.
//!
//! Every check returns [`AuthResult`]s (RFC 8601 `resinfo`: method,
//! result, reason, properties), the shape KumoMTA's Lua API hands to the
//! policy and `Authentication-Results` carries. Every DNS lookup goes
//! through [`Authenticator`]'s resolver (the daemon's, with its timeouts)
//! and a TTL cache, and each check is bounded: SPF's 10 lookups and 2 void
//! lookups, at most [`MAX_DKIM_SIGNATURES`] signatures, one DMARC record,
//! at most [`MAX_ARC_SETS`] ARC sets, and [`Limits::timeout`] for each
//! check (past it: `temperror`).
//!
//! The checks are methods of [`Authenticator`]: `spf_check_host` ([`spf`],
//! RFC 7208), `dkim_verify` ([`dkim`]), `dmarc_check` ([`dmarc`], RFC 7489
//! with the Public Suffix List compiled in), `iprev` ([`iprev`]) and ARC
//! ([`arc`]); [`header`] writes `Authentication-Results` and removes the
//! ones claiming our authserv-id.

pub mod arc;
mod authenticator;
mod cache;
pub mod dkim;
pub mod dmarc;
mod dns;
mod error;
pub mod header;
pub mod iprev;
mod result;
pub mod spf;

pub use authenticator::{Authenticator, Limits};
pub use dmarc::DmarcOutcome;
pub use error::AuthnError;
pub use result::AuthResult;
pub use spf::SpfOutcome;

/// KumoMTA's limit: signatures past it are not checked.
pub const MAX_DKIM_SIGNATURES: usize = 10;
/// RFC 8617 §4.2.1: a chain longer than 50 sets fails; we stop far earlier.
pub const MAX_ARC_SETS: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks' futures can be spawned (this only has to compile).
    #[allow(dead_code)]
    fn futures_are_send(a: &Authenticator, m: &[u8], r: &AuthResult) {
        fn send<T: Send>(_: T) {}
        let ip = std::net::IpAddr::from([192, 0, 2, 1]);
        send(a.spf_check_host(ip, "h", "d", Some("s@d")));
        send(a.spf_check_host_explained(ip, "h", "d", None));
        send(a.dkim_verify(m));
        send(a.dmarc_check(m, "d", r, std::slice::from_ref(r)));
        send(a.iprev(ip));
    }
}
