//! post_https against a loopback HTTPS server (a tiny HTTP/1.1 one here:
//! testkit's PolicyServer does not keep request bodies).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironpost_testkit::pki::TestCa;
use ironpost_testkit::tls::{client_config, TlsTrust};
use ironpost_tls_report::{gzip, post_https, Error, CONTENT_TYPE_GZIP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every request with `status` (and `extra` headers), recording
/// it. The certificate is for 127.0.0.1, from `ca`.
async fn serve(ca: &TestCa, status: u16, extra: &'static str, reply_body: &'static str) -> Server {
    let acceptor = TlsAcceptor::from(ca.server_config(&["127.0.0.1"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let path = first.next().unwrap_or("").to_string();
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end..].to_vec();
                while body.len() < len {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock().unwrap().push(Request {
                    method,
                    path,
                    headers,
                    body,
                });
                let out = format!(
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{reply_body}",
                    reply_body.len()
                );
                let _ = tls.write_all(out.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        addr,
        requests,
        task,
    }
}

fn trust(ca: &TestCa) -> rustls::ClientConfig {
    client_config(&TlsTrust::CaPem(ca.cert_pem.as_bytes().to_vec()), None)
        .unwrap()
        .as_ref()
        .clone()
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn posts_the_report() {
    let ca = TestCa::new("tls-report test CA");
    let server = serve(&ca, 200, "", "").await;
    let body = gzip(br#"{"report-id":"x"}"#);
    let url = format!("https://127.0.0.1:{}/v1/tlsrpt", server.addr.port());
    post_https(&url, body.clone(), Some(&trust(&ca)), TIMEOUT)
        .await
        .unwrap();
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/tlsrpt");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some(CONTENT_TYPE_GZIP)
    );
    assert_eq!(r.headers.get("content-encoding"), None);
    assert_eq!(r.body, body);
}

#[tokio::test]
async fn any_2xx_is_success() {
    let ca = TestCa::new("tls-report test CA");
    let server = serve(&ca, 202, "", "").await;
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    post_https(&url, gzip(b"{}"), Some(&trust(&ca)), TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_name_the_status_and_redirects_are_not_followed() {
    let ca = TestCa::new("tls-report test CA");
    let server = serve(&ca, 503, "", "try later").await;
    let url = format!("https://127.0.0.1:{}/r", server.addr.port());
    match post_https(&url, gzip(b"{}"), Some(&trust(&ca)), TIMEOUT).await {
        Err(e @ Error::HttpStatus { status: 503, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("503") && msg.contains("try later"), "{msg}");
        }
        other => panic!("{other:?}"),
    }

    let redirect = serve(&ca, 301, "Location: https://127.0.0.1:1/elsewhere\r\n", "").await;
    let url = format!("https://127.0.0.1:{}/r", redirect.addr.port());
    match post_https(&url, gzip(b"{}"), Some(&trust(&ca)), TIMEOUT).await {
        Err(Error::HttpStatus { status: 301, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(redirect.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn untrusted_server_and_plain_http_fail() {
    let ca = TestCa::new("tls-report test CA");
    let other = TestCa::new("someone else");
    let server = serve(&ca, 200, "", "").await;
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    match post_https(&url, gzip(b"{}"), Some(&trust(&other)), TIMEOUT).await {
        Err(Error::Http { reason, .. }) => {
            assert!(
                reason.to_ascii_lowercase().contains("certificate"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(server.requests.lock().unwrap().is_empty());

    let url = format!("http://127.0.0.1:{}/", server.addr.port());
    assert!(matches!(
        post_https(&url, gzip(b"{}"), Some(&trust(&ca)), TIMEOUT).await,
        Err(Error::Http { .. })
    ));
}
