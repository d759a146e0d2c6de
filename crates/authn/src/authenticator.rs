//! The resolver every check uses, its caches and limits.

use crate::cache::{Caches, TtlCache};
use mail_auth::{RecordSet, Txt, MX};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

/// Bounds on what one message may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The longest any one check (SPF, DKIM, DMARC, ARC, iprev) may take,
    /// DNS included; past it the check gives `temperror`.
    pub timeout: Duration,
    /// Entries kept per DNS cache (TXT, MX, A, AAAA, PTR).
    pub cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(20),
            cache_entries: 10_000,
        }
    }
}

/// Cheap to clone; share one per daemon.
#[derive(Clone)]
pub struct Authenticator {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) auth: mail_auth::MessageAuthenticator,
    pub(crate) limits: Limits,
    pub(crate) caches: Arc<Caches>,
    /// The host performing the checks: SPF's `%{r}` macro.
    pub(crate) receiver: String,
}

/// [`mail_auth::Parameters`] with this authenticator's caches attached.
pub(crate) type Params<'x, P> = mail_auth::Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Authenticator {
    /// Checks that resolve through `dns` (the daemon's resolver).
    pub fn new(dns: &ironpost_dns::Dns, limits: Limits) -> Authenticator {
        Authenticator {
            inner: Arc::new(Inner {
                auth: mail_auth::MessageAuthenticator(dns.hickory()),
                caches: Arc::new(Caches::new(limits.cache_entries)),
                limits,
                receiver: "unknown".into(),
            }),
        }
    }

    /// The same checks (sharing resolver and caches) naming `host` as the
    /// host performing them: the `%{r}` of SPF explanations (RFC 7208
    /// §7.3; `unknown` otherwise).
    pub fn with_receiver(&self, host: &str) -> Authenticator {
        Authenticator {
            inner: Arc::new(Inner {
                auth: self.inner.auth.clone(),
                limits: self.inner.limits.clone(),
                caches: self.inner.caches.clone(),
                receiver: host.to_string(),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// `p` with this authenticator's caches attached, for the mail-auth
    /// checks (`self.inner.auth.verify_arc(self.params(&message))`).
    pub(crate) fn params<'x, P>(&'x self, p: P) -> Params<'x, P> {
        let c = &*self.inner.caches;
        mail_auth::Parameters::new(p)
            .with_txt_cache(&c.txt)
            .with_mx_cache(&c.mx)
            .with_ipv4_cache(&c.ipv4)
            .with_ipv6_cache(&c.ipv6)
            .with_ptr_cache(&c.ptr)
    }
}
