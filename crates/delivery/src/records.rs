//! Delivery log records (Delivery, TransientFailure, Bounce, Expiration).
//! They carry the remote host, the reply and the TLS outcome; credentials
//! never reach them.

use crate::dispatch::Attempt;
use crate::model::QueuedPart;
use crate::route::Site;
use serde_json::{json, Map, Value};

pub fn attempt_record(
    part: &QueuedPart,
    recipients: &[String],
    a: &Attempt,
    site: Option<&Site>,
    attempts: u32,
) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("id".into(), json!(part.msg.id.to_string()));
    r.insert("sender".into(), json!(part.msg.sender.to_string()));
    r.insert("recipients".into(), json!(recipients));
    r.insert("queue".into(), json!(part.queue_name()));
    if let Some(s) = site {
        r.insert("site".into(), json!(s.name));
    }
    r.insert("num_attempts".into(), json!(attempts));
    r.insert("egress_source".into(), json!("unspecified"));
    if a.host.is_some() || a.ip.is_some() {
        r.insert(
            "peer_address".into(),
            json!({ "name": a.host, "addr": a.ip.map(|i| i.to_string()) }),
        );
    }
    let (code, enhanced, content) = match &a.reply {
        Some((c, e, t)) => (json!(c), json!(e), json!(t)),
        None => (
            Value::Null,
            Value::Null,
            json!(a.error.clone().unwrap_or_default()),
        ),
    };
    r.insert(
        "response".into(),
        json!({ "code": code, "enhanced_code": enhanced, "content": content }),
    );
    if let Some((v, c)) = &a.tls {
        r.insert("tls_protocol_version".into(), json!(v));
        r.insert("tls_cipher".into(), json!(c));
    }
    if let Some(v) = a.tls_validated {
        r.insert("tls_validated".into(), json!(v));
    }
    // Which downgrade-resistant policy applied and how it went, in RFC 8460
    // result types, so TLS-RPT reports can be built from the log.
    if let Some(p) = a.tls_policy {
        r.insert("tls_policy".into(), json!(p));
    }
    if let Some((result, detail)) = &a.tls_result {
        r.insert("tls_result".into(), json!(result));
        if let Some(d) = detail {
            r.insert("tls_result_detail".into(), json!(d));
        }
    }
    if let Some((kind, detail)) = site.and_then(|s| s.discovery_failure.as_ref()) {
        r.insert(
            "tls_policy_discovery_failure".into(),
            json!({ "result": kind, "detail": detail }),
        );
    }
    r.insert("delivery_protocol".into(), json!("ESMTP"));
    r
}
