//! Validation of the names that end up in DNS records, signature tags and
//! file paths. Strict on purpose: these names become path components
//! (`<dir>/<domain>/<selector>.key`) and tag values (`d=`, `s=`).

use crate::error::{DkimError, Result};

fn validate_dns_name(what: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(DkimError::config(format!(
            "invalid {what} {:?}: {why}",
            name.escape_debug().to_string()
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if !name.is_ascii() {
        return bad("use the ASCII (A-label, \"xn--...\") form of internationalized names");
    }
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    if name.ends_with('.') {
        return bad("remove the trailing dot");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// Checks a signing domain (`d=`).
pub(crate) fn validate_domain(domain: &str) -> Result<()> {
    validate_dns_name("domain", domain)
}

/// Checks a selector (`s=`); selectors may have several labels.
pub(crate) fn validate_selector(selector: &str) -> Result<()> {
    validate_dns_name("selector", selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "example.com",
            "a",
            "s1.2024",
            "mail_sel",
            "xn--bcher-kva.example",
        ] {
            validate_domain(ok).unwrap();
        }
        for bad in [
            "",
            "example.com.",
            "../etc",
            "a/b",
            "a..b",
            ".a",
            "-a.com",
            "a b",
            "a;b",
            "bücher.de",
            "a\nb",
        ] {
            assert!(validate_domain(bad).is_err(), "{bad:?}");
        }
        assert!(validate_selector(&"a".repeat(64)).is_err());
    }
}
