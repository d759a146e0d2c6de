//! An in-memory `StsDns`, the test domain, and testkit's HTTPS policy
//! server bound to it.

#![allow(dead_code)]

use ironpost_mta_sts::{StsDns, TxtError};
use ironpost_testkit::https::{HttpResponse, PolicyServer};
use ironpost_testkit::TestCa;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

pub const DOMAIN: &str = "example.test";
pub const POLICY_HOST: &str = "mta-sts.example.test";

pub fn enforce(mx: &str, max_age: u64) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: {max_age}\r\n")
}

/// testkit's HTTPS policy server on 127.0.0.1, with a certificate from a
/// test CA, answering one reply for [`POLICY_HOST`].
pub struct HttpsServer {
    pub port: u16,
    inner: PolicyServer,
}

impl HttpsServer {
    /// Serves a leaf of `ca` for `names`.
    pub async fn start(ca: &TestCa, names: &[&str], reply: HttpResponse) -> HttpsServer {
        let (cert, key) = ca.issue_server(names);
        let inner = PolicyServer::start(&cert, &key).await.unwrap();
        inner.set(POLICY_HOST, reply);
        HttpsServer {
            port: inner.addr.port(),
            inner,
        }
    }

    pub fn set_reply(&self, reply: HttpResponse) {
        self.inner.set(POLICY_HOST, reply);
    }

    /// Request paths received, in order (one per completed request).
    pub fn paths(&self) -> Vec<String> {
        self.inner.paths()
    }

    pub fn hits(&self) -> usize {
        self.inner.total_hits()
    }

    /// Stops listening: later connections are refused.
    pub fn stop(&self) {
        self.inner.stop();
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
