//! The routes, the backend they call, and the authorization layer in
//! front of every route except the liveness check.

use crate::auth::{
    basic_allowed, ip_key, parse_basic, user_key, AuthAttempt, AuthThrottle, BasicAuthHook,
    BasicError, BoxFuture, HttpAuth, FAILURE_LIMIT, FAILURE_WINDOW,
};
use crate::inject::{generate, GenerateError, InjectOutcome, InjectRequest, InjectV1Request};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ironpost_policy::CidrSet;
use serde::Deserialize;
use serde_json::Value;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the daemon provides behind the HTTP API. Implemented by the
/// caller (the `ironpost` binary), so this crate depends on neither the
/// server nor the delivery crate.
pub trait AdminBackend: Send + Sync + 'static {
    /// Run `http_message_generated`, tenant checks and signing on each
    /// message, spool and queue it, and report per recipient. `http_auth`
    /// is [`HttpAuth::summarize`]: the Basic user name, or the trusted
    /// peer's IP address; record it in the message meta as `http_auth`.
    fn inject(
        &self,
        request: InjectRequest,
        http_auth: String,
    ) -> BoxFuture<Result<InjectOutcome, String>>;
    /// The Prometheus text for `GET /metrics` (see [`crate::Metrics::render`]).
    fn metrics(&self) -> BoxFuture<String>;
    /// `GET /api/admin/queue-summary/v1`.
    fn queue_summary(&self) -> BoxFuture<Value>;
    /// `POST /api/admin/bounce/v1`: bounce queued messages now.
    fn bounce(&self, request: BounceRequest) -> BoxFuture<Result<Value, String>>;
    /// `POST /api/admin/suspend/v1`: hold delivery (durably).
    fn suspend(&self, request: SuspendRequest) -> BoxFuture<Result<Value, String>>;
    /// `GET /api/admin/suspend/v1`: the suspensions in force.
    fn suspensions(&self) -> BoxFuture<Value>;
    /// `DELETE /api/admin/suspend/v1` (`{"id": N}`): `Ok(false)` is 404.
    /// Also ends an automation override or bounce (ids are shared).
    fn cancel_suspension(&self, id: u64) -> BoxFuture<Result<bool, String>>;
    /// `GET /api/admin/automation/v1`: what traffic-shaping automation
    /// holds (`suspensions`, `overrides`, `bounces`); `DELETE` with
    /// `{"id": N}` cancels one.
    fn automation(&self) -> BoxFuture<Value> {
        Box::pin(async { serde_json::json!({}) })
    }
    /// `GET /api/admin/shared-limits/v1`: the connection limits in use, the
    /// shared ones with their lease holders, and the Redis counters.
    fn shared_limits(&self) -> BoxFuture<Value> {
        Box::pin(async { serde_json::json!({}) })
    }
    /// `GET /api/admin/inspect-message/v1?id=`: `Ok(None)` is 404.
    fn inspect(&self, id: String) -> BoxFuture<Result<Option<Value>, String>>;
    /// Every Basic credential check, for an AuthN log record and the
    /// auth counters. Never carries the password. Default: nothing.
    fn auth_attempt(&self, _attempt: &AuthAttempt) {}
}

/// `POST /api/admin/bounce/v1`. At least one of `domain` and `tenant`
/// is required (there is no "bounce everything"); given both, a message
/// must match both.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BounceRequest {
    /// Recipient domain, lower-cased.
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    pub reason: String,
    /// Who asked ([`HttpAuth::summarize`]); set by the server, not read
    /// from the request.
    #[serde(skip)]
    pub requested_by: String,
}

/// `POST /api/admin/suspend/v1`. `duration` ("1h", "30m", seconds) is
/// optional; without it the backend picks its default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub campaign: Option<String>,
    /// An egress source (its pools send from their other sources).
    #[serde(default)]
    pub source: Option<String>,
    pub reason: String,
    #[serde(
        default,
        deserialize_with = "ironpost_policy::duration::deserialize_opt"
    )]
    pub duration: Option<Duration>,
    #[serde(skip)]
    pub requested_by: String,
}

/// How long the policy may take to answer a Basic check.
pub const AUTH_HOOK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one request may take, body upload and backend work included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const REALM: &str = "Basic realm=\"ironpost\", charset=\"UTF-8\"";
const LOCK_SHARDS: usize = 64;

/// Per connection, inserted into every request's extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub backend: Arc<dyn AdminBackend>,
    pub hook: BasicAuthHook,
    pub trusted: CidrSet,
    pub throttle: Arc<AuthThrottle>,
    /// Basic checks for the same client IP, and for the same user, run
    /// one at a time, so that parallel requests cannot get more guesses
    /// past the failure limit than sequential ones.
    pub ip_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    pub user_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// This listener's address and `hostname`, for injected messages.
    pub local: std::net::SocketAddr,
    pub hostname: Option<String>,
}

