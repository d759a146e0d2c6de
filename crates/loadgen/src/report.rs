//! The result of a run, as a table for people or as JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::stats::{Stats, Timing};

/// Latency percentiles of one phase, in microseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PhaseReport {
    pub phase: &'static str,
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// Failures with the same reply code (or the same kind of failure) in the
/// same phase.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ErrorReport {
    /// `451 4.3.0`, `550`, `connect refused`, `timeout`, …
    pub error: String,
    pub phase: &'static str,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub starttls: bool,
    pub auth: bool,
    pub concurrency: usize,
    pub message_size: usize,
    pub elapsed_seconds: f64,
    /// Messages attempted: accepted + failed.
    pub sent: u64,
    pub accepted: u64,
    pub failed: u64,
    /// Accepted messages per second of the whole run.
    pub messages_per_second: f64,
    /// Connections that became ready for mail.
    pub connections: u64,
    pub connection_failures: u64,
    pub phases: Vec<PhaseReport>,
    pub errors: Vec<ErrorReport>,
}

/// The parts of a [`Report`] that come from the run's settings.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub target: String,
    pub starttls: bool,
    pub auth: bool,
    pub concurrency: usize,
    pub message_size: usize,
}

/// The counts of a finished run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub sent: u64,
    pub accepted: u64,
    pub failed: u64,
    pub connections: u64,
    pub connection_failures: u64,
}

impl Report {
    pub fn new(info: RunInfo, totals: Totals, elapsed_seconds: f64, stats: &Stats) -> Report {
        let phases = Timing::ALL
            .iter()
            .map(|&t| {
                let h = stats.histogram(t);
                let empty = h.is_empty();
                let q = |x: f64| if empty { 0 } else { h.value_at_quantile(x) };
                PhaseReport {
                    phase: t.as_str(),
                    count: h.len(),
                    p50_us: q(0.5),
                    p90_us: q(0.9),
                    p99_us: q(0.99),
                    max_us: if empty { 0 } else { h.max() },
                    mean_us: if empty { 0.0 } else { h.mean() },
                }
            })
            .collect();
        let errors = stats
            .errors()
            .into_iter()
            .map(|(error, phase, count)| ErrorReport {
                error,
                phase,
                count,
            })
            .collect();
        Report {
            target: info.target,
            starttls: info.starttls,
            auth: info.auth,
            concurrency: info.concurrency,
            message_size: info.message_size,
            elapsed_seconds,
            sent: totals.sent,
            accepted: totals.accepted,
            failed: totals.failed,
            messages_per_second: if elapsed_seconds > 0.0 {
                totals.accepted as f64 / elapsed_seconds
            } else {
                0.0
            },
            connections: totals.connections,
            connection_failures: totals.connection_failures,
            phases,
            errors,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let mode = match (self.starttls, self.auth) {
            (true, true) => " (STARTTLS, AUTH)",
            (true, false) => " (STARTTLS)",
            (false, _) => "",
        };
        let _ = writeln!(
            s,
            "target      {}{mode}, concurrency {}, {}-byte messages",
            self.target, self.concurrency, self.message_size
        );
        let _ = writeln!(
            s,
            "elapsed     {:.3} s, {} connections ({} failed)",
            self.elapsed_seconds, self.connections, self.connection_failures
        );
        let _ = writeln!(
            s,
            "messages    sent {}, accepted {}, failed {}",
            self.sent, self.accepted, self.failed
        );
        let _ = writeln!(s, "rate        {:.1} msg/s", self.messages_per_second);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<12} {:>9} {:>10} {:>10} {:>10} {:>10}",
            "latency", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let ms = |us: u64| us as f64 / 1000.0;
        for p in self.phases.iter().filter(|p| p.count > 0) {
            let _ = writeln!(
                s,
                "{:<12} {:>9} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                p.phase,
                p.count,
                ms(p.p50_us),
                ms(p.p90_us),
                ms(p.p99_us),
                ms(p.max_us)
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "errors");
            let width = self.errors.iter().map(|e| e.error.len()).max().unwrap_or(0);
            for e in &self.errors {
                let _ = writeln!(
                    s,
                    "  {:<width$}  {:<14} {}",
                    format!("{}:", e.error),
                    e.phase,
                    e.count,
                    width = width + 1
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Phase};
    use std::time::Duration;

    #[test]
    fn table_and_json() {
        let mut stats = Stats::default();
        for i in 1..=10 {
            stats.record(Timing::Transaction, Duration::from_millis(i));
        }
        stats.error(&Error::Rejected {
            phase: Phase::DataEnd,
            code: 451,
            enhanced: ironpost_smtp_client::EnhancedCode::parse_prefix("4.3.0"),
            text: String::new(),
        });
        let r = Report::new(
            RunInfo {
                target: "127.0.0.1:2600".into(),
                starttls: true,
                auth: false,
                concurrency: 4,
                message_size: 1000,
            },
            Totals {
                sent: 11,
                accepted: 10,
                failed: 1,
                connections: 1,
                connection_failures: 0,
            },
            2.0,
            &stats,
        );
        assert_eq!(r.messages_per_second, 5.0);
        let t = r.to_table();
        assert!(t.contains("(STARTTLS)"), "{t}");
        assert!(t.contains("transaction"), "{t}");
        assert!(!t.contains("auth "), "{t}");
        assert!(t.contains("451 4.3.0:"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(j["accepted"], 10);
        assert_eq!(j["errors"][0]["error"], "451 4.3.0");
        assert_eq!(j["errors"][0]["phase"], "data-end");
        let tx = &j["phases"][5];
        assert_eq!(tx["phase"], "transaction");
        assert_eq!(tx["count"], 10);
        assert!(tx["p50_us"].as_u64().unwrap() >= 5000);
    }
}
