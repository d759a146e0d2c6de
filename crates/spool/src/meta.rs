//! The metadata record stored with every message: the one schema that
//! reception writes and delivery reads back (and rewrites, through
//! `UpdateMeta`, as recipients finish and attempts are made).
//!
//! Format versions:
//! - 1 (no `version` field): envelope, retry state and the policy-visible
//!   `meta` object; tenant and campaign lived only inside `meta`.
//! - 2: adds `version`, and the labels delivery routes on (`tenant`,
//!   `campaign`, `queue`, `routing_domain`) as fields of their own, taken from `meta` once at
//!   reception. `meta` is still carried whole: policies read it back with
//!   `msg:get_meta`, as in KumoMTA.
//!
//! Version 1 records are upgraded when read; a record from a newer format is
//! refused (the message stays in the spool) rather than half understood.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The format written by this build.
pub const FORMAT_VERSION: u32 = 2;

fn legacy_version() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpoolMeta {
    #[serde(default = "legacy_version")]
    pub version: u32,
    pub id: String,
    /// Envelope sender; empty for the null sender.
    pub sender: String,
    /// Recipients still to be delivered.
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The `queue` meta key as set by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The `routing_domain` meta key as set by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_domain: Option<String>,
    /// The `reception_protocol` meta key, for delivery records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reception_protocol: Option<String>,
    /// Connection and message metadata as the policy saw it (a JSON object
    /// whose keys are the policy's own), carried verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaObject>,
    /// RFC 3339 time of reception.
    #[serde(default)]
    pub received_at: Option<String>,
    // Retry state, kept inline: serde's `flatten` cannot carry `meta`'s
    // raw JSON text.
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    #[serde(default)]
    pub due: Option<u64>,
    /// Unix seconds when first queued; expiry counts from here.
    #[serde(default)]
    pub created: Option<u64>,
}

/// The policy-visible metadata of a message: an opaque JSON object kept as
/// its text (a parsed map costs about 1 KB per queued message).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetaObject(Box<RawValue>);

impl MetaObject {
    /// Wraps JSON object text. Anything but an object is refused.
    pub fn from_json(text: String) -> Result<MetaObject, MetaError> {
        let raw = RawValue::from_string(text).map_err(|e| MetaError::Invalid(e.to_string()))?;
        if !raw.get().trim_start().starts_with('{') {
            return Err(MetaError::Invalid("meta is not a JSON object".into()));
        }
        Ok(MetaObject(raw))
    }

    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// The keys `pick` selects, as JSON object text; `None` when none is
    /// present.
    pub fn select(&self, pick: impl Fn(&str) -> bool) -> Option<String> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(self.0.get()).ok()?;
        let chosen: serde_json::Map<_, _> = map.into_iter().filter(|(k, _)| pick(k)).collect();
        (!chosen.is_empty()).then(|| serde_json::Value::Object(chosen).to_string())
    }

    /// The labels routing reads, from one pass over the text: other keys
    /// are skipped without being built, and a repeated key resolves as in a
    /// map (the last wins).
    pub fn labels(&self) -> Labels {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Labels;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Labels, A::Error> {
                let mut l = Labels::default();
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "tenant" => &mut l.tenant,
                        "campaign" => &mut l.campaign,
                        "queue" => &mut l.queue,
                        "routing_domain" => &mut l.routing_domain,
                        "reception_protocol" => &mut l.reception_protocol,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    };
                }
                Ok(l)
            }
        }
        let mut de = serde_json::Deserializer::from_str(self.0.get());
        serde::Deserializer::deserialize_map(&mut de, Visit).unwrap_or_default()
    }

    /// A string-valued key. A repeated key resolves as a map would: the last
    /// one wins.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(self.0.get()).ok()?;
        map.get(key).and_then(|v| v.as_str()).map(str::to_string)
    }
}

