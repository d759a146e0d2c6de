//! `msg:check_fix_conformance(check, fix)`: the subset of flags Ironpost
//! implements. An unknown flag is an error rather than a check silently
//! skipped.

use crate::headers;

const KNOWN: &[&str] = &[
    "NON_CANONICAL_LINE_ENDINGS",
    "MISSING_DATE_HEADER",
    "MISSING_MESSAGE_ID_HEADER",
];

fn flags(spec: &str) -> Result<Vec<&str>, String> {
    let list: Vec<&str> = spec
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for f in &list {
        if !KNOWN.contains(f) {
            return Err(format!(
                "check_fix_conformance: unknown flag {f:?} (known: {})",
                KNOWN.join(", ")
            ));
        }
    }
    Ok(list)
}

fn has_bare_line_ending(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
            || (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
    })
}

fn canonicalize(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

pub fn check_fix(data: &mut Vec<u8>, check: &str, fix: &str) -> Result<(), String> {
    let check = flags(check)?;
    let fix = flags(fix)?;
    let mut problems = Vec::new();
    for flag in KNOWN {
        let broken = match *flag {
            "NON_CANONICAL_LINE_ENDINGS" => has_bare_line_ending(data),
            "MISSING_DATE_HEADER" => headers::first_value(data, "Date").is_none(),
            _ => headers::first_value(data, "Message-ID").is_none(),
        };
        if !broken {
            continue;
        }
        if fix.contains(flag) {
            match *flag {
                "NON_CANONICAL_LINE_ENDINGS" => *data = canonicalize(data),
                "MISSING_DATE_HEADER" => headers::append(data, "Date", &chrono_like_now()),
                _ => headers::append(data, "Message-ID", &format!("<{}@ironpost>", unique())),
            }
        } else if check.contains(flag) {
            problems.push(*flag);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("message does not conform: {}", problems.join(", ")))
    }
}

fn unique() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}.{:x}", now.as_nanos(), std::process::id())
}

fn chrono_like_now() -> String {
    chrono::Utc::now().to_rfc2822()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        let mut d = b"A: b\nC: d\r\n\r\nx\ry\r\n".to_vec();
        assert!(check_fix(&mut d, "NON_CANONICAL_LINE_ENDINGS", "").is_err());
        check_fix(
            &mut d,
            "NON_CANONICAL_LINE_ENDINGS",
            "NON_CANONICAL_LINE_ENDINGS",
        )
        .unwrap();
        assert_eq!(d, b"A: b\r\nC: d\r\n\r\nx\r\ny\r\n");
        assert!(check_fix(&mut d, "BOGUS", "").is_err());
        check_fix(&mut d, "", "MISSING_DATE_HEADER").unwrap();
        assert!(headers::first_value(&d, "Date").unwrap().ends_with("+0000"));
    }
}
