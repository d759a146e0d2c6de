//! What one outbound session produced, as delivery reports it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// RFC 8460 §4.4 `policy-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    Sts,
    Tlsa,
    NoPolicyFound,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sts" => Ok(PolicyType::Sts),
            "tlsa" => Ok(PolicyType::Tlsa),
            "no-policy-found" => Ok(PolicyType::NoPolicyFound),
            other => Err(Error::Corrupt(format!("unknown policy type {other:?}"))),
        }
    }
}

/// The policy applied to a session. Sessions with equal policies (all
/// fields) are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionPolicy {
    pub policy_type: PolicyType,
    /// The recipient domain whose policy this is (A-labels).
    pub policy_domain: String,
    /// The MTA-STS policy's lines, or the TLSA records in presentation
    /// form; empty for `no-policy-found`.
    pub policy_strings: Vec<String>,
    /// The MTA-STS policy's `mx` patterns.
    pub mx_host: Vec<String>,
}

/// Why a session failed to establish the TLS the policy asked for.
/// Failures equal in every field are counted together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Failure {
    /// An RFC 8460 §4.3 result type, e.g. "starttls-not-supported".
    pub result_type: String,
    pub sending_mta_ip: Option<IpAddr>,
    pub receiving_mx_hostname: Option<String>,
    /// The EHLO name the receiving MTA announced.
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<IpAddr>,
    /// A URI with more detail.
    pub additional_information: Option<String>,
    /// A TLS error code or message.
    pub failure_reason_code: Option<String>,
}

/// One outbound session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The UTC day the session took place.
    pub day: NaiveDate,
    pub policy: SessionPolicy,
    /// `None`: TLS was established as the policy required.
    pub failure: Option<Failure>,
}

impl Session {
    pub fn success(day: NaiveDate, policy: SessionPolicy) -> Session {
        Session {
            day,
            policy,
            failure: None,
        }
    }

    pub fn failure(day: NaiveDate, policy: SessionPolicy, failure: Failure) -> Session {
        Session {
            day,
            policy,
            failure: Some(failure),
        }
    }
}

/// Everything counted for one policy domain on one UTC day: the data of
/// one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub day: NaiveDate,
    pub policy_domain: String,
    /// One entry per distinct policy seen that day, in first-seen order.
    pub policies: Vec<PolicyAggregate>,
}

impl Aggregate {
    /// 00:00:00Z of the day.
    pub fn start(&self) -> DateTime<Utc> {
        self.day.and_time(NaiveTime::MIN).and_utc()
    }

    /// 23:59:59Z of the day, the end RFC 8460 reports give for a UTC day.
    pub fn end(&self) -> DateTime<Utc> {
        self.start() + TimeDelta::seconds(86_399)
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// The counts of one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAggregate {
    pub policy: SessionPolicy,
    pub successful_sessions: u64,
    pub failed_sessions: u64,
    /// Failure details, most frequent first.
    pub failures: Vec<FailureCount>,
}

/// Sessions that failed in exactly the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    pub failure: Failure,
    pub sessions: u64,
}

/// Lower case, no trailing dot: the same domain must always land in the
/// same report.
pub(crate) fn normalize_domain(d: &str) -> String {
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `::ffff:a.b.c.d` is reported as the IPv4 address it is.
pub(crate) fn normalize_ip(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| ip.to_canonical())
}

/// An empty text is no text, so that `Some("")` and `None` do not make two
/// failure groups (and the report never carries empty strings).
pub(crate) fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_type_round_trips() {
        for t in [PolicyType::Sts, PolicyType::Tlsa, PolicyType::NoPolicyFound] {
            assert_eq!(t.as_str().parse::<PolicyType>().unwrap(), t);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().into())
            );
        }
        assert!("STS".parse::<PolicyType>().is_err());
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_domain("Example.COM."), "example.com");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            normalize_ip(Some(mapped)),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(non_empty(&Some("  ".into())), None);
        assert_eq!(non_empty(&Some(" x ".into())), Some("x".into()));
    }
}
