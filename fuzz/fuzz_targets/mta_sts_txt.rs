//! The `_mta-sts` TXT records (RFC 8461 §3.1). Records are separated by
//! 0xff in the input (it cannot occur in UTF-8; the rest is read lossily).
//! - a policy id is 1 to 32 letters and digits, taken from the one record
//!   that starts with a complete `v=STSv1` field;
//! - with no such record or several, there is no policy; with one that is
//!   malformed, the outcome says it is invalid;
//! - the order of the records does not matter.
#![no_main]

use ironpost_mta_sts::{parse_txt, TxtOutcome};
use libfuzzer_sys::fuzz_target;

fn is_sts(r: &str) -> bool {
    r.strip_prefix("v=STSv1")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([';', ' ', '\t']))
}

fuzz_target!(|data: &[u8]| {
    let records: Vec<String> = data
        .split(|&b| b == 0xff)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let outcome = parse_txt(&records);
    let sts: Vec<&String> = records.iter().filter(|r| is_sts(r)).collect();
    match &outcome {
        TxtOutcome::Id(id) => {
            assert_eq!(sts.len(), 1);
            assert!((1..=32).contains(&id.len()));
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(sts[0].contains(&format!("id={id}")));
        }
        TxtOutcome::NoPolicy => assert_ne!(sts.len(), 1),
        TxtOutcome::Invalid(_) => assert_eq!(sts.len(), 1),
    }
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(parse_txt(&reversed), outcome);
});
