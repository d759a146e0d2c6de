//! ARC (RFC 8617) against an independent implementation, dkimpy (Python
//! `dkim.arc_sign` / `dkim.arc_verify`), with every key in the loopback
//! DNS server for Ironpost and the same records handed to dkimpy through
//! its `dnsfunc` (no network): chains dkimpy seals validate here, chains
//! Ironpost seals validate in dkimpy, broken chains fail in both, and the
//! bounds (set count, time) hold.
//!
//! The interpreter is `$IRONPOST_PYTHON` (scripts/test-all.sh sets it to a
//! venv with dkimpy and pynacl), else `python3`. dkimpy's sealer needs the
//! `authres` package to read the Authentication-Results it copies into
//! the ARC-Authentication-Results; where it is missing the script gives
//! dkimpy a minimal stand-in. dkimpy's ARC takes only rsa-sha256 (RFC 8617
//! defines no other algorithm in practice); the script lets its verifier
//! accept ed25519-sha256 too, so that our Ed25519 sets are checked by the
//! same code that checks Ed25519 DKIM signatures.

use ironpost_authn::{AuthResult, Authenticator, Limits, MAX_ARC_SETS};
use ironpost_dkim::{dns_record, generate, Algorithm, Canon, Signer, SignerConfig, SigningKey};
use ironpost_dns::{Dns, DnsConfig};
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every test finishes within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(120);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test timed out")
}

const MESSAGE: &str = "From: Alice <alice@sender.test>\r\n\
To: list@list.test\r\n\
Subject: ARC test\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <arc-1@sender.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hello,\r\n\
this is the body of an ARC test.\r\n";

/// One RSA-2048 and one Ed25519 key (PKCS#8 PEM), made once.
fn keys() -> &'static [(Algorithm, Vec<u8>, String); 2] {
    static KEYS: OnceLock<[(Algorithm, Vec<u8>, String); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = |algo| {
            let (pem, public) = generate(algo, 2048).unwrap();
            (algo, pem.to_vec(), public)
        };
        [make(Algorithm::RsaSha256), make(Algorithm::Ed25519Sha256)]
    })
}

/// Where a sealer's key is published.
#[derive(Clone, Copy)]
struct Sealer {
    domain: &'static str,
    selector: &'static str,
    algo: Algorithm,
}

/// dkimpy's sealer is RSA only (its `arc_sign` fixes rsa-sha256).
const HOP1: Sealer = Sealer {
    domain: "forwarder.test",
    selector: "arc1",
    algo: Algorithm::RsaSha256,
};
const HOP2: Sealer = Sealer {
    domain: "list.test",
    selector: "arc2",
    algo: Algorithm::RsaSha256,
};
const OURS_RSA: Sealer = Sealer {
    domain: "ironpost.test",
    selector: "rsa",
    algo: Algorithm::RsaSha256,
};
const OURS_ED: Sealer = Sealer {
    domain: "ironpost.test",
    selector: "ed",
    algo: Algorithm::Ed25519Sha256,
};
const SEALERS: [Sealer; 4] = [HOP1, HOP2, OURS_RSA, OURS_ED];

impl Sealer {
    fn key(&self) -> &'static (Algorithm, Vec<u8>, String) {
        keys().iter().find(|k| k.0 == self.algo).unwrap()
    }

    fn signer(&self, edit: impl FnOnce(&mut SignerConfig)) -> Signer {
        let (algo, pem, _) = self.key();
        let mut config = SignerConfig::new(self.domain, self.selector);
        edit(&mut config);
        Signer::new(config, SigningKey::from_bytes(*algo, pem).unwrap()).unwrap()
    }
}

/// The DNS records of every sealer, the loopback server publishing them
/// and an authenticator resolving through it.
struct Env {
    _dns: TestDnsServer,
    records: BTreeMap<String, String>,
    auth: Authenticator,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// `edit` may add to the zone.
    async fn start_with(edit: impl FnOnce(&TestZone)) -> Env {
        let zone = TestZone::new();
        edit(&zone);
        let mut records = BTreeMap::new();
        for s in SEALERS {
            let (algo, _, public) = s.key();
            let record = dns_record(s.domain, s.selector, *algo, public).unwrap();
            zone.txt(&record.name, &record.txt_value());
            records.insert(record.name.clone(), record.txt_value());
        }
        let server = TestDnsServer::start(zone).await.unwrap();
        let auth = authenticator(server.addr, Duration::from_secs(20));
        Env {
            _dns: server,
            records,
            auth,
        }
    }
}

