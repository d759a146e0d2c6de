//! DKIM verification against signatures made by dkimpy (the Python `dkim`
//! module, with PyNaCl for Ed25519; RSA keys from `openssl genrsa`):
//! RSA-SHA256 and Ed25519-SHA256, relaxed and simple, `l=`; then what must
//! not pass, each with its result and reason: a changed body, a changed
//! header, a revoked key, an expired signature, a 512-bit key, a key that
//! did not sign, no key, a key lookup that fails, a malformed signature.

mod common;

use ironpost_authn::{AuthResult, Authenticator, MAX_DKIM_SIGNATURES};
use ironpost_testkit::dns::{RecordType, TestDnsServer, TestZone};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MESSAGE: &str = "From: Alice <alice@example.com>\r\n\
To: bob@example.net\r\n\
Subject: hello  there\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <1@example.com>\r\n\
\r\n\
Hello  Bob,\r\n\
\r\n\
this is \t a test.  \r\n\
\r\n\
\r\n";

/// Generates the keys and signs [`MESSAGE`] every way the tests need;
/// prints JSON: `records` (selector → key record) and `messages` (name →
/// signed message, base64).
const SIGNER: &str = r#"
import base64, json, subprocess, sys, time, hashlib
import dkim, nacl.signing, nacl.encoding

def rsa_key(bits):
    pem = subprocess.run(['openssl', 'genrsa', '-traditional', str(bits)],
                         capture_output=True, check=True).stdout
    der = subprocess.run(['openssl', 'rsa', '-pubout', '-outform', 'DER'], input=pem,
                         capture_output=True, check=True).stdout
    return pem, 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()

def ed_key():
    sk = nacl.signing.SigningKey.generate()
    pub = sk.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    return sk.encode(encoder=nacl.encoding.Base64Encoder), 'v=DKIM1; k=ed25519; p=' + pub

msg = sys.stdin.buffer.read()
D = b'example.com'
H = [b'from', b'to', b'subject', b'date', b'message-id']
rsa_pem, rsa_rec = rsa_key(2048)
other_pem, other_rec = rsa_key(2048)
small_pem, small_rec = rsa_key(512)
ed_priv, ed_rec = ed_key()
records = {
    'rsa': rsa_rec, 'ed': ed_rec, 'small': small_rec, 'other': other_rec,
    'revoked': 'v=DKIM1; k=rsa; p=',
    'edonly': ed_rec,
}

def sign(m, sel, key, c, algo=b'rsa-sha256', length=False):
    return dkim.sign(m, sel, D, key, canonicalize=c, signature_algorithm=algo,
                     include_headers=H, length=length) + m

def sign_expiring(m, sel, key, t, x):
    # dkimpy has no x=; the same steps as DKIM.sign, with x= added.
    d = dkim.DKIM(m)
    pk = dkim.crypto.parse_pem_private_key(key)
    canon = dkim.CanonicalizationPolicy.from_c_value(b'relaxed/relaxed')
    d.include_headers = tuple(H)
    d.hasher = dkim.HASH_ALGORITHMS[b'rsa-sha256']
    bh = base64.b64encode(hashlib.sha256(canon.canonicalize_body(d.body)).digest())
    fields = [(b'v', b'1'), (b'a', b'rsa-sha256'), (b'c', b'relaxed/relaxed'), (b'd', D),
              (b'i', b'@' + D), (b'q', b'dns/txt'), (b's', sel), (b't', str(t).encode()),
              (b'x', str(x).encode()), (b'h', b' : '.join(H)), (b'bh', bh), (b'b', b'0' * 60)]
    return b'DKIM-Signature: ' + d.gen_header(fields, tuple(H), canon, b'DKIM-Signature', pk) + m

