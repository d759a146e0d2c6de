//! The RFC 8460 §4.4 JSON report, its gzip form and its §5.1 file name.

use std::io::Write;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::model::{Aggregate, PolicyType};

/// Who we are in reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// `organization-name`.
    pub organization_name: String,
    /// `contact-info`: an address (or URI) for questions about reports.
    pub contact_info: String,
    /// Our domain: the submitter in the subject, headers and file name.
    pub submitter: String,
}

/// A report, field for field as RFC 8460 §4.4 names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    #[serde(serialize_with = "rfc3339")]
    pub start_datetime: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub end_datetime: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    pub policy: PolicyDescription,
    pub summary: Summary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDescription {
    pub policy_type: PolicyType,
    /// Absent for `no-policy-found`, which has nothing to show.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    pub result_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<IpAddr>,
    pub failed_session_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

impl Report {
    /// The JSON text (compact).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings, numbers and addresses: serialization cannot fail.
        serde_json::to_vec(self).expect("a Report always serializes")
    }
}

/// `2016-04-01T00:00:00Z`: RFC 3339 `date-time` in UTC, whole seconds.
fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The report of `agg` under our identity `org`.
pub fn build_report(agg: &Aggregate, org: &ReportOptions, report_id: &str) -> Report {
    Report {
        organization_name: org.organization_name.clone(),
        date_range: DateRange {
            start_datetime: agg.start(),
            end_datetime: agg.end(),
        },
        contact_info: org.contact_info.clone(),
        report_id: report_id.to_string(),
        policies: agg
            .policies
            .iter()
            .map(|p| PolicyReport {
                policy: PolicyDescription {
                    policy_type: p.policy.policy_type,
                    policy_string: p.policy.policy_strings.clone(),
                    policy_domain: p.policy.policy_domain.clone(),
                    mx_host: p.policy.mx_host.clone(),
                },
                summary: Summary {
                    total_successful_session_count: p.successful_sessions,
                    total_failure_session_count: p.failed_sessions,
                },
                failure_details: p
                    .failures
                    .iter()
                    .map(|f| FailureDetail {
                        result_type: f.failure.result_type.clone(),
                        sending_mta_ip: f.failure.sending_mta_ip,
                        receiving_mx_hostname: f.failure.receiving_mx_hostname.clone(),
                        receiving_mx_helo: f.failure.receiving_mx_helo.clone(),
                        receiving_ip: f.failure.receiving_ip,
                        failed_session_count: f.sessions,
                        additional_information: f.failure.additional_information.clone(),
                        failure_reason_code: f.failure.failure_reason_code.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A report ID that is the same for the same day and domain, so retries
/// and re-sends of one report carry one ID, and in the
/// `id-left "@" id-right` form the §5.3 subject wants:
/// `20240501.example.net@submitter.example`.
pub fn report_id(day: NaiveDate, policy_domain: &str, submitter: &str) -> String {
    format!("{}.{policy_domain}@{submitter}", day.format("%Y%m%d"))
}

/// Gzip of `data` (the `application/tlsrpt+gzip` form).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::best());
    // Writing into a Vec cannot fail.
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// RFC 8460 §5.1: `submitter!policy-domain!begin!end[!unique-id].json.gz`,
/// with UNIX timestamps; `unique` must be letters and digits.
pub fn file_name(
    submitter: &str,
    policy_domain: &str,
    begin_ts: i64,
    end_ts: i64,
    unique: Option<&str>,
) -> Result<String> {
    for (what, d) in [("submitter", submitter), ("policy domain", policy_domain)] {
        if !is_domain(d) {
            return Err(Error::Report(format!("{what} {d:?} is not a domain name")));
        }
    }
    if begin_ts < 0 || end_ts < begin_ts {
        return Err(Error::Report(format!(
            "bad time range {begin_ts}..{end_ts}"
        )));
    }
    let mut name = format!("{submitter}!{policy_domain}!{begin_ts}!{end_ts}");
    if let Some(u) = unique {
        if u.is_empty() || !u.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Report(format!(
                "unique-id {u:?} must be letters and digits"
            )));
        }
        name.push('!');
        name.push_str(u);
    }
    name.push_str(".json.gz");
    Ok(name)
}

/// A report ready to send: the typed report, its JSON, the gzip of that,
/// and the attachment file name.
#[derive(Debug, Clone)]
pub struct RenderedReport {
    pub report: Report,
    pub json: Vec<u8>,
    pub gzip: Vec<u8>,
    pub file_name: String,
}

/// [`build_report`], [`gzip`] and [`file_name`] in one go.
pub fn render(agg: &Aggregate, org: &ReportOptions, report_id: &str) -> Result<RenderedReport> {
    let report = build_report(agg, org, report_id);
    let json = report.to_json();
    let gzip = gzip(&json);
    let file_name = file_name(
        &org.submitter,
        &agg.policy_domain,
        agg.start().timestamp(),
        agg.end().timestamp(),
        None,
    )?;
    Ok(RenderedReport {
        report,
        json,
        gzip,
        file_name,
    })
}

/// Letters, digits, hyphens and dots in non-empty labels: what may stand in
/// a file name, a header field and a subject without escaping.
pub(crate) fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Failure, FailureCount, PolicyAggregate, SessionPolicy};
    use std::io::Read;

    fn sample() -> Aggregate {
        Aggregate {
            day: "2016-04-01".parse().unwrap(),
            policy_domain: "company-y.example".into(),
            policies: vec![
                PolicyAggregate {
                    policy: SessionPolicy {
                        policy_type: PolicyType::Sts,
                        policy_domain: "company-y.example".into(),
                        policy_strings: vec![
                            "version: STSv1".into(),
                            "mode: testing".into(),
                            "mx: *.mail.company-y.example".into(),
                            "max_age: 86400".into(),
                        ],
                        mx_host: vec!["*.mail.company-y.example".into()],
                    },
                    successful_sessions: 5326,
                    failed_sessions: 303,
                    failures: vec![FailureCount {
                        failure: Failure {
                            result_type: "certificate-expired".into(),
                            sending_mta_ip: Some("2001:db8:abcd:0012::1".parse().unwrap()),
                            receiving_mx_hostname: Some("mx1.mail.company-y.example".into()),
                            ..Failure::default()
                        },
                        sessions: 303,
                    }],
                },
                PolicyAggregate {
                    policy: SessionPolicy {
                        policy_type: PolicyType::NoPolicyFound,
                        policy_domain: "company-y.example".into(),
                        policy_strings: vec![],
                        mx_host: vec![],
                    },
                    successful_sessions: 2,
                    failed_sessions: 0,
                    failures: vec![],
                },
            ],
        }
    }

    fn org() -> ReportOptions {
        ReportOptions {
            organization_name: "Company-X".into(),
            contact_info: "sts-reporting@company-x.example".into(),
            submitter: "mail.company-x.example".into(),
        }
    }

    #[test]
    fn json_shape() {
        let r = build_report(&sample(), &org(), "5065427c-23d3");
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        let expected = serde_json::json!({
            "organization-name": "Company-X",
            "date-range": {
                "start-datetime": "2016-04-01T00:00:00Z",
                "end-datetime": "2016-04-01T23:59:59Z"
            },
            "contact-info": "sts-reporting@company-x.example",
            "report-id": "5065427c-23d3",
            "policies": [{
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing",
                        "mx: *.mail.company-y.example", "max_age: 86400"],
                    "policy-domain": "company-y.example",
                    "mx-host": ["*.mail.company-y.example"]
                },
                "summary": {
                    "total-successful-session-count": 5326,
                    "total-failure-session-count": 303
                },
                "failure-details": [{
                    "result-type": "certificate-expired",
                    "sending-mta-ip": "2001:db8:abcd:12::1",
                    "receiving-mx-hostname": "mx1.mail.company-y.example",
                    "failed-session-count": 303
                }]
            }, {
                "policy": {
                    "policy-type": "no-policy-found",
                    "policy-domain": "company-y.example"
                },
                "summary": {
                    "total-successful-session-count": 2,
                    "total-failure-session-count": 0
                }
            }]
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn gzip_round_trips() {
        let data = b"{\"a\":1}".repeat(100);
        let gz = gzip(&data);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn file_names() {
        assert_eq!(
            file_name(
                "mail.sender.example",
                "example.com",
                1013662812,
                1013749130,
                None
            )
            .unwrap(),
            "mail.sender.example!example.com!1013662812!1013749130.json.gz"
        );
        assert_eq!(
            file_name("s.example", "d.example", 1, 2, Some("abc123")).unwrap(),
            "s.example!d.example!1!2!abc123.json.gz"
        );
        assert!(file_name("s.example", "d.example", 1, 2, Some("a-b")).is_err());
        assert!(file_name("s.example", "d!x.example", 1, 2, None).is_err());
        assert!(file_name("s.example", "d.example", 2, 1, None).is_err());
        let r = render(&sample(), &org(), "id@x").unwrap();
        // 2016-04-01T00:00:00Z and 23:59:59Z.
        assert_eq!(
            r.file_name,
            "mail.company-x.example!company-y.example!1459468800!1459555199.json.gz"
        );
    }

    #[test]
    fn report_ids_are_stable() {
        let d = "2024-05-01".parse().unwrap();
        assert_eq!(
            report_id(d, "example.net", "mx.example.org"),
            "20240501.example.net@mx.example.org"
        );
    }
}
