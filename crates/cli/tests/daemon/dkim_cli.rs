//! `ironpost dkim keygen` and `ironpost dkim verify-dns`, run as the real
//! binary: key files and their modes, the printed DNS record, and record
//! checks both offline (`--txt`) and through DNS lookups against loopback
//! DNS servers (`--resolver`).

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use ironpost_dkim::{check_record, Algorithm, RecordCheck, SigningKey};
use ironpost_testkit::dns::{TestDnsServer, TestZone};

const BIN: &str = env!("CARGO_BIN_EXE_ironpost");
const ED: Algorithm = Algorithm::Ed25519Sha256;
const RSA: Algorithm = Algorithm::RsaSha256;

fn ironpost(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run ironpost")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// What `keygen` printed and wrote.
#[derive(Clone)]
struct Keygen {
    key: PathBuf,
    name: String,
    value: String,
    zone_line: String,
    stdout: String,
}

impl Keygen {
    /// The zone line's quoted strings.
    fn zone_strings(&self) -> Vec<String> {
        self.zone_line
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn key_str(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

fn keygen(cwd: &Path, domain: &str, selector: &str, algo: &str, extra: &[&str]) -> Keygen {
    let mut args = vec![
        "dkim",
        "keygen",
        "--domain",
        domain,
        "--selector",
        selector,
        "--algo",
        algo,
    ];
    args.extend_from_slice(extra);
    let out = ironpost(cwd, &args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "keygen failed: {stdout}\nstderr: {stderr}"
    );
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .to_string()
    };
    let key = field("Wrote the ");
    let key = key
        .split_once(" private key to ")
        .and_then(|(_, rest)| rest.strip_suffix(" (mode 0600)."))
        .unwrap_or_else(|| panic!("key path line: {key}"));
    let zone_line = stdout
        .lines()
        .find(|l| l.contains(" IN TXT "))
        .unwrap_or_else(|| panic!("no zone line in:\n{stdout}"))
        .to_string();
    Keygen {
        key: cwd.join(key),
        name: field("  name:  "),
        value: field("  value: "),
        zone_line,
        stdout,
    }
}

/// `verify-dns`: (success, stdout, stderr).
fn verify(
    cwd: &Path,
    domain: &str,
    selector: &str,
    key: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "dkim",
        "verify-dns",
        "--domain",
        domain,
        "--selector",
        selector,
        "--key",
        key,
    ];
    args.extend_from_slice(extra);
    let out = ironpost(cwd, &args);
    let (stdout, stderr) = text(&out);
    assert!(
        !stderr.contains("panicked"),
        "verify-dns panicked: {stderr}"
    );
    (out.status.success(), stdout, stderr)
}

/// RSA keys are slow to generate in a debug build: two keys, made once
/// (one by `keygen`, one by the library) and shared by the tests.
struct RsaFixture {
    dir: PathBuf,
    key: Keygen,
    other_key: PathBuf,
}

fn rsa() -> &'static RsaFixture {
    static F: OnceLock<RsaFixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("dkim-cli-rsa-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let other = std::thread::spawn(|| ironpost_dkim::generate(RSA, 2048).unwrap());
        let key = keygen(
            &dir,
            "example.org",
            "rsa2026",
            "rsa",
            &["--bits", "2048", "--out", "keys"],
        );
        let (pem, _) = other.join().unwrap();
        let other_key = dir.join("other-rsa.key");
        std::fs::write(&other_key, &pem[..]).unwrap();
        RsaFixture {
            dir,
            key,
            other_key,
        }
    })
}

