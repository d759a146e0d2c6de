//! What happens after an attempt: delivered recipients are logged and
//! finished, 5xx failures bounce (a DSN to the sender, never for a null
//! sender), 4xx and connection failures are retried with backoff until
//! `max_age` (then an Expiration and a DSN). The spool record is kept in
//! step, so a restart resumes where the queue stood.

use crate::bounce::{build_dsn, FailedRecipient};
use crate::dispatch::{self, Attempt};
use crate::model::{unix_now, QueuedPart};
use crate::queue_manager::{backoff, QueueManager};
use crate::records;
use crate::route::{RouteError, Site};
use ironpost_logs::{name_matches, AttemptRecord, Record};
use ironpost_policy::{EventError, Message, QueueConfig};
use ironpost_spool::{SpoolId, SpoolMeta};

impl QueueManager {
    /// Defer a batch for a temporary routing or TLS policy failure.
    pub(crate) async fn defer_all(
        &self,
        parts: Vec<QueuedPart>,
        e: RouteError,
        qcfg: &QueueConfig,
    ) {
        let attempt = match e {
            RouteError::Policy {
                policy,
                result,
                reason,
            } => Attempt::policy_failure(policy, result, &reason),
            RouteError::Transient(reason) | RouteError::Permanent { text: reason, .. } => {
                Attempt::local(&reason)
            }
        };
        for p in parts {
            self.defer(p.clone(), p.recipients.clone(), &attempt, qcfg)
                .await;
        }
    }

    /// Log a delivery record (waiting until it is in the file), with the metadata keys and headers that
    /// `configure_local_logs` names (headers are read from the spool, only
    /// when asked for).
    pub(crate) async fn log(
        &self,
        kind: fn(AttemptRecord) -> Record,
        mut rec: AttemptRecord,
        part: &QueuedPart,
    ) {
        let inner = &self.0;
        let want_meta = !inner.log_meta.is_empty();
        let want_headers = !inner.log_headers.is_empty();
        // Neither is kept in memory: both come from the spool record, the
        // content only when headers are asked for.
        let stored = match (want_meta, want_headers) {
            (_, true) => dispatch::read_stored(&inner.ctx, part).await.ok(),
            (true, false) => Some((dispatch::read_meta(&inner.ctx, part), Vec::new())),
            (false, false) => None,
        };
        if let Some((meta, data)) = stored {
            if want_meta {
                rec.meta = meta
                    .and_then(|m| m.select(|k| name_matches(&inner.log_meta, k, false)))
                    .and_then(|t| serde_json::value::RawValue::from_string(t).ok());
            }
            if want_headers {
                let picked: std::collections::BTreeMap<String, String> =
                    ironpost_policy::headers::all(&data)
                        .into_iter()
                        .filter(|(n, _)| name_matches(&inner.log_headers, n, true))
                        .collect();
                rec.headers = (!picked.is_empty()).then_some(picked);
            }
        }
        let record = kind(rec);
        if let Record::Delivery(r)
        | Record::TransientFailure(r)
        | Record::Bounce(r)
        | Record::Expiration(r) = &record
        {
            self.automate(record.kind(), r, part).await;
        }
        // Written before the spool is told the outcome: a crash in between
        // repeats the attempt rather than losing its record.
        inner.logger.log_written(record).await;
    }

    /// Apply the outcome of one attempt to a part.
    pub(crate) async fn settle(
        &self,
        part: QueuedPart,
        result: dispatch::Outcome,
        site: &Site,
        qcfg: &QueueConfig,
    ) {
        if !result.delivered.is_empty() {
            let rec = records::attempt_record(
                &part,
                &result.delivered,
                &result.attempt,
                Some(site),
                part.attempts + 1,
            );
            self.log(Record::Delivery, rec, &part).await;
        }
        let mut finished = result.delivered.clone();
        if !result.failed.is_empty() {
            finished.extend(result.failed.iter().map(|f| f.recipient.clone()));
        }
        let failed = result.failed;
        let deferred = result.deferred;
        let mut deferred_attempt = result.deferred_attempt;
        deferred_attempt.site = Some(site.name.clone());
        if !failed.is_empty() {
            let mut p = part.clone();
            p.recipients = failed.iter().map(|f| f.recipient.clone()).collect();
            self.log_bounce(&p, &failed, Some(&result.failed_attempt), Some(site))
                .await;
            self.send_dsn(&p, &failed, false).await;
        }
        part.msg.finish(&finished);
        if deferred.is_empty() {
            self.part_finished(&part).await;
        } else {
            let mut p = part;
            p.recipients = deferred.clone();
            self.defer(p, deferred, &deferred_attempt, qcfg).await;
        }
    }

