//! The HTTP admin listener (`kumo.start_http_listener{...}`): message
//! injection in KumoMTA's JSON shape, Prometheus metrics, and admin
//! endpoints to bounce, suspend, inspect and summarize queues.
//!
//! Start-up: [`bind`] validates the configuration, reads TLS keys and
//! binds while the daemon is still privileged; after the privilege drop,
//! [`BoundHttpListener::serve`] accepts connections. The daemon supplies
//! an [`AdminBackend`] (injection, queues, metrics) and a
//! [`BasicAuthHook`] (the policy's `http_server_validate_auth_basic`);
//! this crate depends on neither the server nor the delivery crate.
//!
//! | route | auth | |
//! |---|---|---|
//! | `GET /api/check-liveness/v1` | none | 200 `OK` |
//! | `GET /metrics` | yes | Prometheus text |
//! | `POST /api/inject/v1` | yes | [`InjectV1Request`] → [`InjectOutcome`] |
//! | `POST /api/admin/bounce/v1` | yes | [`BounceRequest`] |
//! | `POST /api/admin/suspend/v1` | yes | [`SuspendRequest`] |
//! | `GET /api/admin/inspect-message/v1?id=` | yes | message JSON or 404 |
//! | `GET /api/admin/queue-summary/v1` | yes | backend JSON |
//! | `GET /.well-known/mta-sts.txt` with `Host: mta-sts.<hosted domain>` | none | the MTA-STS policy ([`mta_sts`]; HTTPS only) |
//!
//! Authorization rules are in [`auth`]. Statuses: 400 bad request body,
//! 401 not authorized, 413 body over `request_body_limit` (or a request
//! that would generate more than [`inject::MAX_GENERATED_BYTES`]), 415
//! without `Content-Type: application/json`, 422 JSON of the wrong shape,
//! 429 locked out after repeated failures (with `Retry-After`).

pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod inject;
pub mod listener;
pub mod metrics;
pub mod mime;
pub mod mta_sts;
pub mod template;
mod tls;

pub use api::{AdminBackend, BounceRequest, SuspendRequest};
pub use auth::{AuthAttempt, AuthThrottle, BasicAuthHook, BoxFuture, HttpAuth};
pub use config::HttpListenerConfig;
pub use inject::{InjectMessage, InjectOutcome, InjectRequest, InjectV1Request};
pub use listener::{bind, serve, AdminError, BoundHttpListener};
pub use metrics::Metrics;
pub use mta_sts::{HostedPolicy, MtaStsHosting};
