//! Rates as KumoMTA writes them (`max_message_rate = "100/h"`): `LIMIT/PERIOD`
//! where the limit may use `,` or `_` as digit separators and the period is
//! `s`, `m`, `h` or `d` (or `sec`, `min`, `hr`, `hour`, `day`, ...), with an
//! optional multiplier (`10/5m`), an optional `,max_burst=N` (default: the
//! limit, so a whole period's worth may go at once) and an optional `local:`
//! prefix (every Ironpost throttle is local to the node).

use serde::{Deserialize, Deserializer};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThrottleSpec {
    pub limit: u64,
    pub period: Duration,
    pub max_burst: u64,
    /// `local:`: this node's own, even when throttles are shared.
    pub local: bool,
}

/// A connection count (`connection_limit = 32`, `"1,000"`, `"local:5"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Count {
    pub n: usize,
    /// `local:`: this node's own, even when limits are shared.
    pub local: bool,
}

impl PartialEq<usize> for Count {
    fn eq(&self, other: &usize) -> bool {
        self.n == *other
    }
}

impl Count {
    pub fn parse_json(v: serde_json::Value) -> Result<Count, String> {
        Count::deserialize(v).map_err(|e| e.to_string())
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a count such as 32, \"1,000\" or \"local:5\"")]
        enum Raw {
            N(u64),
            S(String),
        }
        let (n, local) = match Raw::deserialize(d)? {
            Raw::N(n) => (n, false),
            Raw::S(s) => {
                let t = s.trim();
                let (t, local) = match t.strip_prefix("local:") {
                    Some(rest) => (rest, true),
                    None => (t, false),
                };
                (number(t).map_err(serde::de::Error::custom)?, local)
            }
        };
        let n = usize::try_from(n).map_err(|_| serde::de::Error::custom("too large"))?;
        Ok(Count { n, local })
    }
}

impl ThrottleSpec {
    pub fn parse(text: &str) -> Result<ThrottleSpec, String> {
        let s = text.trim();
        let local = s.starts_with("local:");
        let s = s.strip_prefix("local:").unwrap_or(s);
        let (s, burst) = match s.split_once(",max_burst=") {
            Some((s, b)) => (s, Some(number(b)?)),
            None => (s, None),
        };
        let (limit, period) = s
            .split_once('/')
            .ok_or_else(|| format!("expected 'limit/period' such as '100/h', got {text:?}"))?;
        let limit = number(limit)?;
        if limit == 0 {
            return Err(format!("{text:?}: the limit must be above 0"));
        }
        let period = period.trim();
        let digits = period.len()
            - period
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let scale: u64 = if digits == 0 {
            1
        } else {
            period[..digits]
                .parse()
                .map_err(|_| format!("{text:?}: bad period"))?
        };
        let unit = match &period[digits..] {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            other => return Err(format!("{text:?}: unknown period {other:?} (s, m, h or d)")),
        };
        let secs = scale
            .checked_mul(unit)
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("{text:?}: bad period"))?;
        let max_burst = burst.unwrap_or(limit);
        if max_burst == 0 {
            return Err(format!("{text:?}: max_burst must be above 0"));
        }
        Ok(ThrottleSpec {
            limit,
            period: Duration::from_secs(secs),
            max_burst,
            local,
        })
    }

    /// The time between two events at the steady rate.
    pub fn interval(&self) -> Duration {
        self.period / self.limit.min(u32::MAX as u64) as u32
    }
}

/// "1,000" and "1_000" as 1000.
pub fn number(s: &str) -> Result<u64, String> {
    let digits: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ',' | '_'))
        .collect();
    digits
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}

pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ThrottleSpec>, D::Error> {
    let s = String::deserialize(d)?;
    ThrottleSpec::parse(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A count written as a number or as a string with digit separators
/// (`connection_limit = "1,000"`), as KumoMTA accepts.
pub fn deserialize_count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        N(u64),
        S(String),
    }
    let n = match Count::deserialize(d)? {
        Count::N(n) => n,
        // `local:` marks a limit a cluster does not share; every Ironpost
        // limit is the node's own.
        Count::S(s) => number(s.trim().strip_prefix("local:").unwrap_or(&s))
            .map_err(serde::de::Error::custom)?,
    };
    usize::try_from(n).map_err(|_| serde::de::Error::custom("too large"))
}

/// `{ name = "rate" }`.
pub fn deserialize_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, ThrottleSpec>, D::Error> {
    let m = std::collections::BTreeMap::<String, String>::deserialize(d)?;
    m.into_iter()
        .map(|(k, v)| {
            ThrottleSpec::parse(&v)
                .map(|s| (k.clone(), s))
                .map_err(|e| serde::de::Error::custom(format!("{k}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumomta_forms() {
        let s = ThrottleSpec::parse("100/h").unwrap();
        assert_eq!(
            (s.limit, s.period, s.max_burst),
            (100, Duration::from_secs(3600), 100)
        );
        let s = ThrottleSpec::parse("local:1,000/5min,max_burst=10").unwrap();
        assert_eq!(
            (s.limit, s.period, s.max_burst),
            (1000, Duration::from_secs(300), 10)
        );
        assert_eq!(
            ThrottleSpec::parse("5/s").unwrap().interval(),
            Duration::from_millis(200)
        );
        assert_eq!(ThrottleSpec::parse("2_000/day").unwrap().limit, 2000);
        for bad in ["100", "0/s", "10/fortnight", "x/s", "10/0s"] {
            assert!(ThrottleSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