#[test]
fn keygen_ed25519_writes_a_private_key_and_prints_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let k = keygen(
        dir.path(),
        "example.com",
        "ed2026",
        "ed25519",
        &["--out", "keys"],
    );

    let expected = dir.path().join("keys/example.com/ed2026.key");
    assert_eq!(k.key, expected);
    assert_eq!(mode(&k.key), 0o600, "the key file is private");
    assert_eq!(mode(&dir.path().join("keys/example.com")), 0o700);
    let pem = std::fs::read(&k.key).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    SigningKey::from_bytes(ED, &pem).expect("a usable Ed25519 key");

    assert_eq!(k.name, "ed2026._domainkey.example.com");
    assert!(k.value.starts_with("v=DKIM1; k=ed25519; p="), "{}", k.value);
    assert_eq!(
        k.zone_line,
        format!("ed2026._domainkey.example.com. IN TXT \"{}\"", k.value)
    );
    assert_eq!(
        check_record(&k.value, ED, &pem).unwrap(),
        RecordCheck::Match
    );
    assert_eq!(
        check_record(&k.zone_line, ED, &pem).unwrap(),
        RecordCheck::Match
    );

    // The private key is never printed.
    let body: String = String::from_utf8_lossy(&pem)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!k.stdout.contains(&body));
    assert!(!k.stdout.contains("PRIVATE KEY"));

    // Default output directory: ./dkim.
    let d = keygen(dir.path(), "example.com", "ed2027", "ed25519", &[]);
    assert_eq!(d.key, dir.path().join("dkim/example.com/ed2027.key"));
    assert_eq!(mode(&d.key), 0o600);
    assert_ne!(d.value, k.value, "a fresh key each time");
}

#[test]
fn keygen_rsa_splits_the_record_into_255_byte_strings() {
    let f = rsa();
    let k = &f.key;
    assert_eq!(k.key, f.dir.join("keys/example.org/rsa2026.key"));
    assert_eq!(mode(&k.key), 0o600);
    let pem = std::fs::read(&k.key).unwrap();
    SigningKey::from_bytes(RSA, &pem).expect("a usable RSA key");

    assert_eq!(k.name, "rsa2026._domainkey.example.org");
    assert!(k.value.starts_with("v=DKIM1; k=rsa; p="), "{}", k.value);
    assert!(k.value.len() > 255, "a 2048-bit record needs splitting");
    let strings = k.zone_strings();
    assert!(strings.len() >= 2, "{}", k.zone_line);
    assert!(strings.iter().all(|s| s.len() <= 255));
    assert!(strings[..strings.len() - 1].iter().all(|s| s.len() == 255));
    assert_eq!(strings.concat(), k.value);
    assert!(k
        .zone_line
        .starts_with("rsa2026._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p="));
    assert_eq!(
        check_record(&k.zone_line, RSA, &pem).unwrap(),
        RecordCheck::Match
    );
    assert!(!k.stdout.contains("PRIVATE KEY"));
}

