//! Durations as the policy API writes them: "30s", "5m", "7d", "10 hours",
//! or a number of seconds.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(|| format!("invalid duration {text:?}"));
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(f64),
    Text(String),
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Number(n) => secs_to_duration(n)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {n}"))),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("10 hours").unwrap(), Duration::from_secs(36000));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse("soon").is_err());
        assert!(parse("-1").is_err());
    }
}
