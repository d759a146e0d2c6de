//! Feeding RFC 8460 TLS reports: each outbound session to a domain's own
//! MX hosts (not an `mx_list`) is handed to the report store's recorder
//! with the policy that applied and the TLS outcome. Sessions carrying TLS
//! reports themselves are not counted, so reports never beget reports.

use crate::dispatch::Attempt;
use crate::route::{Site, Target};
use crate::tls_policy::HostPolicy;
use ironpost_tls_report::{Failure, PolicyType, Recorder, Session, SessionPolicy};
use std::net::IpAddr;
use std::sync::Arc;

pub struct TlsReporter {
    recorder: Recorder,
    /// The `From` of our own report messages (exempt from counting).
    report_sender: Option<String>,
}

impl TlsReporter {
    pub fn new(recorder: Recorder, report_sender: Option<String>) -> TlsReporter {
        TlsReporter {
            recorder,
            report_sender,
        }
    }

    /// Whether mail from `sender` is one of our TLS reports.
    pub(crate) fn exempt(&self, sender: &str) -> bool {
        self.report_sender
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(sender))
    }

    /// Everything recorded so far is on disk (tests, shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.recorder.flush() {
            tracing::warn!("TLS report counts: {e}");
        }
    }

    /// One session with `target`, as the attempt describes it. Attempts
    /// that never reached a TLS decision (no connection) are not sessions.
    pub(crate) fn session(
        &self,
        site: &Site,
        target: &Target,
        attempt: &Attempt,
        source: Option<IpAddr>,
    ) {
        let Some(domain) = &site.report_domain else {
            return;
        };
        let own = match &attempt.tls_result {
            None => return,
            Some(("success", _)) => None,
            Some((result, detail)) => Some((result.to_string(), detail.clone())),
        };
        let discovery = site
            .discovery_failure
            .as_ref()
            .map(|(r, d)| (r.to_string(), Some(d.clone())));
        let policy = session_policy(domain, site, &target.policy);
        let failure = own.or(discovery).map(|(result_type, detail)| Failure {
            result_type,
            sending_mta_ip: source,
            receiving_mx_hostname: Some(target.host.clone()),
            receiving_ip: attempt.ip,
            failure_reason_code: detail,
            ..Default::default()
        });
        self.record(policy, failure);
    }

    /// A policy refused every host before any connection.
    pub(crate) fn refused(&self, domain: &str, site: &Site, result: &str, detail: &str) {
        if site.configured {
            return;
        }
        let policy = match result {
            "dnssec-invalid" | "tlsa-invalid" | "dane-required" => SessionPolicy {
                policy_type: PolicyType::Tlsa,
                policy_domain: domain.to_string(),
                policy_strings: Vec::new(),
                mx_host: Vec::new(),
            },
            _ => site
                .sts_report
                .as_deref()
                .cloned()
                .unwrap_or_else(|| no_policy(domain)),
        };
        self.record(
            policy,
            Some(Failure {
                result_type: result.to_string(),
                failure_reason_code: Some(detail.to_string()),
                ..Default::default()
            }),
        );
    }

    fn record(&self, policy: SessionPolicy, failure: Option<Failure>) {
        let day = chrono::Utc::now().date_naive();
        let session = match failure {
            None => Session::success(day, policy),
            Some(f) => Session::failure(day, policy, f),
        };
        self.recorder.record(session);
    }
}

fn no_policy(domain: &str) -> SessionPolicy {
    SessionPolicy {
        policy_type: PolicyType::NoPolicyFound,
        policy_domain: domain.to_string(),
        policy_strings: Vec::new(),
        mx_host: Vec::new(),
    }
}

fn session_policy(domain: &str, site: &Site, policy: &HostPolicy) -> SessionPolicy {
    match policy {
        HostPolicy::Dane(spec) => SessionPolicy {
            policy_type: PolicyType::Tlsa,
            policy_domain: domain.to_string(),
            policy_strings: spec
                .records
                .iter()
                .map(|r| {
                    let hex: String = r.data.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{} {} {} {hex}", r.usage, r.selector, r.matching)
                })
                .collect(),
            mx_host: Vec::new(),
        },
        HostPolicy::DaneUnusable => SessionPolicy {
            policy_type: PolicyType::Tlsa,
            policy_domain: domain.to_string(),
            policy_strings: Vec::new(),
            mx_host: Vec::new(),
        },
        HostPolicy::StsEnforce | HostPolicy::StsTesting { .. } => site
            .sts_report
            .as_deref()
            .cloned()
            .unwrap_or_else(|| no_policy(domain)),
        // A policy that could not be fetched is no policy: the session
        // went ahead without one, and its failure says why
        // (`sts-policy-fetch-error`).
        HostPolicy::None => no_policy(domain),
    }
}

/// The report's description of an MTA-STS policy: its lines, as served.
pub(crate) fn sts_policy(domain: &str, p: &ironpost_mta_sts::Policy) -> Arc<SessionPolicy> {
    let mode = match p.mode {
        ironpost_mta_sts::Mode::Enforce => "enforce",
        ironpost_mta_sts::Mode::Testing => "testing",
        ironpost_mta_sts::Mode::None => "none",
    };
    let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
    lines.extend(p.mx.iter().map(|m| format!("mx: {m}")));
    lines.push(format!("max_age: {}", p.max_age));
    Arc::new(SessionPolicy {
        policy_type: PolicyType::Sts,
        policy_domain: domain.to_string(),
        policy_strings: lines,
        mx_host: p.mx.clone(),
    })
}
