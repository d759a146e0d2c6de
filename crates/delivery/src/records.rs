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
    r.insert("delivery_protocol".into(), json!("ESMTP"));
    r
}
