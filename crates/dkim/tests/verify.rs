//! Independent verification: messages signed here are verified by dkimpy
//! (Python, tests/verify_dkim.py) and by mail-auth's own verifier, with the
//! DNS records produced by the key tooling (`generate` + `dns_record`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use common::*;
use ironpost_dkim::{
    dns_record, generate, Algorithm, Canon, DnsRecord, Signer, SignerConfig, SigningKey,
};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, ResolverCache, Txt};

const DOMAIN: &str = "example.com";

struct TestKey {
    pem: ironpost_dkim::Zeroizing<Vec<u8>>,
    key: SigningKey,
    selector: &'static str,
    record: DnsRecord,
}

/// One RSA-2048 and one Ed25519 key, made by `generate`, with the DNS
/// records `dns_record` prints for them.
fn keys() -> &'static [TestKey; 2] {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = |algo, bits, selector| {
            let (pem, public) = generate(algo, bits).unwrap();
            let key = SigningKey::from_bytes(algo, &pem).unwrap();
            let record = dns_record(DOMAIN, selector, algo, &public).unwrap();
            TestKey {
                pem,
                key,
                selector,
                record,
            }
        };
        [
            make(Algorithm::RsaSha256, 2048, "rsa2048"),
            make(Algorithm::Ed25519Sha256, 0, "ed1"),
        ]
    })
}

fn signer(k: &TestKey, f: impl FnOnce(&mut SignerConfig)) -> Signer {
    let mut cfg = SignerConfig::new(DOMAIN, k.selector);
    f(&mut cfg);
    Signer::new(cfg, k.key.clone()).unwrap()
}

fn sign(s: &Signer, message: &[u8]) -> Vec<u8> {
    let header = s.sign(message).unwrap();
    assert!(header.starts_with("DKIM-Signature: v=1; a="), "{header}");
    assert!(header.ends_with("\r\n"), "{header:?}");
    let mut out = header.into_bytes();
    out.extend_from_slice(message);
    out
}

const BASIC: &str = "From: Alice <alice@example.com>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Quarterly report\r\n\
Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\
Message-ID: <abc123@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hello Bob,\r\n\
\r\n\
the numbers are in.  Two  spaces   here.\r\n";

const TRAILING_BLANK_LINES: &str = "From: alice@example.com\r\n\
To: bob@example.net\r\n\
Subject: trailing blank lines\r\n\
\r\n\
Body line   \r\n\
with trailing whitespace \t \r\n\
\r\n\
\r\n\
\r\n";

const FOLDED: &str = "From: Alice\r\n  <alice@example.com>\r\n\
To: bob@example.net,\r\n\tcarol@example.net,\r\n   dave@example.net\r\n\
Subject: a subject that is\r\n folded   over\r\n\t several lines\r\n\
X-Unsigned: not in h=\r\n\
Received: from a by b; Mon, 01 Jun 2026 10:00:00 +0000\r\n\
Received: from c by d; Mon, 01 Jun 2026 09:59:00 +0000\r\n\
\r\n\
body\r\n";

fn eight_bit() -> Vec<u8> {
    "From: Jörg Müller <joerg@example.com>\r\n\
To: Zoë <zoe@example.net>\r\n\
Subject: Grüße aus Köln – 東京 🚀\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Schöne Grüße,\r\n\
ça va? Ελληνικά, русский, 日本語.\r\n"
        .as_bytes()
        .to_vec()
}

struct Case {
    name: String,
    signed: Vec<u8>,
}

