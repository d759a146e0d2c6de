//! One shared copy of the values that many queued parts repeat: recipient
//! senders and domains, routing labels, egress choices. With a million messages
//! waiting, a copy each is tens of megabytes for a handful of values.

use crate::model::{EgressChoice, RouteLabels};
use crate::queue_manager::lock;
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Below this many values the set is never pruned.
const MIN_PRUNE: usize = 1024;

/// The values interned by one queue manager.
#[derive(Default)]
pub(crate) struct Interned {
    /// Envelope senders. A VERP sender is unique per message and costs a
    /// set entry (about 18 bytes) instead of saving 48; a bulk sender's
    /// many messages share one.
    pub senders: Interner<str>,
    pub domains: Interner<str>,
    pub labels: Interner<RouteLabels>,
    pub egress: Interner<EgressChoice>,
}

pub(crate) struct Interner<T: ?Sized> {
    set: Mutex<Set<T>>,
}

struct Set<T: ?Sized> {
    values: HashSet<Arc<T>>,
    /// Prune when the set reaches this size: values that only the set
    /// still holds are dropped, so it tracks what is queued, amortised.
    prune_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            set: Mutex::new(Set {
                values: HashSet::new(),
                prune_at: MIN_PRUNE,
            }),
        }
    }
}

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// The shared copy of `key`, made by `make` the first time.
    pub fn get<Q>(&self, key: &Q, make: impl FnOnce(&Q) -> Arc<T>) -> Arc<T>
    where
        Arc<T>: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let mut s = lock(&self.set);
        if let Some(v) = s.values.get(key) {
            return v.clone();
        }
        if s.values.len() >= s.prune_at {
            s.values.retain(|v| Arc::strong_count(v) > 1);
            s.prune_at = (s.values.len() * 2).max(MIN_PRUNE);
        }
        let v = make(key);
        s.values.insert(v.clone());
        v
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.set).values.len()
    }
}

impl Interner<str> {
    pub fn str(&self, s: &str) -> Arc<str> {
        self.get(s, |s| Arc::from(s))
    }
}

impl<T: Hash + Eq + Clone> Interner<T> {
    pub fn value(&self, v: T) -> Arc<T> {
        self.get(&v, |v| Arc::new(v.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_value() {
        let i: Interner<str> = Interner::default();
        let a = i.str("example.com");
        let b = i.str("example.com");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.str("example.net")));
    }

    #[test]
    fn values_no_one_holds_are_pruned() {
        let i: Interner<str> = Interner::default();
        let kept = i.str("kept.test");
        for n in 0..3 * MIN_PRUNE {
            drop(i.str(&format!("d{n}.test")));
        }
        assert!(i.len() <= MIN_PRUNE + 1, "{}", i.len());
        assert!(Arc::ptr_eq(&kept, &i.str("kept.test")));
    }
}
