//! Syntax shared by the TXT records checked here: `tag=value` lists (DKIM
//! RFC 6376 §3.2, and the DMARC, BIMI and TLS-RPT records modelled on
//! them), report URIs and host names.

/// The tags of a `tag=value; ...` list, in order. Empty entries (`;;`, a
/// trailing `;`) are skipped: receivers accept them. Whitespace around
/// names and values is dropped. A repeated tag makes the record invalid
/// (RFC 6376 §3.2), since receivers may take either value.
pub(crate) fn tag_list(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for part in text.split(';') {
        let part = part.trim_matches(is_fws);
        if part.is_empty() {
            continue;
        }
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{:?} is not tag=value", clip(part, 40)))?;
        let name = name.trim_matches(is_fws);
        let value = value.trim_matches(is_fws);
        let mut chars = name.chars();
        // DKIM's ALPHA *(ALPHA / DIGIT / "_"), widened to TLS-RPT's
        // extension names, which may also hold "-" and ".".
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !well_formed {
            return Err(format!("bad tag name {:?}", clip(name, 40)));
        }
        if value.chars().any(|c| c.is_control() && !is_fws(c)) {
            return Err(format!("control character in {name}="));
        }
        if tags.iter().any(|(n, _)| n == name) {
            return Err(format!("{name}= appears twice"));
        }
        tags.push((name.to_string(), value.to_string()));
    }
    Ok(tags)
}

fn is_fws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The value of tag `name`.
pub(crate) fn get<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A host name of LDH labels (and `_`, which SPF and DKIM names use), at
/// most 253 octets, one trailing dot allowed, not an IP-looking last label.
pub(crate) fn is_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok && !labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// `mailto:local@domain` (DMARC allows a `!size` suffix, e.g. `!10m`, when
/// `size_suffix`); returns the address's domain, lower case.
pub(crate) fn mailto(uri: &str, size_suffix: bool) -> Result<String, String> {
    let scheme_ok = uri
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("mailto:"));
    if !scheme_ok {
        return Err(format!("{:?} is not a mailto: URI", clip(uri, 60)));
    }
    let mut addr = &uri[7..];
    if size_suffix {
        if let Some((a, size)) = addr.rsplit_once('!') {
            let digits = size.trim_end_matches(['k', 'm', 'g', 't']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad size limit !{size} in {uri}"));
            }
            addr = a;
        }
    }
    let (local, domain) = addr
        .rsplit_once('@')
        .ok_or_else(|| format!("{uri}: no @ in the address"))?;
    if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{uri}: bad local part"));
    }
    if !is_domain(domain) {
        return Err(format!("{uri}: bad domain {domain:?}"));
    }
    Ok(domain.trim_end_matches('.').to_ascii_lowercase())
}

/// An `https://host[:port]/...` URL; returns the host, lower case.
pub(crate) fn https_url(url: &str) -> Result<String, String> {
    let scheme_ok = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if !scheme_ok {
        return Err(format!("{:?} is not an https:// URL", clip(url, 60)));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{:?}: whitespace in the URL", clip(url, 60)));
    }
    let rest = &url[8..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("{url}: credentials in the URL"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("{url}: bad port"));
    }
    if !is_domain(host) {
        return Err(format!("{url}: bad host {host:?}"));
    }
    Ok(host.trim_end_matches('.').to_ascii_lowercase())
}

/// At most `max` characters of `s`, with `...` when cut; DNS data is
/// quoted in details and can be arbitrarily long.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// Why a lookup found nothing, briefly (the error's text repeats the
/// name the detail already gives).
pub(crate) fn absence(e: &ironpost_dns::DnsError) -> String {
    match e {
        ironpost_dns::DnsError::NxDomain(_) => "NXDOMAIN".into(),
        ironpost_dns::DnsError::NoRecords(_, t) => format!("no {t} records"),
        e => e.to_string(),
    }
}

/// Lower case, no trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists() {
        let t = tag_list(" v=DMARC1 ;p = reject;; rua=mailto:a@b.test ; ").unwrap();
        assert_eq!(
            t,
            vec![
                ("v".to_string(), "DMARC1".to_string()),
                ("p".into(), "reject".into()),
                ("rua".into(), "mailto:a@b.test".into()),
            ]
        );
        assert_eq!(get(&t, "p"), Some("reject"));
        assert_eq!(get(&t, "sp"), None);
        assert_eq!(tag_list("p=").unwrap(), vec![("p".into(), "".into())]);
        assert!(tag_list("p=a; p=b").unwrap_err().contains("twice"));
        assert!(tag_list("v=DKIM1; junk").is_err());
        assert!(tag_list("_x=a").is_err());
        assert_eq!(tag_list("v=TLSRPTv1; x-ext.1=a").unwrap().len(), 2);
        assert!(tag_list("a b=c").is_err());
        assert!(tag_list("a=b\u{1}").is_err());
        assert!(tag_list("").unwrap().is_empty());
    }

    #[test]
    fn domains() {
        for ok in [
            "example.com",
            "_spf.example.com.",
            "a-b.c",
            "xn--bcher-kva.de",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in ["", ".", "a..b", "-a.b", "a-.b", "a b.c", "1.2.3.4", "é.fr"] {
            assert!(!is_domain(bad), "{bad}");
        }
        assert!(!is_domain(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn uris() {
        assert_eq!(
            mailto("mailto:d@Rua.Example", false).unwrap(),
            "rua.example"
        );
        assert_eq!(mailto("MAILTO:d@x.test!10m", true).unwrap(), "x.test");
        assert!(mailto("mailto:d@x.test!10m", false).is_err());
        assert!(mailto("mailto:d@x.test!m", true).is_err());
        for bad in [
            "d@x.test",
            "mailto:",
            "mailto:x.test",
            "mailto:@x.test",
            "mailto:a@",
        ] {
            assert!(mailto(bad, true).is_err(), "{bad}");
        }
        assert_eq!(
            https_url("https://Logo.Example/b.svg").unwrap(),
            "logo.example"
        );
        assert_eq!(https_url("https://h.test:8443").unwrap(), "h.test");
        for bad in [
            "http://h.test/",
            "https://",
            "https:///x",
            "https://h.test:x/",
            "https://u@h.test/",
            "https://h.test/a b",
        ] {
            assert!(https_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc...");
    }
}
