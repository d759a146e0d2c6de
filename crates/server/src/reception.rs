//! Reception, written once for every way a message arrives (SMTP DATA and
//! HTTP injection): the `Received:` header, the policy's message event, the
//! durable store, the hand-off to the delivery queues, and the Reception
//! (or Rejection) record. Callers keep only their own dialogue.

use crate::received::{self, TraceInfo};
use ironpost_delivery::QueueManager;
use ironpost_logs::{Inbound, Logger, MessageRecord, PeerAddress, Record, Response};
use ironpost_policy::{ConnMeta, EventError, Message, PolicyEngine, TraceHeaders};
use ironpost_spool::{MetaObject, Spool, SpoolId, SpoolMeta};
use ironpost_wire::reply::from_policy;
use ironpost_wire::Reply;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What reception needs from the daemon.
#[derive(Clone)]
pub struct Reception {
    pub spool: Spool,
    pub policy: PolicyEngine,
    pub logger: Logger,
    /// Header names copied into log records (`configure_local_logs{headers}`).
    pub log_headers: Arc<Vec<String>>,
    pub queue: QueueManager,
}

/// Which way the message came in; names the policy event that sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `smtp_server_message_received`.
    Smtp,
    /// `http_message_generated`.
    Http,
}

/// What is known about the client: the connection meta the policy sees,
/// the trace header and the log records are all built from this.
#[derive(Clone, Debug)]
pub struct Client {
    pub peer: SocketAddr,
    /// Our host name (the SMTP listener's `hostname`).
    pub hostname: String,
    /// The SMTP listener's name; `None` for HTTP.
    pub listener: Option<String>,
    pub helo: Option<String>,
    /// (protocol version, cipher suite).
    pub tls: Option<(String, String)>,
    /// Verified client certificate: (subject, SHA-256 fingerprint).
    pub client_cert: Option<(String, String)>,
    /// (authz_id, authn_id) after SMTP AUTH.
    pub auth: Option<(String, String)>,
    /// Who the HTTP request was authorized as.
    pub http_auth: Option<String>,
}

impl Client {
    /// The connection metadata as policies see it (KumoMTA's key names).
    pub fn conn_meta(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("received_from".into(), json!(self.peer.to_string()));
        if let Some(listener) = &self.listener {
            m.insert("received_via".into(), json!(listener));
            m.insert("hostname".into(), json!(self.hostname));
        }
        if let Some(h) = &self.helo {
            m.insert("ehlo_domain".into(), json!(h));
        }
        if let Some((v, c)) = &self.tls {
            m.insert("tls_protocol".into(), json!(v));
            m.insert("tls_cipher".into(), json!(c));
        }
        if let Some((subject, fingerprint)) = &self.client_cert {
            m.insert("tls_client_subject".into(), json!(subject));
            m.insert("tls_client_fingerprint".into(), json!(fingerprint));
        }
        if let Some((authz, authn)) = &self.auth {
            m.insert("authz_id".into(), json!(authz));
            m.insert("authn_id".into(), json!(authn));
        }
        if let Some(a) = &self.http_auth {
            m.insert("http_auth".into(), json!(a));
        }
        m
    }

    /// Who sent it, as log records name a client.
    pub fn inbound(&self) -> Inbound {
        let smtp = self.listener.is_some();
        Inbound {
            peer_address: PeerAddress {
                name: smtp.then(|| self.helo.clone().unwrap_or_default()),
                addr: Some(self.peer.ip().to_string()),
            },
            received_from: Some(self.peer.to_string()),
            listener: self.listener.clone(),
            tls_protocol_version: self.tls.as_ref().map(|(v, _)| v.clone()),
            tls_cipher: self.tls.as_ref().map(|(_, c)| c.clone()),
        }
    }
}

/// A message through its policy event and (unless queued to `null`) in the
/// spool, not yet queued or logged as received.
struct Staged {
    id: SpoolId,
    location: Option<ironpost_spool::Location>,
    meta: SpoolMeta,
    record: MessageRecord,
}

/// One message as its caller received it.
pub struct Arrival {
    pub source: Source,
    pub client: Client,
    /// The connection's metadata object (SMTP keeps one per connection;
    /// HTTP makes one per request from `client`).
    pub conn_meta: ConnMeta,
    /// `ESMTPS` and the like for SMTP ([`received::protocol`]), `HTTP` or
    /// `HTTPS`.
    pub protocol: &'static str,
    /// Envelope sender; empty for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    /// The content as received, without our trace header.
    pub content: Vec<u8>,
    /// Which trace headers to add (the SMTP listener's `trace_headers`).
    pub trace: TraceHeaders,
}

