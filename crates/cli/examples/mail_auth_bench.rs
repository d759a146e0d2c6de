//! Micro-benchmark of `mail_auth.check(msg)` (`policy-extras.mail_auth`):
//! what it costs per message, run the way the daemon runs it. The policy
//!
//! ```lua
//! local mail_auth = require 'policy-extras.mail_auth'
//! kumo.on('smtp_server_message_received', function(msg) mail_auth.check(msg) end)
//! ```
//!
//! is loaded by [`PolicyEngine::start`], given an [`Authenticator`] on an
//! [`ironpost_dns::Dns`] resolver (as `serve` does: default limits, the
//! resolver pointed at one name server), and each message goes through
//! [`PolicyEngine::message_event`], as reception calls it: a pooled Lua
//! state on the blocking pool, the message object, the checks, the
//! Authentication-Results header written into the message.
//!
//! DNS is the test server on loopback ([`TestDnsServer`], in this process).
//! The message is about 10 KB (a `Received:` header of ours, a text body),
//! with one DKIM signature (`--algo rsa`: RSA-2048, `--algo ed25519`;
//! relaxed/relaxed, the default headers) whose key the zone publishes, from
//! `bench@example.test` at 192.0.2.25: SPF passes (`ip4:`), DMARC passes
//! (`p=reject`, aligned), iprev passes (PTR and A), no ARC. The results
//! are checked on the first message, before anything is timed, and on the
//! last of every round.
//!
//! Figures (each the median of `--rounds` rounds; a round is `--n`
//! messages one after the other, or fewer when `--max-secs` is up):
//!
//! - warm: the same message again and again after a warm-up, so every DNS
//!   answer comes from the cache: microseconds per message, wall clock and
//!   the process's CPU (user + system);
//! - base: the same event with a handler that does nothing, the cost of
//!   the event itself; warm minus base is the check's own cost;
//! - breakdown (`--breakdown 1`): each piece of the check (`dkim_verify`,
//!   SPF, iprev, DMARC, ARC, the header) in a handler of its own, less the
//!   empty handler timed in the rounds in between;
//! - cold (`--cold-n`, 0 to skip): every message from its own domain
//!   (`sender<i>.example`, signed there) and its own client address
//!   (10.x.y.z), so each lookup (the DKIM key, SPF, PTR, A, DMARC) misses
//!   both caches and is answered by the loopback server (its CPU is in the
//!   CPU figure): a floor for a real cold cache, which adds network round
//!   trips.
//!
//! Run with `bench/mail_auth.sh`, or
//! `cargo run --release -p ironpost --example mail_auth_bench -- --algo ed25519`.

use ironpost_authn::{Authenticator, Limits};
use ironpost_dkim::{Algorithm, Signer, SignerConfig, SigningKey};
use ironpost_dns::{Dns, DnsConfig, NameServer};
use ironpost_policy::{
    ConnMeta, EngineOptions, Message, PolicyEngine, PolicySource, AUTHENTICATION_RESULTS_META,
};
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use serde_json::{json, Map, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const CHECK_POLICY: &str = r#"
local kumo = require 'kumo'
local mail_auth = require 'policy-extras.mail_auth'
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  mail_auth.check(msg)
end)
"#;

const BASE_POLICY: &str = r#"
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg, conn_meta)
end)
"#;

/// `--breakdown`: each piece of the check in a handler of its own.
const PIECES: &[(&str, &str)] = &[
    ("  msg:dkim_verify()", "msg:dkim_verify()"),
    ("  kumo.spf.check_msg(msg)", "kumo.spf.check_msg(msg)"),
    ("  mail_auth.iprev_msg(msg)", "mail_auth.iprev_msg(msg)"),
    (
        "  dkim + spf + kumo.dmarc.check_msg",
        "local d = msg:dkim_verify(); local s = kumo.spf.check_msg(msg).result; \
         kumo.dmarc.check_msg(msg, d, nil, s, false)",
    ),
    ("  msg:arc_verify()", "msg:arc_verify()"),
    (
        "  msg:add_authentication_results",
        "msg:add_authentication_results('mx.ironpost.test', RESULTS)",
    ),
];

