//! The budget for message content held in memory while it is received.
//! Every connection's DATA buffer draws on one shared budget; a transaction
//! that would go past it is refused with `452 4.3.1` (its bytes discarded
//! as they arrive, so the SMTP dialogue stays in step), and a MAIL FROM
//! while the budget is nearly spent is refused the same way. The daemon's
//! memory for mail in flight therefore stays under the budget whatever
//! the number of connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Below this much headroom, new transactions are not started.
const MIN_HEADROOM: usize = 1 << 20;

#[derive(Debug)]
pub struct InflightBudget {
    limit: usize,
    used: AtomicUsize,
}

impl InflightBudget {
    pub fn new(limit: usize) -> Arc<InflightBudget> {
        Arc::new(InflightBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// A quarter of the machine's memory, at least 256 MiB.
    pub fn default_limit() -> usize {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            })
            .map(|kib| kib * 1024)
            .unwrap_or(4 << 30);
        (total / 4).max(256 << 20)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Room for another transaction.
    pub fn has_headroom(&self) -> bool {
        self.used() + MIN_HEADROOM <= self.limit
    }

    fn try_take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|v| *v <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// What one transaction holds; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<InflightBudget>,
    held: usize,
}

impl Reservation {
    pub fn new(budget: &Arc<InflightBudget>) -> Reservation {
        Reservation {
            budget: budget.clone(),
            held: 0,
        }
    }

    /// Hold `total` bytes in all (growing only). False when the budget has
    /// no room: what was held stays held until the reservation is dropped.
    pub fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.held {
            return true;
        }
        let more = total - self.held;
        if self.budget.try_take(more) {
            self.held = total;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let b = InflightBudget::new(10 << 20);
        let mut a = Reservation::new(&b);
        assert!(a.grow_to(6 << 20));
        let mut c = Reservation::new(&b);
        assert!(!c.grow_to(5 << 20), "over the budget");
        assert!(c.grow_to(7 << 19));
        assert!(!b.has_headroom(), "less than 1 MiB left");
        drop(a);
        assert_eq!(b.used(), 7 << 19);
        assert!(b.has_headroom());
        drop(c);
        assert_eq!(b.used(), 0);
        assert!(InflightBudget::default_limit() >= 256 << 20);
    }
}
