//! A small registry of process-wide counters rendered in the Prometheus
//! text exposition format (version 0.0.4) for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters shared by the listeners and the queue manager; cheap to bump
/// from any thread (`Relaxed` atomics: each is an independent total).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Inbound SMTP connections accepted.
    pub connections: AtomicU64,
    /// Messages accepted (SMTP and HTTP injection) and spooled.
    pub messages_received: AtomicU64,
    /// Recipients delivered.
    pub messages_delivered: AtomicU64,
    /// Delivery attempts that failed temporarily and were rescheduled.
    pub messages_deferred: AtomicU64,
    /// Recipients bounced (permanent failure, expiry or admin bounce).
    pub messages_bounced: AtomicU64,
    /// Successful authentications (SMTP AUTH and HTTP Basic).
    pub auth_successes: AtomicU64,
    /// Failed authentications (SMTP AUTH and HTTP Basic).
    pub auth_failures: AtomicU64,
    /// Delivery attempts by outbound TLS policy (none, mta-sts-testing,
    /// mta-sts-enforce, dane) and result ("success" or an RFC 8460 type).
    /// Both label sets are small and fixed, so a map under a lock is enough.
    tls_policy_results: Mutex<BTreeMap<(String, String), u64>>,
    /// Delivery attempts by (egress source, site, outcome).
    egress_results: Mutex<BTreeMap<(String, String, &'static str), u64>>,
}

