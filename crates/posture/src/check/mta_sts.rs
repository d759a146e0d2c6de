//! MTA-STS (RFC 8461) as senders see it: the `_mta-sts` TXT record, the
//! policy fetched over validated HTTPS with the same fetcher delivery
//! uses, its mode, whether it covers every live MX host, its max_age, and
//! whether it is the policy Ironpost would host.

use super::report::{Check, Findings, Item, Verdict};
use super::tags::normalize;
use crate::{MtaSts, Posture};
use ironpost_dns::{Dns, MxAnswer};
use ironpost_mta_sts::{
    parse_txt, FetchConfig, Mode, Policy, PolicyFetcher, StsDns, TxtError, TxtOutcome,
};
use std::net::IpAddr;

/// Under a day, a policy lapses between most senders' visits.
const SHORT_MAX_AGE: u64 = 86_400;

/// The resolver as the MTA-STS crate needs it.
struct StsLookups<'a>(&'a Dns);

impl StsDns for StsLookups<'_> {
    async fn txt(&self, name: &str) -> Result<Vec<String>, TxtError> {
        match self.0.txt(name).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_permanent() => Err(TxtError::NotFound),
            Err(e) => Err(TxtError::Temporary(e.to_string())),
        }
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.0
            .ips_secure(host)
            .await
            .map(|s| s.value)
            .map_err(|e| e.to_string())
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    }
}

/// The `policy` item: the mode.
pub(crate) fn grade_mode(policy: &Policy) -> Item {
    let (verdict, why) = match policy.mode {
        Mode::Enforce => (Verdict::Pass, "senders require TLS to the listed MX hosts"),
        Mode::Testing => (
            Verdict::Warn,
            "senders only report failures and still deliver without TLS",
        ),
        Mode::None => (Verdict::Warn, "the policy is withdrawn"),
    };
    Item::new(
        Check::MtaSts,
        "policy",
        verdict,
        format!("mode {}: {why}", mode_name(policy.mode)),
    )
}

/// The `mx` item: every live MX host must match a pattern, or enforcing
/// senders will not deliver to it.
pub(crate) fn grade_mx(policy: &Policy, mx: &MxAnswer) -> Item {
    let mut f = Findings::new();
    match mx {
        MxAnswer::Null => f.pass("null MX: the domain accepts no mail"),
        MxAnswer::Hosts { hosts, implicit } => {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            let (ok, missing): (Vec<&str>, Vec<&str>) =
                names.iter().partition(|h| policy.matches_mx(h));
            if !missing.is_empty() {
                let what = format!(
                    "{} {} not in the policy's mx ({})",
                    missing.join(", "),
                    if missing.len() == 1 { "is" } else { "are" },
                    policy.mx.join(", ")
                );
                match policy.mode {
                    Mode::Enforce => {
                        f.fail(format!("{what}: enforcing senders will not deliver there"))
                    }
                    Mode::Testing => f.warn(format!("{what}: senders will report failures")),
                    Mode::None => f.pass(format!("{what}; no matter in mode none")),
                }
            }
            if !ok.is_empty() {
                f.pass(format!(
                    "{}{} {} the policy",
                    ok.join(", "),
                    if *implicit { " (implicit MX)" } else { "" },
                    if ok.len() == 1 { "matches" } else { "match" }
                ));
            }
        }
    }
    f.item(Check::MtaSts, "mx")
}

pub(crate) fn grade_max_age(policy: &Policy) -> Item {
    let days = policy.max_age / 86_400;
    if policy.max_age < SHORT_MAX_AGE {
        Item::new(
            Check::MtaSts,
            "max_age",
            Verdict::Warn,
            format!(
                "max_age {}s is under a day: senders forget the policy between visits (RFC 8461 suggests weeks)",
                policy.max_age
            ),
        )
    } else {
        Item::new(
            Check::MtaSts,
            "max_age",
            Verdict::Pass,
            format!("max_age {} ({days} days)", policy.max_age),
        )
    }
}

/// The `hosted` item: the live id and policy against those Ironpost
/// would serve. `live` is None when the fetch failed.
pub(crate) fn grade_hosted(
    domain: &str,
    hosted: &MtaSts,
    live_id: &str,
    live: Option<&Policy>,
) -> Item {
    let mut f = Findings::new();
    let id = hosted.id();
    if live_id != id {
        f.warn(format!(
            "_mta-sts.{domain} has id={live_id}, the hosted policy's is {id}: publish \"v=STSv1; id={id}\" so senders refetch"
        ));
    } else {
        f.pass(format!("id={id} is the hosted policy's"));
    }
    if let Some(live) = live {
        let mut want: Vec<String> = hosted.mx.iter().map(|m| normalize(m)).collect();
        let mut got = live.mx.clone();
        want.sort();
        got.sort();
        let same = mode_name(live.mode).eq_ignore_ascii_case(&hosted.mode)
            && want == got
            && live.max_age == hosted.max_age;
        if same {
            f.pass("the served policy is the hosted one");
        } else {
            f.warn(format!(
                "the served policy (mode {}, mx {}, max_age {}) differs from the one Ironpost hosts \
                 (mode {}, mx {}, max_age {}): is another server answering for mta-sts.{domain}?",
                mode_name(live.mode),
                live.mx.join(" "),
                live.max_age,
                hosted.mode,
                hosted.mx.join(" "),
                hosted.max_age
            ));
        }
    }
    f.item(Check::MtaSts, "hosted")
}

