//! A node-local generic cell rate algorithm (GCRA): up to `burst` events
//! may pass at once, then one every `interval`. The shared form is the same
//! algorithm run inside Redis (see `redis_store`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a throttle said, with the numbers KumoMTA's `throttle()` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `None`: go now. `Some(d)`: ask again after `d`.
    pub retry_after: Option<Duration>,
    /// Events that could still pass at once.
    pub remaining: u64,
    /// Until the throttle is back to its full burst.
    pub reset_after: Duration,
}

impl Decision {
    /// From the time until the theoretical arrival time after this
    /// decision, as both forms compute it.
    pub fn from_parts(
        retry_after: Option<Duration>,
        ahead: Duration,
        interval: Duration,
        burst: u64,
    ) -> Decision {
        let capacity = interval.saturating_mul(burst.min(u32::MAX as u64) as u32);
        let room = capacity.saturating_sub(ahead);
        let remaining = if interval.is_zero() {
            burst
        } else {
            (room.as_nanos() / interval.as_nanos()) as u64
        };
        Decision {
            retry_after,
            remaining,
            reset_after: ahead,
        }
    }
}

#[derive(Debug)]
pub struct Gcra {
    interval: Duration,
    burst: u64,
    /// Theoretical arrival time of the next event.
    tat: Mutex<Option<Instant>>,
}

impl Gcra {
    pub fn new(interval: Duration, burst: u64) -> Gcra {
        Gcra {
            interval,
            burst: burst.max(1),
            tat: Mutex::new(None),
        }
    }

    /// Takes a slot now when there is one.
    pub fn decide(&self, now: Instant) -> Decision {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let current = tat.map_or(now, |t| t.max(now));
        let next = current + self.interval;
        let burst_offset = self
            .interval
            .saturating_mul(self.burst.min(u32::MAX as u64) as u32);
        let allow_at = next.checked_sub(burst_offset).unwrap_or(now);
        if allow_at <= now {
            *tat = Some(next);
            Decision::from_parts(None, next - now, self.interval, self.burst)
        } else {
            Decision::from_parts(
                Some(allow_at - now),
                current - now,
                self.interval,
                self.burst,
            )
        }
    }

    /// Takes a slot now, or says how long to wait before asking again.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        match self.decide(now).retry_after {
            None => Ok(()),
            Some(d) => Err(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let g = Gcra::new(Duration::from_millis(200), 5);
        let t = Instant::now();
        for left in (0..5).rev() {
            let d = g.decide(t);
            assert_eq!((d.retry_after, d.remaining), (None, left));
        }
        let d = g.decide(t);
        assert_eq!(d.retry_after, Some(Duration::from_millis(200)));
        assert_eq!(d.remaining, 0);
        assert!(g.try_take(t + Duration::from_millis(200)).is_ok());
    }
}
