//! traffic-gen end to end on loopback: against its own sink (plain, with
//! STARTTLS required, with certificate verification), and against the
//! testkit's scripted sink for AUTH, refusals and servers without
//! PIPELINING. No test asserts anything about time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironpost_loadgen::report::Report;
use ironpost_loadgen::sink::{Sink, SinkConfig, SinkCounters};
use ironpost_loadgen::{numbered_domains, Addressing, ClientTls, GenConfig, Progress};
use ironpost_testkit::sink::{
    Rule, Sink as TestSink, SinkAuth, SinkConfig as TestSinkConfig, SinkTls, Stage,
};
use ironpost_testkit::TestCa;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const LOOPBACK: &str = "127.0.0.1:0";

struct Running {
    addr: SocketAddr,
    counters: Arc<SinkCounters>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<u64>,
}

impl Running {
    /// Stops the sink; what `serve` returned.
    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

async fn start_sink(cfg: SinkConfig) -> Running {
    let sink = Sink::bind(SinkConfig {
        listen: LOOPBACK.parse().unwrap(),
        ..cfg
    })
    .await
    .unwrap();
    let addr = sink.local_addr();
    let counters = sink.counters();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        sink.serve(async {
            let _ = stopped.await;
        })
        .await
        .unwrap()
    });
    Running {
        addr,
        counters,
        stop,
        task,
    }
}

fn config(target: SocketAddr, messages: u64, concurrency: usize) -> GenConfig {
    GenConfig {
        target: target.to_string(),
        concurrency,
        messages: Some(messages),
        size: 2000,
        timeout: Duration::from_secs(20),
        progress: Progress::Never,
        ..GenConfig::default()
    }
}

async fn run(cfg: GenConfig) -> Report {
    ironpost_loadgen::run(cfg, std::future::pending())
        .await
        .unwrap()
}

fn phase<'a>(r: &'a Report, name: &str) -> &'a ironpost_loadgen::report::PhaseReport {
    r.phases.iter().find(|p| p.phase == name).unwrap()
}

