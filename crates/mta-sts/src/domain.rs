//! Host-name syntax shared by the policy parser and the cache.

/// Lower-cases `name`, drops one trailing dot and checks it is an LDH
/// host name (RFC 5321 `Domain`): labels of 1–63 letters, digits and
/// inner hyphens, 253 octets at most.
///
/// Anything accepted here is also a safe file name (no `/`, no `..`,
/// nothing outside `[a-z0-9.-]`), which the cache relies on.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    if !name.split('.').all(is_ldh_label) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

fn is_ldh_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes_and_validates() {
        assert_eq!(normalize("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(normalize("a-b.c").as_deref(), Some("a-b.c"));
        for bad in [
            "", ".", "..", "a..b", "-a.b", "a-.b", "a/b", "a_b.c", "../x", "é.fr", "a b",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
        assert_eq!(normalize(&"a".repeat(64)), None);
        assert!(normalize(&["a"; 127].join(".")).is_some());
        assert!(normalize(&["a"; 128].join(".")).is_none());
    }
}
