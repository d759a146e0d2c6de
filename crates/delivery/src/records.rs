//! Delivery log records (Delivery, TransientFailure, Bounce, Expiration).
//! They carry the remote host, the reply and the TLS outcome; credentials
//! never reach them.

use crate::dispatch::Attempt;
use crate::model::QueuedPart;
use crate::route::Site;
use ironpost_logs::{AttemptRecord, DiscoveryFailure, PeerAddress, Response};

pub fn attempt_record(
    part: &QueuedPart,
    recipients: &[String],
    a: &Attempt,
    site: Option<&Site>,
    attempts: u32,
) -> AttemptRecord {
    let response = match &a.reply {
        Some((code, enhanced, text)) => Response {
            code: Some(*code),
            enhanced_code: enhanced.clone(),
            content: text.clone(),
        },
        None => Response {
            code: None,
            enhanced_code: None,
            content: a.error.clone().unwrap_or_default(),
        },
    };
    let (tls_result, tls_result_detail) = match &a.tls_result {
        Some((result, detail)) => (Some(result.to_string()), detail.clone()),
        None => (None, None),
    };
    AttemptRecord {
        id: part.msg.id.to_string(),
        sender: part.msg.sender.to_string(),
        recipients: recipients.to_vec(),
        queue: part.queue_name(),
        site: site.map(|s| s.name.clone()).or_else(|| a.site.clone()),
        num_attempts: attempts,
        bounce_classification: None,
        egress_pool: part.egress.as_ref().map(|e| e.pool.clone()),
        egress_source: part
            .egress
            .as_ref()
            .map_or_else(|| "unspecified".into(), |e| e.source.clone()),
        peer_address: (a.host.is_some() || a.ip.is_some()).then(|| PeerAddress {
            name: a.host.clone(),
            addr: a.ip.map(|i| i.to_string()),
        }),
        response,
        tls_protocol_version: a.tls.as_ref().map(|(v, _)| v.clone()),
        tls_cipher: a.tls.as_ref().map(|(_, c)| c.clone()),
        tls_validated: a.tls_validated,
        // Which downgrade-resistant policy applied and how it went, in RFC
        // 8460 result types, so TLS-RPT reports can be built from the log.
        tls_policy: a.tls_policy.map(str::to_string),
        tls_result,
        tls_result_detail,
        tls_policy_discovery_failure: site.and_then(|s| s.discovery_failure.as_ref()).map(
            |(kind, detail)| DiscoveryFailure {
                result: kind.to_string(),
                detail: detail.clone(),
            },
        ),
        delivery_protocol: "ESMTP".into(),
        reception_protocol: part.msg.reception_protocol().map(str::to_string),
        reason: None,
        meta: None,
        headers: None,
    }
}
