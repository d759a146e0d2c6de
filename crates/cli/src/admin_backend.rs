//! The daemon side of the HTTP admin API: injection through the same policy
//! event, spool and queues as SMTP, metrics, and queue administration.

use ironpost_admin::{
    AdminBackend, AuthAttempt, BounceRequest, BoxFuture, InjectOutcome, InjectRequest, Metrics,
    SuspendRequest,
};
use ironpost_delivery::QueueManager;
use ironpost_logs::Logger;
use ironpost_policy::{EventError, Message, PolicyEngine};
use ironpost_spool::{Spool, SpoolId};
use serde_json::{json, Map, Value};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone)]
pub struct Backend {
    pub spool: Spool,
    pub policy: PolicyEngine,
    pub queue: QueueManager,
    pub logger: Logger,
    pub metrics: Arc<Metrics>,
    pub hostname: String,
}

/// Count log records into the metrics registry.
pub fn observer(metrics: Arc<Metrics>) -> ironpost_logs::Observer {
    Arc::new(move |kind: &str, rec: &Map<String, Value>| {
        let counter: Option<&AtomicU64> = match kind {
            "Reception" => Some(&metrics.messages_received),
            "Delivery" => Some(&metrics.messages_delivered),
            "TransientFailure" => Some(&metrics.messages_deferred),
            "Bounce" | "Expiration" => Some(&metrics.messages_bounced),
            "AuthN" if rec.get("success") == Some(&Value::Bool(true)) => {
                Some(&metrics.auth_successes)
            }
            "AuthN" => Some(&metrics.auth_failures),
            _ => None,
        };
        if let Some(c) = counter {
            Metrics::inc(c);
        }
        if matches!(kind, "Delivery" | "TransientFailure" | "Bounce") {
            if let (Some(policy), Some(result)) = (
                rec.get("tls_policy").and_then(Value::as_str),
                rec.get("tls_result").and_then(Value::as_str),
            ) {
                metrics.tls_policy_result(policy, result);
            }
        }
    })
}

impl Backend {
    async fn inject_one(
        &self,
        req: &InjectRequest,
        recipients: &[String],
        content: &[u8],
        http_auth: &str,
    ) -> Result<String, String> {
        let id = SpoolId::new();
        let received = format!(
            "Received: from [{}] by {} (Ironpost) with HTTP id {id};\r\n\t{}\r\n",
            req.peer.ip(),
            self.hostname,
            chrono::Utc::now().to_rfc2822()
        );
        let mut data = received.into_bytes();
        data.extend_from_slice(content);
        let mut meta = Map::new();
        meta.insert("received_from".into(), json!(req.peer.to_string()));
        meta.insert(
            "reception_protocol".into(),
            json!(if req.tls { "HTTPS" } else { "HTTP" }),
        );
        meta.insert("http_auth".into(), json!(http_auth));
        let msg = Message {
            id: id.to_string(),
            sender: req.envelope_sender.clone(),
            recipients: recipients.to_vec(),
            meta,
            data,
        };
        let msg = match self
            .policy
            .message_event("http_message_generated", msg)
            .await
        {
            Ok(m) => m,
            Err(EventError::Reject { code, text }) => return Err(format!("{code} {text}")),
            Err(EventError::Failed(e)) => {
                tracing::error!("policy event http_message_generated failed: {e}");
                return Err("451 4.3.0 temporary policy failure".into());
            }
        };
        let spool_meta = json!({
            "id": msg.id, "sender": msg.sender, "recipients": msg.recipients,
            "meta": msg.meta, "received_at": chrono::Utc::now().to_rfc3339(),
        });
        let meta_bytes = serde_json::to_vec(&spool_meta).map_err(|e| e.to_string())?;
        let size = msg.data.len();
        let loc = self
            .spool
            .store(id, meta_bytes.clone(), msg.data)
            .await
            .map_err(|e| {
                tracing::error!("spool write failed: {e}");
                "451 4.3.0 temporary storage failure".to_string()
            })?;
        self.queue.enqueue(id, loc, &meta_bytes);
        let mut rec = Map::new();
        rec.insert("id".into(), json!(msg.id));
        rec.insert("sender".into(), json!(msg.sender));
        rec.insert("recipients".into(), json!(msg.recipients));
        rec.insert("size".into(), json!(size));
        rec.insert("reception_protocol".into(), json!("HTTP"));
        rec.insert("received_from".into(), json!(req.peer.to_string()));
        rec.insert("meta".into(), Value::Object(msg.meta));
        self.logger.log("Reception", rec);
        Ok(id.to_string())
    }
}

impl AdminBackend for Backend {
    fn inject(
        &self,
        request: InjectRequest,
        http_auth: String,
    ) -> BoxFuture<Result<InjectOutcome, String>> {
        let me = self.clone();
        Box::pin(async move {
            let mut out = InjectOutcome::default();
            for m in &request.messages {
                match me
                    .inject_one(&request, &m.recipients, &m.content, &http_auth)
                    .await
                {
                    Ok(_) => out.success_count += m.recipients.len(),
                    Err(e) => {
                        for r in &m.recipients {
                            out.fail(r, &e);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    fn metrics(&self) -> BoxFuture<String> {
        let me = self.clone();
        Box::pin(async move { me.metrics.render(&me.queue.summary()) })
    }

    fn queue_summary(&self) -> BoxFuture<Value> {
        let me = self.clone();
        Box::pin(async move {
            let queues: Map<String, Value> = me
                .queue
                .summary()
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect();
            json!({ "queues": queues, "suspended": me.queue.suspensions() })
        })
    }

    fn bounce(&self, r: BounceRequest) -> BoxFuture<Result<Value, String>> {
        let me = self.clone();
        Box::pin(async move {
            let n = me
                .queue
                .admin_bounce(r.domain.as_deref(), r.tenant.as_deref(), &r.reason)
                .await;
            tracing::info!(by = %r.requested_by, "admin bounce of {n} messages: {}", r.reason);
            Ok(json!({ "bounced": n }))
        })
    }

    fn suspend(&self, r: SuspendRequest) -> BoxFuture<Result<Value, String>> {
        let me = self.clone();
        Box::pin(async move {
            let duration = r.duration.unwrap_or(std::time::Duration::from_secs(3600));
            me.queue.suspend(
                r.domain.clone(),
                r.tenant.clone(),
                duration,
                r.reason.clone(),
            );
            tracing::info!(by = %r.requested_by, "admin suspension for {duration:?}: {}", r.reason);
            Ok(
                json!({ "suspended": { "domain": r.domain, "tenant": r.tenant, "duration_secs": duration.as_secs() } }),
            )
        })
    }

    fn inspect(&self, id: String) -> BoxFuture<Result<Option<Value>, String>> {
        let me = self.clone();
        Box::pin(async move {
            let id: SpoolId = id.parse().map_err(|_| "not a message id".to_string())?;
            Ok(me.queue.inspect(id).await)
        })
    }

    fn auth_attempt(&self, a: &AuthAttempt) {
        let mut rec = Map::new();
        rec.insert("protocol".into(), json!("HTTP"));
        rec.insert("peer_address".into(), json!({ "addr": a.peer.to_string() }));
        rec.insert("authn_id".into(), json!(a.user));
        rec.insert("tls".into(), json!(a.tls));
        rec.insert("success".into(), json!(a.success));
        if let Some(r) = &a.reason {
            rec.insert("reason".into(), json!(r));
        }
        self.logger.log("AuthN", rec);
    }
}