fn authenticator(dns: std::net::SocketAddr, timeout: Duration) -> Authenticator {
    let dns = Dns::new(&DnsConfig {
        name_servers: vec![dns.into()],
        timeout: Some(Duration::from_secs(5)),
        attempts: Some(1),
        ..Default::default()
    })
    .unwrap();
    Authenticator::new(
        &dns,
        Limits {
            timeout,
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------------
// dkimpy
// ---------------------------------------------------------------------

/// The interpreter: `$IRONPOST_PYTHON`, else `python3`; it must import
/// dkimpy and PyNaCl.
fn python() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let py = std::env::var_os("IRONPOST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("python3"));
        let ok = Command::new(&py)
            .args(["-c", "import dkim, nacl"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{} cannot import dkim (dkimpy) and nacl (PyNaCl): set IRONPOST_PYTHON \
             to an interpreter that has them (scripts/test-all.sh makes one)",
            py.display()
        );
        py
    })
}

/// Seals or verifies with dkimpy; the request is JSON on stdin, the answer
/// JSON on stdout. Messages travel as latin-1 text (byte for byte).
const DKIMPY: &str = r#"
import json, sys, types
import dkim

try:
    import authres
except ImportError:
    # A stand-in for the authres package, enough for ARC.sign: the
    # authserv-id and each resinfo's method, result and text.
    class _Result:
        def __init__(self, text):
            self.text = " ".join(text.split())
            method, _, rest = self.text.partition("=")
            self.method = method.split("/")[0].strip().lower()
            self.result = (rest.split() or [""])[0].lower()
        def __str__(self):
            return self.text
    class _Header:
        def __init__(self, authserv_id, results):
            self.authserv_id = authserv_id
            self.results = results
        @classmethod
        def parse(cls, text):
            value = text.partition(":")[2]
            parts = [p.strip() for p in value.split(";")]
            results = [_Result(p) for p in parts[1:] if p and p.lower() != "none"]
            return cls(parts[0].split()[0], results)
    authres = types.ModuleType("authres")
    authres.AuthenticationResultsHeader = _Header
    authres.core = types.SimpleNamespace(SyntaxError=ValueError)
    authres.AuthresNotFoundError = ImportError
dkim.authres = authres

# dkimpy's ARC accepts only rsa-sha256 (its ARC_HASH_ALGORITHMS); its
# verification code handles Ed25519 keys (as for DKIM), so the Ed25519 sets
# are checked by allowing the algorithm.
import hashlib
import dkim.crypto
dkim.crypto.ARC_HASH_ALGORITHMS[b"ed25519-sha256"] = hashlib.sha256

req = json.load(sys.stdin)
records = {k.lower().rstrip("."): v for k, v in req["records"].items()}

def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name.lower().rstrip("."))
    return value.encode() if value is not None else None

message = req["message"].encode("latin-1")
if req["op"] == "seal":
    headers = dkim.arc_sign(
        message,
        req["selector"].encode(),
        req["domain"].encode(),
        req["key"].encode(),
        req["srv_id"].encode(),
    )
    out = {"set": b"".join(headers).decode("latin-1")}
else:
    cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    out = {"cv": cv.decode() if cv else None, "reason": reason}
print(json.dumps(out))
"#;

fn dkimpy(request: serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(python())
        .args(["-c", DKIMPY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dkimpy failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// dkimpy adds an ARC set: the message first gets the
/// `Authentication-Results: <srv_id>; arc=<arc>` its sealer reads the
/// chain status from (`none` for the first hop).
fn dkimpy_seal(env: &Env, message: &[u8], sealer: Sealer, srv_id: &str, arc: &str) -> Vec<u8> {
    let mut with_ar = format!(
        "Authentication-Results: {srv_id}; arc={arc};\r\n spf=pass smtp.mailfrom=sender.test\r\n"
    )
    .into_bytes();
    with_ar.extend_from_slice(message);
    let (_, pem, _) = sealer.key();
    let out = dkimpy(serde_json::json!({
        "op": "seal",
        "records": env.records,
        "message": latin1(&with_ar),
        "domain": sealer.domain,
        "selector": sealer.selector,
        "key": String::from_utf8(pem.clone()).unwrap(),
        "srv_id": srv_id,
    }));
    let set = out["set"].as_str().unwrap();
    assert!(set.contains("ARC-Seal:"), "dkimpy did not seal: {out}");
    let mut sealed: Vec<u8> = set.chars().map(|c| c as u8).collect();
    if !sealed.ends_with(b"\r\n") {
        sealed.extend_from_slice(b"\r\n");
    }
    sealed.extend_from_slice(&with_ar);
    sealed
}

/// dkimpy's verdict: (cv, reason).
fn dkimpy_verify(env: &Env, message: &[u8]) -> (String, String) {
    let out = dkimpy(serde_json::json!({
        "op": "verify",
        "records": env.records,
        "message": latin1(message),
    }));
    (
        out["cv"].as_str().unwrap_or("null").to_string(),
        out["reason"].as_str().unwrap_or_default().to_string(),
    )
}

// ---------------------------------------------------------------------
// Ironpost
// ---------------------------------------------------------------------

fn result(method: &str, result: &str, props: &[(&str, &str)]) -> AuthResult {
    AuthResult {
        method: method.into(),
        result: result.into(),
        props: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// Ironpost verifies, then seals with `signer`: the new set prepended.
async fn ironpost_seal(env: &Env, message: &[u8], signer: &Signer) -> Vec<u8> {
    let arc = env.auth.arc_verify(message).await;
    let results = [
        result("spf", "pass", &[("smtp.mailfrom", "alice@sender.test")]),
        result("dkim", "none", &[]),
        arc,
    ];
    let set = env
        .auth
        .arc_seal(message, signer, "mx.ironpost.test", &results)
        .await
        .unwrap()
        .expect("a sealable chain");
    let mut sealed = set;
    sealed.extend_from_slice(message);
    sealed
}

async fn assert_pass(env: &Env, message: &[u8], sealer: Sealer) {
    let r = env.auth.arc_verify(message).await;
    assert_eq!(
        (r.method.as_str(), r.result.as_str()),
        ("arc", "pass"),
        "{r:?}\n{}",
        String::from_utf8_lossy(message)
    );
    assert_eq!(r.props["header.d"], sealer.domain, "{r:?}");
    assert_eq!(r.props["header.s"], sealer.selector, "{r:?}");
    let (cv, reason) = dkimpy_verify(env, message);
    assert_eq!(
        cv,
        "pass",
        "dkimpy: {reason}\n{}",
        String::from_utf8_lossy(message)
    );
}

async fn assert_fail(env: &Env, message: &[u8], what: &str) -> String {
    let r = env.auth.arc_verify(message).await;
    assert_eq!(r.result, "fail", "{what}: {r:?}");
    let (cv, reason) = dkimpy_verify(env, message);
    assert_ne!(cv, "pass", "{what}: dkimpy passed it ({reason})");
    eprintln!("{what}: ironpost {:?}; dkimpy {cv}: {reason}", r.reason);
    r.reason.unwrap_or_default()
}

/// White space runs as one space, trimmed.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each field of the first header section, unfolded: (name, value).
fn fields(message: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            out.last_mut().unwrap().1.push_str(line);
        } else {
            let (n, v) = line.split_once(':').unwrap();
            out.push((n.to_string(), v.to_string()));
        }
    }
    out
}

fn replace_once(message: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = latin1(message);
    assert!(text.contains(from), "{from:?} not in message");
    text.replacen(from, to, 1)
        .chars()
        .map(|c| c as u8)
        .collect()
}

/// The message with one base64 character of the `b=` of the first header
/// field named `name` changed.
fn tamper_b(message: &[u8], name: &str) -> Vec<u8> {
    let text = latin1(message);
    let start = text.find(&format!("{name}:")).unwrap();
    let b = start
        + [" b=", "\tb="]
            .iter()
            .filter_map(|p| text[start..].find(p))
            .min()
            .unwrap()
        + 3;
    let mut bytes = message.to_vec();
    let at = b + 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    bytes
}

// ---------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------

#[tokio::test]
async fn no_arc_is_none() {
    within(async {
        let env = Env::start().await;
        let r = env.auth.arc_verify(MESSAGE.as_bytes()).await;
        assert_eq!((r.method.as_str(), r.result.as_str()), ("arc", "none"));
        assert_eq!(r.reason, None);
    })
    .await
}

#[tokio::test]
async fn dkimpy_chains_pass_in_ironpost() {
    within(async {
        let env = Env::start().await;
        let one = dkimpy_seal(&env, MESSAGE.as_bytes(), HOP1, "mx.forwarder.test", "none");
        assert_pass(&env, &one, HOP1).await;
        let two = dkimpy_seal(&env, &one, HOP2, "mx.list.test", "pass");
        assert_pass(&env, &two, HOP2).await;
    })
    .await
}

#[tokio::test]
async fn ironpost_seals_pass_in_dkimpy() {
    within(async {
        let env = Env::start().await;
        // A fresh message, each algorithm, and simple canonicalization.
        for (sealer, canon) in [
            (OURS_RSA, Canon::Relaxed),
            (OURS_ED, Canon::Relaxed),
            (OURS_RSA, Canon::Simple),
        ] {
            let signer = sealer.signer(|c| {
                c.header_canonicalization = canon;
                c.body_canonicalization = canon;
            });
            let sealed = ironpost_seal(&env, MESSAGE.as_bytes(), &signer).await;
            let f = fields(&sealed);
            assert_eq!(f[0].0, "ARC-Seal");
            assert!(f[0].1.contains("cv=none;"), "{f:?}");
            assert_eq!(f[1].0, "ARC-Message-Signature");
            assert!(f[1].1.contains(&format!("c={canon}/{canon};")), "{f:?}");
            assert_eq!(f[2].0, "ARC-Authentication-Results");
            assert_eq!(
                norm(&f[2].1),
                "i=1; mx.ironpost.test; spf=pass smtp.mailfrom=alice@sender.test; \
                 dkim=none; arc=none"
            );
            assert_pass(&env, &sealed, sealer).await;
        }

        // After dkimpy's first hop, both algorithms; then dkimpy seals on
        // top of ours.
        let one = dkimpy_seal(&env, MESSAGE.as_bytes(), HOP1, "mx.forwarder.test", "none");
        for sealer in [OURS_RSA, OURS_ED] {
            let two = ironpost_seal(&env, &one, &sealer.signer(|_| {})).await;
            let f = fields(&two);
            assert!(f[0].1.trim_start().starts_with("i=2;"), "{f:?}");
            assert!(f[0].1.contains("cv=pass;"), "{f:?}");
            assert!(
                norm(&f[2].1).contains("arc=pass header.d=forwarder.test header.s=arc1"),
                "{f:?}"
            );
            assert_pass(&env, &two, sealer).await;
            let three = dkimpy_seal(&env, &two, HOP2, "mx.list.test", "pass");
            assert_pass(&env, &three, HOP2).await;
        }
    })
    .await
}

#[tokio::test]
async fn broken_chains_fail_in_both() {
    within(async {
        let env = Env::start().await;
        let ed = OURS_ED.signer(|_| {});
        let one = dkimpy_seal(&env, MESSAGE.as_bytes(), HOP1, "mx.forwarder.test", "none");
        let two = ironpost_seal(&env, &one, &ed).await;
        let ours = ironpost_seal(&env, MESSAGE.as_bytes(), &ed).await;

        // The body changed after sealing (dkimpy's seal, ours).
        for (m, what) in [(&one, "dkimpy-sealed"), (&two, "two hops"), (&ours, "ours")] {
            let mut changed = m.clone();
            changed.extend_from_slice(b"A line added in transit.\r\n");
            let reason = assert_fail(&env, &changed, what).await;
            assert!(reason.contains("body hash"), "{what}: {reason}");
        }
        // A signed header changed.
        let changed = replace_once(&two, "Subject: ARC test", "Subject: ARC test!");
        assert_fail(&env, &changed, "subject").await;

        // A tampered ARC-Seal (the newest, then the oldest).
        for (m, what) in [
            (&one, "dkimpy seal"),
            (&ours, "our seal"),
            (&two, "newest seal"),
        ] {
            let reason = assert_fail(&env, &tamper_b(m, "ARC-Seal"), what).await;
            assert_eq!(reason, "signature verification failed", "{what}");
        }
        let text = latin1(&two);
        let oldest = text.rfind("ARC-Seal:").unwrap();
        let mut bytes = two.clone();
        let tampered = tamper_b(&two[oldest..], "ARC-Seal");
        bytes.truncate(oldest);
        bytes.extend_from_slice(&tampered);
        assert_fail(&env, &bytes, "oldest seal").await;

        // The first hop's ARC-Authentication-Results edited: the second
        // seal covers it.
        let changed = replace_once(&two, "i=1; mx.forwarder.test;", "i=1; mx.evil.test;");
        assert_fail(&env, &changed, "edited AAR").await;

        // A set removed.
        let text = latin1(&two);
        let aar2 = text.find("ARC-Authentication-Results: i=2").unwrap();
        let end = aar2 + text[aar2..].find("\r\n").unwrap() + 2;
        let mut without = two[..aar2].to_vec();
        without.extend_from_slice(&two[end..]);
        assert_fail(&env, &without, "missing AAR").await;

        // A chain a hop sealed with cv=fail is over.
        let failed = dkimpy_seal(&env, &one, HOP2, "mx.list.test", "fail");
        assert!(latin1(&failed).contains("cv=fail"));
        let reason = assert_fail(&env, &failed, "cv=fail").await;
        assert!(reason.contains("cv="), "{reason}");
        assert_eq!(
            env.auth.arc_seal(&failed, &ed, "mx", &[]).await.unwrap(),
            None
        );

        // A failing chain is not sealed: the message passes unmodified.
        let mut changed = two.clone();
        changed.extend_from_slice(b"tampered\r\n");
        let sealed = env
            .auth
            .arc_seal(&changed, &ed, "mx.ironpost.test", &[])
            .await
            .unwrap();
        assert_eq!(sealed, None);

        // A key missing from DNS.
        let unknown = Sealer {
            domain: "unpublished.test",
            selector: "x",
            algo: Algorithm::Ed25519Sha256,
        };
        let m = ironpost_seal(&env, MESSAGE.as_bytes(), &unknown.signer(|_| {})).await;
        assert_fail(&env, &m, "unpublished key").await;
    })
    .await
}

#[tokio::test]
async fn dns_failure_is_a_temperror_reason() {
    within(async {
        let flaky = Sealer {
            domain: "flaky.test",
            selector: "arc",
            algo: Algorithm::Ed25519Sha256,
        };
        let env = Env::start_with(|zone| {
            zone.servfail("arc._domainkey.flaky.test");
        })
        .await;
        let m = ironpost_seal(&env, MESSAGE.as_bytes(), &flaky.signer(|_| {})).await;
        let r = env.auth.arc_verify(&m).await;
        assert_eq!(r.result, "fail", "{r:?}");
        assert!(
            r.reason.as_deref().unwrap().starts_with("temperror:"),
            "{r:?}"
        );
        assert_eq!(r.props["header.d"], "flaky.test", "{r:?}");
        let ed = OURS_ED.signer(|_| {});
        let sealed = env.auth.arc_seal(&m, &ed, "mx", &[]).await;
        assert_eq!(sealed.unwrap(), None);
    })
    .await
}

#[tokio::test]
async fn bad_seal_inputs_are_errors() {
    within(async {
        let env = Env::start().await;
        let ed = OURS_ED.signer(|_| {});
        let m = MESSAGE.as_bytes();
        for id in ["", "mx; evil", "two words"] {
            assert!(env.auth.arc_seal(m, &ed, id, &[]).await.is_err(), "{id:?}");
        }
        for r in [
            result("", "pass", &[]),
            result("dkim", "pass fail", &[]),
            result("dkim", "pass", &[("header d", "x")]),
        ] {
            assert!(
                env.auth
                    .arc_seal(m, &ed, "mx", std::slice::from_ref(&r))
                    .await
                    .is_err(),
                "{r:?}"
            );
        }
        // Values are quoted where needed, never break the field.
        let mut r = result("dkim", "fail", &[("header.b", "ab/+c d")]);
        r.reason = Some("bad\r\nX-Injected: yes".into());
        let set = env
            .auth
            .arc_seal(m, &ed, "mx", &[r])
            .await
            .unwrap()
            .unwrap();
        let mut sealed = set.clone();
        sealed.extend_from_slice(m);
        let f = fields(&sealed);
        assert_eq!(f.len(), fields(m).len() + 3, "{f:?}");
        assert!(
            norm(&f[2].1).contains("reason=\"bad X-Injected: yes\" header.b=\"ab/+c d\""),
            "{f:?}"
        );
        assert_pass(&env, &sealed, OURS_ED).await;
    })
    .await
}

/// A name server that never answers: UDP and TCP on one port. Another
/// test may hold the TCP side of a free UDP port, so try a few ports.
fn black_hole() -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

#[tokio::test]
async fn too_many_sets_fail_fast() {
    within(async {
        let (udp, _tcp) = black_hole();
        let auth = authenticator(udp.local_addr().unwrap(), Duration::from_secs(60));
        for n in [MAX_ARC_SETS + 1, 60, 1000] {
            let mut m = String::new();
            for i in (1..=n).rev() {
                m.push_str(&format!(
                    "ARC-Seal: i={i}; a=rsa-sha256; cv=pass; d=x.test; s=s; b=AAAA\r\n\
                     ARC-Message-Signature: i={i}; a=rsa-sha256; c=relaxed/relaxed; \
                     d=x.test; s=s; h=From; bh=AAAA; b=AAAA\r\n\
                     ARC-Authentication-Results: i={i}; x.test; none\r\n"
                ));
            }
            m.push_str(MESSAGE);
            let started = Instant::now();
            let r = auth.arc_verify(m.as_bytes()).await;
            assert_eq!(r.result, "fail", "{r:?}");
            assert!(
                r.reason.as_deref().unwrap().contains("too many ARC sets"),
                "{r:?}"
            );
            let signer = OURS_ED.signer(|_| {});
            let sealed = auth.arc_seal(m.as_bytes(), &signer, "mx", &[]).await;
            assert_eq!(sealed.unwrap(), None);
            assert!(started.elapsed() < Duration::from_secs(2), "not fast");
        }
    })
    .await
}

#[tokio::test]
async fn a_full_chain_is_not_extended() {
    within(async {
        let env = Env::start().await;
        let ed = OURS_ED.signer(|_| {});
        let mut m = MESSAGE.as_bytes().to_vec();
        for _ in 0..MAX_ARC_SETS {
            m = ironpost_seal(&env, &m, &ed).await;
        }
        assert_pass(&env, &m, OURS_ED).await;
        let sealed = env.auth.arc_seal(&m, &ed, "mx", &[]).await.unwrap();
        assert_eq!(sealed, None, "a 51st set");
    })
    .await
}

#[tokio::test]
async fn validation_is_bounded_in_time() {
    within(async {
        let env = Env::start().await;
        let sealed = ironpost_seal(&env, MESSAGE.as_bytes(), &OURS_ED.signer(|_| {})).await;
        let (udp, _tcp) = black_hole();
        let auth = authenticator(udp.local_addr().unwrap(), Duration::from_millis(300));
        let started = Instant::now();
        let r = auth.arc_verify(&sealed).await;
        assert_eq!(r.result, "fail", "{r:?}");
        assert_eq!(r.reason.as_deref(), Some("timeout"), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let again = auth
            .arc_seal(&sealed, &OURS_ED.signer(|_| {}), "mx", &[])
            .await
            .unwrap();
        assert_eq!(again, None);
    })
    .await
}