impl AppState {
    pub fn new(
        backend: Arc<dyn AdminBackend>,
        hook: BasicAuthHook,
        trusted: CidrSet,
        throttle: Arc<AuthThrottle>,
    ) -> AppState {
        let locks = || {
            Arc::new(
                (0..LOCK_SHARDS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            )
        };
        AppState {
            backend,
            hook,
            trusted,
            throttle,
            ip_locks: locks(),
            user_locks: locks(),
            local: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: None,
        }
    }
}

fn shard(key: &str) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % LOCK_SHARDS as u64) as usize
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn challenge(body: &str) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, body);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

fn throttled(retry_after: Duration) -> Response {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut r = text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed authentication attempts; try again later",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// Decide who the client is, or the response refusing it.
pub(crate) async fn authorize(
    st: &AppState,
    conn: ConnInfo,
    headers: &HeaderMap,
) -> Result<HttpAuth, Response> {
    let ip = conn.peer.ip();
    if st.trusted.contains(ip) {
        return Ok(HttpAuth::TrustedHost(ironpost_policy::cidr::canonical(ip)));
    }
    let may_send_basic = basic_allowed(conn.tls, ip);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(if may_send_basic {
            challenge("authorization required")
        } else {
            text(
                StatusCode::UNAUTHORIZED,
                "authorization required: this client is not a trusted host, and Basic credentials are accepted only over TLS (https) from a non-loopback address",
            )
        });
    };
    if !may_send_basic {
        tracing::warn!(
            peer = %ip,
            "http listener: refused Basic credentials sent without TLS from a non-loopback address"
        );
        return Err(text(
            StatusCode::UNAUTHORIZED,
            "Basic credentials are accepted only over TLS (https) from a non-loopback address; they were not checked. Consider them exposed.",
        ));
    }
    let ipk = ip_key(ip);
    let _ip_guard = st.ip_locks[shard(&ipk)].lock().await;
    if let Some(retry) = st.throttle.retry_after(&ipk, FAILURE_LIMIT, FAILURE_WINDOW) {
        return Err(throttled(retry));
    }
    let parsed = value
        .to_str()
        .map_err(|_| BasicError::Malformed)
        .and_then(parse_basic);
    let (user, password) = match parsed {
        Ok(up) => up,
        Err(BasicError::NotBasic) => {
            return Err(challenge("only Basic authorization is supported"))
        }
        Err(BasicError::Malformed) => {
            st.throttle.record_failure(&ipk, FAILURE_WINDOW);
            return Err(challenge("malformed Basic authorization"));
        }
    };
    let userk = user_key(&user);
    let _user_guard = st.user_locks[shard(&userk)].lock().await;
    let attempt = |success: bool, reason: Option<&str>| AuthAttempt {
        peer: ironpost_policy::cidr::canonical(ip),
        user: user.clone(),
        tls: conn.tls,
        success,
        reason: reason.map(str::to_string),
    };
    // Locked out: this address (above), and this user from this address.
    // A user's failures from every address only slow its attempts down, so
    // an attacker cannot lock the real user out.
    let user_ipk = format!("{userk}|{ipk}");
    if let Some(retry) = st
        .throttle
        .retry_after(&user_ipk, FAILURE_LIMIT, FAILURE_WINDOW)
    {
        st.backend
            .auth_attempt(&attempt(false, Some("throttled: too many recent failures")));
        return Err(throttled(retry));
    }
    if let Some(delay) = st.throttle.slowdown(&userk, FAILURE_LIMIT, FAILURE_WINDOW) {
        tokio::time::sleep(delay).await;
    }
    let verdict = tokio::time::timeout(AUTH_HOOK_TIMEOUT, (st.hook)(user.clone(), password)).await;
    match verdict {
        Ok(Ok(true)) => {
            st.backend.auth_attempt(&attempt(true, None));
            Ok(HttpAuth::Basic { user })
        }
        Ok(Ok(false)) => {
            st.throttle.record_failure(&ipk, FAILURE_WINDOW);
            st.throttle.record_failure(&user_ipk, FAILURE_WINDOW);
            st.throttle.record_failure(&userk, FAILURE_WINDOW);
            st.backend
                .auth_attempt(&attempt(false, Some("invalid credentials")));
            tracing::warn!(peer = %ip, user = ?user, "http listener: invalid credentials");
            Err(challenge("invalid credentials"))
        }
        Ok(Err(e)) => {
            st.backend
                .auth_attempt(&attempt(false, Some("policy error")));
            tracing::error!(
                peer = %ip, user = ?user,
                "http_server_validate_auth_basic failed: {e}"
            );
            Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the credential check failed; see the server log",
            ))
        }
        Err(_) => {
            st.backend
                .auth_attempt(&attempt(false, Some("policy timeout")));
            tracing::error!(
                peer = %ip, user = ?user,
                "http_server_validate_auth_basic did not answer within {AUTH_HOOK_TIMEOUT:?}"
            );
            Err(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the credential check timed out",
            ))
        }
    }
}

