//! The admin listener over real loopback sockets. An untrusted peer is a
//! client bound to 127.0.0.2 talking to a listener whose trusted_hosts
//! lists only 127.0.0.1.

use ironpost_admin::auth::{BoxFuture, FAILURE_LIMIT};
use ironpost_admin::{
    bind, AdminBackend, AuthAttempt, BasicAuthHook, BounceRequest, HttpListenerConfig,
    InjectOutcome, InjectRequest, SuspendRequest,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Fake {
    injected: Mutex<Vec<(InjectRequest, String)>>,
    bounces: Mutex<Vec<BounceRequest>>,
    suspends: Mutex<Vec<SuspendRequest>>,
    attempts: Mutex<Vec<AuthAttempt>>,
}

impl AdminBackend for Fake {
    fn inject(
        &self,
        r: InjectRequest,
        http_auth: String,
    ) -> BoxFuture<Result<InjectOutcome, String>> {
        let n: usize = r.messages.iter().map(|m| m.recipients.len()).sum();
        self.injected.lock().unwrap().push((r, http_auth));
        Box::pin(async move {
            Ok(InjectOutcome {
                success_count: n,
                ..InjectOutcome::default()
            })
        })
    }
    fn metrics(&self) -> BoxFuture<String> {
        let m = ironpost_admin::Metrics::new();
        let text = m.render(&[("example.com".into(), 3)]);
        Box::pin(async move { text })
    }
    fn queue_summary(&self) -> BoxFuture<Value> {
        Box::pin(async { json!({"queues": [{"name": "example.com", "count": 3}]}) })
    }
    fn bounce(&self, r: BounceRequest) -> BoxFuture<Result<Value, String>> {
        self.bounces.lock().unwrap().push(r);
        Box::pin(async { Ok(json!({"bounced": 2})) })
    }
    fn suspend(&self, r: SuspendRequest) -> BoxFuture<Result<Value, String>> {
        self.suspends.lock().unwrap().push(r);
        Box::pin(async { Ok(json!({"suspended": true})) })
    }
    fn suspensions(&self) -> BoxFuture<Value> {
        Box::pin(async { json!([{ "id": 1, "domain": "d.example" }]) })
    }
    fn cancel_suspension(&self, id: u64) -> BoxFuture<Result<bool, String>> {
        Box::pin(async move { Ok(id == 1) })
    }
    fn inspect(&self, id: String) -> BoxFuture<Result<Option<Value>, String>> {
        Box::pin(async move {
            Ok((id == "0190aaaa").then(|| json!({"id": id, "sender": "s@example.com"})))
        })
    }
    fn auth_attempt(&self, a: &AuthAttempt) {
        self.attempts.lock().unwrap().push(a.clone());
    }
}

struct Server {
    addr: SocketAddr,
    backend: Arc<Fake>,
    hook_calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// admin/secret is good; "boom" is a policy error; anything else fails.
fn hook(calls: Arc<AtomicUsize>) -> BasicAuthHook {
    Arc::new(move |user: String, password: String| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            // A policy answers in a moment; let concurrent checks overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if user == "boom" {
                return Err("policy exploded".to_string());
            }
            Ok(user == "admin" && password == "secret")
        }) as BoxFuture<Result<bool, String>>
    })
}

fn start_with(cfg: HttpListenerConfig) -> Server {
    let bound = bind(cfg).unwrap();
    let addr = bound.local_addr();
    let backend = Arc::new(Fake::default());
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let be: Arc<dyn AdminBackend> = backend.clone();
    let h = hook(hook_calls.clone());
    let task = tokio::spawn(async move {
        bound.serve(be, h).await.unwrap();
    });
    Server {
        addr,
        backend,
        hook_calls,
        task,
    }
}

fn cfg(trusted: &[&str], tls: bool) -> HttpListenerConfig {
    HttpListenerConfig {
        listen: "127.0.0.1:0".into(),
        use_tls: tls,
        trusted_hosts: trusted.iter().map(|s| s.to_string()).collect(),
        ..HttpListenerConfig::default()
    }
}

fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn url(s: &Server, tls: bool, path: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}{path}", s.addr)
}

