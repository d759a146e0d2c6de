//! The configuration objects a policy builds during `init` and returns from
//! events. Every struct denies unknown keys so a typo is an error that names
//! the key, not a silently ignored setting.

use crate::cidr::CidrSet;
use crate::duration;
use ironpost_keysource::KeySource;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum LineEndingPolicy {
    #[default]
    Deny,
    Allow,
    Fix,
}

fn default_listen() -> String {
    "127.0.0.1:2025".into()
}
fn default_relay_hosts() -> Vec<String> {
    vec!["127.0.0.1".into(), "::1".into()]
}
fn default_max_message_size() -> u64 {
    20 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    1024
}
fn default_max_messages() -> usize {
    10_000
}
fn default_client_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_data_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_connections() -> usize {
    32_768
}
fn default_max_connections_per_ip() -> usize {
    64
}
fn default_max_idle_commands() -> usize {
    100
}
fn default_line_length() -> usize {
    998
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ClientCertMode {
    Optional,
    Required,
}

/// `kumo.start_esmtp_listener{...}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsmtpListenerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub banner: Option<String>,
    #[serde(default = "default_relay_hosts")]
    pub relay_hosts: Vec<String>,
    #[serde(default)]
    pub tls_certificate: Option<KeySource>,
    #[serde(default)]
    pub tls_private_key: Option<KeySource>,
    /// PEM bundle of CAs that client certificates must chain to.
    #[serde(default)]
    pub tls_required_client_ca: Option<KeySource>,
    /// **Ironpost:** whether a client certificate is `Required` (the
    /// default when a CA is given) or `Optional`.
    #[serde(default)]
    pub tls_client_certificates: Option<ClientCertMode>,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    #[serde(default = "default_max_recipients")]
    pub max_recipients_per_message: usize,
    #[serde(default = "default_max_messages")]
    pub max_messages_per_connection: usize,
    #[serde(
        default = "default_client_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub client_timeout: Duration,
    #[serde(
        default = "default_data_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub data_processing_timeout: Duration,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections from one address (clients in `relay_hosts` are not
    /// counted). Ironpost's own option; KumoMTA has none.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// NOOP, RSET, VRFY, HELP and unknown commands allowed outside a mail
    /// transaction before the connection is closed, so a client cannot hold
    /// a slot for ever with NOOPs. Ironpost's own option.
    #[serde(default = "default_max_idle_commands")]
    pub max_idle_commands: usize,
    #[serde(default)]
    pub invalid_line_endings: LineEndingPolicy,
    #[serde(default = "default_line_length")]
    pub line_length_hard_limit: usize,
    /// **Ironpost:** failed AUTH attempts allowed per client IP and per user
    /// within `auth_failure_window` before `421 4.7.0`.
    #[serde(default = "default_auth_failures")]
    pub auth_failure_limit: usize,
    #[serde(
        default = "default_auth_window",
        deserialize_with = "duration::deserialize"
    )]
    pub auth_failure_window: Duration,
    #[serde(default)]
    pub trace_headers: TraceHeaders,
}

/// `trace_headers = {...}` on a listener.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TraceHeaders {
    /// The `Received:` header.
    #[serde(default = "default_true")]
    pub received_header: bool,
    /// A base64 JSON header naming the recipient and chosen metadata, for
    /// matching feedback reports. Off unless asked for (KumoMTA: on): its
    /// content is readable by everyone downstream.
    #[serde(default)]
    pub supplemental_header: bool,
    #[serde(default = "default_supplemental_name")]
    pub header_name: String,
    #[serde(default)]
    pub include_meta_names: Vec<String>,
}

fn default_supplemental_name() -> String {
    "X-KumoRef".into()
}

impl Default for TraceHeaders {
    fn default() -> Self {
        TraceHeaders {
            received_header: true,
            supplemental_header: false,
            header_name: default_supplemental_name(),
            include_meta_names: Vec::new(),
        }
    }
}

fn default_auth_failures() -> usize {
    5
}
fn default_auth_window() -> Duration {
    Duration::from_secs(300)
}

impl EsmtpListenerConfig {
    /// Checks that serde cannot express; errors name the key.
    pub fn validate(&self) -> Result<CidrSet, String> {
        crate::headers::validate(&self.trace_headers.header_name, "")
            .map_err(|e| format!("trace_headers.header_name: {e}"))?;
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| format!("listen: {:?} is not an ip:port address", self.listen))?;
        if self.tls_certificate.is_some() != self.tls_private_key.is_some() {
            return Err("tls_certificate and tls_private_key must be given together".into());
        }
        if self.tls_client_certificates.is_some() && self.tls_required_client_ca.is_none() {
            return Err(
                "tls_client_certificates needs tls_required_client_ca (the CAs to trust)".into(),
            );
        }
        if self.max_connections == 0
            || self.max_recipients_per_message == 0
            || self.max_messages_per_connection == 0
        {
            return Err("max_connections, max_recipients_per_message and max_messages_per_connection must be at least 1".into());
        }
        if self.line_length_hard_limit < 78 {
            return Err("line_length_hard_limit must be at least 78".into());
        }
        CidrSet::parse(&self.relay_hosts).map_err(|e| format!("relay_hosts: {e}"))
    }
}

