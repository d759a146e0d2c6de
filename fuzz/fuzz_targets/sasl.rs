//! AUTH responses (RFC 4954) through the SASL decoders: each input line is
//! one client response, decoded and read as PLAIN credentials, and
//! consecutive pairs as a LOGIN user name and password.
//! - a decoded response is the canonical base64 of what it decodes to, so
//!   two spellings can never carry the same credentials past a filter;
//! - PLAIN credentials are the NUL-separated fields, with a non-empty
//!   authentication identity, and the password never shows in Debug output;
//! - every refusal is a well-formed 501 reply.
#![no_main]

use base64::Engine;
use ironpost_wire::sasl::{decode_response, login_credentials, parse_plain, Credentials};
use ironpost_wire::Reply;
use libfuzzer_sys::fuzz_target;

fn check_refusal(r: &Reply) {
    assert_eq!(r.code, 501);
    let bytes = r.to_bytes();
    assert!(bytes.starts_with(b"501 5."));
    assert!(bytes.ends_with(b"\r\n"));
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
}

fn check_credentials(c: &Credentials) {
    assert!(!c.authc.is_empty());
    assert!(!c.authz.is_empty());
    // Exactly the names, and the password redacted.
    let expected = format!(
        "Credentials {{ authz: {:?}, authc: {:?}, password: \"[redacted]\" }}",
        c.authz, c.authc
    );
    assert_eq!(format!("{c:?}"), expected);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut decoded_lines = Vec::new();
    // An exchange has a response or two: a few lines are enough, and
    // thousands of tiny ones would only slow the fuzzer down.
    for line in text.split('\n').take(8) {
        let decoded = match decode_response(line) {
            Ok(d) => d,
            Err(r) => {
                check_refusal(&r);
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed != "=" {
            let again = base64::engine::general_purpose::STANDARD.encode(&decoded);
            assert_eq!(again, trimmed, "non-canonical base64 accepted");
        } else {
            assert!(decoded.is_empty());
        }

        match parse_plain(&decoded) {
            Ok(c) => {
                check_credentials(&c);
                for field in [&c.authz, &c.authc, &c.password] {
                    assert!(!field.contains('\0'));
                }
                let fields: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
                assert_eq!(fields.len(), 3);
                assert_eq!(c.authc.as_bytes(), fields[1]);
                assert_eq!(c.password.as_bytes(), fields[2]);
                let authz = if fields[0].is_empty() {
                    fields[1]
                } else {
                    fields[0]
                };
                assert_eq!(c.authz.as_bytes(), authz);
            }
            Err(r) => check_refusal(&r),
        }
        decoded_lines.push(decoded);
    }

    for pair in decoded_lines.chunks_exact(2) {
        match login_credentials(&pair[0], &pair[1]) {
            Ok(c) => {
                check_credentials(&c);
                assert_eq!(c.authc.as_bytes(), &pair[0][..]);
                assert_eq!(c.authz, c.authc);
                assert_eq!(c.password.as_bytes(), &pair[1][..]);
            }
            Err(r) => check_refusal(&r),
        }
    }
});