/// The reply that acknowledges a stored message.
pub fn accepted(id: SpoolId) -> Reply {
    Reply::new(250, "2.0.0", format!("OK id={id}"))
}

/// A log record's `response` for a reply of ours.
pub fn response(reply: &Reply) -> Response {
    Response {
        code: Some(reply.code),
        enhanced_code: Some(reply.enhanced.clone()),
        content: reply.text(),
    }
}

/// The reason a refusal gives, beside its response.
pub fn refusal_reason(reply: &Reply) -> Option<String> {
    (!reply.is_success()).then(|| reply.text())
}

impl Reception {
    /// Receive one message: `Ok` with its id once it is durable and queued,
    /// or the refusal to give the client. Either way the outcome is logged.
    pub async fn receive(&self, mut a: Arrival) -> Result<SpoolId, Reply> {
        let id = SpoolId::new();
        let id_text = id.to_string();
        let mut meta = a.conn_meta.snapshot();
        meta.insert("reception_protocol".into(), json!(a.protocol));
        let inbound = a.client.inbound();
        let mut msg = Message {
            id: id_text.clone(),
            sender: a.sender.clone(),
            recipients: a.recipients.clone(),
            meta,
            data: std::mem::take(&mut a.content),
            attempts: 0,
        };
        if a.source == Source::Smtp {
            // The content exactly as received, before any trace header.
            const DATA: &str = "smtp_server_data";
            msg = match self
                .policy
                .message_event(DATA, msg, Some(a.conn_meta.clone()))
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    let recipients = a.recipients.clone();
                    return Err(self.refuse(&a, &inbound, &id_text, e, DATA, recipients));
                }
            };
        }
        let event = match a.source {
            Source::Smtp => "smtp_server_message_received",
            Source::Http => "http_message_generated",
        };
        let mut staged = Vec::new();
        if msg.recipients.len() > 1 && self.policy.has_handler(event) {
            // A KumoMTA message has one recipient, and policies route, tag
            // and sign per recipient (`msg:recipient()`): the event runs
            // once per recipient, each on a copy of its own, and either all
            // are accepted or none is. One copy is in memory at a time.
            let recipients = std::mem::take(&mut msg.recipients);
            for (i, rcpt) in recipients.into_iter().enumerate() {
                let id = if i == 0 { id } else { SpoolId::new() };
                let copy = Message {
                    id: id.to_string(),
                    recipients: vec![rcpt],
                    ..msg.clone()
                };
                match self.stage(&a, &inbound, id, copy, event).await {
                    Ok(s) => staged.push(s),
                    Err(reply) => {
                        for s in staged.iter().filter(|s| s.location.is_some()) {
                            if let Err(e) = self.spool.remove(s.id).await {
                                tracing::error!(id = %s.id, "cannot unwind a refused transaction: {e}");
                            }
                        }
                        return Err(reply);
                    }
                }
            }
        } else {
            staged.push(self.stage(&a, &inbound, id, msg, event).await?);
        }
        for s in staged {
            if let Some(location) = s.location {
                self.queue.enqueue(s.id, location, s.meta);
            }
            // In the file before the client hears 250: a crash after the
            // acknowledgement cannot leave a message without its record.
            self.logger.log_written(Record::Reception(s.record)).await;
        }
        Ok(id)
    }

    /// One message through the trace headers, the policy event and the
    /// spool; queued and logged by the caller once the whole transaction
    /// stands. Refusals are logged here.
    async fn stage(
        &self,
        a: &Arrival,
        inbound: &Inbound,
        id: SpoolId,
        mut msg: Message,
        event: &'static str,
    ) -> Result<Staged, Reply> {
        let id_text = id.to_string();
        let single = (msg.recipients.len() == 1).then(|| msg.recipients[0].clone());
        if a.trace.received_header {
            let trace = received::header(&TraceInfo {
                helo: a.client.helo.as_deref(),
                peer: a.client.peer.ip(),
                hostname: &a.client.hostname,
                protocol: a.protocol,
                tls: a.client.tls.as_ref(),
                id: &id_text,
                single_recipient: single.as_deref(),
            });
            msg.data.splice(0..0, trace);
        }
        let recipients = msg.recipients.clone();
        let mut msg = match self
            .policy
            .message_event(event, msg, Some(a.conn_meta.clone()))
            .await
        {
            Ok(m) => m,
            Err(e) => return Err(self.refuse(a, inbound, &id_text, e, event, recipients)),
        };
        if a.trace.supplemental_header {
            // Added once the policy has set the metadata it names.
            let line = received::supplemental(&a.trace, &msg.recipients, &msg.meta);
            msg.data.splice(0..0, line);
        }

        let meta_text = serde_json::to_string(&msg.meta).ok();
        let mut record = MessageRecord {
            inbound: inbound.clone(),
            id: Some(msg.id.clone()),
            sender: Some(msg.sender.clone()),
            recipients: Some(msg.recipients.clone()),
            size: Some(msg.data.len() as u64),
            reception_protocol: Some(a.protocol.to_string()),
            headers: self.logged_headers(&msg.data),
            meta: meta_text
                .clone()
                .and_then(|t| serde_json::value::RawValue::from_string(t).ok()),
            authentication_results: authentication_results(&msg.meta),
            ..Default::default()
        };
        let spool_meta = SpoolMeta::new(
            msg.id,
            msg.sender,
            msg.recipients,
            meta_text.and_then(|t| MetaObject::from_json(t).ok()),
            chrono::Utc::now().to_rfc3339(),
        );
        record.queue = spool_meta.queue.clone();
        let accepted_reply = accepted(id);
        record.response = Some(response(&accepted_reply));
        if spool_meta.queue.as_deref() == Some("null") {
            // KumoMTA's null queue: accepted, logged, and never stored.
            return Ok(Staged {
                id,
                location: None,
                meta: spool_meta,
                record,
            });
        }
        match self.spool.store(id, spool_meta.encode(), msg.data).await {
            Ok(location) => Ok(Staged {
                id,
                location: Some(location),
                meta: spool_meta,
                record,
            }),
            Err(e) => {
                tracing::error!(peer = %a.client.peer, "spool write failed: {e}");
                let reply = Reply::new(451, "4.3.0", "Temporary storage failure, try again later");
                record.response = Some(response(&reply));
                record.reason = refusal_reason(&reply);
                self.logger.log(Record::Rejection(record));
                Err(reply)
            }
        }
    }

    /// The reply for a policy event that rejected or failed, logged as a
    /// Rejection.
    fn refuse(
        &self,
        a: &Arrival,
        inbound: &Inbound,
        id: &str,
        e: EventError,
        event: &str,
        recipients: Vec<String>,
    ) -> Reply {
        let reply = match e {
            EventError::Reject { code, text } => from_policy(code.max(400), &text),
            EventError::Failed(e) => {
                tracing::error!(peer = %a.client.peer, "policy event {event} failed: {e}");
                Reply::new(451, "4.3.0", "Temporary policy failure, try again later")
            }
        };
        self.logger.log(Record::Rejection(MessageRecord {
            inbound: inbound.clone(),
            id: Some(id.to_string()),
            sender: Some(a.sender.clone()),
            recipients: Some(recipients),
            response: Some(response(&reply)),
            reason: refusal_reason(&reply),
            ..Default::default()
        }));
        reply
    }

    /// The headers `configure_local_logs{ headers }` names (`X-*` style
    /// prefixes allowed); the first of a repeated header.
    fn logged_headers(&self, data: &[u8]) -> Option<BTreeMap<String, String>> {
        if self.log_headers.is_empty() {
            return None;
        }
        let mut out = BTreeMap::new();
        for (name, value) in ironpost_policy::headers::all(data) {
            if ironpost_logs::name_matches(&self.log_headers, &name, true) {
                out.entry(name).or_insert(value);
            }
        }
        Some(out)
    }
}

/// The results `msg:add_authentication_results` recorded in the meta
/// (`[{serv_id, results: [...]}, ...]`), flattened for the Reception record.
fn authentication_results(
    meta: &serde_json::Map<String, serde_json::Value>,
) -> Vec<ironpost_logs::AuthenticationResult> {
    let Some(serde_json::Value::Array(entries)) =
        meta.get(ironpost_policy::AUTHENTICATION_RESULTS_META)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let serv_id = e.get("serv_id").and_then(|v| v.as_str()).unwrap_or("");
        let Some(results) = e.get("results").and_then(|r| r.as_array()) else {
            continue;
        };
        for r in results {
            if let Ok(mut r) =
                serde_json::from_value::<ironpost_logs::AuthenticationResult>(r.clone())
            {
                r.serv_id = serv_id.to_string();
                out.push(r);
            }
        }
    }
    out
}
