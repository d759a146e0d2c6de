//! The daemon side of the HTTP admin API: injection through the same policy
//! event, spool and queues as SMTP, metrics, and queue administration.

use ironpost_admin::{
    AdminBackend, AuthAttempt, BounceRequest, BoxFuture, InjectOutcome, InjectRequest, Metrics,
    SuspendRequest,
};
use ironpost_delivery::QueueManager;
use ironpost_logs::{AuthRecord, Inbound, Logger, PeerAddress, Record};
use ironpost_policy::ConnMeta;
use ironpost_server::reception::{Arrival, Client, Reception, Source};
use ironpost_spool::SpoolId;
use serde_json::{json, Map, Value};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone)]
pub struct Backend {
    pub reception: Reception,
    pub queue: QueueManager,
    pub logger: Logger,
    pub metrics: Arc<Metrics>,
    pub hostname: String,
}

/// Count log records into the metrics registry.
pub fn observer(metrics: Arc<Metrics>) -> ironpost_logs::Observer {
    Arc::new(move |rec: &Record| {
        let counter: Option<&AtomicU64> = match rec {
            Record::Reception(_) => Some(&metrics.messages_received),
            Record::Delivery(_) => Some(&metrics.messages_delivered),
            Record::TransientFailure(_) => Some(&metrics.messages_deferred),
            Record::Bounce(_) | Record::Expiration(_) => Some(&metrics.messages_bounced),
            Record::AuthN(a) if a.success => Some(&metrics.auth_successes),
            Record::AuthN(_) => Some(&metrics.auth_failures),
            Record::Rejection(_) => None,
        };
        if let Some(c) = counter {
            Metrics::inc(c);
        }
        if let Record::Delivery(a) | Record::TransientFailure(a) | Record::Bounce(a) = rec {
            if let (Some(policy), Some(result)) = (&a.tls_policy, &a.tls_result) {
                metrics.tls_policy_result(policy, result);
            }
            let outcome = match rec {
                Record::Delivery(_) => "delivered",
                Record::TransientFailure(_) => "deferred",
                _ => "bounced",
            };
            let site = a.site.as_deref().unwrap_or("");
            metrics.egress_result(&a.egress_source, site, outcome);
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
        let client = Client {
            peer: req.peer,
            hostname: req
                .hostname
                .clone()
                .unwrap_or_else(|| self.hostname.clone()),
            listener: Some(req.local.to_string()),
            helo: None,
            tls: None,
            client_cert: None,
            auth: None,
            http_auth: Some(http_auth.to_string()),
        };
        let arrival = Arrival {
            source: Source::Http,
            conn_meta: ConnMeta::new(client.conn_meta()),
            client,
            protocol: if req.tls { "HTTPS" } else { "HTTP" },
            sender: req.envelope_sender.clone(),
            recipients: recipients.to_vec(),
            content: content.to_vec(),
            trace: Default::default(),
        };
        match self.reception.receive(arrival).await {
            Ok(id) => Ok(id.to_string()),
            Err(r) => Err(format!("{} {} {}", r.code, r.enhanced, r.text())),
        }
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
        Box::pin(async move {
            let a = me.queue.automation();
            let count = |k: &str| a[k].as_array().map_or(0, |v| v.len());
            let holds = [
                ("suspension", count("suspensions")),
                ("override", count("overrides")),
                ("bounce", count("bounces")),
            ];
            let mut text = me
                .metrics
                .render_with(&me.queue.summary(), &me.queue.ready_summary());
            if let Some(stats) = me.queue.redis_stats() {
                text.push_str(&ironpost_admin::Metrics::render_redis(&stats));
            }
            text.push_str(&ironpost_admin::Metrics::render_shaping(
                &me.queue.path_stats(),
                &me.queue.limits_in_use(),
                &holds,
            ));
            text
        })
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
            let scope = ironpost_delivery::suspensions::Scope {
                domain: r.domain.map(|d| d.to_ascii_lowercase()),
                tenant: r.tenant,
                campaign: r.campaign,
                source: r.source,
                site: None,
            };
            let s = me
                .queue
                .suspend(scope, duration, r.reason.clone(), r.requested_by.clone())?;
            tracing::info!(by = %r.requested_by, id = s.id, "admin suspension for {duration:?}: {}", r.reason);
            Ok(json!({ "suspended": s, "duration_secs": duration.as_secs() }))
        })
    }

    fn suspensions(&self) -> BoxFuture<Value> {
        let me = self.clone();
        Box::pin(async move { json!(me.queue.suspensions()) })
    }

    fn cancel_suspension(&self, id: u64) -> BoxFuture<Result<bool, String>> {
        let me = self.clone();
        Box::pin(async move { me.queue.cancel_suspension(id) })
    }

    fn automation(&self) -> BoxFuture<Value> {
        let me = self.clone();
        Box::pin(async move { me.queue.automation() })
    }

    fn shared_limits(&self) -> BoxFuture<Value> {
        let me = self.clone();
        Box::pin(async move { me.queue.shared_limits().await })
    }

    fn inspect(&self, id: String) -> BoxFuture<Result<Option<Value>, String>> {
        let me = self.clone();
        Box::pin(async move {
            let id: SpoolId = id.parse().map_err(|_| "not a message id".to_string())?;
            match me.queue.inspect(id).await {
                Some(i) => serde_json::to_value(i).map(Some).map_err(|e| e.to_string()),
                None => Ok(None),
            }
        })
    }

    fn auth_attempt(&self, a: &AuthAttempt) {
        self.logger.log(Record::AuthN(AuthRecord {
            inbound: Inbound {
                peer_address: PeerAddress {
                    name: None,
                    addr: Some(a.peer.to_string()),
                },
                ..Default::default()
            },
            protocol: Some("HTTP".into()),
            authn_id: Some(a.user.clone()),
            tls: Some(a.tls),
            success: a.success,
            reason: a.reason.clone(),
            ..Default::default()
        }));
    }
}
