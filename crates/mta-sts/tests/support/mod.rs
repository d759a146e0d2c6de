//! A scripted HTTPS server on 127.0.0.1, a throwaway PKI and an
//! in-memory `StsDns`.

#![allow(dead_code)]

use ironpost_mta_sts::{StsDns, TxtError};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "example.test";
pub const POLICY_HOST: &str = "mta-sts.example.test";

pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    pub fn pem(&self) -> Vec<u8> {
        self.cert.pem().into_bytes()
    }

    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        Arc::new(config)
    }
}

/// What the server answers to every request.
#[derive(Clone)]
pub struct Reply {
    pub status: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send `Content-Length` (otherwise the body ends at close).
    pub content_length: bool,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn policy(text: &str) -> Reply {
        Reply {
            status: "200 OK".into(),
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
            content_length: true,
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: &str) -> Reply {
        Reply {
            status: status.into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"nope\n".to_vec(),
            content_length: true,
            delay: Duration::ZERO,
        }
    }
}

pub fn enforce(mx: &str, max_age: u64) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: {max_age}\r\n")
}

pub struct HttpsServer {
    pub port: u16,
    reply: Arc<Mutex<Reply>>,
    paths: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    pub async fn start(tls: Arc<ServerConfig>, reply: Reply) -> HttpsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(Mutex::new(reply));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (r, p) = (reply.clone(), paths.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, r, p) = (acceptor.clone(), r.clone(), p.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if buf.len() > 16 * 1024 {
                            return;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    p.lock().unwrap().push(path);
                    let reply = r.lock().unwrap().clone();
                    tokio::time::sleep(reply.delay).await;
                    let mut out = format!("HTTP/1.1 {}\r\nConnection: close\r\n", reply.status);
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    if reply.content_length {
                        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
                    }
                    out.push_str("\r\n");
                    let mut bytes = out.into_bytes();
                    bytes.extend_from_slice(&reply.body);
                    let _ = tls.write_all(&bytes).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsServer {
            port,
            reply,
            paths,
            task,
        }
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Request paths received, in order (one per completed request).
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.paths.lock().unwrap().len()
    }

    /// Stops listening: later connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Scripted TXT answers; every host resolves to 127.0.0.1.
#[derive(Default)]
pub struct FakeDns {
    txt: Mutex<HashMap<String, Result<Vec<String>, TxtError>>>,
    pub ip_lookups: Mutex<Vec<String>>,
}

impl FakeDns {
    pub fn set_txt(&self, name: &str, answer: Result<Vec<String>, TxtError>) {
        self.txt.lock().unwrap().insert(name.to_string(), answer);
    }

    /// `_mta-sts.example.test` → one STSv1 record with this id.
    pub fn set_id(&self, id: &str) {
        self.set_txt(
            &format!("_mta-sts.{DOMAIN}"),
            Ok(vec![format!("v=STSv1; id={id}")]),
        );
    }
}

impl StsDns for FakeDns {
    async fn txt(&self, name: &str) -> Result<Vec<String>, TxtError> {
        self.txt
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or(Err(TxtError::NotFound))
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.ip_lookups.lock().unwrap().push(host.to_string());
        Ok(vec!["127.0.0.1".parse().unwrap()])
    }
}