/// What `mail_auth.check` hands `add_authentication_results` for the
/// benchmark's message, give or take a property.
const RESULTS: &str = r#"
local RESULTS = {
  { method = 'dkim', result = 'pass', props = { ['header.d'] = 'example.test', ['header.s'] = 'bench', ['header.a'] = 'ed25519-sha256' } },
  { method = 'spf', result = 'pass', props = { ['smtp.mailfrom'] = 'bench@example.test' } },
  { method = 'iprev', result = 'pass', props = { ['policy.iprev'] = '192.0.2.25' } },
  { method = 'auth', result = 'none', props = { ['smtp.mailfrom'] = 'bench@example.test' } },
  { method = 'dmarc', result = 'pass', props = { ['header.from'] = 'example.test', ['policy.dmarc'] = 'reject' } },
  { method = 'arc', result = 'none' },
}
"#;

const EVENT: &str = "smtp_server_message_received";
const SELECTOR: &str = "bench";
const HOSTNAME: &str = "mx.ironpost.test";

struct Opts {
    algo: Algorithm,
    rounds: usize,
    n: usize,
    max_secs: f64,
    warmup: usize,
    cold_n: usize,
    breakdown: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: mail_auth_bench [--algo rsa|ed25519] [--rounds 5] [--n 2000] [--max-secs 2] \
         [--warmup 300] [--cold-n 200] [--breakdown 0|1]"
    );
    std::process::exit(2)
}

fn opts() -> Opts {
    let mut o = Opts {
        algo: Algorithm::RsaSha256,
        rounds: 5,
        n: 2000,
        max_secs: 2.0,
        warmup: 300,
        cold_n: 200,
        breakdown: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(v) = args.next() else { usage() };
        let num = || v.parse::<usize>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--algo" => {
                o.algo = match v.as_str() {
                    "rsa" => Algorithm::RsaSha256,
                    "ed25519" => Algorithm::Ed25519Sha256,
                    _ => usage(),
                }
            }
            "--rounds" => o.rounds = num().max(1),
            "--n" => o.n = num().max(1),
            "--max-secs" => o.max_secs = v.parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = num(),
            "--cold-n" => o.cold_n = num(),
            "--breakdown" => o.breakdown = num() != 0,
            _ => usage(),
        }
    }
    o
}

/// Process CPU (user + system) so far.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// About 10 KB of text: the headers an MUA writes and a plain body.
fn unsigned_message(domain: &str, i: usize) -> String {
    let mut m = format!(
        "From: Bench Sender <bench@{domain}>\r\n\
         To: Someone <rcpt@dest.test>\r\n\
         Subject: Quarterly figures, message {i}\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <bench-{i}@{domain}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n"
    );
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.";
    let mut n = 0;
    while m.len() < 10_000 {
        m.push_str(&format!("{n:04} {line}\r\n"));
        n += 1;
    }
    m
}

/// One signed message as it reaches the event: our `Received:` header,
/// the sender's DKIM signature, the content.
fn arrival(signer: &Signer, domain: &str, ip: IpAddr, i: usize) -> Message {
    let content = unsigned_message(domain, i);
    let sig = signer.sign(content.as_bytes()).expect("sign");
    let received = format!(
        "Received: from mail.{domain} (mail.{domain} [{ip}])\r\n\
         \tby {HOSTNAME} (Ironpost) with ESMTPS id bench{i:08}\r\n\
         \tfor <rcpt@dest.test>; Mon, 1 Jan 2024 00:00:01 +0000\r\n"
    );
    let mut meta = Map::new();
    meta.insert("received_from".into(), json!(format!("{ip}:40000")));
    meta.insert("received_via".into(), json!("127.0.0.1:25"));
    meta.insert("hostname".into(), json!(HOSTNAME));
    meta.insert("ehlo_domain".into(), json!(format!("mail.{domain}")));
    meta.insert("reception_protocol".into(), json!("ESMTPS"));
    Message {
        id: format!("bench{i:08}"),
        sender: format!("bench@{domain}"),
        recipients: vec!["rcpt@dest.test".into()],
        meta,
        data: format!("{received}{sig}{content}").into_bytes(),
        attempts: 0,
    }
}

fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// Publish everything `domain` sending from `ip` needs.
fn publish(zone: &TestZone, domain: &str, ip: Ipv4Addr, dkim_txt: &[String]) {
    let parts: Vec<&str> = dkim_txt.iter().map(String::as_str).collect();
    zone.txt_strings(&format!("{SELECTOR}._domainkey.{domain}"), &parts)
        .txt(domain, &format!("v=spf1 ip4:{ip} -all"))
        .txt(
            &format!("_dmarc.{domain}"),
            &format!("v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"),
        )
        .ptr(&reverse_name(ip), &format!("mail.{domain}"))
        .ip(&format!("mail.{domain}"), IpAddr::V4(ip));
}

fn cold_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

async fn engine(dir: &std::path::Path, name: &str, code: &str, dns: &Dns) -> PolicyEngine {
    let path = dir.join(name);
    std::fs::write(&path, code).expect("write the policy");
    let (engine, _init) =
        PolicyEngine::start(PolicySource::File(path), EngineOptions::default()).expect("policy");
    engine.set_authenticator(Authenticator::new(dns, Limits::default()));
    engine
}

async fn run_one(engine: &PolicyEngine, msg: &Message) -> Message {
    let conn_meta = ConnMeta::new(msg.meta.clone());
    engine
        .message_event(EVENT, msg.clone(), Some(conn_meta))
        .await
        .expect("the event runs")
}

/// method -> result, from what `mail_auth.check` recorded.
fn results(msg: &Message) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(Value::Array(entries)) = msg.meta.get(AUTHENTICATION_RESULTS_META) {
        for e in entries {
            for r in e["results"].as_array().into_iter().flatten() {
                out.push((
                    r["method"].as_str().unwrap_or("?").to_string(),
                    r["result"].as_str().unwrap_or("?").to_string(),
                ));
            }
        }
    }
    out
}

fn assert_expected(msg: &Message) -> String {
    let got = results(msg);
    let text = got
        .iter()
        .map(|(m, r)| format!("{m}={r}"))
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "dkim=pass",
        "spf=pass",
        "iprev=pass",
        "dmarc=pass",
        "arc=none",
    ] {
        if !text.split(' ').any(|t| t == want) {
            eprintln!("unexpected results: {text}");
            eprintln!("meta: {:#}", Value::Object(msg.meta.clone()));
            std::process::exit(1);
        }
    }
    text
}

