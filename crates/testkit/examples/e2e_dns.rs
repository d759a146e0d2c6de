//! The loopback DNS server of `bench/e2e.sh`'s `authn` variant: the test
//! DNS server ([`TestDnsServer`]) answering for the benchmark's sender,
//! `bench@example.test` connecting from 127.0.0.1, so that
//! `mail_auth.check` finds
//!
//! - SPF: `example.test TXT "v=spf1 ip4:127.0.0.1 -all"` (pass),
//! - DMARC: `_dmarc.example.test TXT "v=DMARC1; p=none"` (pass, aligned
//!   through SPF),
//! - iprev: `1.0.0.127.in-addr.arpa PTR mta.example.test` and
//!   `mta.example.test A 127.0.0.1` (pass; a resolver that reads
//!   `/etc/hosts`, as Ironpost's does by default, may answer for 127.0.0.1
//!   from there first, `localhost`).
//!
//! smtp-source's messages carry no DKIM signature (`dkim=none`). Answers
//! have the test server's TTL (60 s). Listens on UDP and TCP on one free
//! port of 127.0.0.1, prints `127.0.0.1:PORT` on a line of its own, and
//! serves until SIGTERM or SIGINT.
//!
//!     cargo run --release -p ironpost-testkit --example e2e_dns

use ironpost_testkit::dns::{TestDnsServer, TestZone};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let zone = TestZone::new();
    zone.txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.test", "v=DMARC1; p=none")
        .ptr("1.0.0.127.in-addr.arpa", "mta.example.test")
        .ip("mta.example.test", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = TestDnsServer::start(zone).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.addr)?;
    out.flush()?;
    drop(out);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(server);
    Ok(())
}
