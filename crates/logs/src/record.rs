//! The log records, one struct per kind. Field names are the JSON keys
//! operators already parse (KumoMTA's where one exists); `None` fields are
//! left out, except where a record has always written `null`.

use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// One line of the log. `type` names the kind; the writer adds `timestamp`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type")]
pub enum Record {
    /// A message was accepted (stored durably).
    Reception(MessageRecord),
    /// A recipient or a message was refused at reception.
    Rejection(MessageRecord),
    Delivery(AttemptRecord),
    TransientFailure(AttemptRecord),
    Bounce(AttemptRecord),
    Expiration(AttemptRecord),
    /// An authentication attempt (SMTP AUTH or HTTP Basic). Never a password.
    AuthN(AuthRecord),
}

impl Record {
    /// The record as written: its fields, `type` and `timestamp`.
    pub fn to_json(&self, timestamp: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            record: &'a Record,
            timestamp: &'a str,
        }
        serde_json::to_value(Line {
            record: self,
            timestamp,
        })
        .unwrap_or_default()
    }

    /// Keep only the metadata keys and headers `meta` and `headers` name:
    /// in delivery records, and in Reception and Rejection records too when
    /// `all_kinds` (the local log keeps their whole metadata).
    pub fn select_fields(&mut self, meta: &[String], headers: &[String], all_kinds: bool) {
        if let (true, Record::Reception(m) | Record::Rejection(m)) = (all_kinds, &mut *self) {
            if let Some(raw) = m.meta.take() {
                m.meta =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
                        .ok()
                        .map(|all| -> serde_json::Map<_, _> {
                            all.into_iter()
                                .filter(|(k, _)| name_matches(meta, k, false))
                                .collect()
                        })
                        .filter(|p| !p.is_empty())
                        .and_then(|p| {
                            RawValue::from_string(serde_json::Value::Object(p).to_string()).ok()
                        });
            }
            if let Some(h) = m.headers.take() {
                let picked: BTreeMap<String, String> = h
                    .into_iter()
                    .filter(|(k, _)| name_matches(headers, k, true))
                    .collect();
                m.headers = (!picked.is_empty()).then_some(picked);
            }
        }
        if let Record::Delivery(a)
        | Record::TransientFailure(a)
        | Record::Bounce(a)
        | Record::Expiration(a) = self
        {
            if let Some(m) = a.meta.take() {
                let picked: Option<serde_json::Map<String, serde_json::Value>> =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m.get())
                        .ok()
                        .map(|all| {
                            all.into_iter()
                                .filter(|(k, _)| name_matches(meta, k, false))
                                .collect()
                        });
                a.meta = picked.filter(|p| !p.is_empty()).and_then(|p| {
                    RawValue::from_string(serde_json::Value::Object(p).to_string()).ok()
                });
            }
            if let Some(h) = a.headers.take() {
                let picked: BTreeMap<String, String> = h
                    .into_iter()
                    .filter(|(k, _)| name_matches(headers, k, true))
                    .collect();
                a.headers = (!picked.is_empty()).then_some(picked);
            }
        }
    }

    /// The delivery attempt a record describes, if it is one.
    pub fn attempt_mut(&mut self) -> Option<&mut AttemptRecord> {
        match self {
            Record::Delivery(a)
            | Record::TransientFailure(a)
            | Record::Bounce(a)
            | Record::Expiration(a) => Some(a),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Record::Reception(_) => "Reception",
            Record::Rejection(_) => "Rejection",
            Record::Delivery(_) => "Delivery",
            Record::TransientFailure(_) => "TransientFailure",
            Record::Bounce(_) => "Bounce",
            Record::Expiration(_) => "Expiration",
            Record::AuthN(_) => "AuthN",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerAddress {
    /// EHLO name of a client, host name of a server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub addr: Option<String>,
}

/// Who sent something to us, and over what.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Inbound {
    pub peer_address: PeerAddress,
    /// `ip:port` of the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_from: Option<String>,
    /// The SMTP listener's name (its address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
}

/// A reply, ours or a remote server's; `code` is null when there was none
/// (a connection failure), and `content` then says what happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    pub code: Option<u16>,
    pub enhanced_code: Option<String>,
    pub content: String,
}

/// Reception and Rejection. A recipient rejection names `recipient`; a
/// message rejection names `recipients`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MessageRecord {
    #[serde(flatten)]
    pub inbound: Inbound,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The `queue` meta, when the policy set one (`null`: discarded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPSA`, ..., `HTTP`, `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reception_protocol: Option<String>,
    /// The headers named by `configure_local_logs{ headers }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The message's metadata as the policy left it (its keys are the
    /// policy's own, so it stays JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<RawValue>>,
    /// What `msg:add_authentication_results` (or `mail_auth.check`) put in
    /// Authentication-Results, so DMARC failures can be counted from logs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authentication_results: Vec<AuthenticationResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    /// The reply text again, for refusals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One RFC 8601 result as the Reception record carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AuthenticationResult {
    #[serde(default)]
    pub serv_id: String,
    pub method: String,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub props: BTreeMap<String, String>,
}