/// The signing matrix: both algorithms × canonicalizations × messages.
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for k in keys() {
        let algo = k.key.algorithm().k_tag();
        let canons = [
            (Canon::Relaxed, Canon::Relaxed),
            (Canon::Simple, Canon::Simple),
            (Canon::Relaxed, Canon::Simple),
            (Canon::Simple, Canon::Relaxed),
        ];
        let messages: Vec<(&str, Vec<u8>)> = vec![
            ("basic", BASIC.as_bytes().to_vec()),
            (
                "trailing-blank-lines",
                TRAILING_BLANK_LINES.as_bytes().to_vec(),
            ),
            ("8bit-utf8", eight_bit()),
            ("folded-headers", FOLDED.as_bytes().to_vec()),
        ];
        for (ch, cb) in canons {
            for (mname, msg) in &messages {
                let s = signer(k, |c| {
                    c.header_canonicalization = ch;
                    c.body_canonicalization = cb;
                });
                out.push(Case {
                    name: format!("{algo}-{ch}-{cb}-{mname}"),
                    signed: sign(&s, msg),
                });
            }
        }
        for (mname, msg) in &messages {
            let s = signer(k, |c| {
                c.over_sign = true;
                c.headers = vec![
                    "From".into(),
                    "To".into(),
                    "Subject".into(),
                    "Received".into(),
                    "Cc".into(),
                ];
            });
            out.push(Case {
                name: format!("{algo}-oversign-{mname}"),
                signed: sign(&s, msg),
            });
        }
        let s = signer(k, |c| c.expiration = Some(3600));
        out.push(Case {
            name: format!("{algo}-expiration"),
            signed: sign(&s, BASIC.as_bytes()),
        });
        let s = signer(k, |c| {
            c.header_canonicalization = Canon::Simple;
            c.body_canonicalization = Canon::Simple;
            c.over_sign = true;
        });
        out.push(Case {
            name: format!("{algo}-simple-oversign-defaults-8bit"),
            signed: sign(&s, &eight_bit()),
        });
    }
    // RSA and Ed25519 side by side (the recommended set-up).
    let [rsa, ed] = keys();
    let inner = sign(&signer(ed, |_| {}), BASIC.as_bytes());
    let both = sign(&signer(rsa, |_| {}), &inner);
    out.push(Case {
        name: "rsa-and-ed25519".into(),
        signed: both,
    });
    out
}

fn records_json(dir: &Path) -> std::path::PathBuf {
    let mut map = serde_json::Map::new();
    for k in keys() {
        map.insert(
            k.record.name.clone(),
            serde_json::Value::String(k.record.txt_value()),
        );
    }
    let path = dir.join("records.json");
    std::fs::write(&path, serde_json::Value::Object(map).to_string()).unwrap();
    path
}

