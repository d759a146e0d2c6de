//! Delivery to real, independent peers on loopback: a second Ironpost
//! instance (found through MX records in the test DNS, over validated TLS)
//! and Postfix's `smtp-sink`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::DaemonOptions;

const WAIT: Duration = Duration::from_secs(15);

/// A receiving Ironpost: certificate from the test CA for `mx.peer.test`,
/// relays for loopback, keeps what it accepts (its own onward delivery
/// targets a prohibited address and just waits).
fn peer_policy(cert: &Path, key: &Path) -> String {
    format!(
        r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs', headers = {{ 'Message-ID' }} }}
  kumo.start_esmtp_listener {{
    listen = '127.0.0.1:0',
    hostname = 'mx.peer.test',
    relay_hosts = {{ '127.0.0.1' }},
    tls_certificate = '{}',
    tls_private_key = '{}',
  }}
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1h',
    protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:9' }} }} }},
  }}
end)
"#,
        cert.display(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_a_second_ironpost_over_validated_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.valid(&["mx.peer.test"]);
    let cert = pki.write("peer-cert.pem", &cert);
    let key = pki.write("peer-key.pem", &key);
    let peer = start_daemon(DaemonOptions::new(BIN).policy(peer_policy(&cert, &key)));

    let zone = TestZone::new();
    zone.mx("peer.test", 10, "mx.peer.test")
        .ip("mx.peer.test", LOCALHOST);
    let dns = start_dns(zone).await;
    let sender = Policy::new(dns.addr)
        .route(
            "peer.test",
            queue("1h"),
            pki.egress(&format!(
                "enable_tls = 'Required', smtp_port = {}",
                peer.smtp_addr().port()
            )),
        )
        .start();

    let id = inject(&sender, "alice@sender.test", &["bob@peer.test"], "to-peer").await;
    let rec = wait_kind(&sender, "Delivery", &id, WAIT).await;
    assert_eq!(rec["peer_address"]["name"], "mx.peer.test", "{rec}");
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.1", "{rec}");
    assert_eq!(rec["response"]["code"], 250, "{rec}");
    assert_eq!(rec["num_attempts"], 1, "{rec}");
    assert_eq!(rec["tls_validated"], true, "{rec}");
    assert!(rec["tls_protocol_version"].is_string(), "{rec}");
    assert!(rec["tls_cipher"].is_string(), "{rec}");
    assert_eq!(rec["sender"], "alice@sender.test");
    assert!(has_rcpt(&rec, "bob@peer.test"), "{rec}");
    assert!(records_for(&sender, "TransientFailure", &id).is_empty());

    // The peer's side: one Reception over TLS from the sender's EHLO name,
    // whose id is the one in the reply the sender logged.
    let content = rec["response"]["content"].as_str().unwrap().to_string();
    let peer_id = content
        .strip_prefix("2.0.0 OK id=")
        .unwrap_or_else(|| panic!("reply from the peer: {content:?}"));
    let got = wait_kind(&peer, "Reception", peer_id, WAIT).await;
    assert_eq!(got["sender"], "alice@sender.test", "{got}");
    assert!(has_rcpt(&got, "bob@peer.test"), "{got}");
    assert_eq!(got["peer_address"]["name"], SENDER_HOST, "{got}");
    assert_eq!(got["reception_protocol"], "ESMTPS", "{got}");
    assert_eq!(got["tls_protocol_version"], rec["tls_protocol_version"]);
    assert_eq!(
        got["headers"]["Message-ID"], "<to-peer@client.test>",
        "{got}"
    );
    let receptions = records_of(&peer, "Reception");
    assert_eq!(receptions.len(), 1, "exactly one copy: {receptions:?}");

    // And the sender no longer holds it: nothing more happens to it.
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(records_for(&sender, "Delivery", &id).len(), 1);
    assert_eq!(records_of(&peer, "Reception").len(), 1);
}

fn smtp_sink_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ]) {
        let p = Path::new(dir).join("smtp-sink");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "Postfix's smtp-sink is not installed (scripts/test-all.sh installs the postfix package)"
    );
}

/// Postfix smtp-sink on loopback, dumping every transaction to a file.
struct PostfixSink {
    child: Child,
    addr: SocketAddr,
    dump: PathBuf,
    _dir: tempfile::TempDir,
}

impl PostfixSink {
    fn start() -> PostfixSink {
        let dir = tempfile::tempdir().expect("tempdir");
        // smtp-sink writes the dump as the unprivileged user it switches to.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let dump = dir.path().join("dump");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(smtp_sink_binary());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .args(["-h", "sink.postfix.test", "-D"])
            .arg(&dump)
            .arg(addr.to_string())
            .arg("10")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PostfixSink {
            child,
            addr,
            dump,
            _dir: dir,
        }
    }

    fn dumped(&self) -> String {
        std::fs::read(&self.dump)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_postfix_smtp_sink() {
    let pki = Pki::new();
    let sink = PostfixSink::start();
    let dns = start_dns(TestZone::new()).await;
    let target = sink.addr.to_string();
    let sender = Policy::new(dns.addr)
        .route("postfix.test", queue_to(&[&target]), pki.egress(""))
        .start();

    // A body line starting with a dot checks dot-stuffing against a peer
    // we did not write.
    let id = inject(
        &sender,
        "alice@sender.test",
        &["one@postfix.test", "two@postfix.test"],
        "to-postfix",
    )
    .await;
    let rec = wait_kind(&sender, "Delivery", &id, WAIT).await;
    assert_eq!(rec["peer_address"]["addr"], "127.0.0.1", "{rec}");
    assert_eq!(rec["peer_address"]["name"], "127.0.0.1", "{rec}");
    assert_eq!(rec["response"]["code"], 250, "{rec}");
    assert_eq!(rec["num_attempts"], 1, "{rec}");
    assert_eq!(rec["site"], target.as_str(), "{rec}");
    assert!(has_rcpt(&rec, "one@postfix.test") && has_rcpt(&rec, "two@postfix.test"));
    // smtp-sink offers no STARTTLS: Opportunistic delivers in clear.
    assert!(rec.get("tls_protocol_version").is_none(), "{rec}");

    let deadline = Instant::now() + WAIT;
    while !sink.dumped().contains("<to-postfix@client.test>") {
        assert!(
            Instant::now() < deadline,
            "smtp-sink never dumped the message"
        );
        sleep(Duration::from_millis(50)).await;
    }
    sleep(Duration::from_millis(1000)).await;
    let dumped = sink.dumped();
    assert_eq!(
        dumped
            .matches("Message-ID: <to-postfix@client.test>")
            .count(),
        1,
        "one transaction: {dumped}"
    );
    assert!(
        dumped.contains("X-Mail-Args: <alice@sender.test>"),
        "{dumped}"
    );
    assert!(
        dumped.contains("X-Rcpt-Args: <one@postfix.test>"),
        "{dumped}"
    );
    assert!(
        dumped.contains("X-Rcpt-Args: <two@postfix.test>"),
        "{dumped}"
    );
    assert!(
        dumped.contains(&format!("X-Helo-Args: {SENDER_HOST}")),
        "{dumped}"
    );
    assert!(dumped.contains(&spool_id_marker(&id)), "{dumped}");
    assert!(dumped.contains("This is to-postfix."), "{dumped}");
    assert!(dumped.contains("\n.leading dot line"), "{dumped}");
    assert!(!dumped.contains("..leading"), "{dumped}");
    assert_eq!(records_for(&sender, "Delivery", &id).len(), 1);
}
