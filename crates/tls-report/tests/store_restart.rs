//! Sessions recorded through a Recorder survive a restart, and counts
//! recorded after it add to them.

mod common;

use common::{day, failure, mixed_day, no_policy, sts_policy};
use ironpost_tls_report::{PolicyType, Recorder, Session, Store};

#[test]
fn counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls-report.db");
    let d = day("2024-05-01");

    let rec = Recorder::spawn(Store::open(&path).unwrap(), 1024).unwrap();
    for s in mixed_day(d, "example.net") {
        assert!(rec.record(s));
    }
    // Another domain and another day must not leak into the aggregate.
    assert!(rec.record(Session::success(d, sts_policy("other.example"))));
    assert!(rec.record(Session::success(
        day("2024-05-02"),
        sts_policy("example.net")
    )));
    rec.flush().unwrap();
    drop(rec);

    // A restart: a new store and recorder on the same file.
    let rec = Recorder::spawn(Store::open(&path).unwrap(), 1024).unwrap();
    for mut s in mixed_day(d, "example.net") {
        // The same domain, spelled differently, is the same report.
        s.policy.policy_domain = "Example.NET.".into();
        assert!(rec.record(s));
    }
    assert!(rec.record(Session::failure(
        d,
        no_policy("example.net"),
        failure("validation-failure", "mx2.mx.example.net"),
    )));
    rec.flush().unwrap();
    assert_eq!(rec.dropped(), 0);

    let store = Store::open(&path).unwrap();
    let agg = store.aggregate(d, "example.net").unwrap();
    assert_eq!(agg.policy_domain, "example.net");
    assert_eq!(agg.policies.len(), 2, "{agg:#?}");

    let sts = &agg.policies[0];
    assert_eq!(sts.policy, sts_policy("example.net"));
    assert_eq!(sts.successful_sessions, 10);
    assert_eq!(sts.failed_sessions, 6);
    let by_type = |p: &ironpost_tls_report::PolicyAggregate, t: &str| -> u64 {
        p.failures
            .iter()
            .filter(|f| f.failure.result_type == t)
            .map(|f| f.sessions)
            .sum()
    };
    assert_eq!(by_type(sts, "starttls-not-supported"), 4);
    assert_eq!(by_type(sts, "certificate-host-mismatch"), 2);
    assert_eq!(sts.failures.len(), 2, "one group per distinct failure");
    let mismatch = sts
        .failures
        .iter()
        .find(|f| f.failure.result_type == "certificate-host-mismatch")
        .unwrap();
    assert_eq!(
        mismatch.failure.receiving_mx_helo.as_deref(),
        Some("mail.hosting.example")
    );
    assert_eq!(
        mismatch.failure.receiving_ip,
        Some("2001:db8::25".parse().unwrap())
    );

    let none = &agg.policies[1];
    assert_eq!(none.policy.policy_type, PolicyType::NoPolicyFound);
    assert_eq!((none.successful_sessions, none.failed_sessions), (0, 3));
    assert_eq!(by_type(none, "sts-policy-fetch-error"), 2);
    assert_eq!(by_type(none, "validation-failure"), 1);
    // Failure counts always add up to the summary.
    for p in &agg.policies {
        assert_eq!(
            p.failures.iter().map(|f| f.sessions).sum::<u64>(),
            p.failed_sessions
        );
    }

    assert_eq!(
        store.days_ready(day("2024-05-02")).unwrap(),
        vec![
            (d, "example.net".to_string()),
            (d, "other.example".to_string())
        ]
    );
}