/// Messages `msg(k)` through the event one after the other, up to `n` or
/// `max_secs`: (wall µs per message, CPU µs per message, the last message
/// as the event left it).
async fn round(
    engine: &PolicyEngine,
    n: usize,
    max_secs: f64,
    msg: impl Fn(usize) -> Message,
) -> (f64, f64, Message) {
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut done = 0;
    let mut last = None;
    while done < n {
        let m = msg(done);
        last = Some(std::hint::black_box(run_one(engine, &m).await));
        done += 1;
        if t0.elapsed().as_secs_f64() > max_secs {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64() * 1e6 / done as f64;
    let cpu = (cpu_time() - c0).as_secs_f64() * 1e6 / done as f64;
    (wall, cpu, last.expect("n >= 1"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        (v[k / 2 - 1] + v[k / 2]) / 2.0
    }
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Figure {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Figure {
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<34} {:>8.1} µs/msg wall, {:>8.1} µs/msg CPU   (rounds, wall: {})",
            median(self.wall.clone()),
            median(self.cpu.clone()),
            list(&self.wall)
        )
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let algo_name = match o.algo {
        Algorithm::RsaSha256 => "rsa-sha256 (2048 bits)",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    };

    let (pem, public) = ironpost_dkim::generate(o.algo, 2048).expect("key generation");
    let key = SigningKey::from_bytes(o.algo, &pem).expect("key");
    let signer_for = |domain: &str| {
        Signer::new(SignerConfig::new(domain, SELECTOR), key.clone()).expect("signer")
    };
    let dkim_txt = ironpost_dkim::dns_record("example.test", SELECTOR, o.algo, &public)
        .expect("record")
        .txt_strings;

    let zone = TestZone::new();
    let warm_ip = Ipv4Addr::new(192, 0, 2, 25);
    publish(&zone, "example.test", warm_ip, &dkim_txt);
    let cold_total = o.cold_n * o.rounds;
    for i in 0..cold_total {
        publish(&zone, &format!("sender{i}.example"), cold_ip(i), &dkim_txt);
    }
    let server = TestDnsServer::start(zone).await.expect("test DNS");
    let dns = Dns::new(&DnsConfig {
        name_servers: vec![NameServer::from(server.addr)],
        ..Default::default()
    })
    .expect("resolver");

    let dir = tempfile::tempdir().expect("temp dir");
    let check = engine(dir.path(), "check.lua", CHECK_POLICY, &dns).await;
    let base = engine(dir.path(), "base.lua", BASE_POLICY, &dns).await;

    let warm_signer = signer_for("example.test");
    let warm_msg = arrival(&warm_signer, "example.test", warm_ip.into(), 0);
    let first = run_one(&check, &warm_msg).await;
    let verdict = assert_expected(&first);

    println!(
        "mail_auth.check per message: {algo_name}, {} byte message, {verdict}",
        warm_msg.data.len()
    );
    println!(
        "rounds: {} x up to {} messages or {} s; warm-up {} messages",
        o.rounds, o.n, o.max_secs, o.warmup
    );

    for _ in 0..o.warmup {
        run_one(&check, &warm_msg).await;
        run_one(&base, &warm_msg).await;
    }
    let mut warm = Figure {
        wall: vec![],
        cpu: vec![],
    };
    let mut basef = Figure {
        wall: vec![],
        cpu: vec![],
    };
    for _ in 0..o.rounds {
        // Interleaved, so drift on a shared machine hits both alike.
        let (w, c, last) = round(&check, o.n, o.max_secs, |_| warm_msg.clone()).await;
        assert_expected(&last);
        warm.wall.push(w);
        warm.cpu.push(c);
        let (w, c, _) = round(&base, o.n, o.max_secs, |_| warm_msg.clone()).await;
        basef.wall.push(w);
        basef.cpu.push(c);
    }
    println!("{}", warm.line("warm cache: event + mail_auth.check"));
    println!("{}", basef.line("event with an empty handler"));
    println!(
        "{:<34} {:>8.1} µs/msg wall, {:>8.1} µs/msg CPU",
        "mail_auth.check alone (difference)",
        median(warm.wall.clone()) - median(basef.wall.clone()),
        median(warm.cpu.clone()) - median(basef.cpu.clone())
    );

    if o.breakdown {
        println!(
            "breakdown, warm cache (each piece in a handler of its own, over the empty handler \
             timed in the rounds in between):"
        );
        for (k, (what, call)) in PIECES.iter().enumerate() {
            let code = format!(
                "local kumo = require 'kumo'\n\
                 local mail_auth = require 'policy-extras.mail_auth'\n\
                 {RESULTS}\n\
                 kumo.on('smtp_server_message_received', function(msg, conn_meta)\n  {call}\nend)\n"
            );
            let piece = engine(dir.path(), &format!("piece{k}.lua"), &code, &dns).await;
            for _ in 0..o.warmup {
                run_one(&piece, &warm_msg).await;
            }
            let (mut wall, mut cpu) = (vec![], vec![]);
            for _ in 0..o.rounds {
                let (w, c, _) = round(&piece, o.n, o.max_secs, |_| warm_msg.clone()).await;
                let (bw, bc, _) = round(&base, o.n, o.max_secs, |_| warm_msg.clone()).await;
                wall.push(w - bw);
                cpu.push(c - bc);
            }
            println!(
                "{what:<36} {:>6.1} µs/msg wall, {:>6.1} µs/msg CPU",
                median(wall),
                median(cpu)
            );
        }
    }

    if o.cold_n > 0 {
        // Signed up front: signing is not what is measured.
        let cold_msgs: Vec<Message> = (0..cold_total)
            .map(|i| {
                let d = format!("sender{i}.example");
                arrival(&signer_for(&d), &d, cold_ip(i).into(), i)
            })
            .collect();
        let mut cold = Figure {
            wall: vec![],
            cpu: vec![],
        };
        for r in 0..o.rounds {
            let chunk = &cold_msgs[r * o.cold_n..(r + 1) * o.cold_n];
            let (w, c, last) =
                round(&check, o.cold_n, o.max_secs.max(10.0), |k| chunk[k].clone()).await;
            assert_expected(&last);
            cold.wall.push(w);
            cold.cpu.push(c);
        }
        println!(
            "{} ({} new domains per round)",
            cold.line("cold cache, loopback DNS: check"),
            o.cold_n
        );
    }
    drop(server);
}
