//! Policy discovery with caching: RFC 8461 §3 and §5.1 put together.

use crate::cache::{now_unix, CachedPolicy, PolicyCache};
use crate::dns::{StsDns, TxtError};
use crate::domain;
use crate::fetch::{
    FetchConfig, FetchFailure, PolicyFetcher, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FETCH_TIMEOUT,
};
use crate::policy::{Mode, Policy};
use crate::txt::{parse_txt, TxtOutcome};
use crate::StsError;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a failed fetch, the same domain is not fetched again for this
/// long: each routing of its mail would otherwise wait for the timeout.
const FAILURE_BACKOFF: Duration = Duration::from_secs(300);
/// Bound on remembered failures (domains with a broken policy host).
const MAX_FAILURES: usize = 10_000;
/// A cached policy is re-fetched (same TXT id) once it is this old, or
/// half its max_age, whichever comes first (RFC 8461 §10.2: refresh
/// proactively, so a blocked fetch near expiry can't remove the policy).
const REFRESH_AFTER: u64 = 24 * 3600;

/// Settings for [`StsResolver`].
#[derive(Debug, Clone)]
pub struct StsConfig {
    /// Directory of cached policies; created (0700) if missing.
    pub cache_dir: PathBuf,
    /// Extra trusted CA certificates (PEM), on top of the system roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Policy host port: 443 except in tests.
    pub https_port: u16,
    pub connect_timeout: Duration,
    pub fetch_timeout: Duration,
}

