//! A small authoritative DNS server on loopback for tests: answers from a
//! zone held in memory over UDP, NXDOMAIN for unknown names, NODATA for known
//! names without the asked type, and SERVFAIL for names marked broken.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    names: HashSet<String>,
    servfail: HashSet<String>,
}

#[derive(Clone, Default)]
pub struct TestZone(Arc<Mutex<Zone>>);

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl TestZone {
    pub fn new() -> TestZone {
        TestZone::default()
    }

    fn add(&self, name: &str, t: RecordType, data: RData) -> &Self {
        let mut z = self.0.lock().unwrap();
        z.names.insert(key(name));
        z.records.entry((key(name), t)).or_default().push(data);
        self
    }

    pub fn mx(&self, domain: &str, preference: u16, exchange: &str) -> &Self {
        let ex =
            Name::from_str(&format!("{}.", exchange.trim_end_matches('.'))).expect("valid name");
        self.add(domain, RecordType::MX, RData::MX(MX::new(preference, ex)))
    }

    /// RFC 7505 null MX.
    pub fn null_mx(&self, domain: &str) -> &Self {
        self.add(domain, RecordType::MX, RData::MX(MX::new(0, Name::root())))
    }

    pub fn ip(&self, host: &str, ip: IpAddr) -> &Self {
        match ip {
            IpAddr::V4(v4) => self.add(host, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(host, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    pub fn txt(&self, name: &str, text: &str) -> &Self {
        self.add(
            name,
            RecordType::TXT,
            RData::TXT(TXT::new(vec![text.to_string()])),
        )
    }

    /// The name exists but has no records (answers NODATA).
    pub fn exists(&self, name: &str) -> &Self {
        self.0.lock().unwrap().names.insert(key(name));
        self
    }

    pub fn servfail(&self, name: &str) -> &Self {
        self.0.lock().unwrap().servfail.insert(key(name));
        self
    }

    fn answer(&self, query: &Message) -> Message {
        let mut resp = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = query.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        let Some(q) = query.queries.first() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        resp.add_query(q.clone());
        let name = key(&q.name().to_ascii());
        let z = self.0.lock().unwrap();
        if z.servfail.contains(&name) {
            resp.metadata.response_code = ResponseCode::ServFail;
        } else if let Some(rdatas) = z.records.get(&(name.clone(), q.query_type())) {
            for rd in rdatas {
                resp.add_answer(Record::from_rdata(q.name().clone(), 60, rd.clone()));
            }
        } else if !z.names.contains(&name) {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        resp
    }
}

/// A running server; stops when dropped.
pub struct TestDnsServer {
    pub addr: SocketAddr,
    pub zone: TestZone,
    task: tokio::task::JoinHandle<()>,
}

impl TestDnsServer {
    pub async fn start(zone: TestZone) -> std::io::Result<TestDnsServer> {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = sock.local_addr()?;
        let z = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Ok(bytes) = z.answer(&query).to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        Ok(TestDnsServer { addr, zone, task })
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
