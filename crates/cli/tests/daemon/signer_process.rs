//! Keys out of the network process (the signer process).
//!
//! - After messages were signed with a file key (Ed25519 and RSA) and a
//!   Vault key, and ARC-sealed, all verified by dkimpy, the network
//!   process's memory holds none of the keys (DER, PEM or the parsed form)
//!   and not the signer's Vault token; the signers' memory holds the keys,
//!   so the search itself works.
//! - Killing the signer with SIGKILL under load loses nothing: it is
//!   restarted, and every message that got a 250 arrives signed (dkimpy).
//! - Under the network process's seccomp filter, `execve` fails (a hook
//!   compiled into debug builds only).
//! - With `--signer-user`, the signer runs as that user and serves key
//!   files only under `--signer-key-dir`.

use crate::common::status_field;
use base64::Engine;
use ironpost_dkim::{dns_record, generate, Algorithm};
use ironpost_testkit::sink::{Sink, SinkConfig};
use ironpost_testkit::vault::VaultServer;
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient};
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ironpost");

struct Key {
    path: PathBuf,
    pem: String,
}

fn key(dir: &Path, name: &str, algo: Algorithm, records: &mut HashMap<String, String>) -> Key {
    let (pem, public) = generate(algo, 2048).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &*pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let selector = name.trim_end_matches(".key");
    let rec = dns_record("signer.test", selector, algo, &public).unwrap();
    records.insert(rec.name.clone(), rec.txt_value());
    Key {
        path,
        pem: String::from_utf8(pem.to_vec()).unwrap(),
    }
}

/// The byte strings that would betray a key: its DER, a line of its PEM,
/// and the secret as the crypto libraries hold a parsed key: for RSA the
/// private exponent and primes as little-endian bignums (aws-lc), for
/// Ed25519 the second half of SHA-512(seed) (ring keeps it as is).
fn needles(pem: &str) -> Vec<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let line = pem.lines().nth(1).unwrap().as_bytes().to_vec();
    let mut out = vec![der.clone(), line];
    if let Some(at) = memchr::memmem::find(&der, &[0x04, 0x22, 0x04, 0x20]) {
        let seed = &der[at + 4..at + 36];
        let h = ring::digest::digest(&ring::digest::SHA512, seed);
        out.push(h.as_ref()[32..].to_vec());
    } else {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PrivateKeyParts;
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&der)
            .or_else(|_| {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                rsa::RsaPrivateKey::from_pkcs1_der(&der)
            })
            .unwrap();
        out.push(key.d().to_bytes_le());
        for p in key.primes() {
            out.push(p.to_bytes_le());
        }
    }
    out
}

/// How many times any of `needles` occurs in the readable memory of `pid`.
fn count_in_memory(pid: u32, needles: &[Vec<u8>]) -> usize {
    let maps = std::fs::File::open(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits = 0;
    for line in std::io::BufReader::new(maps).lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        let range = parts.next().unwrap();
        let perms = parts.next().unwrap();
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(a, 16).unwrap();
        let end = u64::from_str_radix(b, 16).unwrap();
        let mut buf = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        let Ok(n) = mem.read(&mut buf) else { continue };
        for needle in needles {
            hits += memchr::memmem::find_iter(&buf[..n], needle).count();
        }
    }
    hits
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(p);
        }
    }
    out
}

/// The signers serving the daemon (one per connection): the children of
/// its supervisor.
fn signer_pids(daemon: u32) -> Vec<u32> {
    let supervisor = children(daemon).into_iter().find(|p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("signer-supervisor"))
    });
    supervisor.map(children).unwrap_or_default()
}

fn signer_pid(daemon: u32) -> Option<u32> {
    signer_pids(daemon).into_iter().next()
}

fn policy(sink: &str, ed: &Key, rsa: &Key, vault: bool) -> String {
    // With Vault: a third DKIM signature from a Vault key, and an ARC set
    // sealed with the RSA file key, all through the signer.
    let vault_sign = if vault {
        "msg:dkim_sign(kumo.dkim.rsa_sha256_signer { domain = 'signer.test', selector = 'vault', \
         key = { vault_mount = 'secret', vault_path = 'dkim/signer.test' } })\n  \
         msg:arc_seal(kumo.dkim.rsa_sha256_signer { domain = 'signer.test', selector = 'rsa', \
         key = RSA_KEY }, 'mx.signer.test', {})"
            .replace("RSA_KEY", &format!("'{}'", rsa.path.display()))
    } else {
        String::new()
    };
    format!(
        r#"
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', relay_hosts = {{ '127.0.0.1' }} }}
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.ed25519_signer {{ domain = 'signer.test', selector = 'ed', key = '{ed}' }})
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{ domain = 'signer.test', selector = 'rsa', key = '{rsa}' }})
  {vault_sign}
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }}, retry_interval = '1s' }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ enable_tls = 'Disabled', prohibited_hosts = {{}} }}
end)
"#,
        ed = ed.path.display(),
        rsa = rsa.path.display(),
    )
}

