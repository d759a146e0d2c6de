//! DKIM signing through the running daemon, verified by an independent
//! implementation (dkimpy): the `kumo.dkim.*_signer` API with the seed's
//! options, and the `policy-extras.dkim_sign` helper with an RSA and an
//! Ed25519 signature side by side. A domain whose key is missing is
//! deferred (451), never passed on unsigned.

use ironpost_dkim::{dns_record, generate, Algorithm};
use ironpost_spool::{Spool, SpoolConfig};
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn write_key(
    dir: &Path,
    name: &str,
    algo: Algorithm,
    records: &mut HashMap<String, String>,
    domain: &str,
    selector: &str,
) -> PathBuf {
    let (pem, public) = generate(algo, 2048).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &*pem).unwrap();
    // A private key other users can read is refused at start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rec = dns_record(domain, selector, algo, &public).unwrap();
    records.insert(rec.name.clone(), rec.txt_value());
    path
}

fn python() -> &'static str {
    if Command::new("/usr/bin/python3")
        .args(["-c", "import dkim"])
        .status()
        .is_ok_and(|s| s.success())
    {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_signatures_verify_with_dkimpy() {
    let keys = tempfile::tempdir().unwrap();
    let mut records = HashMap::new();
    let direct_ed = write_key(
        keys.path(),
        "direct-ed.key",
        Algorithm::Ed25519Sha256,
        &mut records,
        "direct.test",
        "ed",
    );
    let (rsa_pem, rsa_pub) = generate(Algorithm::RsaSha256, 2048).unwrap();
    let rec = dns_record("direct.test", "rsa", Algorithm::RsaSha256, &rsa_pub).unwrap();
    records.insert(rec.name.clone(), rec.txt_value());
    let helper_ed = write_key(
        keys.path(),
        "helper-ed.key",
        Algorithm::Ed25519Sha256,
        &mut records,
        "helper.test",
        "dkim_ed25519",
    );
    let helper_rsa = write_key(
        keys.path(),
        "helper-rsa.key",
        Algorithm::RsaSha256,
        &mut records,
        "helper.test",
        "rsa2048",
    );
    let data_toml = keys.path().join("dkim_data.toml");
    std::fs::write(
        &data_toml,
        format!(
            r#"
[base]
selector = "default"
headers = ["From", "To", "Subject", "Date", "MIME-Version", "Content-Type"]

[domain."helper.test"]
selector = 'dkim_ed25519'
headers = ["From", "To", "Subject", "Date", "MIME-Version", "Content-Type"]
algo = "ed25519"
filename = "{}"
policy = "SignAlways"
additional_signatures = ["rsa"]

[signature."rsa"]
selector = "rsa2048"
algo = "sha256"
filename = "{}"

[domain."missing.test"]
selector = "nokey"
filename = "{}/does-not-exist.key"
policy = "Always"
"#,
            helper_ed.display(),
            helper_rsa.display(),
            keys.path().display()
        ),
    )
    .unwrap();
    let policy = format!(
        r#"
local dkim_sign = require 'policy-extras.dkim_sign'
local dkim_signer = dkim_sign:setup {{ '{toml}' }}
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', relay_hosts = {{ '127.0.0.1' }} }}
end)
kumo.on('get_queue_config', function()
  -- Nothing listens here: messages stay queued for inspection.
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:9' }} }} }}, retry_interval = '1h' }}
end)
kumo.on('smtp_server_message_received', function(msg)
  if msg:from_header().domain == 'direct.test' then
    msg:dkim_sign(kumo.dkim.ed25519_signer {{ domain = 'direct.test', selector = 'ed', key = '{ed}', over_sign = true }})
    msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{
      domain = 'direct.test', selector = 'rsa',
      headers = {{ 'From', 'To', 'Subject' }},
      key = {{ key_data = [[{rsa}]] }},
      header_canonicalization = 'Simple', body_canonicalization = 'Simple',
    }})
  end
  dkim_signer(msg)
end)
"#,
        toml = data_toml.display(),
        ed = direct_ed.display(),
        rsa = String::from_utf8(rsa_pem.to_vec()).unwrap(),
    );
    let mut daemon =
        Daemon::start(DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost")).policy(&policy)).unwrap();
    let (mut c, _) = SmtpClient::connect(daemon.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let body = "From: Ann <ann@direct.test>\r\nTo: bob@dest.test\r\nSubject: Grüße\r\nDate: Sun, 22 Nov 2026 05:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHällo  wörld \r\n\r\n\r\n";
    let r = c
        .send_message("ann@direct.test", &["bob@dest.test"], body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    let body2 =
        "From: helper@helper.test\r\nTo: bob@dest.test\r\nSubject: side by side\r\n\r\nbody\r\n";
    let r = c
        .send_message("h@helper.test", &["bob@dest.test"], body2.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    let body3 = "From: m@missing.test\r\nSubject: no key\r\n\r\nbody\r\n";
    let r = c
        .send_message("m@missing.test", &["bob@dest.test"], body3.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (451, Some("4.3.0")),
        "{r}"
    );
    c.quit().await.ok();
    daemon.stop();

    let stderr = daemon.stderr();
    assert!(
        stderr.contains(
            "kumo.dkim.rsa_sha256_signer{domain=direct.test, selector=rsa}: key is given inline"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("BEGIN PRIVATE KEY"),
        "key material leaked to stderr"
    );
    assert!(
        stderr.contains("does-not-exist.key"),
        "the deferral must say why: {stderr}"
    );

    // Read back exactly what was stored (and would be delivered).
    let spool_dir = daemon.workdir.join("ironpost-data/spool");
    let (spool, recovery) = Spool::open(SpoolConfig::new(&spool_dir)).unwrap();
    assert_eq!(
        recovery.messages.len(),
        2,
        "the message without a key must not be stored"
    );
    let out = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, m) in recovery.messages.iter().enumerate() {
        let (_, data) = spool.read(&m.location).unwrap();
        let text = String::from_utf8_lossy(&data);
        assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
        let p = out.path().join(format!("{i}.eml"));
        std::fs::write(&p, &data).unwrap();
        files.push(p);
    }
    let rec_path = out.path().join("records.json");
    std::fs::write(&rec_path, serde_json::to_vec(&records).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dkim/tests/verify_dkim.py");
    let result = Command::new(python())
        .arg(&script)
        .arg(&rec_path)
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "dkimpy rejected a signature:\n{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(stdout.matches("true").count(), 4, "{stdout}");
}