RR, SS, RS, SR = (b'relaxed', b'relaxed'), (b'simple', b'simple'), (b'relaxed', b'simple'), (b'simple', b'relaxed')
now = int(time.time())
m = {
    'rsa-relaxed': sign(msg, b'rsa', rsa_pem, RR),
    'rsa-simple': sign(msg, b'rsa', rsa_pem, SS),
    'ed-relaxed-simple': sign(msg, b'ed', ed_priv, RS, b'ed25519-sha256'),
    'ed-simple-relaxed': sign(msg, b'ed', ed_priv, SR, b'ed25519-sha256'),
    'rsa-length': sign(msg, b'rsa', rsa_pem, SS, length=True) + b'appended after signing\r\n',
    'tampered-body': sign(msg, b'rsa', rsa_pem, RR).replace(b'a test', b'a tesT'),
    'tampered-header': sign(msg, b'rsa', rsa_pem, RR).replace(b'Subject: hello', b'Subject: hellO'),
    'revoked': sign(msg, b'revoked', rsa_pem, RR),
    'expired': sign_expiring(msg, b'rsa', rsa_pem, now - 7200, now - 3600),
    'unexpired': sign_expiring(msg, b'rsa', rsa_pem, now - 60, now + 3600),
    'small-key': sign(msg, b'small', small_pem, RR),
    'wrong-key': sign(msg, b'other', rsa_pem, RR),
    'key-type': sign(msg, b'edonly', rsa_pem, RR),
    'two': sign(sign(msg, b'rsa', rsa_pem, RS), b'ed', ed_priv, RR, b'ed25519-sha256'),
}
print(json.dumps({'records': records,
                  'messages': {k: base64.b64encode(v).decode() for k, v in m.items()}}))
"#;

struct Signed {
    records: HashMap<String, String>,
    messages: HashMap<String, Vec<u8>>,
}

/// dkimpy runs once for all the tests.
fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let script = common::imports(&[("dkim", "dkimpy"), ("nacl", "pynacl")]) + SIGNER;
        let out = common::run_python(&script, &[], MESSAGE.as_bytes());
        let v: Value = serde_json::from_slice(&out).expect("signer output");
        Signed {
            records: v["records"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            messages: v["messages"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), base64_decode(v.as_str().unwrap())))
                .collect(),
        }
    })
}

/// Standard base64 (the signer's output) without a dependency for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

async fn env() -> (TestDnsServer, Authenticator) {
    let s = signed();
    let zone = TestZone::new();
    for (selector, record) in &s.records {
        zone.txt(&format!("{selector}._domainkey.example.com"), record);
    }
    zone.servfail_type("broken._domainkey.example.com", RecordType::TXT);
    common::authenticator(zone, common::limits()).await
}

fn message(name: &str) -> &'static [u8] {
    &signed().messages[name]
}

fn one(results: &[AuthResult]) -> &AuthResult {
    assert_eq!(results.len(), 1, "{results:#?}");
    &results[0]
}

fn assert_result(r: &AuthResult, result: &str, reason_has: &str) {
    assert_eq!(r.method, "dkim");
    assert_eq!(r.result, result, "{r:#?}");
    let reason = r.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains(reason_has),
        "reason {reason:?} lacks {reason_has:?}"
    );
}

#[tokio::test]
async fn dkimpy_signatures_pass() {
    let (_dns, auth) = env().await;
    for name in [
        "rsa-relaxed",
        "rsa-simple",
        "ed-relaxed-simple",
        "ed-simple-relaxed",
        "rsa-length",
        "unexpired",
    ] {
        let results = auth.dkim_verify(message(name)).await;
        let r = one(&results);
        assert_eq!(r.result, "pass", "{name}: {r:#?}");
        assert_eq!(r.props["header.d"], "example.com", "{name}");
        assert_eq!(r.props["header.i"], "@example.com", "{name}");
        let (selector, algo) = if name.starts_with("ed") {
            ("ed", "ed25519-sha256")
        } else {
            ("rsa", "rsa-sha256")
        };
        assert_eq!(r.props["header.s"], selector, "{name}");
        assert_eq!(r.props["header.a"], algo, "{name}");
        let text = String::from_utf8_lossy(message(name));
        let b: String = text
            .split("b=")
            .nth(1)
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(8)
            .collect();
        assert_eq!(r.props["header.b"], b, "{name}");
    }
}

