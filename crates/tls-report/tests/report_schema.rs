//! The built report validates against an RFC 8460 §4.4 JSON schema
//! (tests/rfc8460-report.schema.json), checked with Python's jsonschema.

mod common;

use common::{day, mixed_day, run_python};
use ironpost_tls_report::{render, report_id, ReportOptions, Store};
use serde_json::{json, Value};
use std::io::Read;

const VALIDATE: &str = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.stderr.write("jsonschema")
    sys.exit(3)
with open(sys.argv[1]) as f:
    schema = json.load(f)
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
out = []
for instance in json.load(sys.stdin):
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    out.append(["/".join(map(str, e.path)) + ": " + e.message for e in errors])
print(json.dumps(out))
"#;

/// Validation errors for each of `instances`.
fn validate(instances: &[Value]) -> Vec<Vec<String>> {
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rfc8460-report.schema.json"
    );
    let stdin = serde_json::to_vec(instances).unwrap();
    let out = run_python(VALIDATE, &[schema], &stdin);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn built_report() -> (Value, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("t.db")).unwrap();
    let d = day("2024-05-01");
    store.record(&mixed_day(d, "example.net")).unwrap();
    let agg = store.aggregate(d, "example.net").unwrap();
    let org = ReportOptions {
        organization_name: "Ironpost Test Org".into(),
        contact_info: "postmaster@sender.example".into(),
        submitter: "sender.example".into(),
    };
    let r = render(&agg, &org, &report_id(d, "example.net", "sender.example")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&r.gzip[..])
        .read_to_end(&mut json)
        .unwrap();
    assert_eq!(json, r.json, "the gzip holds the JSON");
    (serde_json::from_slice(&r.json).unwrap(), r.json)
}

#[test]
fn built_report_matches_the_schema() {
    let (report, _) = built_report();
    assert_eq!(
        report["date-range"]["start-datetime"],
        "2024-05-01T00:00:00Z"
    );
    assert_eq!(report["date-range"]["end-datetime"], "2024-05-01T23:59:59Z");
    assert_eq!(report["policies"].as_array().unwrap().len(), 2);

    // Broken copies, each of which the schema must refuse: proof that the
    // validation is not vacuous (formats, enums, required fields).
    let mut bad_type = report.clone();
    bad_type["policies"][0]["failure-details"][0]["result-type"] = json!("starttls-unsupported");
    let mut bad_date = report.clone();
    bad_date["date-range"]["start-datetime"] = json!("2024-05-01 00:00:00");
    let mut bad_ip = report.clone();
    bad_ip["policies"][0]["failure-details"][0]["sending-mta-ip"] = json!("192.0.2.300");
    let mut no_summary = report.clone();
    no_summary["policies"][0]
        .as_object_mut()
        .unwrap()
        .remove("summary");
    let mut sts_without_mx = report.clone();
    sts_without_mx["policies"][0]["policy"]
        .as_object_mut()
        .unwrap()
        .remove("mx-host");
    let mut misspelt = report.clone();
    misspelt["policies"][0]["summary"]["total-failure-count"] = json!(1);

    let results = validate(&[
        report,
        bad_type,
        bad_date,
        bad_ip,
        no_summary,
        sts_without_mx,
        misspelt,
    ]);
    assert!(results[0].is_empty(), "our report: {:#?}", results[0]);
    for (i, what) in [
        "result type",
        "date",
        "address",
        "summary",
        "sts without mx-host",
        "unknown member",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            !results[i + 1].is_empty(),
            "broken {what} passed validation"
        );
    }
}