fn errors(r: &Report) -> Vec<(String, &'static str, u64)> {
    r.errors
        .iter()
        .map(|e| (e.error.clone(), e.phase, e.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_counts_match_exactly() {
    let sink = start_sink(SinkConfig::default()).await;
    let report = run(GenConfig {
        messages_per_connection: Some(10),
        addressing: Addressing {
            recipient_domains: numbered_domains(5),
            ..Addressing::default()
        },
        ..config(sink.addr, 200, 4)
    })
    .await;
    assert_eq!(report.sent, 200, "{}", report.to_table());
    assert_eq!(report.accepted, 200, "{}", report.to_table());
    assert_eq!(report.failed, 0);
    assert!(report.errors.is_empty());
    // Ten messages per connection: at least 20 connections (a worker's
    // last one may carry fewer when the budget runs out).
    assert!(report.connections >= 20, "{}", report.connections);
    assert_eq!(phase(&report, "transaction").count, 200);
    assert_eq!(phase(&report, "connect").count, report.connections);
    assert_eq!(phase(&report, "banner").count, report.connections);
    assert_eq!(phase(&report, "starttls").count, 0);
    let counted = sink.counters.accepted();
    let connections = sink
        .counters
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sink.stop().await, 200);
    assert_eq!(counted, 200);
    assert_eq!(connections, report.connections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_required_counts_match_exactly() {
    let tls = ironpost_loadgen::tls::self_signed_server_config(&["localhost".into()]).unwrap();
    let sink = start_sink(SinkConfig {
        tls: Some(tls),
        require_starttls: true,
        ..SinkConfig::default()
    })
    .await;

    // Without STARTTLS every MAIL is refused, and counted by reply code.
    let refused = run(config(sink.addr, 20, 2)).await;
    assert_eq!(refused.accepted, 0);
    assert_eq!(refused.failed, 20);
    assert_eq!(
        errors(&refused),
        [("530 5.7.0".to_string(), "mail", 20)],
        "{}",
        refused.to_table()
    );

    let report = run(GenConfig {
        starttls: Some(ClientTls::default()),
        messages_per_connection: Some(10),
        ..config(sink.addr, 200, 4)
    })
    .await;
    assert_eq!(report.accepted, 200, "{}", report.to_table());
    assert_eq!(report.failed, 0);
    assert!(report.starttls);
    assert_eq!(phase(&report, "starttls").count, report.connections);
    // EHLO twice per connection: before and after TLS.
    assert_eq!(phase(&report, "ehlo").count, 2 * report.connections);
    let tls_sessions = sink
        .counters
        .tls_sessions
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(tls_sessions, report.connections);
    assert_eq!(sink.stop().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_verification() {
    let ca = TestCa::new("traffic-gen test CA");
    let (cert, key) = ca.issue_server(&["sink.test"]);
    let tls =
        ironpost_loadgen::tls::server_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let sink = start_sink(SinkConfig {
        tls: Some(tls),
        ..SinkConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();

    let verified = run(GenConfig {
        starttls: Some(ClientTls {
            verify: true,
            ca_file: Some(ca_file.clone()),
            name: Some("sink.test".into()),
        }),
        ..config(sink.addr, 10, 2)
    })
    .await;
    assert_eq!(verified.accepted, 10, "{}", verified.to_table());

    // The wrong name fails the handshake; so does an unknown issuer.
    for tls in [
        ClientTls {
            verify: true,
            ca_file: Some(ca_file.clone()),
            name: Some("other.test".into()),
        },
        ClientTls {
            verify: true,
            ca_file: None,
            name: Some("sink.test".into()),
        },
    ] {
        let failed = run(GenConfig {
            starttls: Some(tls),
            ..config(sink.addr, 3, 1)
        })
        .await;
        assert_eq!(failed.accepted, 0);
        assert_eq!(failed.failed, 3);
        assert_eq!(failed.connection_failures, 3);
        let errs = errors(&failed);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].0.starts_with("tls: "), "{errs:?}");
        assert_eq!(errs[0].1, "tls-handshake");
    }
    assert_eq!(sink.stop().await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_plain_after_starttls() {
    let ca = TestCa::new("traffic-gen test CA");
    let sink = TestSink::start(
        "127.0.0.1:0".parse().unwrap(),
        TestSinkConfig::new()
            .tls(SinkTls::offer_pair(ca.issue_server(&["localhost"])))
            .auth(SinkAuth::plain("loadgen", "s3cret")),
    )
    .await
    .unwrap();
    let report = run(GenConfig {
        starttls: Some(ClientTls::default()),
        auth: Some(("loadgen".into(), "s3cret".into())),
        messages_per_connection: Some(5),
        ..config(sink.addr(), 20, 2)
    })
    .await;
    assert_eq!(report.accepted, 20, "{}", report.to_table());
    assert_eq!(phase(&report, "auth").count, report.connections);
    let rec = sink.snapshot();
    assert_eq!(rec.messages().len(), 20);
    assert!(rec
        .messages()
        .iter()
        .all(|m| m.tls && m.auth_user.as_deref() == Some("loadgen")));
    assert!(rec
        .auth
        .iter()
        .all(|a| a.tls && a.accepted && a.mechanism == "PLAIN"));
    assert!(!rec.any_in_clear("AUTH"));
    // The content is what was asked for: the headers and the size.
    let m = rec.messages()[0];
    assert_eq!(m.data.len(), 2000);
    for h in ["from", "to", "subject", "date", "message-id"] {
        assert!(m.header(h).is_some(), "{h}");
    }

    let refused = run(GenConfig {
        starttls: Some(ClientTls::default()),
        auth: Some(("loadgen".into(), "wrong".into())),
        ..config(sink.addr(), 4, 1)
    })
    .await;
    assert_eq!(refused.accepted, 0);
    assert_eq!(errors(&refused), [("535 5.7.8".to_string(), "auth", 4)]);

    // AUTH without TLS is refused before anything is sent.
    let err = ironpost_loadgen::run(
        GenConfig {
            auth: Some(("loadgen".into(), "s3cret".into())),
            ..config(sink.addr(), 1, 1)
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--starttls"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_reply_code() {
    let sink = TestSink::start(
        "127.0.0.1:0".parse().unwrap(),
        TestSinkConfig::new()
            .rule(Rule::new(Stage::DataDot, "451 4.3.0 Try again later").times(12))
            .rule(Rule::new(Stage::Rcpt, "550 5.1.1 No such user").matching("dom2.test")),
    )
    .await
    .unwrap();
    let report = run(GenConfig {
        addressing: Addressing {
            recipient_domains: numbered_domains(2),
            ..Addressing::default()
        },
        ..config(sink.addr(), 40, 3)
    })
    .await;
    // Half the recipients are refused at RCPT; of the other 20, the
    // first 12 get 451 after the dot.
    assert_eq!(report.sent, 40);
    assert_eq!(report.accepted, 8, "{}", report.to_table());
    assert_eq!(report.failed, 32);
    assert_eq!(
        errors(&report),
        [
            ("550 5.1.1".to_string(), "rcpt", 20),
            ("451 4.3.0".to_string(), "data-end", 12)
        ],
        "{}",
        report.to_table()
    );
    assert_eq!(phase(&report, "transaction").count, 8);
    // The connection was kept (RSET after the refused recipient).
    assert_eq!(report.connections, 3);
    assert_eq!(sink.snapshot().messages().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pipelining() {
    let sink = TestSink::start(
        "127.0.0.1:0".parse().unwrap(),
        TestSinkConfig::new().pipelining(false),
    )
    .await
    .unwrap();
    let report = run(config(sink.addr(), 30, 3)).await;
    assert_eq!(report.accepted, 30, "{}", report.to_table());
    let rec = sink.snapshot();
    assert_eq!(rec.messages().len(), 30);
    // One command at a time (the sink does not advertise PIPELINING).
    assert!(rec.sessions.iter().all(|s| s.has_command("RCPT")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused_is_counted() {
    let port = {
        let l = std::net::TcpListener::bind(LOOPBACK).unwrap();
        l.local_addr().unwrap()
    };
    let report = run(config(port, 5, 1)).await;
    assert_eq!(report.accepted, 0);
    assert_eq!(report.failed, 5);
    assert_eq!(report.connection_failures, 5);
    assert_eq!(
        errors(&report),
        [("connect refused".to_string(), "connect", 5)]
    );
    let t = report.to_table();
    assert!(t.contains("connect refused:"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_bound_and_count_file() {
    let dir = tempfile::tempdir().unwrap();
    let count_file = dir.path().join("count");
    let sink = start_sink(SinkConfig {
        count_file: Some(count_file.clone()),
        ..SinkConfig::default()
    })
    .await;
    // No message count: the duration ends the run.
    let report = run(GenConfig {
        messages: None,
        duration: Some(Duration::from_millis(300)),
        ..config(sink.addr, 0, 2)
    })
    .await;
    assert_eq!(report.failed, 0, "{}", report.to_table());
    assert_eq!(report.accepted, report.sent);
    let read = || {
        std::fs::read_to_string(&count_file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    // The file follows the count (polled, as a benchmark would).
    let mut seen = None;
    for _ in 0..200 {
        seen = read();
        if seen == Some(report.accepted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, Some(report.accepted));
    assert_eq!(sink.stop().await, report.accepted);
    assert_eq!(read(), Some(report.accepted));
    assert!(!dir.path().join("count.tmp").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signal_ends_an_unbounded_run() {
    let sink = start_sink(SinkConfig::default()).await;
    let (tx, rx) = oneshot::channel::<()>();
    let run = tokio::spawn(ironpost_loadgen::run(
        GenConfig {
            messages: None,
            duration: None,
            ..config(sink.addr, 0, 2)
        },
        async {
            let _ = rx.await;
        },
    ));
    while sink.counters.accepted() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(report.accepted >= 20);
    assert_eq!(report.failed, 0);
    assert_eq!(sink.stop().await, report.accepted);
}
