//! Rate limits for a ready queue (`max_message_rate`,
//! `max_connection_rate`): a generic cell rate algorithm (GCRA) kept in
//! memory, so the limits are per node. Up to `max_burst` events may pass
//! at once; after that they are spaced `period / limit` apart.

use ironpost_policy::throttle::ThrottleSpec;
use std::sync::Mutex;
use tokio::time::{Duration, Instant};

#[derive(Debug)]
pub struct Gcra {
    interval: Duration,
    burst_offset: Duration,
    /// Theoretical arrival time of the next event.
    tat: Mutex<Option<Instant>>,
}

impl Gcra {
    pub fn new(spec: &ThrottleSpec) -> Gcra {
        let interval = spec.interval();
        Gcra {
            interval,
            burst_offset: interval.saturating_mul(spec.max_burst.min(u32::MAX as u64) as u32),
            tat: Mutex::new(None),
        }
    }

    /// Takes a slot now, or says how long to wait before asking again.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let current = tat.map_or(now, |t| t.max(now));
        let next = current + self.interval;
        let allow_at = next.checked_sub(self.burst_offset).unwrap_or(now);
        if allow_at <= now {
            *tat = Some(next);
            Ok(())
        } else {
            Err(allow_at - now)
        }
    }

    /// Waits for a slot.
    pub async fn wait(&self) {
        while let Err(d) = self.try_take(Instant::now()) {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_steady_rate() {
        let g = Gcra::new(&ThrottleSpec::parse("5/s").unwrap());
        let start = Instant::now();
        for _ in 0..5 {
            assert!(g.try_take(start).is_ok(), "the burst passes at once");
        }
        assert_eq!(g.try_take(start), Err(Duration::from_millis(200)));
        for _ in 0..15 {
            g.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // No burst: evenly spaced from the first.
        let g = Gcra::new(&ThrottleSpec::parse("5/s,max_burst=1").unwrap());
        let start = Instant::now();
        for _ in 0..20 {
            g.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(3800));
    }
}
