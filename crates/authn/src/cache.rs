//! TTL caches for DNS answers, shared by every check of one
//! [`Authenticator`](crate::Authenticator).
//!
//! Each cache implements [`mail_auth::ResolverCache`], so the checks that
//! run inside mail-auth (ARC) use them too; our own lookups (SPF, DKIM
//! keys, DMARC, iprev) fill the address, MX and PTR caches with the same
//! keys mail-auth uses (lower-case, fully qualified, trailing dot), and
//! keep raw TXT answers in a cache of their own (mail-auth's TXT cache
//! holds parsed records). An entry lives until the `valid_until` of its
//! DNS answer (the smallest TTL in it); a cache holds at most
//! [`Limits::cache_entries`](crate::Limits::cache_entries) entries and,
//! when full, drops the entry that would expire soonest. Only positive
//! answers are cached here: the resolver's own cache keeps negative ones.

use mail_auth::{RecordSet, ResolverCache, Txt, MX};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A bounded map whose entries expire.
pub struct TtlCache<K, V> {
    capacity: usize,
    inner: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, (V, Instant, u64)>,
    /// Expiry order: (valid_until, insertion number) → key.
    by_expiry: BTreeMap<(Instant, u64), K>,
    seq: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            capacity,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                by_expiry: BTreeMap::new(),
                seq: 0,
            }),
        }
    }

    /// Entries held now (expired ones included until touched).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        // A panic while holding the lock leaves the maps consistent (every
        // mutation below is a single map operation pair), so poisoning is
        // not a reason to stop caching.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_at<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut e = self.lock();
        let (value, until, seq) = e.map.get(key)?;
        if *until > now {
            return Some(value.clone());
        }
        let order = (*until, *seq);
        e.by_expiry.remove(&order);
        e.map.remove(key);
        None
    }

    fn insert_at(&self, key: K, value: V, valid_until: Instant, now: Instant) {
        if self.capacity == 0 || valid_until <= now {
            return;
        }
        let mut e = self.lock();
        if let Some((_, until, seq)) = e.map.remove(&key) {
            e.by_expiry.remove(&(until, seq));
        }
        // Expired entries go first, then those closest to expiring.
        while e.map.len() >= self.capacity {
            let Some((_, oldest)) = e.by_expiry.pop_first() else {
                break;
            };
            e.map.remove(&oldest);
        }
        e.seq += 1;
        let seq = e.seq;
        e.by_expiry.insert((valid_until, seq), key.clone());
        e.map.insert(key, (value, valid_until, seq));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_at(name, Instant::now())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut e = self.lock();
        let (value, until, seq) = e.map.remove(name)?;
        e.by_expiry.remove(&(until, seq));
        Some(value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.insert_at(key, value, valid_until, Instant::now())
    }
}

/// Raw TXT answers: one entry per record, its character-strings joined.
pub type RawTxt = Arc<[Box<[u8]>]>;

/// The caches of one authenticator.
pub struct Caches {
    /// mail-auth's parsed TXT records (DKIM keys, DMARC, ...), for the
    /// checks that run inside mail-auth.
    pub txt: TtlCache<Box<str>, Txt>,
    pub mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    /// Raw TXT answers for our own parsers (SPF, DKIM keys, DMARC).
    pub txt_raw: TtlCache<Box<str>, RawTxt>,
}

impl Caches {
    pub fn new(entries: usize) -> Caches {
        Caches {
            txt: TtlCache::new(entries),
            mx: TtlCache::new(entries),
            ipv4: TtlCache::new(entries),
            ipv6: TtlCache::new(entries),
            ptr: TtlCache::new(entries),
            txt_raw: TtlCache::new(entries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_at_valid_until() {
        let c: TtlCache<Box<str>, u32> = TtlCache::new(10);
        let now = Instant::now();
        c.insert_at("a.".into(), 1, now + Duration::from_secs(5), now);
        assert_eq!(c.get_at("a.", now + Duration::from_secs(4)), Some(1));
        assert_eq!(c.get_at("a.", now + Duration::from_secs(5)), None);
        assert!(c.is_empty(), "an expired entry is dropped when read");
        // Already expired: never stored.
        c.insert_at("b.".into(), 2, now, now);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_dropping_soonest_expiry_first() {
        let c: TtlCache<u32, u32> = TtlCache::new(3);
        let now = Instant::now();
        for (k, ttl) in [(1, 30), (2, 10), (3, 20)] {
            c.insert_at(k, k, now + Duration::from_secs(ttl), now);
        }
        c.insert_at(4, 4, now + Duration::from_secs(40), now);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get_at(&2, now), None, "the entry closest to expiry went");
        for k in [1, 3, 4] {
            assert_eq!(c.get_at(&k, now), Some(k));
        }
        // Replacing a key does not grow the cache.
        c.insert_at(4, 40, now + Duration::from_secs(50), now);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get_at(&4, now), Some(40));
        assert_eq!(ResolverCache::remove(&c, &4), Some(40));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let c: TtlCache<u32, u32> = TtlCache::new(0);
        let now = Instant::now();
        c.insert_at(1, 1, now + Duration::from_secs(5), now);
        assert!(c.is_empty());
    }
}