/// `kumo.define_spool{...}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolDefinition {
    pub name: String,
    pub path: PathBuf,
    /// `LocalDisk` or `RocksDB`: both run on Ironpost's own spool.
    #[serde(default = "default_spool_kind")]
    pub kind: String,
    #[serde(default = "default_true")]
    pub flush: bool,
    /// RocksDB tuning (`kind = 'RocksDB'` only): accepted, and named in the
    /// start-up notice as having no effect.
    #[serde(default)]
    pub rocks_params: Option<serde_json::Map<String, serde_json::Value>>,
}

impl SpoolDefinition {
    /// The notice for a spool kind Ironpost runs on its own storage, or
    /// `None` for `LocalDisk`.
    pub fn kind_notice(&self) -> Option<String> {
        if self.kind != "RocksDB" {
            return None;
        }
        let mut notice = format!(
            "spool '{}': kind 'RocksDB' runs on Ironpost's own spool (an append-only log, \
             fsynced before each 250 when flush is on)",
            self.name
        );
        if let Some(p) = self.rocks_params.as_ref().filter(|p| !p.is_empty()) {
            let keys: Vec<&str> = p.keys().map(String::as_str).collect();
            notice.push_str(&format!(
                "; rocks_params have no effect: {}",
                keys.join(", ")
            ));
        }
        Some(notice)
    }
}

fn default_spool_kind() -> String {
    "LocalDisk".into()
}
fn default_true() -> bool {
    true
}

/// `kumo.configure_local_logs{...}`: one log. The function may be called
/// more than once, each call a separate log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLogsConfig {
    pub log_dir: PathBuf,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_segment_duration: Option<Duration>,
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// Message headers copied into each record.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Message meta keys copied into each record.
    #[serde(default)]
    pub meta: Vec<String>,
    /// By record type, or `Any`.
    #[serde(default)]
    pub per_record: std::collections::HashMap<String, PerRecordLog>,
}

/// `configure_local_logs{ per_record = { Kind = {...} } }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRecordLog {
    #[serde(default = "default_true")]
    pub enable: bool,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    #[serde(default)]
    pub segment_header: Option<String>,
    /// Refused: templated log lines are not implemented.
    #[serde(default)]
    pub template: Option<String>,
}

/// KumoMTA's log record types, and `Any`.
pub const LOG_RECORD_KINDS: &[&str] = &[
    "Reception",
    "Delivery",
    "Bounce",
    "TransientFailure",
    "Expiration",
    "AdminBounce",
    "OOB",
    "Feedback",
    "Rejection",
    "AdminRebind",
    "DeferredInjectionRebind",
    "XferOut",
    "XferIn",
    "AuthN",
    "Any",
];

impl LocalLogsConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (kind, p) in &self.per_record {
            if !LOG_RECORD_KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "per_record: '{kind}' is not a log record type (expected one of {})",
                    LOG_RECORD_KINDS.join(", ")
                ));
            }
            if p.template.is_some() {
                return Err(format!(
                    "per_record.{kind}.template: Ironpost does not support templated log lines yet"
                ));
            }
        }
        Ok(())
    }
}

/// `kumo.make_listener_domain{...}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerDomainConfig {
    #[serde(default)]
    pub relay_to: bool,
    #[serde(default)]
    pub relay_from: Vec<String>,
    #[serde(default)]
    pub relay_from_authz: Vec<String>,
    /// Out-of-band bounce and ARF processing are not implemented: only
    /// `false` or `'Ignore'` are accepted.
    #[serde(default)]
    pub log_oob: Option<serde_json::Value>,
    #[serde(default)]
    pub log_arf: Option<serde_json::Value>,
}

/// `log_oob` / `log_arf`: anything that asks for logging is refused.
fn check_disposition(key: &str, v: &Option<serde_json::Value>) -> Result<(), String> {
    match v {
        None | Some(serde_json::Value::Bool(false)) => Ok(()),
        Some(serde_json::Value::String(s)) if s == "Ignore" => Ok(()),
        Some(serde_json::Value::Bool(true)) | Some(serde_json::Value::String(_)) => Err(format!(
            "{key}: Ironpost does not support logging out-of-band bounces or ARF reports yet \
             (only false or 'Ignore')"
        )),
        Some(other) => Err(format!(
            "{key}: expected a boolean value or one of 'Ignore', 'LogThenRelay', 'LogThenDrop', got {other}"
        )),
    }
}