/// Runs dkimpy over the messages; returns (file name → all signatures
/// verified, signature count) and the raw output.
fn dkimpy_verify(cases: &[Case]) -> (HashMap<String, (bool, u64)>, String) {
    let dir = tempfile::tempdir().unwrap();
    let records = records_json(dir.path());
    let mut files = Vec::new();
    for case in cases {
        let path = dir.path().join(format!("{}.eml", case.name));
        std::fs::write(&path, &case.signed).unwrap();
        files.push(path);
    }
    let script = crate_dir().join("tests/verify_dkim.py");
    let out = Command::new(dkimpy_python())
        .arg(&script)
        .arg(&records)
        .args(&files)
        .output()
        .expect("run verify_dkim.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "verify_dkim.py failed to run: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut results = HashMap::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = Path::new(v["file"].as_str().unwrap())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let count = v["signatures"].as_u64().unwrap();
        let ok = count > 0
            && v["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r.as_bool() == Some(true));
        results.insert(file, (ok, count));
    }
    (results, stdout)
}

#[test]
fn dkimpy_verifies_every_signature() {
    let cases = cases();
    let (results, raw) = dkimpy_verify(&cases);
    let mut failed = Vec::new();
    for case in &cases {
        match results.get(&case.name) {
            Some((true, _)) => {}
            _ => failed.push(case.name.clone()),
        }
    }
    assert!(failed.is_empty(), "dkimpy failed: {failed:?}\n{raw}");
    assert_eq!(results["rsa-and-ed25519"].1, 2);
    println!("dkimpy verified {} messages", cases.len());
}

#[test]
fn dkimpy_rejects_tampering() {
    let [rsa, ed] = keys();
    // (case, should dkimpy accept it?)
    let mut cases: Vec<(Case, bool)> = Vec::new();
    let prepend_subject = |signed: Vec<u8>| -> Vec<u8> {
        // Insert an extra Subject above the signed one (right after the
        // DKIM-Signature header, before From).
        let mut text = String::from_utf8(signed).unwrap();
        let pos = text.find("\r\nFrom: ").unwrap() + 2;
        text.insert_str(pos, "Subject: injected\r\n");
        text.into_bytes()
    };
    for k in [rsa, ed] {
        let algo = k.key.algorithm().k_tag();
        let signed = sign(&signer(k, |_| {}), BASIC.as_bytes());
        let text = String::from_utf8(signed.clone()).unwrap();
        cases.push((
            Case {
                name: format!("{algo}-body-changed"),
                signed: text
                    .replace("numbers are in", "numbers are out")
                    .into_bytes(),
            },
            false,
        ));
        cases.push((
            Case {
                name: format!("{algo}-subject-changed"),
                signed: text
                    .replace("Subject: Quarterly report", "Subject: Quarterly rep0rt")
                    .into_bytes(),
            },
            false,
        ));
        // The gap over-signing closes: without it, a second Subject above
        // the signed one still verifies (verifiers take the bottom one)...
        cases.push((
            Case {
                name: format!("{algo}-plain-subject-prepended"),
                signed: prepend_subject(signed),
            },
            true,
        ));
        // ...with it, the signature breaks.
        let over = sign(&signer(k, |c| c.over_sign = true), BASIC.as_bytes());
        cases.push((
            Case {
                name: format!("{algo}-oversigned-subject-prepended"),
                signed: prepend_subject(over),
            },
            false,
        ));
        // A header that was absent (Cc) cannot be added either way.
        let mut added_cc = text.clone();
        let pos = added_cc.find("\r\n\r\n").unwrap() + 2;
        added_cc.insert_str(pos, "Cc: mallory@example.org\r\n");
        cases.push((
            Case {
                name: format!("{algo}-absent-cc-added"),
                signed: added_cc.into_bytes(),
            },
            false,
        ));
        // The other key published for the selector.
        let other = if k.selector == rsa.selector { ed } else { rsa };
        let wrong = sign(
            &Signer::new(SignerConfig::new(DOMAIN, other.selector), k.key.clone()).unwrap(),
            BASIC.as_bytes(),
        );
        cases.push((
            Case {
                name: format!("{algo}-wrong-key"),
                signed: wrong,
            },
            false,
        ));
    }
    let (list, expected): (Vec<Case>, Vec<bool>) = cases.into_iter().unzip();
    let (results, raw) = dkimpy_verify(&list);
    for (case, expect) in list.iter().zip(expected) {
        let verdict = results
            .get(&case.name)
            .unwrap_or_else(|| panic!("no dkimpy result for {}\n{raw}", case.name));
        assert_eq!(
            verdict.0, expect,
            "{}: dkimpy verdict differs from expected {expect}\n{raw}",
            case.name
        );
    }
}

/// h= lists each over-signed header one more time than it occurs.
#[test]
fn over_sign_h_counts() {
    let k = &keys()[1];
    let h_tag = |header: &str| -> Vec<String> {
        let unfolded = header.replace("\r\n\t", " ").replace("\r\n", "");
        let h = unfolded
            .split(';')
            .map(str::trim)
            .find_map(|t| t.strip_prefix("h="))
            .unwrap()
            .to_string();
        h.split(':')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    };
    let count = |list: &[String], name: &str| list.iter().filter(|h| *h == name).count();
    let headers = vec![
        "From".to_string(),
        "To".to_string(),
        "Subject".to_string(),
        "Received".to_string(),
        "Cc".to_string(),
    ];

    let over = signer(k, |c| {
        c.over_sign = true;
        c.headers = headers.clone();
    });
    let h = h_tag(&over.sign(FOLDED.as_bytes()).unwrap());
    assert_eq!(count(&h, "from"), 2, "{h:?}");
    assert_eq!(count(&h, "to"), 2, "{h:?}");
    assert_eq!(count(&h, "subject"), 2, "{h:?}");
    assert_eq!(count(&h, "received"), 3, "{h:?}");
    assert_eq!(count(&h, "cc"), 1, "{h:?}");
    assert_eq!(count(&h, "x-unsigned"), 0, "{h:?}");

    let plain = signer(k, |c| c.headers = headers.clone());
    let h = h_tag(&plain.sign(FOLDED.as_bytes()).unwrap());
    assert_eq!(count(&h, "from"), 1, "{h:?}");
    assert_eq!(count(&h, "received"), 2, "{h:?}");
    // An absent listed header is still signed as absent.
    assert_eq!(count(&h, "cc"), 1, "{h:?}");
}

#[test]
fn expiration_and_tags() {
    let k = &keys()[0];
    let header = signer(k, |c| c.expiration = Some(600))
        .sign(BASIC.as_bytes())
        .unwrap();
    let unfolded = header.replace("\r\n\t", " ");
    let tag = |name: &str| -> u64 {
        unfolded
            .split(';')
            .map(str::trim)
            .find_map(|t| t.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(tag("x=") - tag("t="), 600);
    assert!(unfolded.contains("a=rsa-sha256"));
    assert!(unfolded.contains("d=example.com"));
    assert!(unfolded.contains("s=rsa2048"));
    assert!(unfolded.contains("c=relaxed/relaxed"));
    // Folded lines stay short.
    for line in header.split("\r\n") {
        assert!(line.len() <= 80, "{line}");
    }
}

/// What keygen prints: the records verify above; here their shape, and
/// that OpenSSL reads the generated private keys and agrees on the public key.
#[test]
fn generated_keys_and_records() {
    let [rsa, ed] = keys();
    assert_eq!(rsa.record.name, "rsa2048._domainkey.example.com");
    // RSA-2048: about 410 characters, so two strings.
    assert_eq!(rsa.record.txt_strings.len(), 2, "{:?}", rsa.record);
    assert_eq!(rsa.record.txt_strings[0].len(), 255);
    assert!(rsa
        .record
        .txt_value()
        .starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
    assert_eq!(ed.record.txt_strings.len(), 1);
    assert!(ed.record.txt_value().starts_with("v=DKIM1; k=ed25519; p="));
    for k in [rsa, ed] {
        let pem = String::from_utf8(k.pem.to_vec()).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "PKCS#8 expected"
        );
        let algo = k.key.algorithm();
        assert!(ironpost_dkim::record_matches(&k.record.zone_line(), algo, &k.pem).unwrap());
        assert!(ironpost_dkim::record_matches(&k.record.txt_value(), algo, &k.pem).unwrap());
        if have_openssl() {
            openssl(&["pkey", "-check", "-noout"], Some(&k.pem));
            let spki = public_der(&k.pem);
            match algo {
                Algorithm::RsaSha256 => assert_eq!(k.key.public_key_der(), &spki[..]),
                Algorithm::Ed25519Sha256 => {
                    assert_eq!(k.key.public_key_der(), &spki[spki.len() - 32..])
                }
            }
        }
    }
}

// --- mail-auth's own verifier ---------------------------------------------

/// A TXT cache pre-filled with the test records, so mail-auth never queries
/// DNS (the resolver behind it points at loopback anyway).
struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

fn mail_auth_verifier() -> (MessageAuthenticator, TxtCache) {
    use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    let config = ResolverConfig::from_name_servers(vec![NameServerConfig::udp(
        std::net::Ipv4Addr::LOCALHOST.into(),
    )]);
    let authenticator = MessageAuthenticator::new(config, ResolverOpts::default()).unwrap();
    let cache = TxtCache(Mutex::new(HashMap::new()));
    for k in keys() {
        let key = DomainKey::parse(k.record.txt_value().as_bytes()).unwrap();
        let txt: Txt = key.into();
        cache
            .0
            .lock()
            .unwrap()
            .insert(format!("{}.", k.record.name).into_boxed_str(), txt);
    }
    (authenticator, cache)
}

async fn mail_auth_results(
    auth: &MessageAuthenticator,
    cache: &TxtCache,
    message: &[u8],
) -> Vec<DkimResult> {
    let parsed = AuthenticatedMessage::parse(message).expect("parse message");
    let params = mail_auth::Parameters::new(&parsed).with_txt_cache(cache);
    auth.verify_dkim(params)
        .await
        .iter()
        .map(|o| o.result().clone())
        .collect()
}

#[tokio::test]
async fn mail_auth_verifies_every_signature() {
    let (auth, cache) = mail_auth_verifier();
    let cases = cases();
    let mut failed = Vec::new();
    for case in &cases {
        let results = mail_auth_results(&auth, &cache, &case.signed).await;
        if results.is_empty() || results.iter().any(|r| *r != DkimResult::Pass) {
            failed.push(format!("{}: {results:?}", case.name));
        }
    }
    assert!(failed.is_empty(), "mail-auth failed: {failed:#?}");

    // And it notices tampering.
    let signed = sign(&signer(&keys()[1], |_| {}), BASIC.as_bytes());
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("numbers are in", "numbers are out");
    let results = mail_auth_results(&auth, &cache, tampered.as_bytes()).await;
    // (mail-auth reports a body hash mismatch as Neutral, a bad signature as Fail.)
    assert!(
        matches!(results.as_slice(), [r] if *r != DkimResult::Pass),
        "{results:?}"
    );
}

/// Signing from many threads at once with one shared signer.
#[test]
fn concurrent_signing() {
    let s = std::sync::Arc::new(signer(&keys()[1], |_| {}));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    s.sign(BASIC.as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