#[tokio::test]
async fn several_signatures_one_result_each_top_first() {
    let (_dns, auth) = env().await;
    let results = auth.dkim_verify(message("two")).await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].props["header.s"], "ed");
    assert_eq!(results[1].props["header.s"], "rsa");
    assert!(results.iter().all(|r| r.result == "pass"), "{results:#?}");
    assert_ne!(results[0].props["header.b"], results[1].props["header.b"]);
}

#[tokio::test]
async fn what_must_not_pass() {
    let (_dns, auth) = env().await;
    let cases = [
        ("tampered-body", "fail", "body hash did not verify"),
        ("tampered-header", "fail", "signature did not verify"),
        ("revoked", "fail", "revoked"),
        ("expired", "fail", "signature expired"),
        ("small-key", "fail", "policy: 512-bit RSA key"),
        ("wrong-key", "fail", "signature did not verify"),
        ("key-type", "fail", "k=ed25519"),
    ];
    for (name, result, reason) in cases {
        let results = auth.dkim_verify(message(name)).await;
        let r = one(&results);
        assert_result(r, result, reason);
        assert_eq!(r.props["header.d"], "example.com", "{name}");
    }
}

/// `s=` of a signed message replaced (the key lookup comes before the
/// signature is checked, so the result is about the key).
fn with_selector(name: &str, selector: &str) -> Vec<u8> {
    let text = String::from_utf8(message(name).to_vec()).unwrap();
    text.replacen("s=rsa;", &format!("s={selector};"), 1)
        .into_bytes()
}

#[tokio::test]
async fn key_lookup_problems() {
    let (_dns, auth) = env().await;
    let r = auth
        .dkim_verify(&with_selector("rsa-relaxed", "nokey"))
        .await;
    assert_result(
        one(&r),
        "permerror",
        "no key record at nokey._domainkey.example.com",
    );
    let r = auth
        .dkim_verify(&with_selector("rsa-relaxed", "broken"))
        .await;
    assert_result(one(&r), "temperror", "broken._domainkey.example.com");
}

#[tokio::test]
async fn unsigned_and_malformed() {
    let (_dns, auth) = env().await;
    assert!(auth.dkim_verify(MESSAGE.as_bytes()).await.is_empty());
    let bad = format!("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa\r\n{MESSAGE}");
    let r = auth.dkim_verify(bad.as_bytes()).await;
    assert_result(one(&r), "permerror", "no b= tag");
    assert_eq!(r[0].props["header.d"], "example.com");
    let dup = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; d=example.org; s=rsa; h=from; bh=AA==; b=AA==\r\n{MESSAGE}"
    );
    assert_result(
        one(&auth.dkim_verify(dup.as_bytes()).await),
        "permerror",
        "duplicate d=",
    );
    let sha1 = format!(
        "DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=rsa; h=from; bh=AA==; b=AA==\r\n{MESSAGE}"
    );
    assert_result(
        one(&auth.dkim_verify(sha1.as_bytes()).await),
        "fail",
        "policy: rsa-sha1",
    );
    let no_from = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=to:subject; bh=AA==; b=AA==\r\n{MESSAGE}"
    );
    assert_result(
        one(&auth.dkim_verify(no_from.as_bytes()).await),
        "permerror",
        "From",
    );
    let outside = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; i=@example.org; s=rsa; h=from; bh=AA==; b=AA==\r\n{MESSAGE}"
    );
    assert_result(
        one(&auth.dkim_verify(outside.as_bytes()).await),
        "permerror",
        "not within d=",
    );
}