async fn require_auth(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(conn) = req.extensions().get::<ConnInfo>().copied() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no connection information",
        );
    };
    match authorize(&st, conn, req.headers()).await {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Err(resp) => resp,
    }
}

async fn time_limit(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

fn json_error(e: JsonRejection) -> Response {
    text(e.status(), e.body_text())
}

async fn liveness() -> Response {
    text(StatusCode::OK, "OK")
}

async fn metrics(State(st): State<AppState>) -> Response {
    let body = st.backend.metrics().await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

async fn inject(
    State(st): State<AppState>,
    Extension(auth): Extension<HttpAuth>,
    Extension(conn): Extension<ConnInfo>,
    body: Result<Json<InjectV1Request>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return json_error(e),
    };
    // Templating and MIME building are CPU work proportional to the
    // request: off the async threads.
    let generated = match tokio::task::spawn_blocking(move || generate(&request)).await {
        Ok(Ok(g)) => g,
        Ok(Err(GenerateError::BadRequest(m))) => return text(StatusCode::BAD_REQUEST, m),
        Ok(Err(GenerateError::TooLarge)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request would generate more than {} MiB of messages; split it",
                    crate::inject::MAX_GENERATED_BYTES >> 20
                ),
            )
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("generation failed: {e}"),
            )
        }
    };
    let mut outcome = generated.failed;
    if !generated.messages.is_empty() {
        let req = InjectRequest {
            envelope_sender: generated.envelope_sender,
            messages: generated.messages,
            peer: conn.peer,
            local: st.local,
            hostname: st.hostname.clone(),
            tls: conn.tls,
            auth: auth.clone(),
        };
        match st.backend.inject(req, auth.summarize()).await {
            Ok(o) => outcome.merge(o),
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("injection failed: {e}"),
                )
            }
        }
    }
    Json(outcome).into_response()
}

fn valid_label(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
        Err(format!(
            "{what} must be 1 to 255 characters without control characters"
        ))
    } else {
        Ok(())
    }
}

fn check_scope(
    domain: &mut Option<String>,
    tenant: &Option<String>,
    reason: &str,
) -> Result<(), String> {
    if domain.is_none() && tenant.is_none() {
        return Err("give a domain, a tenant or both".into());
    }
    if let Some(d) = domain {
        let trimmed = d.trim_end_matches('.');
        *d = ironpost_wire::address::parse_domain(trimmed)
            .map_err(|_| format!("domain {d:?} is not a valid domain name"))?;
    }
    if let Some(t) = tenant {
        valid_label("tenant", t)?;
    }
    if reason.trim().is_empty() || reason.len() > 1000 || reason.chars().any(char::is_control) {
        return Err("reason must be 1 to 1000 characters without control characters".into());
    }
    Ok(())
}