#[test]
fn keygen_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let first = keygen(dir.path(), "example.com", "s1", "ed25519", &[]);
    let before = std::fs::read(&first.key).unwrap();

    let fails = |args: &[&str], needle: &str| {
        let out = ironpost(dir.path(), args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} should fail: {stdout}");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let base = ["dkim", "keygen", "--domain", "example.com", "--selector"];

    // Never overwrites a key.
    fails(
        &[&base[..], &["s1", "--algo", "ed25519"]].concat(),
        "already exists",
    );
    assert_eq!(std::fs::read(&first.key).unwrap(), before);
    // Sizes and options.
    fails(
        &[&base[..], &["s2", "--algo", "rsa", "--bits", "1024"]].concat(),
        "2048",
    );
    fails(
        &[&base[..], &["s3", "--algo", "ed25519", "--bits", "2048"]].concat(),
        "--bits",
    );
    fails(&[&base[..], &["s4", "--algo", "dsa"]].concat(), "dsa");
    // Names that would escape the key directory.
    fails(
        &[
            "dkim",
            "keygen",
            "--domain",
            "../etc",
            "--selector",
            "s5",
            "--algo",
            "ed25519",
        ],
        "domain",
    );
    fails(
        &[&base[..], &["../s6", "--algo", "ed25519"]].concat(),
        "selector",
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("dkim/example.com"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, vec!["s1.key".to_string()]);
    assert!(!dir.path().join("etc").exists());
}

#[test]
fn verify_dns_offline_with_the_printed_record() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let ed = keygen(cwd, "example.com", "ed", "ed25519", &[]);
    let ed_other = keygen(cwd, "example.com", "ed-other", "ed25519", &[]);

    // The value and the zone line both verify, with and without --algo.
    for txt in [&ed.value, &ed.zone_line] {
        for algo in [&["--algo", "ed25519"][..], &[][..]] {
            let args = [&["--txt", txt.as_str()][..], algo].concat();
            let (ok, stdout, stderr) = verify(cwd, "example.com", "ed", ed.key_str(), &args);
            assert!(ok, "{stdout}\n{stderr}");
            assert!(stdout.starts_with("Match:"), "{stdout}");
        }
    }

    // Another key: non-zero, and the record it should have been.
    let (ok, stdout, stderr) = verify(
        cwd,
        "example.com",
        "ed",
        ed_other.key_str(),
        &["--txt", &ed.value],
    );
    assert!(!ok);
    assert!(stdout.starts_with("Mismatch:"), "{stdout}");
    assert!(stdout.contains("key mismatch"), "{stdout}");
    assert!(
        stdout.contains(&format!("expected: {}", ed_other.value)),
        "{stdout}"
    );
    assert!(stderr.contains("does not match"), "{stderr}");

    // An RSA record for an Ed25519 key: the algorithm is named.
    let f = rsa();
    let (ok, stdout, _) = verify(
        cwd,
        "example.com",
        "ed",
        ed.key_str(),
        &["--txt", &f.key.value],
    );
    assert!(!ok);
    assert!(stdout.contains("algorithm mismatch"), "{stdout}");
    assert!(stdout.contains("k=rsa"), "{stdout}");

    // A revoked key and a record that is not a DKIM key record.
    let (ok, stdout, _) = verify(
        cwd,
        "example.com",
        "ed",
        ed.key_str(),
        &["--txt", "v=DKIM1; k=ed25519; p="],
    );
    assert!(!ok);
    assert!(stdout.contains("revoked"), "{stdout}");
    let (ok, stdout, _) = verify(
        cwd,
        "example.com",
        "ed",
        ed.key_str(),
        &["--txt", "v=spf1 -all"],
    );
    assert!(!ok);
    assert!(stdout.starts_with("Mismatch:"), "{stdout}");

    // A key file that is not a key.
    let junk = cwd.join("junk.key");
    std::fs::write(&junk, "not a key").unwrap();
    let (ok, _, stderr) = verify(
        cwd,
        "example.com",
        "ed",
        junk.to_str().unwrap(),
        &["--txt", &ed.value],
    );
    assert!(!ok);
    assert!(stderr.contains("junk.key"), "{stderr}");
}

