//! What the authn tests share: an authenticator resolving through the
//! loopback DNS server, and the Python judges.

#![allow(dead_code)]

use ironpost_authn::{Authenticator, Limits};
use ironpost_dns::{Dns, DnsConfig};
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The loopback DNS server for `zone` and an authenticator using it.
pub async fn authenticator(zone: TestZone, limits: Limits) -> (TestDnsServer, Authenticator) {
    let server = TestDnsServer::start(zone).await.unwrap();
    let dns = Dns::new(&DnsConfig {
        name_servers: vec![server.addr.into()],
        timeout: Some(Duration::from_secs(2)),
        attempts: Some(1),
        ..Default::default()
    })
    .unwrap();
    (server, Authenticator::new(&dns, limits))
}

pub fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(20),
        cache_entries: 1000,
    }
}

/// The interpreter the tests use: `IRONPOST_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("IRONPOST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Exit status a script uses to say a module is missing.
const MISSING_MODULE: i32 = 3;

/// Runs `script` (`python -c`) with `args` and `stdin`; returns stdout.
/// Fails the test, saying what to install, when a module is missing
/// (scripts exit with [`MISSING_MODULE`] and name it on stderr).
pub fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let py = python();
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run Python interpreter {py:?} ({e}); set IRONPOST_PYTHON to one")
        });
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(MISSING_MODULE) {
        panic!(
            "Python module {m} is not installed for {py:?}: install it \
             (`{py} -m pip install {m}`) or point IRONPOST_PYTHON at an \
             interpreter that has it",
            m = stderr.trim()
        );
    }
    assert!(
        out.status.success(),
        "{py} failed ({}):\n{stderr}",
        out.status
    );
    out.stdout
}

/// A Python prologue importing `modules` (pip names after `:`), exiting
/// with [`MISSING_MODULE`] when one is missing.
pub fn imports(modules: &[(&str, &str)]) -> String {
    let mut s = String::from("import sys\n");
    for (module, pip) in modules {
        s.push_str(&format!(
            "try:\n    import {module}\nexcept ImportError:\n    sys.stderr.write('{pip}')\n    sys.exit({MISSING_MODULE})\n"
        ));
    }
    s
}

/// A "name server" on loopback that reads queries and never answers, and
/// an authenticator using it with `timeout` as its time limit.
pub async fn silent_authenticator(timeout: Duration) -> (tokio::net::UdpSocket, Authenticator) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = Dns::new(&DnsConfig {
        name_servers: vec![sock.local_addr().unwrap().into()],
        timeout: Some(Duration::from_secs(5)),
        attempts: Some(1),
        ..Default::default()
    })
    .unwrap();
    let limits = Limits {
        timeout,
        cache_entries: 100,
    };
    (sock, Authenticator::new(&dns, limits))
}