/// The content type to serve [`Metrics::render`] with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// (egress source, site) → (connections open, waits for a rate).
pub type PathSample = ((String, String), (usize, u64));

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Count one delivery attempt's TLS policy outcome.
    pub fn tls_policy_result(&self, policy: &str, result: &str) {
        let mut m = self
            .tls_policy_results
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry((policy.to_string(), result.to_string()))
            .or_default() += 1;
    }

    /// Count one delivery attempt from `source` to `site`: `outcome` is
    /// delivered, deferred or bounced.
    pub fn egress_result(&self, source: &str, site: &str, outcome: &'static str) {
        let mut m = self
            .egress_results
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry((source.to_string(), site.to_string(), outcome))
            .or_default() += 1;
    }

    /// Redis, when nodes share limits: calls, errors, round-trip time, and
    /// the decisions on shared rates (`stats` from the delivery crate).
    pub fn render_redis(stats: &[(&str, u64)]) -> String {
        let get = |k: &str| stats.iter().find(|(n, _)| *n == k).map_or(0, |(_, v)| *v);
        let mut out = String::new();
        let lines: [(&str, &str, &str, String); 4] = [
            (
                "ironpost_redis_calls_total",
                "counter",
                "Calls to the shared Redis.",
                get("ops").to_string(),
            ),
            (
                "ironpost_redis_errors_total",
                "counter",
                "Calls to the shared Redis that failed or timed out (the work waited).",
                get("errors").to_string(),
            ),
            (
                "ironpost_redis_rtt_seconds_total",
                "counter",
                "Round-trip time of successful Redis calls, summed.",
                format!("{:.6}", get("rtt_us") as f64 / 1e6),
            ),
            (
                "ironpost_shared_rate_delayed_total",
                "counter",
                "Shared rate decisions that said wait.",
                get("delayed").to_string(),
            ),
        ];
        for (name, kind, help, v) in lines {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_shared_rate_allowed_total Shared rate decisions that said go."
        );
        let _ = writeln!(out, "# TYPE ironpost_shared_rate_allowed_total counter");
        let _ = writeln!(out, "ironpost_shared_rate_allowed_total {}", get("allowed"));
        out
    }

    /// `paths`: per (source, site), connections open and rate waits.
    /// Connections open under each shared (named) connection limit, and the
    /// traffic-shaping automation holds in force by kind.
    pub fn render_shaping(
        paths: &[PathSample],
        limits: &[(String, usize)],
        holds: &[(&str, usize)],
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ironpost_egress_connections Connections open, by egress source and site."
        );
        let _ = writeln!(out, "# TYPE ironpost_egress_connections gauge");
        for ((source, site), (open, _)) in paths {
            let _ = writeln!(
                out,
                "ironpost_egress_connections{{source=\"{}\",site=\"{}\"}} {open}",
                escape_label(source),
                escape_label(site)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_egress_throttled_total Messages and connections that waited for a rate, by egress source and site."
        );
        let _ = writeln!(out, "# TYPE ironpost_egress_throttled_total counter");
        for ((source, site), (_, waits)) in paths {
            let _ = writeln!(
                out,
                "ironpost_egress_throttled_total{{source=\"{}\",site=\"{}\"}} {waits}",
                escape_label(source),
                escape_label(site)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_shared_connections Connections open under each shared connection limit."
        );
        let _ = writeln!(out, "# TYPE ironpost_shared_connections gauge");
        for (name, n) in limits {
            let _ = writeln!(
                out,
                "ironpost_shared_connections{{limit=\"{}\"}} {n}",
                escape_label(name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_automation_holds Traffic-shaping automation holds in force."
        );
        let _ = writeln!(out, "# TYPE ironpost_automation_holds gauge");
        for (kind, n) in holds {
            let _ = writeln!(out, "ironpost_automation_holds{{kind=\"{kind}\"}} {n}");
        }
        out
    }

    /// The counters, then one `ironpost_queue_size` sample per queue.
    pub fn render(&self, queue_sizes: &[(String, usize)]) -> String {
        self.render_with(queue_sizes, &[])
    }

    /// Also one `ironpost_ready_queue_size` sample per (source, site).
    pub fn render_with(
        &self,
        queue_sizes: &[(String, usize)],
        ready_sizes: &[((String, String), usize)],
    ) -> String {
        let mut out = String::with_capacity(1024 + queue_sizes.len() * 48);
        let counters: [(&str, &str, &AtomicU64); 7] = [
            (
                "ironpost_connections_total",
                "Inbound SMTP connections accepted.",
                &self.connections,
            ),
            (
                "ironpost_messages_received_total",
                "Messages accepted and spooled (SMTP and HTTP injection).",
                &self.messages_received,
            ),
            (
                "ironpost_messages_delivered_total",
                "Recipients delivered.",
                &self.messages_delivered,
            ),
            (
                "ironpost_messages_deferred_total",
                "Delivery attempts that failed temporarily.",
                &self.messages_deferred,
            ),
            (
                "ironpost_messages_bounced_total",
                "Recipients bounced.",
                &self.messages_bounced,
            ),
            (
                "ironpost_auth_successes_total",
                "Successful authentications (SMTP AUTH and HTTP Basic).",
                &self.auth_successes,
            ),
            (
                "ironpost_auth_failures_total",
                "Failed authentications (SMTP AUTH and HTTP Basic).",
                &self.auth_failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_tls_policy_results_total Delivery attempts by outbound TLS policy and RFC 8460 result."
        );
        let _ = writeln!(out, "# TYPE ironpost_tls_policy_results_total counter");
        for ((policy, result), n) in self
            .tls_policy_results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ironpost_tls_policy_results_total{{policy=\"{}\",result=\"{}\"}} {n}",
                escape_label(policy),
                escape_label(result)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_egress_attempts_total Delivery attempts by egress source, site and outcome."
        );
        let _ = writeln!(out, "# TYPE ironpost_egress_attempts_total counter");
        for ((source, site, outcome), n) in self
            .egress_results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ironpost_egress_attempts_total{{source=\"{}\",site=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape_label(source),
                escape_label(site)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_ready_queue_size Messages ready to send, by egress source and site."
        );
        let _ = writeln!(out, "# TYPE ironpost_ready_queue_size gauge");
        for ((source, site), n) in ready_sizes {
            let _ = writeln!(
                out,
                "ironpost_ready_queue_size{{source=\"{}\",site=\"{}\"}} {n}",
                escape_label(source),
                escape_label(site)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironpost_queue_size Messages waiting in each scheduled queue."
        );
        let _ = writeln!(out, "# TYPE ironpost_queue_size gauge");
        for (queue, size) in queue_sizes {
            let _ = writeln!(
                out,
                "ironpost_queue_size{{queue=\"{}\"}} {size}",
                escape_label(queue)
            );
        }
        out
    }
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_format() {
        let m = Metrics::new();
        Metrics::inc(&m.connections);
        Metrics::add(&m.messages_received, 3);
        Metrics::inc(&m.auth_failures);
        let text = m.render(&[("example.com".into(), 2), ("we\"ird\\q\nname".into(), 1)]);
        assert!(text
            .contains("# TYPE ironpost_connections_total counter\nironpost_connections_total 1\n"));
        assert!(text.contains("\nironpost_messages_received_total 3\n"));
        assert!(text.contains("\nironpost_messages_delivered_total 0\n"));
        assert!(text.contains("\nironpost_auth_failures_total 1\n"));
        assert!(text.contains("# HELP ironpost_auth_successes_total "));
        assert!(text.contains("ironpost_queue_size{queue=\"example.com\"} 2\n"));
        assert!(text.contains("ironpost_queue_size{queue=\"we\\\"ird\\\\q\\nname\"} 1\n"));
        // Every line is a comment or `name[{labels}] value`.
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
        assert!(text.ends_with('\n'));
    }
}
