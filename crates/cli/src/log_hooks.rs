//! Log hooks: every log record is also offered, as a message, to each
//! configured hook (`kumo.configure_log_hook`, `policy-extras.log_hooks`).
//! A record the hook keeps is spooled (fsynced) and queued like any message,
//! so its delivery is retried through an outage of the endpoint and survives
//! a restart.

use ironpost_delivery::custom::HookSink;
use ironpost_delivery::QueueManager;
use ironpost_logs::Record;
use ironpost_policy::{LogHookConfig, Message, PolicyEngine, QueueConfig};
use ironpost_spool::{MetaObject, Spool, SpoolId, SpoolMeta};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Start-up checks: a hook that could never queue anything, or a handler
/// that could never run, is refused.
pub fn check(hooks: &[LogHookConfig], engine: &PolicyEngine) -> anyhow::Result<()> {
    let handler = engine.has_handler("should_enqueue_log_record");
    let plain: Vec<&str> = hooks
        .iter()
        .filter(|h| h.helper.is_none())
        .map(|h| h.name.as_str())
        .collect();
    if handler && plain.is_empty() {
        anyhow::bail!(
            "should_enqueue_log_record is bound but no kumo.configure_log_hook enables it: it would never run"
        );
    }
    if !handler {
        if let Some(name) = plain.first() {
            anyhow::bail!(
                "kumo.configure_log_hook '{name}': no should_enqueue_log_record handler, so no record would ever be queued"
            );
        }
    }
    Ok(())
}

/// The queues `policy-extras.log_hooks` answers for.
pub fn helper_queues(hooks: &[LogHookConfig]) -> Vec<(String, Arc<QueueConfig>, HookSink)> {
    hooks
        .iter()
        .filter_map(|h| {
            let helper = h.helper.as_ref()?;
            let sink = match &helper.url {
                Some(url) => HookSink::Json(url.clone()),
                None => HookSink::Constructor(
                    ironpost_policy::helpers::log_hooks::constructor_event(&h.name),
                ),
            };
            Some((
                h.helper_queue()?,
                Arc::new(helper.queue_config.clone()),
                sink,
            ))
        })
        .collect()
}

/// Records waiting for the hooks. Beyond this the pump is far behind (each
/// record it keeps costs a policy call and a spool write): newer records
/// are dropped and counted rather than let memory grow without bound.
pub const BACKLOG: usize = 65_536;

/// The record kinds any hook takes (`per_record`), so the others are not
/// copied at all.
pub struct Wanted(Vec<LogHookConfig>);

impl Wanted {
    pub fn new(hooks: &[LogHookConfig]) -> Wanted {
        Wanted(hooks.to_vec())
    }

    pub fn any(&self, kind: &str) -> bool {
        self.0.iter().any(|h| {
            h.per_record
                .get(kind)
                .or_else(|| h.per_record.get("Any"))
                .is_none_or(|p| p.enable)
        })
    }
}

/// Hand a record to the pump without waiting; a full backlog drops it,
/// with a warning at most once a minute.
pub fn offer_record(tx: &mpsc::Sender<(Record, String)>, rec: &Record) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    static LAST_WARNING: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    if tx
        .try_send((rec.clone(), chrono::Utc::now().to_rfc3339()))
        .is_ok()
    {
        return;
    }
    let dropped = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST_WARNING.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
        *last = Some(std::time::Instant::now());
        tracing::warn!(
            dropped,
            "log hooks are {BACKLOG} records behind: records dropped"
        );
    }
}

pub struct Pump {
    pub hooks: Vec<LogHookConfig>,
    pub policy: PolicyEngine,
    pub spool: Spool,
    pub queue: QueueManager,
}

impl Pump {
    pub async fn run(self, mut rx: mpsc::Receiver<(Record, String)>) {
        while let Some((record, timestamp)) = rx.recv().await {
            for hook in &self.hooks {
                if let Err(e) = self.offer(hook, &record, &timestamp).await {
                    tracing::error!(hook = %hook.name, "log hook: {e}");
                }
            }
        }
    }

    async fn offer(
        &self,
        hook: &LogHookConfig,
        record: &Record,
        timestamp: &str,
    ) -> Result<(), String> {
        let enabled = hook
            .per_record
            .get(record.kind())
            .or_else(|| hook.per_record.get("Any"))
            .is_none_or(|p| p.enable);
        if !enabled {
            return Ok(());
        }
        let mut record = record.clone();
        record.select_fields(&hook.meta, &hook.headers, true);
        let json = record.to_json(timestamp);
        let sender = json["sender"].as_str().unwrap_or("").to_string();
        let mut recipients: Vec<String> = match (&json["recipients"], &json["recipient"]) {
            (serde_json::Value::Array(a), _) => a
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
            (_, serde_json::Value::String(r)) => vec![r.clone()],
            _ => Vec::new(),
        };
        if recipients.is_empty() {
            recipients.push(format!("log-hook@{}.log_hook", hook.name));
        }
        let id = SpoolId::new();
        let mut meta = serde_json::Map::new();
        meta.insert("reception_protocol".into(), "LogRecord".into());
        meta.insert("log_record".into(), json.clone());
        let msg = Message {
            id: id.to_string(),
            sender,
            recipients,
            meta,
            data: json.to_string().into_bytes(),
            attempts: 0,
        };
        let Some(msg) = self
            .policy
            .should_enqueue_log_record(hook, msg)
            .await
            .map_err(|e| format!("should_enqueue_log_record: {e}"))?
        else {
            return Ok(());
        };
        let meta_text = serde_json::to_string(&msg.meta).map_err(|e| e.to_string())?;
        let spool_meta = SpoolMeta::new(
            msg.id,
            msg.sender,
            msg.recipients,
            MetaObject::from_json(meta_text).ok(),
            chrono::Utc::now().to_rfc3339(),
        );
        let location = self
            .spool
            .store(id, spool_meta.encode(), msg.data)
            .await
            .map_err(|e| format!("cannot spool the record: {e}"))?;
        self.queue.enqueue(id, location, spool_meta);
        Ok(())
    }
}