fn backend_json(r: Result<Value, String>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn bounce(
    State(st): State<AppState>,
    Extension(auth): Extension<HttpAuth>,
    body: Result<Json<BounceRequest>, JsonRejection>,
) -> Response {
    let Json(mut req) = match body {
        Ok(b) => b,
        Err(e) => return json_error(e),
    };
    if let Err(e) = check_scope(&mut req.domain, &req.tenant, &req.reason) {
        return text(StatusCode::BAD_REQUEST, e);
    }
    req.requested_by = auth.summarize();
    tracing::info!(
        domain = ?req.domain, tenant = ?req.tenant, reason = ?req.reason, by = ?req.requested_by,
        "admin bounce"
    );
    backend_json(st.backend.bounce(req).await)
}

async fn suspend(
    State(st): State<AppState>,
    Extension(auth): Extension<HttpAuth>,
    body: Result<Json<SuspendRequest>, JsonRejection>,
) -> Response {
    let Json(mut req) = match body {
        Ok(b) => b,
        Err(e) => return json_error(e),
    };
    let scoped = req.domain.is_some()
        || req.tenant.is_some()
        || req.campaign.is_some()
        || req.source.is_some();
    let checked = if scoped && req.domain.is_none() && req.tenant.is_none() {
        // A campaign or a source alone: check the reason the same way.
        check_scope(&mut req.domain, &Some("-".into()), &req.reason)
    } else {
        check_scope(&mut req.domain, &req.tenant, &req.reason)
    };
    let labels = [("campaign", &req.campaign), ("source", &req.source)];
    if let Err(e) = checked.and_then(|()| {
        labels
            .iter()
            .filter_map(|(w, v)| v.as_deref().map(|v| valid_label(w, v)))
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
    }) {
        let e = if scoped {
            e
        } else {
            "give a domain, tenant, campaign or source".into()
        };
        return text(StatusCode::BAD_REQUEST, e);
    }
    if req.duration == Some(Duration::ZERO) {
        return text(
            StatusCode::BAD_REQUEST,
            "duration must be greater than zero",
        );
    }
    req.requested_by = auth.summarize();
    tracing::info!(
        domain = ?req.domain, tenant = ?req.tenant, campaign = ?req.campaign,
        source = ?req.source, reason = ?req.reason,
        duration = ?req.duration, by = ?req.requested_by,
        "admin suspend"
    );
    backend_json(st.backend.suspend(req).await)
}

async fn suspend_list(State(st): State<AppState>) -> Response {
    Json(st.backend.suspensions().await).into_response()
}

async fn automation_list(State(st): State<AppState>) -> Response {
    Json(st.backend.automation().await).into_response()
}

async fn shared_limits(State(st): State<AppState>) -> Response {
    Json(st.backend.shared_limits().await).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    id: u64,
}

async fn suspend_cancel(
    State(st): State<AppState>,
    Extension(auth): Extension<HttpAuth>,
    body: Result<Json<CancelRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return json_error(e),
    };
    tracing::info!(id = req.id, by = %auth.summarize(), "admin suspension cancelled");
    match st.backend.cancel_suspension(req.id).await {
        Ok(true) => Json(serde_json::json!({ "cancelled": req.id })).into_response(),
        Ok(false) => text(StatusCode::NOT_FOUND, "no such suspension"),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InspectQuery {
    id: String,
}

async fn inspect(
    State(st): State<AppState>,
    query: Result<Query<InspectQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return text(StatusCode::BAD_REQUEST, "expected ?id=<spool id>");
    };
    let ok = !q.id.is_empty()
        && q.id.len() <= 64
        && q.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return text(StatusCode::BAD_REQUEST, "id is not a spool id");
    }
    match st.backend.inspect(q.id).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => text(StatusCode::NOT_FOUND, "no such message"),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn queue_summary(State(st): State<AppState>) -> Response {
    Json(st.backend.queue_summary().await).into_response()
}

pub(crate) fn router(st: AppState, body_limit: usize) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/inject/v1", post(inject))
        .route("/api/admin/bounce/v1", post(bounce))
        .route(
            "/api/admin/suspend/v1",
            post(suspend).get(suspend_list).delete(suspend_cancel),
        )
        .route("/api/admin/shared-limits/v1", get(shared_limits))
        .route(
            "/api/admin/automation/v1",
            get(automation_list).delete(suspend_cancel),
        )
        .route("/api/admin/inspect-message/v1", get(inspect))
        .route("/api/admin/queue-summary/v1", get(queue_summary))
        .route_layer(middleware::from_fn_with_state(st.clone(), require_auth));
    Router::new()
        .route("/api/check-liveness/v1", get(liveness))
        .merge(protected)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(time_limit))
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let mut d = None;
        assert!(check_scope(&mut d, &None, "r").is_err());
        let mut d = Some("Example.COM.".to_string());
        check_scope(&mut d, &None, "maintenance").unwrap();
        assert_eq!(d.as_deref(), Some("example.com"));
        let mut d = Some("bad domain".to_string());
        assert!(check_scope(&mut d, &None, "r").is_err());
        assert!(check_scope(&mut None, &Some("t".into()), "").is_err());
        assert!(check_scope(&mut None, &Some("t".into()), "a\nb").is_err());
        assert!(check_scope(&mut None, &Some("".into()), "r").is_err());
    }

    #[test]
    fn request_shapes() {
        let b: BounceRequest =
            serde_json::from_str(r#"{"domain":"example.com","reason":"gone"}"#).unwrap();
        assert_eq!(b.domain.as_deref(), Some("example.com"));
        assert!(serde_json::from_str::<BounceRequest>(
            r#"{"domain":"x","reason":"r","campaign":"c"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<BounceRequest>(
            r#"{"domain":"x","reason":"r","requested_by":"me"}"#
        )
        .is_err());
        let s: SuspendRequest =
            serde_json::from_str(r#"{"tenant":"t","reason":"r","duration":"1h"}"#).unwrap();
        assert_eq!(s.duration, Some(Duration::from_secs(3600)));
        let s: SuspendRequest = serde_json::from_str(r#"{"tenant":"t","reason":"r"}"#).unwrap();
        assert_eq!(s.duration, None);
        assert!(serde_json::from_str::<SuspendRequest>(
            r#"{"tenant":"t","reason":"r","duration":"soon"}"#
        )
        .is_err());
    }
}
