//! Deliveries made by the policy instead of SMTP: queues whose config says
//! `protocol = { custom_lua = { constructor = ... } }`, and the queues of
//! `policy-extras.log_hooks` (a Lua constructor, or a JSON POST).
//!
//! A send that returns delivers; `kumo.reject` with a 5xx fails the
//! recipients (a Bounce; no DSN for log records); anything else (a 4xx, a
//! Lua error, no answer) retries on the queue's schedule.

use crate::bounce::FailedRecipient;
use crate::dispatch::Attempt;
use crate::model::QueuedPart;
use crate::queue_manager::QueueManager;
use ironpost_policy::{EventError, Message, QueueConfig};
use std::sync::Arc;

/// How a policy-delivered queue sends.
#[derive(Clone, Debug)]
pub enum HookSink {
    /// The event whose handler builds the connection object.
    Constructor(String),
    /// POST each message's content as JSON.
    Json(String),
}

impl HookSink {
    fn describe(&self) -> String {
        match self {
            HookSink::Constructor(c) => format!("custom_lua:{c}"),
            // Scheme, host and path: userinfo and query often hold tokens.
            HookSink::Json(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                let rest = rest.split(['?', '#']).next().unwrap_or("");
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                format!("{scheme}://{host}/{path}")
            }
        }
    }
}

impl QueueManager {
    /// The policy-side sender for this part's queue, if it has one.
    pub(crate) fn custom_sink(&self, part: &QueuedPart, qcfg: &QueueConfig) -> Option<HookSink> {
        let domain = part.queue().domain;
        if let Some((_, _, sink)) = self.0.log_hook_queues.iter().find(|(d, _, _)| *d == domain) {
            return Some(sink.clone());
        }
        qcfg.protocol
            .as_ref()
            .and_then(|p| p.custom_lua.as_ref())
            .map(|c| HookSink::Constructor(c.constructor.clone()))
    }

    pub(crate) async fn deliver_custom(
        &self,
        parts: Vec<QueuedPart>,
        sink: HookSink,
        qcfg: Arc<QueueConfig>,
    ) {
        for part in parts {
            let (meta, data) = match crate::dispatch::read_stored(&self.0.ctx, &part).await {
                Ok(stored) => stored,
                Err(a) => {
                    self.defer(part.clone(), part.recipients.clone(), &a, &qcfg)
                        .await;
                    continue;
                }
            };
            let queue = part.queue();
            let msg = Message {
                id: part.msg.id.to_string(),
                sender: part.msg.sender.to_string(),
                recipients: part.recipients.clone(),
                meta: meta
                    .and_then(|m| serde_json::from_str(m.as_json()).ok())
                    .unwrap_or_default(),
                data,
                attempts: part.attempts,
            };
            let policy = &self.0.policy;
            let result = match &sink {
                HookSink::Json(url) => policy.post_json(url.clone(), msg.data).await,
                HookSink::Constructor(c) => {
                    policy
                        .custom_send(c.clone(), (queue.domain, queue.tenant, queue.campaign), msg)
                        .await
                }
            };
            let mut attempt = Attempt {
                host: Some(sink.describe()),
                ..Default::default()
            };
            match result {
                Ok(disposition) => {
                    attempt.reply = Some((250, Some("2.0.0".into()), disposition));
                    let rec = crate::records::attempt_record(
                        &part,
                        &part.recipients,
                        &attempt,
                        None,
                        part.attempts + 1,
                    );
                    self.log(ironpost_logs::Record::Delivery, rec, &part).await;
                    part.msg.finish(&part.recipients);
                    self.part_finished(&part).await;
                }
                Err(EventError::Reject { code, text }) if code >= 500 => {
                    attempt.reply = Some((code, Some("5.0.0".into()), text.clone()));
                    let failed = part
                        .recipients
                        .iter()
                        .map(|r| FailedRecipient {
                            recipient: r.clone(),
                            status: "5.0.0".into(),
                            diagnostic: format!("x-policy; {code} {text}"),
                            remote_mta: None,
                        })
                        .collect();
                    self.bounce(part, failed, Some(&attempt)).await;
                }
                Err(e) => {
                    match e {
                        EventError::Reject { code, text } => {
                            attempt.reply = Some((code, Some("4.0.0".into()), text))
                        }
                        EventError::Failed(reason) => attempt.error = Some(reason),
                    }
                    self.defer(part.clone(), part.recipients.clone(), &attempt, &qcfg)
                        .await;
                }
            }
        }
    }
}
