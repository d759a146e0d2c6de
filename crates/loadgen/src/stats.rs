//! What a run measured: counts, a latency histogram per phase
//! (hdrhistogram, microseconds), and errors grouped by reply code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::Error;

/// The phases whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// The TCP connection.
    Connect,
    /// From connected to the 220 greeting.
    Banner,
    /// Each EHLO (after STARTTLS too).
    Ehlo,
    /// The STARTTLS command and the handshake.
    StartTls,
    Auth,
    /// From MAIL to the reply after the final dot, for accepted messages.
    Transaction,
}

impl Timing {
    pub const ALL: [Timing; 6] = [
        Timing::Connect,
        Timing::Banner,
        Timing::Ehlo,
        Timing::StartTls,
        Timing::Auth,
        Timing::Transaction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Timing::Connect => "connect",
            Timing::Banner => "banner",
            Timing::Ehlo => "ehlo",
            Timing::StartTls => "starttls",
            Timing::Auth => "auth",
            Timing::Transaction => "transaction",
        }
    }
}

/// Where phase latencies go: [`Stats`], or a buffer of samples that a
/// worker later records under a lock.
pub trait Recorder {
    fn record(&mut self, timing: Timing, d: Duration);
}

impl Recorder for Vec<(Timing, Duration)> {
    fn record(&mut self, timing: Timing, d: Duration) {
        self.push((timing, d));
    }
}

impl Recorder for Stats {
    fn record(&mut self, timing: Timing, d: Duration) {
        Stats::record(self, timing, d)
    }
}

/// Latencies up to an hour, three significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Latencies and errors of part of a run (several workers share one).
#[derive(Debug)]
pub struct Stats {
    hist: [Histogram<u64>; 6],
    /// (error key, phase) → count.
    errors: BTreeMap<(String, &'static str), u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: std::array::from_fn(|_| histogram()),
            errors: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn record(&mut self, timing: Timing, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_MICROS);
        self.hist[timing as usize].saturating_record(us);
    }

    pub fn error(&mut self, e: &Error) {
        let phase = e.phase().map_or("", |p| p.as_str());
        *self.errors.entry((e.key(), phase)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.hist.iter_mut().zip(other.hist.iter()) {
            a.add(b).expect("histograms with the same bounds");
        }
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
    }

    pub fn histogram(&self, timing: Timing) -> &Histogram<u64> {
        &self.hist[timing as usize]
    }

    /// Errors, most frequent first: (key, phase, count).
    pub fn errors(&self) -> Vec<(String, &'static str, u64)> {
        let mut v: Vec<_> = self
            .errors
            .iter()
            .map(|((k, p), n)| (k.clone(), *p, *n))
            .collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// The counts the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages attempted (accepted + failed).
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    /// Connections that got as far as being usable for mail.
    pub connections: AtomicU64,
    /// Connection attempts that failed before any mail could be sent.
    pub connection_failures: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Phase;

    #[test]
    fn merge_and_percentiles() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=100 {
            a.record(Timing::Transaction, Duration::from_micros(i));
        }
        b.record(Timing::Transaction, Duration::from_secs(2));
        b.record(Timing::Connect, Duration::ZERO);
        b.error(&Error::Timeout(Phase::Banner));
        b.error(&Error::Timeout(Phase::Banner));
        a.error(&Error::Connect(
            std::io::ErrorKind::ConnectionRefused.into(),
        ));
        a.merge(&b);
        let h = a.histogram(Timing::Transaction);
        assert_eq!(h.len(), 101);
        assert_eq!(h.value_at_quantile(0.5), 51);
        assert!(h.max() >= 1_999_000);
        assert_eq!(a.histogram(Timing::Connect).len(), 1);
        assert_eq!(
            a.errors(),
            vec![
                ("timeout".to_string(), "banner", 2),
                ("connect refused".to_string(), "connect", 1)
            ]
        );
    }
}