pub(crate) async fn check(posture: &Posture, dns: &Dns, fetch: &FetchConfig) -> Vec<Item> {
    let domain = normalize(&posture.domain);
    let name = format!("_mta-sts.{domain}");
    let record = |v, d: String| vec![Item::new(Check::MtaSts, "record", v, d)];
    // Absent is a failure only when the policy says this domain has one.
    let absent = |what: String| match &posture.mta_sts {
        Some(h) => record(
            Verdict::Fail,
            format!("{what}: publish \"v=STSv1; id={}\"", h.id()),
        ),
        None => record(
            Verdict::Warn,
            format!("{what}: senders fall back to opportunistic TLS"),
        ),
    };
    let txts = match dns.txt(&name).await {
        Ok(t) => t,
        Err(e) if e.is_permanent() => return absent(format!("no MTA-STS record at {name}")),
        Err(e) => return record(Verdict::Fail, e.to_string()),
    };
    let id = match parse_txt(&txts) {
        TxtOutcome::Id(id) => id,
        TxtOutcome::Invalid(e) => {
            return record(Verdict::Fail, format!("{name}: {e}: senders ignore it"))
        }
        TxtOutcome::NoPolicy => {
            let n = txts.iter().filter(|t| t.starts_with("v=STSv1")).count();
            if n > 1 {
                return record(
                    Verdict::Fail,
                    format!("{n} v=STSv1 records at {name}: senders ignore them all"),
                );
            }
            return absent(format!("no v=STSv1 record at {name}"));
        }
    };
    let mut items = record(Verdict::Pass, format!("{name}: v=STSv1; id={id}"));

    let fetched = match PolicyFetcher::new(fetch) {
        Ok(fetcher) => fetcher
            .fetch(&StsLookups(dns), &domain)
            .await
            .map_err(|f| f.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let policy = match fetched {
        Ok(p) => p,
        Err(e) => {
            items.push(Item::new(
                Check::MtaSts,
                "policy",
                Verdict::Fail,
                format!("https://mta-sts.{domain}/.well-known/mta-sts.txt: {e}"),
            ));
            if let Some(h) = &posture.mta_sts {
                items.push(grade_hosted(&domain, h, &id, None));
            }
            return items;
        }
    };
    items.push(grade_mode(&policy));
    items.push(match dns.mx(&domain).await {
        Ok(mx) => grade_mx(&policy, &mx),
        Err(e) => Item::new(Check::MtaSts, "mx", Verdict::Fail, e.to_string()),
    });
    items.push(grade_max_age(&policy));
    if let Some(h) = &posture.mta_sts {
        items.push(grade_hosted(&domain, h, &id, Some(&policy)));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_dns::MxHost;

    fn policy(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    fn hosts(names: &[&str]) -> MxAnswer {
        MxAnswer::Hosts {
            hosts: names
                .iter()
                .map(|n| MxHost {
                    preference: 10,
                    name: n.to_string(),
                })
                .collect(),
            implicit: false,
        }
    }

    const ENFORCE: &str = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmx: *.backup.example.test\nmax_age: 604800\n";

    #[test]
    fn modes() {
        assert_eq!(grade_mode(&policy(ENFORCE)).verdict, Verdict::Pass);
        let testing = ENFORCE.replace("enforce", "testing");
        assert_eq!(grade_mode(&policy(&testing)).verdict, Verdict::Warn);
        let none = "version: STSv1\nmode: none\nmax_age: 86400\n";
        assert_eq!(grade_mode(&policy(none)).verdict, Verdict::Warn);
    }

    #[test]
    fn mx_coverage() {
        let p = policy(ENFORCE);
        let item = grade_mx(&p, &hosts(&["mx.example.test", "b1.backup.example.test"]));
        assert_eq!(item.verdict, Verdict::Pass, "{item:?}");
        let item = grade_mx(&p, &hosts(&["mx.example.test", "mx2.example.test"]));
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item
            .detail
            .starts_with("mx2.example.test is not in the policy's mx"));
        let testing = policy(&ENFORCE.replace("enforce", "testing"));
        assert_eq!(
            grade_mx(&testing, &hosts(&["mx2.example.test"])).verdict,
            Verdict::Warn
        );
        assert_eq!(grade_mx(&p, &MxAnswer::Null).verdict, Verdict::Pass);
    }

    #[test]
    fn max_age() {
        assert_eq!(grade_max_age(&policy(ENFORCE)).verdict, Verdict::Pass);
        let short = ENFORCE.replace("604800", "3600");
        assert_eq!(grade_max_age(&policy(&short)).verdict, Verdict::Warn);
    }

    #[test]
    fn hosted() {
        let h = MtaSts {
            mode: "enforce".into(),
            mx: vec!["*.backup.example.test".into(), "mx.example.test".into()],
            max_age: 604800,
        };
        let item = grade_hosted("example.test", &h, &h.id(), Some(&policy(ENFORCE)));
        assert_eq!(item.verdict, Verdict::Pass, "{item:?}");
        let item = grade_hosted("example.test", &h, "old1", Some(&policy(ENFORCE)));
        assert_eq!(item.verdict, Verdict::Warn);
        assert!(item.detail.contains(&format!("id={}", h.id())));
        let other = ENFORCE.replace("604800", "86400");
        let item = grade_hosted("example.test", &h, &h.id(), Some(&policy(&other)));
        assert_eq!(item.verdict, Verdict::Warn);
        assert!(item.detail.contains("differs"));
    }
}