impl StsConfig {
    /// Defaults: port 443, connect 10 s, whole fetch 30 s, system roots.
    pub fn new(cache_dir: impl Into<PathBuf>) -> StsConfig {
        StsConfig {
            cache_dir: cache_dir.into(),
            extra_ca_pem: None,
            https_port: 443,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// Where the returned policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched during this call.
    Fresh,
    /// From the cache (memory or disk).
    Cached,
    /// No policy applies.
    None,
}

/// The answer for one domain.
#[derive(Debug, Clone)]
pub struct StsOutcome {
    /// The policy in force; `None` means the domain has no MTA-STS (or
    /// its mode is `none`). Never has mode `none` itself.
    pub policy: Option<Arc<Policy>>,
    /// What went wrong while refreshing, for TLS-RPT; may be set even
    /// though a cached policy is returned.
    pub failure: Option<FetchFailure>,
    /// `Source::None` exactly when `policy` is `None`.
    pub source: Source,
}

impl StsOutcome {
    fn none(failure: Option<FetchFailure>) -> StsOutcome {
        StsOutcome {
            policy: None,
            failure,
            source: Source::None,
        }
    }

    /// The cached policy if there is one, else no policy.
    fn fallback(cached: Option<Arc<CachedPolicy>>, failure: Option<FetchFailure>) -> StsOutcome {
        match cached {
            Some(c) => StsOutcome {
                policy: Some(Arc::new(c.policy.clone())),
                failure,
                source: Source::Cached,
            },
            None => StsOutcome::none(failure),
        }
    }
}

/// Discovers, fetches and caches MTA-STS policies. Create one per
/// process (it holds the HTTP client and the cache) and share it.
pub struct StsResolver {
    fetcher: PolicyFetcher,
    cache: PolicyCache,
    fetch_timeout: Duration,
    /// Per-domain locks so concurrent deliveries to one domain share a
    /// single discovery/fetch instead of racing.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Recent fetch failures per domain and TXT id.
    failures: Mutex<HashMap<String, (Instant, String, FetchFailure)>>,
}

impl StsResolver {
    pub fn new(config: StsConfig) -> Result<StsResolver, StsError> {
        let fetcher = PolicyFetcher::new(&FetchConfig {
            extra_ca_pem: config.extra_ca_pem,
            https_port: config.https_port,
            connect_timeout: config.connect_timeout,
            fetch_timeout: config.fetch_timeout,
        })?;
        Ok(StsResolver {
            fetcher,
            cache: PolicyCache::open(config.cache_dir)?,
            fetch_timeout: config.fetch_timeout,
            locks: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The unexpired cached policy of `domain`, without any lookup.
    pub async fn cached(&self, domain: &str) -> Option<Arc<CachedPolicy>> {
        let domain = domain::normalize(domain)?;
        self.cache.get(&domain).await
    }

    /// The MTA-STS policy that applies to mail for `domain`.
    ///
    /// - TXT lookup fails temporarily, or there is no (single, valid)
    ///   STSv1 record: the unexpired cached policy, if any (§5.1: a
    ///   policy stays in force until it expires).
    /// - The TXT id matches the unexpired cached policy: that policy, no
    ///   fetch, unless the policy is due for a proactive refresh (a day
    ///   old, or half its max_age); a failed refresh keeps it.
    /// - A fetch for this domain and id failed in the last five minutes:
    ///   the cached policy (if any) and that failure, without a new fetch.
    /// - Otherwise fetch. A `none` policy deletes the cached one and
    ///   yields no policy; `enforce`/`testing` are cached and returned.
    ///   On failure the cached policy (if any) is returned along with the
    ///   failure.
    pub async fn policy_for<D: StsDns>(&self, dns: &D, domain: &str) -> StsOutcome {
        let Some(domain) = domain::normalize(domain) else {
            tracing::debug!("MTA-STS: {domain:?} is not a valid domain");
            return StsOutcome::none(None);
        };
        let _guard = self.lock(&domain).await;
        let cached = self.cache.get(&domain).await;

        let name = format!("_mta-sts.{domain}");
        let txt = match tokio::time::timeout(self.fetch_timeout, dns.txt(&name)).await {
            Ok(r) => r,
            Err(_) => Err(TxtError::Temporary("timed out".into())),
        };
        let id = match txt {
            Ok(records) => match parse_txt(&records) {
                TxtOutcome::Id(id) => id,
                TxtOutcome::NoPolicy => return StsOutcome::fallback(cached, None),
                TxtOutcome::Invalid(why) => {
                    tracing::debug!("MTA-STS: {name}: invalid record: {why}");
                    return StsOutcome::fallback(cached, None);
                }
            },
            Err(TxtError::NotFound) => return StsOutcome::fallback(cached, None),
            Err(TxtError::Temporary(e)) => {
                tracing::debug!("MTA-STS: {name}: temporary failure: {e}");
                return StsOutcome::fallback(cached, None);
            }
        };

        if let Some(c) = &cached {
            let refresh_after = (c.policy.max_age / 2).min(REFRESH_AFTER);
            if c.id == id && now_unix().saturating_sub(c.fetched_at) < refresh_after {
                return StsOutcome::fallback(cached, None);
            }
        }
        if let Some(failure) = self.recent_failure(&domain, &id) {
            return StsOutcome::fallback(cached, Some(failure));
        }

        let fetched = self.fetcher.fetch(dns, &domain).await;
        self.note_failure(&domain, &id, fetched.as_ref().err());
        match fetched {
            Ok(policy) if policy.mode == Mode::None => {
                // §5: "none" withdraws the policy; forget the old one now
                // rather than keep enforcing it until it expires.
                if let Err(e) = self.cache.remove(&domain).await {
                    tracing::warn!("{e}");
                }
                StsOutcome::none(None)
            }
            Ok(policy) => {
                let policy = Arc::new(policy);
                if policy.max_age == 0 {
                    // Expired on arrival: use once, store nothing.
                    if let Err(e) = self.cache.remove(&domain).await {
                        tracing::warn!("{e}");
                    }
                } else {
                    let entry = CachedPolicy::new(&domain, &id, (*policy).clone(), now_unix());
                    if let Err(e) = self.cache.put(entry).await {
                        tracing::warn!("{e}");
                    }
                }
                StsOutcome {
                    policy: Some(policy),
                    failure: None,
                    source: Source::Fresh,
                }
            }
            Err(failure) => {
                tracing::info!("MTA-STS policy fetch for {domain}: {failure}");
                StsOutcome::fallback(cached, Some(failure))
            }
        }
    }

    fn failures(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, String, FetchFailure)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure of a fetch for this domain and TXT id in the last
    /// [`FAILURE_BACKOFF`]; a new id is worth a fetch at once.
    fn recent_failure(&self, domain: &str, id: &str) -> Option<FetchFailure> {
        let f = self.failures();
        let (at, failed_id, failure) = f.get(domain)?;
        (failed_id == id && at.elapsed() < FAILURE_BACKOFF).then(|| failure.clone())
    }

    fn note_failure(&self, domain: &str, id: &str, failure: Option<&FetchFailure>) {
        let mut f = self.failures();
        match failure {
            None => {
                f.remove(domain);
            }
            Some(failure) => {
                if f.len() >= MAX_FAILURES {
                    f.retain(|_, (at, _, _)| at.elapsed() < FAILURE_BACKOFF);
                    if f.len() >= MAX_FAILURES {
                        // Still full of recent failures: make room rather
                        // than let new ones wait for timeouts every time.
                        if let Some(oldest) = f
                            .iter()
                            .min_by_key(|(_, (at, _, _))| *at)
                            .map(|(d, _)| d.clone())
                        {
                            f.remove(&oldest);
                        }
                    }
                }
                f.insert(
                    domain.to_string(),
                    (Instant::now(), id.to_string(), failure.clone()),
                );
            }
        }
    }

    async fn lock(&self, domain: &str) -> DomainGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(domain.to_string()).or_default().clone()
        };
        DomainGuard {
            guard: Some(lock.lock_owned().await),
            domain: domain.to_string(),
            locks: &self.locks,
        }
    }
}

/// Holds a domain's lock; drops the map entry when nobody else wants it,
/// so the map does not grow with every domain ever seen.
struct DomainGuard<'a> {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    domain: String,
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Arcs are only cloned under this lock, so a count of one (the
        // map's) means no task holds or waits for it.
        if locks
            .get(&self.domain)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.domain);
        }
    }
}