    pub(crate) async fn part_finished(&self, part: &QueuedPart) {
        if part.msg.part_done() {
            if let Err(e) = self.0.ctx.spool.remove(part.msg.id).await {
                tracing::error!(id = %part.msg.id, "cannot remove delivered message from the spool: {e}");
            }
            return;
        }
        // Other parts are still queued. Record that this part's recipients
        // are done, or a restart would deliver them again.
        let meta = part.record(None).encode();
        if let Err(e) = self.0.ctx.spool.update_meta(part.msg.id, meta).await {
            tracing::warn!(id = %part.msg.id, "cannot record finished recipients: {e}");
        }
    }

    /// A temporary failure: retry later, or expire after `max_age`.
    pub(crate) async fn defer(
        &self,
        part: QueuedPart,
        recipients: Vec<String>,
        attempt: &Attempt,
        qcfg: &QueueConfig,
    ) {
        if self.0.policy.has_handler("requeue_message")
            && self.requeue(&part, &recipients, attempt).await
        {
            return;
        }
        self.retry_later(part, recipients, attempt, qcfg, true)
            .await
    }

    /// `requeue_message`: the policy may move the recipients to another
    /// queue (a new spool message, due now; the old one forgets them) or
    /// bounce them with `kumo.reject`. True when it did either. A Lua
    /// error is logged and the usual retry follows.
    async fn requeue(&self, part: &QueuedPart, recipients: &[String], attempt: &Attempt) -> bool {
        let Ok((meta, data)) = dispatch::read_stored(&self.0.ctx, part).await else {
            return false;
        };
        let meta: serde_json::Map<String, serde_json::Value> = meta
            .and_then(|m| serde_json::from_str(m.as_json()).ok())
            .unwrap_or_default();
        let msg = Message {
            id: part.msg.id.to_string(),
            sender: part.msg.sender.to_string(),
            recipients: recipients.to_vec(),
            meta,
            data,
            attempts: part.attempts,
        };
        let before = msg.queue_name();
        let response = attempt.describe().replace(['\r', '\n'], " ");
        let context = vec!["LoggedTransientFailure".to_string()];
        match self.0.policy.requeue_message(msg, response, context).await {
            Ok(msg) if msg.queue_name() != before => {
                self.rebind(part, recipients, attempt, msg).await;
                true
            }
            Ok(_) => false,
            Err(EventError::Reject { code, text }) => {
                let failed = recipients
                    .iter()
                    .map(|r| FailedRecipient {
                        recipient: r.clone(),
                        status: "5.0.0".into(),
                        diagnostic: format!("x-policy; requeue_message: {code} {text}"),
                        remote_mta: None,
                    })
                    .collect();
                let mut p = part.clone();
                p.recipients = recipients.to_vec();
                self.bounce(p, failed, Some(attempt)).await;
                true
            }
            Err(EventError::Failed(e)) => {
                tracing::error!(id = %part.msg.id, "requeue_message failed, retrying as usual: {e}");
                false
            }
        }
    }

    /// Move `recipients` to the queue the policy chose: a new spool message
    /// with the edited metadata, due now; then the old message forgets them.
    async fn rebind(
        &self,
        part: &QueuedPart,
        recipients: &[String],
        attempt: &Attempt,
        msg: Message,
    ) {
        let mut p = part.clone();
        p.recipients = recipients.to_vec();
        p.attempts += 1;
        let rec = records::attempt_record(&p, recipients, attempt, None, p.attempts);
        self.log(Record::TransientFailure, rec, &p).await;
        let id = SpoolId::new();
        let Ok(meta_text) = serde_json::to_string(&msg.meta) else {
            return;
        };
        let received_at = part
            .msg
            .received_at()
            .unwrap_or_else(chrono::Utc::now)
            .to_rfc3339();
        let mut meta = SpoolMeta::new(
            id.to_string(),
            msg.sender,
            recipients.to_vec(),
            ironpost_spool::MetaObject::from_json(meta_text).ok(),
            received_at,
        );
        meta.attempts = p.attempts;
        meta.created = Some(part.msg.created);
        match self.0.ctx.spool.store(id, meta.encode(), msg.data).await {
            Ok(loc) => {
                tracing::info!(from = %part.msg.id, to = %id, "requeue_message moved recipients to another queue");
                self.enqueue(id, loc, meta);
                part.msg.finish(recipients);
                self.part_finished(&p).await;
            }
            Err(e) => {
                tracing::error!(id = %part.msg.id, "cannot store the requeued message, retrying in place: {e}");
                let defaults = QueueConfig::default();
                self.retry_later(part.clone(), recipients.to_vec(), attempt, &defaults, true)
                    .await;
            }
        }
    }

