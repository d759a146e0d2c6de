//! Name server entries and resolver options as configured from the policy
//! (`kumo.dns.configure_resolver`): which transport a server is queried
//! over, the address queries come from, and how negative answers and the
//! hosts file are treated.
//!
//! A [`Tap`] stands between the resolver and the loopback test server: it
//! relays UDP and TCP on one port and records what it saw.

use ironpost_dns::{
    Dns, DnsConfig, DnsError, HostsFile, NameServer, ResolverTuning, ServerOrdering, Transport,
};
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Where the queries that reached a [`Tap`] came from.
#[derive(Default)]
struct Seen {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

/// A relay to `upstream` on a port of its own, UDP and TCP.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Tap {
    async fn start(upstream: SocketAddr) -> Tap {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                s.lock().unwrap().udp.push(peer);
                let out = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                out.send_to(&buf[..n], upstream).await.unwrap();
                let mut reply = vec![0u8; 65535];
                if let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_secs(2), out.recv(&mut reply)).await
                {
                    let _ = udp.send_to(&reply[..m], peer).await;
                }
            }
        });
        let s = seen.clone();
        let tcp_task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, peer)) = tcp.accept().await else {
                    continue;
                };
                s.lock().unwrap().tcp.push(peer);
                conns.spawn(async move {
                    let mut server = TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Tap {
            addr,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn udp(&self) -> Vec<SocketAddr> {
        self.seen.lock().unwrap().udp.clone()
    }

    fn tcp(&self) -> Vec<SocketAddr> {
        self.seen.lock().unwrap().tcp.clone()
    }
}

const SMALL: &str = "v=spf1 -all";

/// A TXT answer too big for a 1232-octet EDNS buffer.
fn big() -> String {
    "x".repeat(2000)
}

/// Between a 512-octet (no EDNS) and a 1232-octet (EDNS) buffer.
fn medium() -> String {
    "m".repeat(800)
}

async fn server() -> TestDnsServer {
    let zone = TestZone::new();
    zone.txt("small.test", SMALL)
        .txt("big.test", &big())
        .txt("medium.test", &medium())
        .ip("host.test", "192.0.2.7".parse().unwrap());
    TestDnsServer::start(zone).await.unwrap()
}

fn dns(servers: Vec<NameServer>, tuning: ResolverTuning) -> Dns {
    Dns::new(&DnsConfig {
        name_servers: servers,
        timeout: Some(Duration::from_millis(500)),
        attempts: Some(1),
        tuning,
        ..Default::default()
    })
    .unwrap()
}

fn with(addr: SocketAddr, transport: Transport) -> NameServer {
    NameServer {
        transport,
        ..NameServer::from(addr)
    }
}

#[tokio::test]
async fn tcp_only_name_server_is_queried_over_tcp() {
    let server = server().await;
    let tap = Tap::start(server.addr).await;
    let dns = dns(vec![with(tap.addr, Transport::Tcp)], Default::default());
    assert_eq!(dns.txt("small.test").await.unwrap(), [SMALL]);
    assert_eq!(dns.txt("big.test").await.unwrap(), [big()]);
    assert!(!tap.tcp().is_empty());
    assert!(tap.udp().is_empty(), "{:?}", tap.udp());
}

#[tokio::test]
async fn udp_only_name_server_never_uses_tcp() {
    let server = server().await;
    let tap = Tap::start(server.addr).await;
    let dns = dns(vec![with(tap.addr, Transport::Udp)], Default::default());
    assert_eq!(dns.txt("small.test").await.unwrap(), [SMALL]);
    assert!(!tap.udp().is_empty());
    // The truncated answer cannot be fetched again over TCP.
    let err = dns.txt("big.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Temporary(..)), "{err}");
    assert!(tap.tcp().is_empty(), "{:?}", tap.tcp());
}

/// KumoMTA's simple `'IP:PORT'` form: UDP, then TCP on the same server for
/// an answer that did not fit.
#[tokio::test]
async fn simple_form_is_udp_then_tcp() {
    let server = server().await;
    let tap = Tap::start(server.addr).await;
    let dns = dns(vec![NameServer::from(tap.addr)], Default::default());
    assert_eq!(dns.txt("small.test").await.unwrap(), [SMALL]);
    assert_eq!(tap.udp().len(), 1);
    assert!(tap.tcp().is_empty());
    assert_eq!(dns.txt("big.test").await.unwrap(), [big()]);
    assert_eq!(tap.udp().len(), 2);
    assert_eq!(tap.tcp().len(), 1);
}

/// Without EDNS the client's buffer is 512 octets, so an 800-octet answer
/// comes over TCP; with it (the default), over UDP.
#[tokio::test]
async fn edns0_sets_the_udp_buffer() {
    let server = server().await;
    let tap = Tap::start(server.addr).await;
    let on = dns(vec![NameServer::from(tap.addr)], Default::default());
    assert_eq!(on.txt("medium.test").await.unwrap(), [medium()]);
    assert!(tap.tcp().is_empty());
    let off = dns(
        vec![NameServer::from(tap.addr)],
        ResolverTuning {
            edns0: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(off.txt("medium.test").await.unwrap(), [medium()]);
    assert_eq!(tap.tcp().len(), 1);
}

/// Queries leave from `bind_addr`, over either transport.
#[tokio::test]
async fn bind_addr_is_the_source_address() {
    let server = server().await;
    let tap = Tap::start(server.addr).await;
    let source: SocketAddr = "127.0.0.2:0".parse().unwrap();
    for transport in [Transport::Udp, Transport::Tcp] {
        let dns = dns(
            vec![NameServer {
                bind_addr: Some(source),
                ..with(tap.addr, transport)
            }],
            Default::default(),
        );
        assert_eq!(dns.txt("small.test").await.unwrap(), [SMALL]);
    }
    let (udp, tcp) = (tap.udp(), tap.tcp());
    assert!(!udp.is_empty() && !tcp.is_empty());
    for peer in udp.iter().chain(&tcp) {
        assert_eq!(peer.ip(), source.ip(), "udp {udp:?} tcp {tcp:?}");
    }
}

/// An NXDOMAIN from a server whose negative answers are not trusted is
/// asked again of the next server.
#[tokio::test]
async fn untrusted_nxdomain_asks_the_next_server() {
    let empty = TestDnsServer::start(TestZone::new()).await.unwrap();
    let full = server().await;
    let ordered = || ResolverTuning {
        server_ordering: Some(ServerOrdering::UserProvidedOrder),
        num_concurrent_reqs: Some(1),
        ..Default::default()
    };
    let trusting = dns(
        vec![NameServer::from(empty.addr), NameServer::from(full.addr)],
        ordered(),
    );
    assert!(matches!(
        trusting.ips("host.test").await,
        Err(DnsError::NxDomain(_))
    ));
    let doubting = dns(
        vec![
            NameServer {
                trust_negative_responses: false,
                ..NameServer::from(empty.addr)
            },
            NameServer::from(full.addr),
        ],
        ordered(),
    );
    assert_eq!(
        doubting.ips("host.test").await.unwrap(),
        ["192.0.2.7".parse::<IpAddr>().unwrap()]
    );
}

/// A name /etc/hosts gives (other than localhost, which the resolver
/// answers itself), with its first IPv4 address.
fn hosts_entry() -> Option<(String, IpAddr)> {
    let text = std::fs::read_to_string("/etc/hosts").ok()?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            let name = words.find(|n| !n.eq_ignore_ascii_case("localhost") && !n.contains(':'))?;
            ip.is_ipv4().then(|| (name.to_ascii_lowercase(), ip))
        })
        .next()
}

/// `use_hosts_file = 'Never'` leaves /etc/hosts out; the default (`Auto`,
/// as in KumoMTA) and `Always` read it.
#[tokio::test]
async fn use_hosts_file() {
    let Some((name, ip)) = hosts_entry() else {
        eprintln!("no usable /etc/hosts entry; skipped");
        return;
    };
    let server = TestDnsServer::start(TestZone::new()).await.unwrap();
    let tuned = |h| ResolverTuning {
        use_hosts_file: h,
        ..Default::default()
    };
    let never = dns(
        vec![NameServer::from(server.addr)],
        tuned(Some(HostsFile::Never)),
    );
    assert!(
        matches!(never.ips(&name).await, Err(DnsError::NxDomain(_))),
        "{name}"
    );
    for h in [None, Some(HostsFile::Auto), Some(HostsFile::Always)] {
        let d = dns(vec![NameServer::from(server.addr)], tuned(h));
        assert!(d.ips(&name).await.unwrap().contains(&ip), "{h:?} {name}");
    }
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    for (cfg, needle) in [
        (
            DnsConfig {
                name_servers: vec!["127.0.0.1:53".parse::<SocketAddr>().unwrap().into()],
                domain: Some("a..b".into()),
                ..Default::default()
            },
            "domain",
        ),
        (
            DnsConfig {
                name_servers: vec!["127.0.0.1:53".parse::<SocketAddr>().unwrap().into()],
                tuning: ResolverTuning {
                    // hickory's own upper bound is a day.
                    positive_min_ttl: Some(Duration::from_secs(2 * 86400)),
                    ..Default::default()
                },
                ..Default::default()
            },
            "positive_min_ttl",
        ),
    ] {
        let Err(DnsError::Config(msg)) = Dns::new(&cfg) else {
            panic!("{needle} accepted")
        };
        assert!(msg.contains(needle), "{msg}");
    }
}
