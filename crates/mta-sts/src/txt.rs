//! The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1).

/// What the TXT records at `_mta-sts.<domain>` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtOutcome {
    /// Exactly one valid STSv1 record, with this policy id.
    Id(String),
    /// No STSv1 record, or more than one: the domain has no usable policy.
    NoPolicy,
    /// A single STSv1 record that is syntactically invalid (treated like
    /// `NoPolicy` by the resolver; the reason is for logs).
    Invalid(String),
}

/// Interprets the TXT strings found at `_mta-sts.<domain>`. Each element
/// is one record, its character-strings already concatenated.
///
/// Records that do not start with `v=STSv1` are discarded; if the number
/// left is not exactly one, the domain has no policy (§3.1).
pub fn parse_txt(records: &[String]) -> TxtOutcome {
    let sts: Vec<&String> = records.iter().filter(|r| is_sts_record(r)).collect();
    match sts.as_slice() {
        [one] => match parse_record(one) {
            Ok(id) => TxtOutcome::Id(id),
            Err(e) => TxtOutcome::Invalid(e),
        },
        _ => TxtOutcome::NoPolicy,
    }
}

/// Starts with the version field, and that field is complete (so
/// `v=STSv10` is not mistaken for one).
fn is_sts_record(r: &str) -> bool {
    r.strip_prefix("v=STSv1")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([';', ' ', '\t']))
}

/// `sts-version 1*(sts-sep sts-field) [sts-sep]` where
/// `sts-sep = *WSP ";" *WSP`.
fn parse_record(r: &str) -> Result<String, String> {
    let mut fields = r.split(';').map(|f| f.trim_matches([' ', '\t']));
    // The filter above guarantees the first field is exactly "v=STSv1"
    // once trailing whitespace is removed.
    if fields.next() != Some("v=STSv1") {
        return Err("bad version field".into());
    }
    let mut rest: Vec<&str> = fields.collect();
    // One optional trailing separator.
    if rest.last() == Some(&"") {
        rest.pop();
    }
    let mut id = None;
    for field in &rest {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| format!("field without '=': {field:?}"))?;
        if !crate::policy::is_field_name(name) {
            return Err(format!("bad field name {name:?}"));
        }
        if name == "id" {
            if !(1..=32).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(format!("bad id {value:?}"));
            }
            if id.replace(value).is_some() {
                return Err("repeated id".into());
            }
        } else if value.is_empty()
            || !value
                .bytes()
                .all(|b| matches!(b, 0x21..=0x3a | 0x3c | 0x3e..=0x7e))
        {
            return Err(format!("bad value for {name}"));
        }
    }
    id.map(str::to_string).ok_or_else(|| "no id field".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(records: &[&str]) -> TxtOutcome {
        parse_txt(&records.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn valid_records() {
        assert_eq!(
            txt(&["v=STSv1; id=20160831085700Z;"]),
            TxtOutcome::Id("20160831085700Z".into())
        );
        assert_eq!(txt(&["v=STSv1;id=abc"]), TxtOutcome::Id("abc".into()));
        assert_eq!(
            txt(&["v=STSv1 ;\tid=abc ; ext=foo"]),
            TxtOutcome::Id("abc".into())
        );
        assert_eq!(
            txt(&["some other record", "v=spf1 -all", "v=STSv1; id=x1"]),
            TxtOutcome::Id("x1".into())
        );
        assert_eq!(
            txt(&[&format!("v=STSv1; id={}", "a".repeat(32))]),
            TxtOutcome::Id("a".repeat(32))
        );
    }

    #[test]
    fn no_policy() {
        assert_eq!(txt(&[]), TxtOutcome::NoPolicy);
        assert_eq!(txt(&["v=spf1 -all"]), TxtOutcome::NoPolicy);
        assert_eq!(txt(&["v=STSv10; id=a"]), TxtOutcome::NoPolicy);
        assert_eq!(txt(&[" v=STSv1; id=a"]), TxtOutcome::NoPolicy);
        // Two STSv1 records: ambiguous, so no policy (§3.1).
        assert_eq!(
            txt(&["v=STSv1; id=a", "v=STSv1; id=b"]),
            TxtOutcome::NoPolicy
        );
    }

    #[test]
    fn invalid_records() {
        for bad in [
            "v=STSv1",
            "v=STSv1;",
            "v=STSv1; id=",
            "v=STSv1; id=a-b",
            &format!("v=STSv1; id={}", "a".repeat(33)),
            "v=STSv1; id=a; id=b",
            "v=STSv1; id=a;;",
            "v=STSv1; ;id=a",
            "v=STSv1; id=a; ext",
            "v=STSv1; id=a; ext=",
            "v=STSv1; id=a; _x=1",
            "v=STSv1; id=a; x=a=b",
            "v=STSv1 id=a",
        ] {
            assert!(matches!(txt(&[bad]), TxtOutcome::Invalid(_)), "{bad:?}");
        }
    }
}