/// The metadata keys that decide routing (string values only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    pub tenant: Option<String>,
    pub campaign: Option<String>,
    pub queue: Option<String>,
    pub routing_domain: Option<String>,
    /// How the message arrived (`ESMTPS`, `HTTP`, `LogRecord`, ...).
    pub reception_protocol: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("unreadable spool metadata: {0}")]
    Invalid(String),
    #[error(
        "spool metadata is format version {0}, newer than this build understands ({FORMAT_VERSION})"
    )]
    TooNew(u32),
}

impl SpoolMeta {
    /// A new record at reception. The labels are read from `meta` once.
    pub fn new(
        id: String,
        sender: String,
        recipients: Vec<String>,
        meta: Option<MetaObject>,
        received_at: String,
    ) -> SpoolMeta {
        let labels = meta.as_ref().map(MetaObject::labels).unwrap_or_default();
        SpoolMeta {
            version: FORMAT_VERSION,
            tenant: labels.tenant,
            campaign: labels.campaign,
            queue: labels.queue,
            routing_domain: labels.routing_domain,
            reception_protocol: labels.reception_protocol,
            id,
            sender,
            recipients,
            meta,
            received_at: Some(received_at),
            attempts: 0,
            due: None,
            created: None,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<SpoolMeta, MetaError> {
        let mut m: SpoolMeta =
            serde_json::from_slice(bytes).map_err(|e| MetaError::Invalid(e.to_string()))?;
        match m.version {
            1 => {
                let labels = m.meta.as_ref().map(MetaObject::labels).unwrap_or_default();
                m.tenant = labels.tenant;
                m.campaign = labels.campaign;
                m.queue = labels.queue;
                m.routing_domain = labels.routing_domain;
                m.reception_protocol = labels.reception_protocol;
                m.version = FORMAT_VERSION;
            }
            FORMAT_VERSION => {}
            newer => return Err(MetaError::TooNew(newer)),
        }
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing owned strings, integers and already-valid JSON text
        // cannot fail.
        serde_json::to_vec(self).expect("spool metadata serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_records_upgrade_with_their_labels() {
        let v1 = br#"{"id":"x","sender":"a@b","recipients":["c@d"],"meta":{"tenant":"t1","campaign":7,"queue":"q","tenant":"t2","other":{"k":[1,2]}},"received_at":"2026-01-01T00:00:00+00:00","attempts":3,"due":10,"created":5}"#;
        let m = SpoolMeta::decode(v1).unwrap();
        assert_eq!(m.version, FORMAT_VERSION);
        assert_eq!(m.tenant.as_deref(), Some("t2"), "last key wins");
        assert_eq!(m.campaign, None, "only string labels");
        assert_eq!(m.queue.as_deref(), Some("q"));
        assert_eq!((m.attempts, m.due, m.created), (3, Some(10), Some(5)));
        let again = SpoolMeta::decode(&m.encode()).unwrap();
        assert_eq!(again.tenant.as_deref(), Some("t2"));
        assert!(again
            .meta
            .unwrap()
            .as_json()
            .contains(r#""other":{"k":[1,2]}"#));
    }

    #[test]
    fn bare_and_new_records() {
        let bare = SpoolMeta::decode(br#"{"id":"x","sender":"","recipients":[]}"#).unwrap();
        assert!(bare.meta.is_none() && bare.tenant.is_none());
        let meta = MetaObject::from_json(r#"{"tenant":"t","campaign":"c"}"#.into()).unwrap();
        let m = SpoolMeta::new(
            "id".into(),
            "s@x".into(),
            vec!["r@y".into()],
            Some(meta),
            "now".into(),
        );
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.starts_with(r#"{"version":2,"id":"id","sender":"s@x","recipients":["r@y"],"tenant":"t","campaign":"c","meta":{"#), "{text}");
        assert!(matches!(
            SpoolMeta::decode(br#"{"version":3,"id":"x","sender":"","recipients":[]}"#),
            Err(MetaError::TooNew(3))
        ));
        assert!(MetaObject::from_json("[1]".into()).is_err());
    }
}
