//! The blocking client the CLI uses, against a real listener running on
//! its own runtime thread.

use ironpost_admin::auth::BoxFuture;
use ironpost_admin::client::{AdminClient, ClientError, ClientOptions};
use ironpost_admin::{
    bind, AdminBackend, BasicAuthHook, BounceRequest, HttpListenerConfig, InjectOutcome,
    InjectRequest, SuspendRequest,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Fake {
    log: Mutex<Vec<String>>,
}

impl AdminBackend for Fake {
    fn inject(&self, r: InjectRequest, auth: String) -> BoxFuture<Result<InjectOutcome, String>> {
        self.log
            .lock()
            .unwrap()
            .push(format!("inject {} by {auth}", r.envelope_sender));
        let n = r.messages.iter().map(|m| m.recipients.len()).sum();
        Box::pin(async move {
            Ok(InjectOutcome {
                success_count: n,
                ..Default::default()
            })
        })
    }
    fn metrics(&self) -> BoxFuture<String> {
        Box::pin(async { "ironpost_connections_total 0\n".to_string() })
    }
    fn queue_summary(&self) -> BoxFuture<Value> {
        Box::pin(async { json!({"queues": []}) })
    }
    fn bounce(&self, r: BounceRequest) -> BoxFuture<Result<Value, String>> {
        self.log.lock().unwrap().push(format!(
            "bounce {:?} {:?} {} by {}",
            r.domain, r.tenant, r.reason, r.requested_by
        ));
        Box::pin(async { Ok(json!({"bounced": 1})) })
    }
    fn suspend(&self, r: SuspendRequest) -> BoxFuture<Result<Value, String>> {
        self.log.lock().unwrap().push(format!(
            "suspend {:?} {:?} by {}",
            r.domain, r.duration, r.requested_by
        ));
        Box::pin(async { Ok(json!({"suspended": true})) })
    }
    fn suspensions(&self) -> BoxFuture<Value> {
        Box::pin(async { json!([{ "id": 1, "domain": "d.example" }]) })
    }
    fn cancel_suspension(&self, id: u64) -> BoxFuture<Result<bool, String>> {
        Box::pin(async move { Ok(id == 1) })
    }
    fn inspect(&self, id: String) -> BoxFuture<Result<Option<Value>, String>> {
        Box::pin(async move { Ok((id == "abc").then(|| json!({"id": id}))) })
    }
}

fn hook() -> BasicAuthHook {
    Arc::new(|u: String, p: String| {
        Box::pin(async move { Ok(u == "admin" && p == "secret") }) as BoxFuture<_>
    })
}

/// Start a listener on its own runtime thread.
fn start(cfg: HttpListenerConfig) -> (SocketAddr, Arc<Fake>) {
    let bound = bind(cfg).unwrap();
    let addr = bound.local_addr();
    let fake = Arc::new(Fake::default());
    let backend: Arc<dyn AdminBackend> = fake.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(bound.serve(backend, hook()))
            .unwrap();
    });
    (addr, fake)
}

fn cfg(trusted: &[&str], tls: bool) -> HttpListenerConfig {
    HttpListenerConfig {
        listen: "127.0.0.1:0".into(),
        use_tls: tls,
        trusted_hosts: trusted.iter().map(|s| s.to_string()).collect(),
        ..HttpListenerConfig::default()
    }
}

fn opts(endpoint: String, creds: Option<(&str, &str)>) -> ClientOptions {
    ClientOptions {
        endpoint,
        user: creds.map(|c| c.0.to_string()),
        password: creds.map(|c| c.1.to_string()),
        timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

#[test]
fn trusted_client_runs_every_command() {
    let (addr, fake) = start(cfg(&["127.0.0.1"], false));
    let c = AdminClient::new(opts(format!("http://{addr}"), None)).unwrap();
    c.liveness().unwrap();
    assert!(c.metrics().unwrap().contains("ironpost_connections_total"));
    assert_eq!(c.queue_summary().unwrap(), json!({"queues": []}));
    assert_eq!(
        c.bounce(Some("example.com"), None, "purge").unwrap(),
        json!({"bounced": 1})
    );
    assert_eq!(
        c.suspend(&[("domain", "example.com")], "maintenance", Some("1h"))
            .unwrap(),
        json!({"suspended": true})
    );
    assert_eq!(c.inspect("abc").unwrap(), Some(json!({"id": "abc"})));
    assert_eq!(c.inspect("abd").unwrap(), None);
    let out = c
        .inject(&json!({
            "envelope_sender": "s@example.com",
            "content": "Subject: x\n\ny",
            "recipients": [{"email": "a@example.net"}],
        }))
        .unwrap();
    assert_eq!(out.success_count, 1);
    // Server-side validation comes back as the error.
    match c.bounce(None, None, "everything") {
        Err(ClientError::Status { status: 400, body }) => assert!(body.contains("domain")),
        other => panic!("{other:?}"),
    }
    match c.suspend(&[("domain", "example.com")], "r", Some("soon")) {
        Err(ClientError::Status { status: 422, body }) => {
            assert!(body.contains("duration"), "{body}")
        }
        other => panic!("{other:?}"),
    }
    let log = fake.log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "bounce Some(\"example.com\") None purge by 127.0.0.1",
            "suspend Some(\"example.com\") Some(3600s) by 127.0.0.1",
            "inject s@example.com by 127.0.0.1",
        ]
    );
}

#[test]
fn untrusted_client_needs_credentials() {
    // Nothing on loopback is trusted; the client (127.0.0.1) is loopback,
    // so Basic over plain HTTP is allowed.
    let (addr, fake) = start(cfg(&["192.0.2.1"], false));
    let c = AdminClient::new(opts(format!("http://{addr}"), None)).unwrap();
    c.liveness().unwrap();
    match c.queue_summary() {
        Err(ClientError::Status { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    let c = AdminClient::new(opts(format!("http://{addr}"), Some(("admin", "nope")))).unwrap();
    match c.bounce(Some("example.com"), None, "r") {
        Err(ClientError::Status { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    let c = AdminClient::new(opts(format!("http://{addr}"), Some(("admin", "secret")))).unwrap();
    c.bounce(Some("example.com"), None, "r").unwrap();
    assert_eq!(
        fake.log.lock().unwrap().clone(),
        vec!["bounce Some(\"example.com\") None r by admin"]
    );
}

#[test]
fn https_with_ca_file_or_insecure() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let mut conf = cfg(&["192.0.2.1"], true);
    conf.tls_certificate =
        Some(serde_json::from_value(json!({"key_data": ck.cert.pem()})).unwrap());
    conf.tls_private_key =
        Some(serde_json::from_value(json!({"key_data": ck.key_pair.serialize_pem()})).unwrap());
    let (addr, _fake) = start(conf);
    let endpoint = format!("https://localhost:{}", addr.port());
    // Unknown CA: refused.
    let c = AdminClient::new(opts(endpoint.clone(), Some(("admin", "secret")))).unwrap();
    assert!(matches!(c.liveness(), Err(ClientError::Transport { .. })));
    // With the CA file.
    let mut o = opts(endpoint.clone(), Some(("admin", "secret")));
    o.ca_file = Some(ca);
    let c = AdminClient::new(o).unwrap();
    assert_eq!(c.queue_summary().unwrap(), json!({"queues": []}));
    // Insecure.
    let mut o = opts(endpoint, Some(("admin", "secret")));
    o.insecure = true;
    AdminClient::new(o).unwrap().queue_summary().unwrap();
}
