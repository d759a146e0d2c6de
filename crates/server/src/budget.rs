//! The budget for message content held in memory. Every connection's DATA
//! buffer draws on one shared budget, and so does each message while it is
//! processed (policy event, signing, spool write) after its content, spilled
//! to disk while it arrived, is read back. A transaction whose buffer would
//! go past the budget is refused with `452 4.3.1` (its bytes discarded as
//! they arrive, so the SMTP dialogue stays in step); a finished message
//! waits a while for room before it is refused the same way; and a MAIL
//! FROM while the budget is nearly spent is refused too. The daemon's
//! memory for mail in flight therefore stays under the budget whatever the
//! number of connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Below this much headroom, new transactions are not started.
const MIN_HEADROOM: usize = 1 << 20;

#[derive(Debug)]
pub struct InflightBudget {
    limit: usize,
    used: AtomicUsize,
    /// The most used since [`InflightBudget::take_high_water`] last asked.
    high_water: AtomicUsize,
    /// Woken whenever a reservation gives memory back.
    released: tokio::sync::Notify,
}

impl InflightBudget {
    pub fn new(limit: usize) -> Arc<InflightBudget> {
        Arc::new(InflightBudget {
            limit,
            used: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
            released: tokio::sync::Notify::new(),
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
    /// The most that was in use since the last call (then reset to what is
    /// in use now): tells when a peak has passed.
    pub fn take_high_water(&self) -> usize {
        self.high_water.swap(self.used(), Ordering::Relaxed)
    }

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
                Ok(_) => {
                    self.high_water.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
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

impl Reservation {
    /// Like [`Reservation::grow_to`], waiting up to `wait` for other
    /// reservations to give memory back. More than the whole budget never
    /// fits and is refused at once.
    pub async fn grow_to_within(&mut self, total: usize, wait: std::time::Duration) -> bool {
        if total > self.budget.limit {
            return false;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let budget = self.budget.clone();
        loop {
            // Registered before the attempt, so a release in between is not
            // missed.
            let released = budget.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.grow_to(total) {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return false;
            }
        }
    }

    /// Gives back what is held beyond `total`.
    pub fn shrink_to(&mut self, total: usize) {
        if total < self.held {
            self.budget
                .used
                .fetch_sub(self.held - total, Ordering::AcqRel);
            self.held = total;
            self.budget.released.notify_waiters();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        if self.held > 0 {
            self.budget.released.notify_waiters();
        }
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

    #[tokio::test]
    async fn a_waiting_reservation_gets_memory_given_back() {
        use std::time::Duration;
        let b = InflightBudget::new(10 << 20);
        let mut a = Reservation::new(&b);
        assert!(a.grow_to(8 << 20));
        let mut w = Reservation::new(&b);
        assert!(
            !w.grow_to_within(11 << 20, Duration::from_secs(5)).await,
            "never fits"
        );
        assert!(!w.grow_to_within(4 << 20, Duration::from_millis(50)).await);
        let waiter = tokio::spawn(async move {
            let ok = w.grow_to_within(4 << 20, Duration::from_secs(5)).await;
            (ok, w)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.shrink_to(1 << 20);
        let (ok, w) = waiter.await.unwrap();
        assert!(ok);
        assert_eq!(b.used(), 5 << 20);
        drop((a, w));
        assert_eq!(b.used(), 0);
    }
}