#[tokio::test]
async fn liveness_needs_no_auth() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let r = client("127.0.0.2")
        .get(url(&s, false, "/api/check-liveness/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.hook_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn trusted_peer_is_authorized() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.1");
    let r = c.get(url(&s, false, "/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let body = r.text().await.unwrap();
    assert!(body.contains("# TYPE ironpost_messages_received_total counter"));
    assert!(body.contains("ironpost_queue_size{queue=\"example.com\"} 3"));
    let r = c
        .get(url(&s, false, "/api/admin/queue-summary/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["queues"][0]["count"], 3);
    assert_eq!(
        s.hook_calls.load(Ordering::SeqCst),
        0,
        "trusted: no Basic check"
    );
}

#[tokio::test]
async fn untrusted_peer_without_credentials_gets_401() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.2");
    for path in [
        "/metrics",
        "/api/admin/queue-summary/v1",
        "/api/admin/inspect-message/v1?id=0190aaaa",
    ] {
        let r = c.get(url(&s, false, path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"].to_str().unwrap(),
            "Basic realm=\"ironpost\", charset=\"UTF-8\""
        );
    }
    for path in [
        "/api/inject/v1",
        "/api/admin/bounce/v1",
        "/api/admin/suspend/v1",
    ] {
        let r = c
            .post(url(&s, false, path))
            .json(&json!({"domain": "example.com", "reason": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert!(s.backend.bounces.lock().unwrap().is_empty());
    assert!(s.backend.injected.lock().unwrap().is_empty());
    // A trusted peer on the same listener is fine.
    let r = client("127.0.0.1")
        .get(url(&s, false, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_credentials_get_401_and_good_ones_200_on_loopback() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.2");
    let r = c
        .get(url(&s, false, "/metrics"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    // 127.0.0.2 is loopback: Basic is accepted without TLS.
    let r = c
        .get(url(&s, false, "/metrics"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Not Basic, malformed Basic.
    let r = c
        .get(url(&s, false, "/metrics"))
        .bearer_auth("token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(url(&s, false, "/metrics"))
        .header("authorization", "Basic %%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A policy error is a 500 and never authorizes.
    let r = c
        .get(url(&s, false, "/metrics"))
        .basic_auth("boom", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let attempts = s.backend.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3);
    assert!(!attempts[0].success && attempts[0].user == "admin");
    assert!(attempts[1].success);
    assert_eq!(attempts[1].peer.to_string(), "127.0.0.2");
    assert!(!attempts[1].tls);
    assert_eq!(attempts[2].reason.as_deref(), Some("policy error"));
}

#[tokio::test]
async fn good_credentials_over_tls() {
    let s = start_with(cfg(&["127.0.0.1"], true));
    let c = client("127.0.0.2");
    let r = c.get(url(&s, true, "/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(url(&s, true, "/metrics"))
        .basic_auth("admin", Some("bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(url(&s, true, "/metrics"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let attempts = s.backend.attempts.lock().unwrap().clone();
    assert!(attempts.last().unwrap().tls && attempts.last().unwrap().success);
    // Plain HTTP to a TLS listener does not work.
    assert!(c
        .get(url(&s, false, "/api/check-liveness/v1"))
        .send()
        .await
        .is_err());
    // The liveness check works over TLS without credentials.
    let r = c
        .get(url(&s, true, "/api/check-liveness/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn body_limit_gives_413() {
    let mut conf = cfg(&["127.0.0.1"], false);
    conf.request_body_limit = 4096;
    let s = start_with(conf);
    let c = client("127.0.0.1");
    let big = json!({
        "envelope_sender": "s@example.com",
        "content": format!("Subject: x\n\n{}", "a".repeat(8192)),
        "recipients": [{"email": "a@example.net"}],
    });
    let r = c
        .post(url(&s, false, "/api/inject/v1"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked, without Content-Length.
    let body = serde_json::to_vec(&big).unwrap();
    let stream = futures_stream(body);
    let r = c
        .post(url(&s, false, "/api/inject/v1"))
        .header("content-type", "application/json")
        .body(stream)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(s.backend.injected.lock().unwrap().is_empty());
    // Just under the limit is fine.
    let small = json!({
        "envelope_sender": "s@example.com",
        "content": "Subject: x\n\nsmall",
        "recipients": [{"email": "a@example.net"}],
    });
    let r = c
        .post(url(&s, false, "/api/inject/v1"))
        .json(&small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A body reqwest sends chunked (no Content-Length).
fn futures_stream(body: Vec<u8>) -> reqwest::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        for chunk in body.chunks(1000) {
            if tx.send(Ok(chunk.to_vec())).await.is_err() {
                break;
            }
        }
    });
    reqwest::Body::wrap_stream(ReceiverStream(rx))
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn injection_reaches_the_backend_in_both_forms() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let r = client("127.0.0.1")
        .post(url(&s, false, "/api/inject/v1"))
        .json(&json!({
            "envelope_sender": "noreply@example.com",
            "content": "Subject: hello\n\nHello there",
            "recipients": [{"email": "a@example.net"}, {"email": "b@example.net"}, {"email": "bad"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out: InjectOutcome = r.json().await.unwrap();
    assert_eq!(out.success_count, 2);
    assert_eq!(out.fail_count, 1);
    assert_eq!(out.failed_recipients, vec!["bad"]);
    {
        let got = s.backend.injected.lock().unwrap();
        let (req, auth) = &got[0];
        assert_eq!(auth, "127.0.0.1");
        assert_eq!(req.envelope_sender, "noreply@example.com");
        assert_eq!(req.messages.len(), 1);
        assert_eq!(
            req.messages[0].recipients,
            vec!["a@example.net", "b@example.net"]
        );
        assert_eq!(
            req.messages[0].content,
            b"Subject: hello\r\n\r\nHello there"
        );
        assert_eq!(req.peer.ip().to_string(), "127.0.0.1");
        assert_eq!(
            req.auth,
            ironpost_admin::HttpAuth::TrustedHost("127.0.0.1".parse().unwrap())
        );
        assert!(!req.tls);
    }

    // The object form, by an authenticated user from an untrusted peer.
    let r = client("127.0.0.2")
        .post(url(&s, false, "/api/inject/v1"))
        .basic_auth("admin", Some("secret"))
        .json(&json!({
            "envelope_sender": "bounce@example.com",
            "content": {
                "subject": "Hi {{ name }}",
                "text_body": "Plain for {{ name }}",
                "html_body": "<b>HTML for {{ name }}</b>",
                "from": {"email": "news@example.com", "name": "News"},
                "headers": {"X-Tenant": "mytenant"},
            },
            "recipients": [{"email": "c@example.net", "name": "Cee"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out: InjectOutcome = r.json().await.unwrap();
    assert_eq!((out.success_count, out.fail_count), (1, 0));
    let got = s.backend.injected.lock().unwrap();
    let (req, auth) = &got[1];
    assert_eq!(auth, "admin");
    assert_eq!(
        req.auth,
        ironpost_admin::HttpAuth::Basic {
            user: "admin".into()
        }
    );
    assert_eq!(req.envelope_sender, "bounce@example.com");
    assert_eq!(req.messages[0].recipients, vec!["c@example.net"]);
    let m = String::from_utf8(req.messages[0].content.clone()).unwrap();
    assert!(m.starts_with(
        "From: News <news@example.com>\r\nTo: Cee <c@example.net>\r\nSubject: Hi Cee\r\nDate: "
    ));
    assert!(m.contains("\r\nMessage-ID: <"));
    assert!(m.contains("X-Tenant: mytenant\r\n"));
    assert!(m.contains("Content-Type: multipart/alternative;"));
    assert!(m.contains("Plain for Cee\r\n"));
    assert!(m.contains("<b>HTML for Cee</b>\r\n"));
}

#[tokio::test]
async fn injection_errors() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.1");
    let post = |body: String, ct: &'static str| {
        c.post(url(&s, false, "/api/inject/v1"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = post("{".into(), "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post("{}".into(), "text/plain").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = post(
        r#"{"envelope_sender":"s@example.com"}"#.into(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("recipients"));
    let r = post(
        json!({"envelope_sender": "nope", "content": "Subject: x\n\nx", "recipients": [{"email": "a@example.net"}]}).to_string(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("envelope_sender"));
    assert!(s.backend.injected.lock().unwrap().is_empty());
}

#[tokio::test]
async fn throttled_after_repeated_failures() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.2");
    for _ in 0..FAILURE_LIMIT {
        let r = c
            .get(url(&s, false, "/metrics"))
            .basic_auth("admin", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(s.hook_calls.load(Ordering::SeqCst), FAILURE_LIMIT);
    // Locked out: even the right password is not checked.
    let r = c
        .get(url(&s, false, "/metrics"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(s.hook_calls.load(Ordering::SeqCst), FAILURE_LIMIT);
    // The real user from another address is not locked out (an attacker
    // must not be able to lock the victim out), only slowed down...
    let started = std::time::Instant::now();
    let r = client("127.0.0.3")
        .get(url(&s, false, "/metrics"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // ...and another user from another address is not affected.
    let r = client("127.0.0.3")
        .get(url(&s, false, "/metrics"))
        .basic_auth("other", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Trusted hosts are unaffected.
    let r = client("127.0.0.1")
        .get(url(&s, false, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn parallel_guesses_do_not_beat_the_limit() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.2");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = c.clone();
        let u = url(&s, false, "/metrics");
        tasks.push(tokio::spawn(async move {
            c.get(u)
                .basic_auth("admin", Some(format!("guess{i}")))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(unauthorized, FAILURE_LIMIT, "{statuses:?}");
    assert_eq!(throttled, 20 - FAILURE_LIMIT);
    assert_eq!(s.hook_calls.load(Ordering::SeqCst), FAILURE_LIMIT);
}

#[tokio::test]
async fn admin_endpoints() {
    let s = start_with(cfg(&["127.0.0.1"], false));
    let c = client("127.0.0.1");
    let r = c
        .post(url(&s, false, "/api/admin/bounce/v1"))
        .json(&json!({"domain": "Example.COM", "reason": "purge"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"bounced": 2}));
    let b = s.backend.bounces.lock().unwrap()[0].clone();
    assert_eq!(b.domain.as_deref(), Some("example.com"));
    assert_eq!(b.requested_by, "127.0.0.1");
    // No scope, unknown field.
    let r = c
        .post(url(&s, false, "/api/admin/bounce/v1"))
        .json(&json!({"reason": "everything"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(url(&s, false, "/api/admin/bounce/v1"))
        .json(&json!({"domain": "x.example", "campaign": "c", "reason": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s.backend.bounces.lock().unwrap().len(), 1);

    let r = c
        .post(url(&s, false, "/api/admin/suspend/v1"))
        .json(&json!({"tenant": "mytenant", "reason": "maintenance", "duration": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let sreq = s.backend.suspends.lock().unwrap()[0].clone();
    assert_eq!(sreq.tenant.as_deref(), Some("mytenant"));
    assert_eq!(sreq.duration, Some(Duration::from_secs(3600)));

    let r = c
        .get(url(&s, false, "/api/admin/inspect-message/v1?id=0190aaaa"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["sender"], "s@example.com");
    let r = c
        .get(url(&s, false, "/api/admin/inspect-message/v1?id=0190bbbb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for bad in ["", "?id=", "?id=../etc", "?id=a%0Ab"] {
        let r = c
            .get(url(
                &s,
                false,
                &format!("/api/admin/inspect-message/v1{bad}"),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = c.get(url(&s, false, "/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(url(&s, false, "/api/inject/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn configured_certificate() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let key_pem = ck.key_pair.serialize_pem();
    let mut conf = cfg(&["127.0.0.1"], true);
    conf.tls_certificate = Some(serde_json::from_value(json!({"key_data": cert_pem})).unwrap());
    conf.tls_private_key = Some(serde_json::from_value(json!({"key_data": key_pem})).unwrap());
    let bound = bind(conf).unwrap();
    assert!(bound.describe().contains("https"));
    assert!(bound.describe().contains("certificate from"));
    let port = bound.local_addr().port();
    let backend: Arc<dyn AdminBackend> = Arc::new(Fake::default());
    let task = tokio::spawn(bound.serve(backend, hook(Arc::default())));
    let c = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    task.abort();
}

#[test]
fn bind_errors() {
    let mut c = cfg(&["127.0.0.1", "not-an-ip"], false);
    assert!(bind(c.clone())
        .err()
        .unwrap()
        .to_string()
        .contains("trusted_hosts"));
    c.trusted_hosts = vec!["127.0.0.1".into()];
    c.tls_certificate = Some(serde_json::from_value(json!("/nonexistent/cert.pem")).unwrap());
    c.tls_private_key = Some(serde_json::from_value(json!("/nonexistent/key.pem")).unwrap());
    c.use_tls = true;
    let e = bind(c).err().unwrap().to_string();
    assert!(e.contains("tls_certificate"), "{e}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = cfg(&["127.0.0.1"], false);
    c.listen = taken.local_addr().unwrap().to_string();
    assert!(bind(c).err().unwrap().to_string().contains("cannot bind"));
}
