//! The policy engine: Lua 5.4 policies written against the KumoMTA policy
//! API, run in a sandbox on a pool of interpreters.

mod authn;
pub mod cidr;
pub mod config;
pub mod conformance;
pub mod conn_meta;
pub mod delivery_config;
pub mod diagnostics;
pub mod dkim;
pub mod duration;
pub mod egress_source;
mod engine;
mod error;
pub mod events;
pub mod headers;
pub mod helpers;
mod http;
pub mod kumo;
mod memoize;
pub mod message;
pub mod probe;
mod queue_name;
mod regex_set_map;
mod sandbox;
mod serde_fns;
mod sqlite;
mod state;
pub mod throttle;
mod throttle_object;
mod unsupported;

pub use authn::META_KEY as AUTHENTICATION_RESULTS_META;
pub use cidr::CidrSet;
pub use config::{
    ClientCertMode, EsmtpListenerConfig, HelperLogHook, InitConfig, LineEndingPolicy,
    ListenerDomain, LocalLogsConfig, LogHookConfig, SpoolDefinition, TraceHeaders,
};
pub use conn_meta::ConnMeta;
pub use delivery_config::{
    CustomLuaProtocol, EgressPathConfig, MxEntry, QueueConfig, ResolverSettings, TlsMode,
};
pub use egress_source::{EgressPool, EgressSource, PoolEntry, RoundRobin};
pub use engine::{AuthDecision, EngineOptions, PolicyEngine, PolicySource, DEFAULT_POLICY};
pub use error::{EventError, PolicyError};
pub use message::Message;
pub use queue_name::QueueName;
