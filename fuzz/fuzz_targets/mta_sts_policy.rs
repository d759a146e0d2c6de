//! The MTA-STS policy file (RFC 8461 §3.2), from untrusted HTTPS bodies,
//! and MX matching (§4.1).
//! - an accepted policy is normalised (lower-case patterns without a
//!   trailing dot, `max_age` in range, MX patterns unless mode `none`);
//! - it survives being written out again (as a policy file, with LF or CRLF
//!   line endings, and as the JSON the cache stores);
//! - each pattern matches the names it stands for and not its parent;
//! - matching ignores case and one trailing dot;
//! - error messages stay short, whatever the input.
#![no_main]

use ironpost_mta_sts::{Mode, Policy, MAX_AGE_LIMIT};
use libfuzzer_sys::fuzz_target;

fn render(p: &Policy, eol: &str) -> String {
    let mode = match p.mode {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    };
    let mut s = format!(
        "version: STSv1{eol}mode: {mode}{eol}max_age: {}{eol}",
        p.max_age
    );
    for mx in &p.mx {
        s.push_str(&format!("mx: {mx}{eol}"));
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let policy = match Policy::parse_bytes(data) {
        Ok(p) => p,
        Err(e) => {
            // clip() keeps the quoted part to 300 bytes.
            assert!(e.to_string().len() <= 350, "{e}");
            // Hosts to match against even without a policy: the lines.
            return;
        }
    };
    assert!(policy.max_age <= MAX_AGE_LIMIT);
    assert!(policy.mode == Mode::None || !policy.mx.is_empty());
    for p in &policy.mx {
        assert_eq!(*p, p.to_ascii_lowercase());
        assert!(!p.ends_with('.') && !p.is_empty());
        let name = p.strip_prefix("*.").unwrap_or(p);
        assert!(!name.contains('*'));
        if p.starts_with("*.") {
            assert!(policy.matches_mx(&format!("x.{name}")));
            assert!(policy.matches_mx(&format!("X.{}.", name.to_ascii_uppercase())));
        } else {
            assert!(policy.matches_mx(p));
            assert!(policy.matches_mx(&format!("{}.", p.to_ascii_uppercase())));
        }
    }

    for eol in ["\n", "\r\n"] {
        assert_eq!(Policy::parse(&render(&policy, eol)).unwrap(), policy);
    }
    let json = serde_json::to_string(&policy).unwrap();
    assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);

    // A body written with CRLF line endings means the same.
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.contains('\r') {
            let crlf = text.replace('\n', "\r\n");
            assert_eq!(Policy::parse(&crlf).ok(), Some(policy.clone()));
        }
        // Every line of the input as an MX host name: no panic, and case
        // and one trailing dot make no difference.
        for host in text.lines() {
            let m = policy.matches_mx(host);
            assert_eq!(policy.matches_mx(&host.to_ascii_uppercase()), m);
            if !host.ends_with('.') {
                assert_eq!(policy.matches_mx(&format!("{host}.")), m);
            }
        }
    }
});