#[derive(Clone, Debug)]
pub struct ListenerDomain {
    pub relay_to: bool,
    pub relay_from: CidrSet,
    pub relay_from_authz: Vec<String>,
}

impl ListenerDomainConfig {
    pub fn build(self) -> Result<ListenerDomain, String> {
        check_disposition("log_oob", &self.log_oob)?;
        check_disposition("log_arf", &self.log_arf)?;
        Ok(ListenerDomain {
            relay_to: self.relay_to,
            relay_from: CidrSet::parse(&self.relay_from).map_err(|e| format!("relay_from: {e}"))?,
            relay_from_authz: self.relay_from_authz,
        })
    }
}

/// `kumo.configure_log_hook{...}`: every log record also becomes a message
/// offered to `should_enqueue_log_record(msg, name)`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHookConfig {
    pub name: String,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub meta: Vec<String>,
    #[serde(default)]
    pub per_record: std::collections::HashMap<String, PerRecordLog>,
    /// Refused when true: every hook message is spooled before it is queued.
    #[serde(default)]
    pub deferred_spool: bool,
    /// Set by `policy-extras.log_hooks`, which answers for its own queue.
    #[serde(skip)]
    pub helper: Option<HelperLogHook>,
}

/// What `policy-extras.log_hooks` adds to a hook: its queue (named
/// `<name>.log_hook`), that queue's config, and how messages are sent.
#[derive(Clone, Debug)]
pub struct HelperLogHook {
    pub queue_config: crate::delivery_config::QueueConfig,
    /// `new_json`: POST each record's JSON here. `None`: the policy's
    /// constructor (`make.<name>.log_hook`).
    pub url: Option<String>,
    /// The policy gave a `filter` (event `log_hook_filter.<name>`).
    pub has_filter: bool,
}

impl LogHookConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.deferred_spool {
            return Err("deferred_spool: Ironpost spools every log hook message".into());
        }
        // Hook records are messages, not files: only `enable` means
        // anything in a hook's per_record.
        for (kind, p) in &self.per_record {
            if p.suffix.is_some() || p.log_dir.is_some() || p.segment_header.is_some() {
                return Err(format!(
                    "per_record.{kind}: a log hook takes only 'enable' (suffix, log_dir and segment_header are for files)"
                ));
            }
        }
        LocalLogsConfig {
            log_dir: PathBuf::new(),
            max_segment_duration: None,
            max_file_size: None,
            headers: Vec::new(),
            meta: Vec::new(),
            per_record: self.per_record.clone(),
        }
        .validate()
    }

    /// The queue `policy-extras.log_hooks` sends this hook's messages to.
    pub fn helper_queue(&self) -> Option<String> {
        self.helper
            .as_ref()
            .map(|_| format!("{}.log_hook", self.name))
    }
}

/// Everything `init` set up.
#[derive(Clone, Debug, Default)]
pub struct InitConfig {
    pub listeners: Vec<EsmtpListenerConfig>,
    pub spools: Vec<SpoolDefinition>,
    /// One per `kumo.configure_local_logs` call, in order: each is a log of
    /// its own, and every record goes to all of them.
    pub logs: Vec<LocalLogsConfig>,
    pub log_hooks: Vec<LogHookConfig>,
    pub resolver: Option<crate::delivery_config::ResolverSettings>,
    /// `kumo.start_http_listener{...}` tables, checked by the admin crate.
    pub http_listeners: Vec<serde_json::Value>,
    /// Places where a secret was given inline (`key_data`), for the start-up
    /// warning.
    pub inline_secrets: Vec<String>,
    /// `kumo.configure_bounce_classifier{ files }`: the rules files, in
    /// order (none: Ironpost's built-in rules).
    pub bounce_classifier_files: Option<Vec<String>>,
    /// `kumo.configure_redis_throttles{...}`: rates, connection limits,
    /// holds and AUTH failure counts shared through Redis.
    pub redis_throttles: Option<crate::delivery_config::RedisThrottles>,
}

/// `kumo.configure_bounce_classifier{...}`. The tuning options size
/// KumoMTA's classifier thread pool and caches; Ironpost classifies inline
/// and announces at start that they have no effect.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BounceClassifierOptions {
    pub files: Vec<String>,
    #[serde(default)]
    pub back_pressure: Option<u64>,
    #[serde(default)]
    pub pool_size: Option<u64>,
    #[serde(default)]
    pub cache_size: Option<u64>,
    #[serde(default)]
    pub uncategorized_cache_size: Option<u64>,
}