/// 1,000 signatures: ten are checked, and quickly; the rest are only
/// counted. A huge header section costs time linear in its size.
#[tokio::test]
async fn abuse_is_bounded() {
    let (_dns, auth) = env().await;
    let signed = message("rsa-relaxed");
    let sig_end = signed.windows(4).position(|w| w == b"\r\nFr").unwrap() + 2;
    let one_sig = &signed[..sig_end];
    let mut many = Vec::new();
    for _ in 0..1000 {
        many.extend_from_slice(one_sig);
    }
    many.extend_from_slice(&signed[sig_end..]);
    let started = Instant::now();
    let results = auth.dkim_verify(&many).await;
    let took = started.elapsed();
    assert_eq!(results.len(), MAX_DKIM_SIGNATURES);
    assert!(results.iter().all(|r| r.result == "pass"), "{results:#?}");
    assert!(
        took < Duration::from_secs(10),
        "1,000 signatures took {took:?}"
    );

    // A 20 MB header section (100,000 fields of 200 octets) after the
    // signature, and a body of 5 MB.
    let mut huge = one_sig.to_vec();
    for n in 0..100_000 {
        huge.extend_from_slice(format!("X-Filler-{n}: {}\r\n", "x".repeat(180)).as_bytes());
    }
    huge.extend_from_slice(&signed[sig_end..]);
    huge.extend_from_slice("more body text\r\n".repeat(300_000).as_bytes());
    let started = Instant::now();
    let results = auth.dkim_verify(&huge).await;
    let took = started.elapsed();
    assert_result(one(&results), "fail", "body hash did not verify");
    assert!(
        took < Duration::from_secs(20),
        "a huge message took {took:?}"
    );
}

#[tokio::test]
async fn key_lookups_are_bounded_by_the_time_limit() {
    let (_sock, auth) = common::silent_authenticator(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = auth.dkim_verify(message("rsa-relaxed")).await;
    assert_result(one(&r), "temperror", "timed out");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The checks together as the reception path runs them: SPF and DKIM,
/// DMARC over both, the header written for them.
#[tokio::test]
async fn spf_dkim_dmarc_and_the_header() {
    let s = signed();
    let zone = TestZone::new();
    for (selector, record) in &s.records {
        zone.txt(&format!("{selector}._domainkey.example.com"), record);
    }
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("_dmarc.example.com", "v=DMARC1; p=reject; adkim=s; aspf=s");
    let (_dns, auth) = common::authenticator(zone, common::limits()).await;
    let m = message("rsa-relaxed");
    let dkim = auth.dkim_verify(m).await;
    let spf = auth
        .spf_check_host(
            "198.51.100.7".parse().unwrap(),
            "mx.example.net",
            "example.com",
            Some("bounce@example.com"),
        )
        .await;
    assert_eq!(spf.disposition, "fail");
    let dmarc = auth.dmarc_check(m, "example.com", &spf.result, &dkim).await;
    assert_eq!(dmarc.result.result, "pass", "{dmarc:?}");
    assert!(dmarc.dkim_aligned && !dmarc.spf_aligned);
    assert_eq!(dmarc.disposition, "none");
    let mut results = dkim.clone();
    results.push(spf.result.clone());
    results.push(dmarc.result.clone());
    let h = ironpost_authn::header::authentication_results("mx.example.org", &results);
    assert!(
        h.starts_with(
            "Authentication-Results: mx.example.org;\r\n\tdkim=pass header.a=rsa-sha256 "
        ),
        "{h}"
    );
    assert!(h.contains(" header.d=example.com"), "{h}");
    assert!(h.contains("\tspf=fail reason="), "{h}");
    assert!(h.contains("smtp.mailfrom=bounce@example.com;"), "{h}");
    assert!(
        h.contains("\tdmarc=pass reason=\"DKIM d=example.com aligned\""),
        "{h}"
    );
    assert!(h.contains("policy.dmarc=reject\r\n"), "{h}");
}