    /// An error in the policy on the message's path (`get_queue_config`,
    /// `get_egress_path_config`): the parts wait, retried on the default
    /// schedule, with the error in each TransientFailure. They never expire
    /// or bounce because of it, and never go anywhere with defaults.
    pub(crate) async fn hold(&self, parts: Vec<QueuedPart>, reason: &str) {
        tracing::error!("{reason}; the message waits");
        let attempt = Attempt::local(reason);
        let defaults = QueueConfig::default();
        for p in parts {
            let recipients = p.recipients.clone();
            self.retry_later(p, recipients, &attempt, &defaults, false)
                .await;
        }
    }

    async fn retry_later(
        &self,
        mut part: QueuedPart,
        recipients: Vec<String>,
        attempt: &Attempt,
        qcfg: &QueueConfig,
        may_expire: bool,
    ) {
        part.attempts += 1;
        part.recipients = recipients;
        let delay = backoff(qcfg, part.attempts);
        let deadline = part.msg.created + qcfg.max_age.as_secs();
        if may_expire && unix_now() + delay.as_secs() > deadline {
            self.expire(part, attempt).await;
            return;
        }
        let rec = records::attempt_record(&part, &part.recipients, attempt, None, part.attempts);
        let meta = part.record(Some(unix_now() + delay.as_secs())).encode();
        if let Err(e) = self.0.ctx.spool.update_meta(part.msg.id, meta).await {
            tracing::warn!(id = %part.msg.id, "cannot record retry state: {e}");
        }
        // Logged once the retry state is durable, so a record never claims
        // more than a restart would remember.
        self.log(Record::TransientFailure, rec, &part).await;
        self.schedule(part, delay);
    }

    async fn expire(&self, part: QueuedPart, last: &Attempt) {
        let failed: Vec<FailedRecipient> = part
            .recipients
            .iter()
            .map(|r| FailedRecipient {
                recipient: r.clone(),
                status: "4.4.7".into(),
                diagnostic: format!("delivery time expired; last error: {}", last.describe()),
                remote_mta: last.host.clone(),
            })
            .collect();
        let mut rec = records::attempt_record(&part, &part.recipients, last, None, part.attempts);
        rec.reason = Some("message expired (max_age)".into());
        self.log(Record::Expiration, rec, &part).await;
        part.msg.finish(&part.recipients);
        self.send_dsn(&part, &failed, true).await;
        self.part_finished(&part).await;
    }

    pub(crate) async fn bounce(
        &self,
        part: QueuedPart,
        failed: Vec<FailedRecipient>,
        attempt: Option<&Attempt>,
    ) {
        self.log_bounce(&part, &failed, attempt, None).await;
        self.send_dsn(&part, &failed, false).await;
        part.msg.finish(&part.recipients);
        self.part_finished(&part).await;
    }

    async fn log_bounce(
        &self,
        part: &QueuedPart,
        failed: &[FailedRecipient],
        attempt: Option<&Attempt>,
        site: Option<&Site>,
    ) {
        let local;
        let attempt = match attempt {
            Some(a) => a,
            None => {
                local = Attempt::local(
                    failed
                        .first()
                        .map(|f| f.diagnostic.as_str())
                        .unwrap_or("failed"),
                );
                &local
            }
        };
        let rcpts: Vec<String> = failed.iter().map(|f| f.recipient.clone()).collect();
        let rec = records::attempt_record(part, &rcpts, attempt, site, part.attempts + 1);
        self.log(Record::Bounce, rec, part).await;
    }

    /// Send a DSN to the envelope sender. Never for a null sender, so a
    /// bounce can never bounce.
    async fn send_dsn(&self, part: &QueuedPart, failed: &[FailedRecipient], expired: bool) {
        if part.msg.sender.is_empty() || failed.is_empty() {
            return;
        }
        // A log hook's record is not mail the sender sent.
        if part.msg.reception_protocol() == Some("LogRecord") {
            return;
        }
        let headers = match dispatch::read_body(&self.0.ctx, part).await {
            Ok(data) => {
                let n = ironpost_policy::headers::header_block_len(&data);
                data[..n].to_vec()
            }
            Err(_) => Vec::new(),
        };
        let dsn = build_dsn(&self.0.ctx.hostname, &part.msg, failed, &headers, expired);
        let id = SpoolId::new();
        let mut meta = SpoolMeta::new(
            id.to_string(),
            String::new(),
            vec![part.msg.sender.to_string()],
            None,
            chrono::Utc::now().to_rfc3339(),
        );
        meta.created = Some(unix_now());
        match self.0.ctx.spool.store(id, meta.encode(), dsn).await {
            Ok(loc) => self.enqueue(id, loc, meta),
            Err(e) => tracing::error!(original = %part.msg.id, "cannot store DSN: {e}"),
        }
    }
}