/// RFC 8460 outcome of a failed MTA-STS policy discovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiscoveryFailure {
    pub result: String,
    pub detail: String,
}

/// Delivery, TransientFailure, Bounce and Expiration.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttemptRecord {
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    /// `tenant@domain` or `domain`.
    pub queue: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub num_attempts: u32,
    /// The reply's class (`InvalidRecipient`, `SpamBlock`, ...), from the
    /// bounce classifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_classification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_pool: Option<String>,
    pub egress_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<PeerAddress>,
    pub response: Response,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_validated: Option<bool>,
    /// `none`, `mta-sts-testing`, `mta-sts-enforce` or `dane`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_policy: Option<String>,
    /// `success` or an RFC 8460 result type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_result_detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_policy_discovery_failure: Option<DiscoveryFailure>,
    pub delivery_protocol: String,
    /// How the message arrived (`ESMTPS`, `HTTP`, `LogRecord`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reception_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message metadata keys named by `configure_local_logs{ meta }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<RawValue>>,
    /// The headers named by `configure_local_logs{ headers }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

/// `configure_local_logs` name patterns: exact, or a prefix ending in `*`.
pub fn name_matches(patterns: &[String], name: &str, ignore_case: bool) -> bool {
    patterns.iter().any(|p| {
        let (p, name) = if ignore_case {
            (p.to_ascii_lowercase(), name.to_ascii_lowercase())
        } else {
            (p.clone(), name.to_string())
        };
        match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        }
    })
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AuthRecord {
    #[serde(flatten)]
    pub inbound: Inbound,
    /// `HTTP` for the admin API; absent for SMTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authn_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authz_id: Option<String>,
    /// Whether the HTTP request came over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    //! One pinned JSON shape per record kind: operators parse these keys.
    use super::*;
    use serde_json::{json, Value};

    fn shape(r: &Record) -> Value {
        serde_json::to_value(r).unwrap()
    }

    fn smtp_peer() -> Inbound {
        Inbound {
            peer_address: PeerAddress {
                name: Some("client.test".into()),
                addr: Some("127.0.0.1".into()),
            },
            received_from: Some("127.0.0.1:5000".into()),
            listener: Some("127.0.0.1:2525".into()),
            tls_protocol_version: Some("TLSv1_3".into()),
            tls_cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
        }
    }

    #[test]
    fn reception() {
        let r = Record::Reception(MessageRecord {
            inbound: smtp_peer(),
            id: Some("id1".into()),
            sender: Some("a@x.test".into()),
            recipients: Some(vec!["b@y.test".into()]),
            size: Some(42),
            reception_protocol: Some("ESMTPS".into()),
            headers: Some(BTreeMap::from([("Subject".into(), "hi".into())])),
            meta: Some(RawValue::from_string(r#"{"tenant":"t"}"#.into()).unwrap()),
            response: Some(Response {
                code: Some(250),
                enhanced_code: Some("2.0.0".into()),
                content: "OK id=id1".into(),
            }),
            ..Default::default()
        });
        assert_eq!(
            shape(&r),
            json!({
                "type": "Reception",
                "peer_address": {"name": "client.test", "addr": "127.0.0.1"},
                "received_from": "127.0.0.1:5000",
                "listener": "127.0.0.1:2525",
                "tls_protocol_version": "TLSv1_3",
                "tls_cipher": "TLS13_AES_256_GCM_SHA384",
                "id": "id1", "sender": "a@x.test", "recipients": ["b@y.test"], "size": 42,
                "reception_protocol": "ESMTPS",
                "headers": {"Subject": "hi"},
                "meta": {"tenant": "t"},
                "response": {"code": 250, "enhanced_code": "2.0.0", "content": "OK id=id1"}
            })
        );
    }

    #[test]
    fn rejection_of_a_recipient() {
        let mut inbound = smtp_peer();
        inbound.tls_protocol_version = None;
        inbound.tls_cipher = None;
        let r = Record::Rejection(MessageRecord {
            inbound,
            sender: Some("a@x.test".into()),
            recipient: Some("b@y.test".into()),
            response: Some(Response {
                code: Some(550),
                enhanced_code: Some("5.7.1".into()),
                content: "Relaying denied".into(),
            }),
            reason: Some("Relaying denied".into()),
            ..Default::default()
        });
        assert_eq!(
            shape(&r),
            json!({
                "type": "Rejection",
                "peer_address": {"name": "client.test", "addr": "127.0.0.1"},
                "received_from": "127.0.0.1:5000",
                "listener": "127.0.0.1:2525",
                "sender": "a@x.test", "recipient": "b@y.test",
                "response": {"code": 550, "enhanced_code": "5.7.1", "content": "Relaying denied"},
                "reason": "Relaying denied"
            })
        );
    }

    #[test]
    fn delivery_attempts() {
        let a = AttemptRecord {
            id: "id1".into(),
            sender: "a@x.test".into(),
            recipients: vec!["b@y.test".into()],
            queue: "t@y.test".into(),
            site: Some("mx.y.test".into()),
            num_attempts: 1,
            bounce_classification: None,
            egress_pool: None,
            egress_source: "unspecified".into(),
            peer_address: Some(PeerAddress {
                name: Some("mx.y.test".into()),
                addr: Some("127.0.0.2".into()),
            }),
            response: Response {
                code: Some(250),
                enhanced_code: Some("2.0.0".into()),
                content: "ok".into(),
            },
            tls_protocol_version: Some("TLSv1_3".into()),
            tls_cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
            tls_validated: Some(true),
            tls_policy: Some("mta-sts-enforce".into()),
            tls_result: Some("success".into()),
            tls_result_detail: None,
            tls_policy_discovery_failure: None,
            delivery_protocol: "ESMTP".into(),
            reception_protocol: None,
            reason: None,
            meta: None,
            headers: None,
        };
        assert_eq!(
            shape(&Record::Delivery(a.clone())),
            json!({
                "type": "Delivery",
                "id": "id1", "sender": "a@x.test", "recipients": ["b@y.test"],
                "queue": "t@y.test", "site": "mx.y.test", "num_attempts": 1,
                "egress_source": "unspecified",
                "peer_address": {"name": "mx.y.test", "addr": "127.0.0.2"},
                "response": {"code": 250, "enhanced_code": "2.0.0", "content": "ok"},
                "tls_protocol_version": "TLSv1_3", "tls_cipher": "TLS13_AES_128_GCM_SHA256",
                "tls_validated": true, "tls_policy": "mta-sts-enforce", "tls_result": "success",
                "delivery_protocol": "ESMTP"
            })
        );
        // A connection that failed before any reply, then expired.
        let failed = AttemptRecord {
            site: None,
            peer_address: Some(PeerAddress {
                name: Some("mx.y.test".into()),
                addr: None,
            }),
            response: Response {
                code: None,
                enhanced_code: None,
                content: "connection refused".into(),
            },
            tls_protocol_version: None,
            tls_cipher: None,
            tls_validated: None,
            tls_policy: Some("none".into()),
            tls_result: Some("validation-failure".into()),
            tls_result_detail: Some("detail".into()),
            tls_policy_discovery_failure: Some(DiscoveryFailure {
                result: "sts-policy-fetch-error".into(),
                detail: "timeout".into(),
            }),
            reason: Some("message expired (max_age)".into()),
            ..a
        };
        assert_eq!(
            shape(&Record::Expiration(failed.clone())),
            json!({
                "type": "Expiration",
                "id": "id1", "sender": "a@x.test", "recipients": ["b@y.test"],
                "queue": "t@y.test", "num_attempts": 1, "egress_source": "unspecified",
                "peer_address": {"name": "mx.y.test", "addr": null},
                "response": {"code": null, "enhanced_code": null, "content": "connection refused"},
                "tls_policy": "none", "tls_result": "validation-failure",
                "tls_result_detail": "detail",
                "tls_policy_discovery_failure": {"result": "sts-policy-fetch-error", "detail": "timeout"},
                "delivery_protocol": "ESMTP",
                "reason": "message expired (max_age)"
            })
        );
        for (r, kind) in [
            (Record::TransientFailure(failed.clone()), "TransientFailure"),
            (Record::Bounce(failed), "Bounce"),
        ] {
            assert_eq!(shape(&r)["type"], kind);
            assert_eq!(r.kind(), kind);
        }
    }

    #[test]
    fn name_patterns() {
        let p = vec!["x_*".to_string(), "Subject".to_string()];
        assert!(name_matches(&p, "x_campaign", false));
        assert!(!name_matches(&p, "subject", false));
        assert!(name_matches(&p, "subject", true));
        assert!(!name_matches(&p, "y_x", false));
    }

    #[test]
    fn authn() {
        let smtp = Record::AuthN(AuthRecord {
            inbound: smtp_peer(),
            authn_id: Some("user".into()),
            authz_id: Some("user".into()),
            success: false,
            reason: Some("invalid credentials".into()),
            ..Default::default()
        });
        assert_eq!(
            shape(&smtp),
            json!({
                "type": "AuthN",
                "peer_address": {"name": "client.test", "addr": "127.0.0.1"},
                "received_from": "127.0.0.1:5000",
                "listener": "127.0.0.1:2525",
                "tls_protocol_version": "TLSv1_3",
                "tls_cipher": "TLS13_AES_256_GCM_SHA384",
                "authn_id": "user", "authz_id": "user",
                "success": false, "reason": "invalid credentials"
            })
        );
        let http = Record::AuthN(AuthRecord {
            inbound: Inbound {
                peer_address: PeerAddress {
                    name: None,
                    addr: Some("127.0.0.1".into()),
                },
                ..Default::default()
            },
            protocol: Some("HTTP".into()),
            authn_id: Some("admin".into()),
            tls: Some(false),
            success: true,
            ..Default::default()
        });
        assert_eq!(
            shape(&http),
            json!({
                "type": "AuthN", "protocol": "HTTP",
                "peer_address": {"addr": "127.0.0.1"},
                "authn_id": "admin", "tls": false, "success": true
            })
        );
    }
}
