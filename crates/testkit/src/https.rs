//! A scriptable HTTPS server on loopback for MTA-STS tests: it answers
//! `GET /.well-known/mta-sts.txt` per `Host` header with whatever response
//! the test set for that host (404 otherwise), and records the requests it
//! got.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One canned response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send `Content-Length` (otherwise the body ends at close).
    pub content_length: bool,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl HttpResponse {
    /// 200 with `Content-Type: text/plain` and `body`.
    pub fn policy(body: &str) -> HttpResponse {
        HttpResponse {
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            ..HttpResponse::status(200)
        }
    }

    pub fn status(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: vec![],
            content_length: true,
            delay: Duration::ZERO,
        }
    }

    pub fn redirect(location: &str) -> HttpResponse {
        HttpResponse {
            headers: vec![("Location".into(), location.into())],
            ..HttpResponse::status(301)
        }
    }
}

#[derive(Default)]
struct State {
    responses: HashMap<String, HttpResponse>,
    /// (host, path) of every request, in order.
    requests: Vec<(String, String)>,
}

/// A running server; stops when dropped.
pub struct PolicyServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyServer {
    /// Serve with the certificate chain and key (PEM) on 127.0.0.1.
    pub async fn start(cert_pem: &str, key_pem: &str) -> std::io::Result<PolicyServer> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("")
                        .to_string();
                    let host = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
                        })
                        .unwrap_or_default();
                    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
                    let resp = {
                        let mut s = st.lock().unwrap();
                        s.requests.push((host.clone(), path.clone()));
                        s.responses.get(&host).cloned()
                    };
                    let resp = match resp {
                        Some(r) if path == "/.well-known/mta-sts.txt" => r,
                        _ => HttpResponse::status(404),
                    };
                    tokio::time::sleep(resp.delay).await;
                    let mut out = format!("HTTP/1.1 {} X\r\n", resp.status);
                    for (k, v) in &resp.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    if resp.content_length {
                        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
                    }
                    out.push_str("Connection: close\r\n\r\n");
                    let _ = tls.write_all(out.as_bytes()).await;
                    let _ = tls.write_all(&resp.body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(PolicyServer { addr, state, task })
    }

    /// What to answer for requests to `host` (e.g. "mta-sts.example.test").
    pub fn set(&self, host: &str, response: HttpResponse) {
        self.state
            .lock()
            .unwrap()
            .responses
            .insert(host.to_ascii_lowercase(), response);
    }

    /// Requests made to `host`, any path.
    pub fn hits(&self, host: &str) -> usize {
        let host = host.to_ascii_lowercase();
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(h, _)| *h == host)
            .count()
    }

    /// Requests to `path` on any host.
    pub fn hits_path(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(_, p)| p == path)
            .count()
    }

    /// Requests to any host and path.
    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// The path of every request, in order.
    pub fn paths(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.requests.iter().map(|(_, p)| p.clone()).collect()
    }

    /// Stops listening: later connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
