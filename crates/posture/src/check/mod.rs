//! `dns check`: resolves what a mail domain publishes and grades it against
//! its [`Posture`]. Every check runs on its own, concurrently, within
//! [`CheckOptions::timeout`]; a lookup failure becomes a `Fail` item for
//! that check and nothing else. All DNS goes through the given resolver
//! (its timeouts bound each query), the MTA-STS policy through the same
//! fetcher delivery uses.
//!
//! Each module keeps its record parsing and grading pure (unit-tested in
//! place) and its lookups in one `check` function.

mod bimi;
mod dkim;
mod dmarc;
mod dnssec;
mod mta_sts;
mod report;
mod spf;
mod tags;
mod tls_rpt;
mod tlsa;

pub use report::{Check, Item, Report, Verdict};

use crate::Posture;
use ironpost_dns::Dns;
use ironpost_mta_sts::FetchConfig;
use std::future::Future;
use std::time::Duration;

/// How long one check may take by default. Checks run concurrently, so
/// this bounds the whole run too; it is above the MTA-STS fetch's own
/// 30 s limit so that a slow fetch reports its own error.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct CheckOptions {
    /// The resolver; DNSSEC and TLSA verdicts need it validating
    /// (`DnsConfig::validate`).
    pub dns: Dns,
    /// For fetching the MTA-STS policy (tests add their CA and port here).
    pub mta_sts_fetch: FetchConfig,
    /// Limit for each check.
    pub timeout: Duration,
}

impl CheckOptions {
    /// The production settings: WebPKI roots, port 443, [`DEFAULT_TIMEOUT`].
    pub fn new(dns: Dns) -> CheckOptions {
        CheckOptions {
            dns,
            mta_sts_fetch: FetchConfig::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Runs every check for `posture.domain`; items come in [`Check`] order.
pub async fn check(posture: &Posture, opts: &CheckOptions) -> Report {
    let mut p = posture.clone();
    p.domain = tags::normalize(&p.domain);
    let (p, dns, t) = (&p, &opts.dns, opts.timeout);
    let (spf, dkim, dmarc, sts, rpt, bimi, dnssec, tlsa) = tokio::join!(
        bounded(Check::Spf, t, spf::check(p, dns)),
        bounded(Check::Dkim, t, dkim::check(p, dns)),
        bounded(Check::Dmarc, t, dmarc::check(p, dns)),
        bounded(
            Check::MtaSts,
            t,
            mta_sts::check(p, dns, &opts.mta_sts_fetch)
        ),
        bounded(Check::TlsRpt, t, tls_rpt::check(p, dns)),
        bounded(Check::Bimi, t, bimi::check(p, dns)),
        bounded(Check::Dnssec, t, dnssec::check(p, dns)),
        bounded(Check::Tlsa, t, tlsa::check(p, dns)),
    );
    Report {
        domain: p.domain.clone(),
        items: [spf, dkim, dmarc, sts, rpt, bimi, dnssec, tlsa].concat(),
    }
}

/// A check's items, or one `Fail` item if it did not finish in time.
async fn bounded(check: Check, limit: Duration, run: impl Future<Output = Vec<Item>>) -> Vec<Item> {
    match tokio::time::timeout(limit, run).await {
        Ok(items) => items,
        Err(_) => vec![Item::new(
            check,
            "timeout",
            Verdict::Fail,
            format!(
                "not finished after {:?}: DNS or HTTPS answers too slowly",
                limit
            ),
        )],
    }
}