#[test]
fn verify_dns_offline_rsa() {
    let f = rsa();
    for txt in [&f.key.value, &f.key.zone_line] {
        let (ok, stdout, stderr) = verify(
            &f.dir,
            "example.org",
            "rsa2026",
            f.key.key_str(),
            &["--txt", txt],
        );
        assert!(ok, "{stdout}\n{stderr}");
        assert!(stdout.starts_with("Match:"), "{stdout}");
        assert!(stdout.contains("rsa public key"), "{stdout}");
    }
    let (ok, stdout, _) = verify(
        &f.dir,
        "example.org",
        "rsa2026",
        f.other_key.to_str().unwrap(),
        &["--algo", "rsa", "--txt", &f.key.value],
    );
    assert!(!ok);
    assert!(stdout.contains("key mismatch"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dns_looks_up_the_published_ed25519_record() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let ed = keygen(&cwd, "example.net", "sel1", "ed25519", &[]);
    let other = keygen(&cwd, "example.net", "sel2", "ed25519", &[]);

    let zone = TestZone::new();
    zone.txt(&ed.name, &ed.value);
    // sel2 publishes sel1's key: a mismatch for sel2's key.
    zone.txt(&other.name, &ed.value);
    zone.servfail("broken._domainkey.example.net");
    let dns = TestDnsServer::start(zone).await.unwrap();
    let resolver = dns.addr.to_string();

    let run = move |selector: &'static str, key: PathBuf| {
        let cwd = cwd.clone();
        let resolver = resolver.clone();
        tokio::task::spawn_blocking(move || {
            verify(
                &cwd,
                "example.net",
                selector,
                key.to_str().unwrap(),
                &["--resolver", &resolver],
            )
        })
    };

    let (ok, stdout, stderr) = run("sel1", ed.key.clone()).await.unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("Match: the TXT record at sel1._domainkey.example.net"),
        "{stdout}"
    );

    let (ok, stdout, _) = run("sel2", other.key.clone()).await.unwrap();
    assert!(!ok);
    assert!(stdout.contains("key mismatch"), "{stdout}");

    let (ok, stdout, _) = run("nosuch", ed.key.clone()).await.unwrap();
    assert!(!ok);
    assert!(
        stdout.contains("Missing: no TXT record is published at nosuch._domainkey.example.net"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run("broken", ed.key.clone()).await.unwrap();
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("DNS lookup"), "{stderr}");
}

/// A loopback DNS server whose TXT records are given string by string, so a
/// record can be split the way RFC 1035 requires above 255 bytes (the
/// testserver's `txt` writes one string).
fn multi_string_txt_server(records: Vec<(String, Vec<Vec<String>>)>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            resp.metadata.authoritative = true;
            resp.metadata.recursion_desired = query.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            let Some(q) = query.queries.first() else {
                continue;
            };
            resp.add_query(q.clone());
            let qname = q
                .name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            match records.iter().find(|(name, _)| *name == qname) {
                Some((_, txts)) if q.query_type() == RecordType::TXT => {
                    for strings in txts {
                        resp.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::TXT(TXT::new(strings.clone())),
                        ));
                    }
                }
                Some(_) => {}
                None => resp.metadata.response_code = ResponseCode::NXDomain,
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = sock.send_to(&bytes, peer);
            }
        }
    });
    addr
}

#[test]
fn verify_dns_looks_up_a_split_rsa_record() {
    let f = rsa();
    let strings = f.key.zone_strings();
    assert!(strings.len() >= 2);
    let other_pem = std::fs::read(&f.other_key).unwrap();
    let other_public = ironpost_dkim::public_key_from_private(RSA, &other_pem).unwrap();
    let other_record = ironpost_dkim::dns_record("example.org", "two", RSA, &other_public).unwrap();
    let server = multi_string_txt_server(vec![
        (f.key.name.clone(), vec![strings.clone()]),
        (
            "two._domainkey.example.org".to_string(),
            vec![strings.clone(), other_record.txt_strings.clone()],
        ),
    ]);
    let resolver = server.to_string();

    // The strings of the published record are joined without separators.
    let (ok, stdout, stderr) = verify(
        &f.dir,
        "example.org",
        "rsa2026",
        f.key.key_str(),
        &["--resolver", &resolver],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("Match:"), "{stdout}");

    let (ok, stdout, _) = verify(
        &f.dir,
        "example.org",
        "rsa2026",
        f.other_key.to_str().unwrap(),
        &["--resolver", &resolver],
    );
    assert!(!ok);
    assert!(stdout.contains("key mismatch"), "{stdout}");

    // Two key records at one selector are ambiguous, even if one matches.
    let (ok, stdout, _) = verify(
        &f.dir,
        "example.org",
        "two",
        f.key.key_str(),
        &["--resolver", &resolver],
    );
    assert!(!ok);
    assert!(stdout.contains("2 TXT records"), "{stdout}");
    assert!(stdout.contains("record 1: matches the key"), "{stdout}");
    assert!(stdout.contains("record 2: key mismatch"), "{stdout}");
}
