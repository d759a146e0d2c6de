//! Shared by the integration tests: sample sessions and running Python.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use chrono::NaiveDate;
use ironpost_tls_report::{Failure, PolicyType, Session, SessionPolicy};

pub fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

pub fn sts_policy(domain: &str) -> SessionPolicy {
    SessionPolicy {
        policy_type: PolicyType::Sts,
        policy_domain: domain.into(),
        policy_strings: vec![
            "version: STSv1".into(),
            "mode: enforce".into(),
            format!("mx: *.mx.{domain}"),
            "max_age: 604800".into(),
        ],
        mx_host: vec![format!("*.mx.{domain}")],
    }
}

pub fn no_policy(domain: &str) -> SessionPolicy {
    SessionPolicy {
        policy_type: PolicyType::NoPolicyFound,
        policy_domain: domain.into(),
        policy_strings: vec![],
        mx_host: vec![],
    }
}

pub fn failure(result_type: &str, mx: &str) -> Failure {
    Failure {
        result_type: result_type.into(),
        sending_mta_ip: Some("192.0.2.10".parse().unwrap()),
        receiving_mx_hostname: Some(mx.into()),
        receiving_mx_helo: None,
        receiving_ip: Some("2001:db8::25".parse().unwrap()),
        additional_information: None,
        failure_reason_code: None,
    }
}

/// A day of mixed sessions for `domain`: 5 successes, 2
/// starttls-not-supported, 1 certificate-host-mismatch under the STS
/// policy, and 1 sts-policy-fetch-error under no policy.
pub fn mixed_day(d: NaiveDate, domain: &str) -> Vec<Session> {
    let sts = sts_policy(domain);
    let mx = format!("mx1.mx.{domain}");
    let mut v: Vec<Session> = (0..5).map(|_| Session::success(d, sts.clone())).collect();
    for _ in 0..2 {
        v.push(Session::failure(
            d,
            sts.clone(),
            failure("starttls-not-supported", &mx),
        ));
    }
    v.push(Session::failure(
        d,
        sts.clone(),
        Failure {
            receiving_mx_helo: Some("mail.hosting.example".into()),
            failure_reason_code: Some("X509: name mismatch".into()),
            ..failure("certificate-host-mismatch", &mx)
        },
    ));
    v.push(Session::failure(
        d,
        no_policy(domain),
        Failure {
            receiving_mx_hostname: None,
            receiving_ip: None,
            additional_information: Some(format!(
                "https://mta-sts.{domain}/.well-known/mta-sts.txt"
            )),
            failure_reason_code: Some("HTTP 404".into()),
            ..failure("sts-policy-fetch-error", &mx)
        },
    ));
    v
}

/// The interpreter the tests use: `IRONPOST_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("IRONPOST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Exit status a script uses to say a module is missing.
const MISSING_MODULE: i32 = 3;

/// Runs `script` (`python -c`) with `args` and `stdin`; returns stdout.
/// Fails the test, saying what to install, if the script exits with
/// [`MISSING_MODULE`]; scripts print the module's name on stderr then.
pub fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let py = python();
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run Python interpreter {py:?} ({e}); set IRONPOST_PYTHON to one")
        });
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(MISSING_MODULE) {
        panic!(
            "Python module {} is not installed for {py:?}: install it \
             (`{py} -m pip install {}`) or point IRONPOST_PYTHON at an \
             interpreter that has it",
            stderr.trim(),
            stderr.trim()
        );
    }
    assert!(
        out.status.success(),
        "{py} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}
