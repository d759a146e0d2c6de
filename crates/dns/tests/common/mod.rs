//! Shared by the DNSSEC suites: a trust-anchor file and a resolver pointed
//! at the loopback test server.
#![allow(dead_code)]

use ironpost_dns::{Dns, DnsConfig};
use ironpost_testkit::dns::TestDnsServer;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub fn anchor_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

pub fn resolver(server: &TestDnsServer, validate: bool, anchors: Option<&Path>) -> Dns {
    Dns::new(&DnsConfig {
        name_servers: vec![server.addr.into()],
        timeout: Some(Duration::from_secs(2)),
        attempts: Some(1),
        validate,
        trust_anchor_file: anchors.map(Path::to_path_buf),
        ..Default::default()
    })
    .unwrap()
}