fn mail(i: usize) -> Vec<u8> {
    format!(
        "From: <ann@signer.test>\r\nTo: <bob@dest.test>\r\nSubject: signed {i}\r\n\
         Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{i}@signer.test>\r\n\r\nbody {i}\r\n"
    )
    .into_bytes()
}

fn python() -> String {
    std::env::var("IRONPOST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a dkimpy script (`python ARGS records.json 0.eml 1.eml ...`, the
/// DNS records as JSON, one file per message) and requires success.
fn judge(
    args: &[&std::ffi::OsStr],
    what: &str,
    records: &HashMap<String, String>,
    messages: &[Vec<u8>],
) {
    let out = tempfile::tempdir().unwrap();
    let rec_path = out.path().join("records.json");
    std::fs::write(&rec_path, serde_json::to_vec(records).unwrap()).unwrap();
    let mut cmd = Command::new(python());
    cmd.args(args).arg(&rec_path);
    for (i, m) in messages.iter().enumerate() {
        let p = out.path().join(format!("{i}.eml"));
        std::fs::write(&p, m).unwrap();
        cmd.arg(p);
    }
    let result = cmd.output().unwrap();
    assert!(
        result.status.success(),
        "dkimpy rejected {what}:\n{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Every message verifies with dkimpy, with `per_message` signatures each.
fn verify_with_dkimpy(records: &HashMap<String, String>, messages: &[Vec<u8>], per_message: usize) {
    for m in messages {
        let text = String::from_utf8_lossy(m);
        assert_eq!(
            text.matches("DKIM-Signature:").count(),
            per_message,
            "{text}"
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dkim/tests/verify_dkim.py");
    judge(&[script.as_os_str()], "a signature", records, messages);
}

/// Every message's ARC chain passes dkimpy's `arc_verify`.
fn arc_verify_with_dkimpy(records: &HashMap<String, String>, messages: &[Vec<u8>]) {
    const SCRIPT: &str = r#"
import json, sys, dkim
records = {k.lower().rstrip("."): v for k, v in json.load(open(sys.argv[1])).items()}
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    v = records.get(name.lower().rstrip("."))
    return v.encode() if v is not None else None
ok = True
for f in sys.argv[2:]:
    cv, _, reason = dkim.arc_verify(open(f, "rb").read(), dnsfunc=dnsfunc)
    print(f, cv, reason)
    ok = ok and cv == b"pass"
sys.exit(0 if ok else 1)
"#;
    for m in messages {
        assert!(String::from_utf8_lossy(m).starts_with("ARC-Seal:"));
    }
    judge(
        &["-c".as_ref(), SCRIPT.as_ref()],
        "an ARC chain",
        records,
        messages,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_network_process_holds_no_key_and_no_token() {
    let vault = VaultServer::start().expect("rusty_vault (run scripts/install-rvault.sh)");
    let dir = tempfile::tempdir().unwrap();
    let mut records = HashMap::new();
    let ed = key(dir.path(), "ed.key", Algorithm::Ed25519Sha256, &mut records);
    let rsa = key(dir.path(), "rsa.key", Algorithm::RsaSha256, &mut records);
    let (vault_pem, vault_pub) = generate(Algorithm::RsaSha256, 2048).unwrap();
    let vault_pem = String::from_utf8(vault_pem.to_vec()).unwrap();
    let rec = dns_record("signer.test", "vault", Algorithm::RsaSha256, &vault_pub).unwrap();
    records.insert(rec.name.clone(), rec.txt_value());
    vault
        .write_secret("dkim/signer.test", json!({ "key": vault_pem }))
        .unwrap();

    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), SinkConfig::new())
        .await
        .unwrap();
    let d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy(&sink.addr().to_string(), &ed, &rsa, true))
            .env("VAULT_ADDR", vault.url())
            .env("IRONPOST_SIGNER_VAULT_TOKEN", vault.root_token()),
    )
    .unwrap();
    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    for i in 0..3 {
        let r = c
            .send_message("ann@signer.test", &["bob@dest.test"], &mail(i))
            .await
            .unwrap();
        assert_eq!(r.code, 250, "{r}");
    }
    let _ = c.quit().await;
    let h = sink.handle();
    assert!(
        h.wait_until(Duration::from_secs(20), |s| s.messages().len() == 3)
            .await,
        "not delivered: {}",
        d.stderr()
    );
    let delivered: Vec<Vec<u8>> = sink
        .snapshot()
        .messages()
        .iter()
        .map(|m| m.data.clone())
        .collect();
    verify_with_dkimpy(&records, &delivered, 3);
    arc_verify_with_dkimpy(&records, &delivered);

    let mut secrets = needles(&ed.pem);
    secrets.extend(needles(&rsa.pem));
    secrets.extend(needles(&vault_pem));
    let token = vec![vault.root_token().as_bytes().to_vec()];
    assert_eq!(
        count_in_memory(d.pid(), &secrets),
        0,
        "key material in the network process"
    );
    assert_eq!(
        count_in_memory(d.pid(), &token),
        0,
        "the signer's Vault token in the network process"
    );
    let signers = signer_pids(d.pid());
    assert!(!signers.is_empty(), "no signer process");
    for (name, k) in [("ed", &ed.pem), ("rsa", &rsa.pem), ("vault", &vault_pem)] {
        // The parsed key is in a signer (each loads what it is asked for).
        let hits: usize = signers
            .iter()
            .map(|&p| count_in_memory(p, &needles(k)))
            .sum();
        assert!(
            hits > 0,
            "the search finds no {name} key in the signers either"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_signer_is_restarted_and_nothing_leaves_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = HashMap::new();
    let ed = key(dir.path(), "ed.key", Algorithm::Ed25519Sha256, &mut records);
    let rsa = key(dir.path(), "rsa.key", Algorithm::RsaSha256, &mut records);
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), SinkConfig::new())
        .await
        .unwrap();
    let d = Daemon::start(DaemonOptions::new(BIN).policy(policy(
        &sink.addr().to_string(),
        &ed,
        &rsa,
        false,
    )))
    .unwrap();
    let addr = d.smtp_addr();
    let pid = d.pid();

    // Four clients send while the signer is killed, repeatedly.
    let senders: Vec<_> = (0..4)
        .map(|t| {
            tokio::spawn(async move {
                let mut accepted = 0;
                let (mut c, _) = SmtpClient::connect(addr).await.unwrap();
                c.ehlo("client.test").await.unwrap();
                for i in 0..25 {
                    let r = c
                        .send_message("ann@signer.test", &["bob@dest.test"], &mail(t * 100 + i))
                        .await
                        .unwrap();
                    match r.code {
                        250 => accepted += 1,
                        451 => assert_eq!(r.enhanced().as_deref(), Some("4.3.0"), "{r}"),
                        _ => panic!("{r}"),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = c.quit().await;
                accepted
            })
        })
        .collect();
    let mut kills = 0;
    let started = Instant::now();
    while kills < 3 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if let Some(s) = signer_pid(pid) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(s as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            kills += 1;
        }
    }
    assert!(kills >= 2, "the signer was not seen to kill");
    let mut accepted = 0;
    for s in senders {
        accepted += s.await.unwrap();
    }
    assert!(accepted > 50, "only {accepted} of 100 accepted");
    let h = sink.handle();
    assert!(
        h.wait_until(Duration::from_secs(30), |s| s.messages().len() >= accepted)
            .await,
        "not all delivered"
    );
    let delivered: Vec<Vec<u8>> = sink
        .snapshot()
        .messages()
        .iter()
        .map(|m| m.data.clone())
        .collect();
    assert_eq!(delivered.len(), accepted);
    verify_with_dkimpy(&records, &delivered, 2);
    let err = stderr_with(&d, "starting another signer");
    assert!(err.contains("starting another signer"), "{err}");
}

/// The daemon's stderr once it contains `needle` (it is read by another
/// thread, so it can lag behind `ready`), or after 10 s.
/// A key outside the signer's directories was refused: the message waits
/// (`451 4.3.0`) and the log says why.
fn assert_refused_outside_key_dirs(d: &Daemon, r: &ironpost_testkit::Reply) {
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (451, Some("4.3.0")),
        "{r}"
    );
    let err = stderr_with(d, "outside the signer's key directories");
    assert!(
        err.contains("outside the signer's key directories"),
        "{err}"
    );
}

fn stderr_with(d: &Daemon, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let err = d.stderr();
        if err.contains(needle) || start.elapsed() > Duration::from_secs(10) {
            return err;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn execve_fails_in_the_sandboxed_network_process() {
    let policy = r#"
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = './ironpost-data/spool' }
  kumo.configure_local_logs { log_dir = './ironpost-data/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }
end)
"#;
    let d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy)
            .env("IRONPOST_TEST_EXEC_PROBE", "/bin/true"),
    )
    .unwrap();
    let err = stderr_with(&d, "exec probe:");
    assert!(err.contains("exec probe: refused"), "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // The hook itself works: without the sandbox the program runs.
    let d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy)
            .arg("--in-process-signing")
            .env("IRONPOST_TEST_EXEC_PROBE", "/bin/true"),
    )
    .unwrap();
    let err = stderr_with(&d, "exec probe:");
    assert!(err.contains("exec probe: ran"), "{err}");
}

/// `--signer-user`: the signer runs as its own user, with keys the network
/// process's user cannot read, and serves key files only under
/// `--signer-key-dir`; a key elsewhere is refused and the message waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_signer_of_its_own_serves_only_its_key_directories() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let signer_user = nix::unistd::User::from_name("daemon")
        .unwrap()
        .expect("user daemon");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut records = HashMap::new();
    let mut keys_in = |sub: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir(&d).unwrap();
        let k = key(&d, "ed.key", Algorithm::Ed25519Sha256, &mut records);
        for p in [&d, &k.path] {
            nix::unistd::chown(p.as_path(), Some(signer_user.uid), Some(signer_user.gid)).unwrap();
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        k
    };
    let allowed = keys_in("keys");
    let outside = keys_in("elsewhere");
    let policy = format!(
        r#"
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', relay_hosts = {{ '127.0.0.1' }} }}
end)
kumo.on('smtp_server_message_received', function(msg)
  local key = '{allowed}'
  if msg:from_header().domain == 'outside.test' then key = '{outside}' end
  msg:dkim_sign(kumo.dkim.ed25519_signer {{ domain = 'signer.test', selector = 'ed', key = key }})
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:9' }} }} }}, retry_interval = '1h' }}
end)
"#,
        allowed = allowed.path.display(),
        outside = outside.path.display(),
    );
    let d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy)
            .workdir(dir.path())
            .arg("--user")
            .arg("nobody")
            .arg("--signer-user")
            .arg("daemon")
            .arg("--signer-key-dir")
            .arg(dir.path().join("keys").display().to_string()),
    )
    .unwrap();
    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_message("ann@signer.test", &["bob@dest.test"], &mail(1))
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}\n{}", d.stderr());
    let other = String::from_utf8(mail(2))
        .unwrap()
        .replace("ann@signer.test", "eve@outside.test");
    let r = c
        .send_message("eve@outside.test", &["bob@dest.test"], other.as_bytes())
        .await
        .unwrap();
    assert_refused_outside_key_dirs(&d, &r);
    let _ = c.quit().await;

    let signer = signer_pid(d.pid()).expect("a signer");
    let uid = |pid| {
        status_field(pid, "Uid:")
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(uid(signer), vec![signer_user.uid.to_string(); 4]);
    assert_eq!(uid(d.pid()), vec![nobody.uid.to_string(); 4]);
    for pid in [signer, d.pid()] {
        assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
        assert_eq!(status_field(pid, "Seccomp:"), "2", "seccomp filter mode");
    }
}

/// `--signer-key-dir` given without a signer user of its own still
/// confines key files: a key outside it is refused and the message waits.
#[tokio::test(flavor = "multi_thread")]
async fn signer_key_dir_confines_keys_without_a_signer_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = HashMap::new();
    let keys = dir.path().join("keys");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&keys).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let inside = key(&keys, "ed.key", Algorithm::Ed25519Sha256, &mut records);
    let outside = key(&elsewhere, "rsa.key", Algorithm::RsaSha256, &mut records);
    let d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy("127.0.0.1:9", &inside, &outside, false))
            .arg("--signer-key-dir")
            .arg(keys.display().to_string()),
    )
    .unwrap();
    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    // The policy signs with both keys; the RSA one is outside the directory.
    let r = c
        .send_message("ann@signer.test", &["bob@dest.test"], &mail(1))
        .await
        .unwrap();
    assert_refused_outside_key_dirs(&d, &r);
    let _ = c.quit().await;
}
