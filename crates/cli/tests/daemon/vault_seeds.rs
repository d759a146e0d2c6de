//! The seeds' Vault examples, as written, against a real Vault-compatible
//! server (rusty_vault): a DKIM key from Vault (seed 000), SMTP AUTH checked
//! against Vault (seed 004), and the outbound AUTH password from Vault per
//! destination domain (seed 002). Then the logs and stderr of the whole run
//! are searched for every secret used.

use base64::Engine;
use ironpost_dkim::{dns_record, generate, Algorithm};
use ironpost_testkit::sink::{Sink, SinkAuth, SinkConfig, SinkTls};
use ironpost_testkit::vault::VaultServer;
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient, TestCa, TlsTrust};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn seed_vault_examples_run_as_written() {
    let vault = VaultServer::start().expect("rusty_vault (run scripts/install-rvault.sh)");
    let (rsa_pem, rsa_pub) = generate(Algorithm::RsaSha256, 2048).unwrap();
    let rsa_text = String::from_utf8(rsa_pem.to_vec()).unwrap();
    vault
        .write_secret("dkim/seed.test", json!({ "key": rsa_text }))
        .unwrap();
    vault
        .write_secret("smtp-auth/scott", json!({ "key": "tiger-from-vault" }))
        .unwrap();
    vault
        .write_secret("smtp-auth/dest.test", json!({ "key": "relay-secret-42" }))
        .unwrap();

    let ca = TestCa::new("sink ca");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let sink = Sink::start(
        "127.0.0.1:0".parse().unwrap(),
        SinkConfig::new()
            .tls(SinkTls::offer_pair(ca.issue_server(&["127.0.0.1"])))
            .auth(SinkAuth::plain("scott", "relay-secret-42")),
    )
    .await
    .unwrap();

    let policy = format!(
        r#"
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', relay_hosts = {{ '10.255.255.1' }} }}
end)

function vault_auth_check(user, password)
  return password
    == kumo.secrets.load {{
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. user,
    }}
end

kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  return vault_auth_check(authc, password)
end)

kumo.on('smtp_server_message_received', function(msg)
  local vault_signer = kumo.dkim.rsa_sha256_signer {{
    domain = msg:from_header().domain,
    selector = 'vault',
    key = {{
      vault_mount = 'secret',
      vault_path = 'dkim/' .. msg:from_header().domain,
    }},
  }}
  msg:dkim_sign(vault_signer)
end)

kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }}, retry_interval = '1s' }}
end)

kumo.on('get_egress_path_config', function(domain, site_name)
  return kumo.make_egress_path {{
    enable_tls = 'Required',
    smtp_auth_plain_username = 'scott',
    -- The password can be any keysource value.
    -- Here we are loading the credential for the domain
    -- from HashiCorp vault
    smtp_auth_plain_password = {{
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. domain,
    }},
    tls_extra_ca = '{ca}',
    prohibited_hosts = {{}},
  }}
end)
"#,
        sink = sink.addr(),
        ca = ca_path.display()
    );
    let d = Daemon::start(
        DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost"))
            .policy(&policy)
            .env("VAULT_ADDR", vault.url())
            .env("VAULT_TOKEN", vault.root_token()),
    )
    .unwrap();

    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    c.starttls("localhost", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0scott\0wrong")))
            .await
            .unwrap()
            .code,
        535
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0scott\0tiger-from-vault")))
            .await
            .unwrap()
            .code,
        235
    );
    let body = "From: Ann <ann@seed.test>\r\nTo: bob@dest.test\r\nSubject: from vault\r\nDate: Sun, 22 Nov 2026 06:00:00 +0000\r\n\r\nsigned with a key that never touched the disk\r\n";
    let r = c
        .send_message("ann@seed.test", &["bob@dest.test"], body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");

    let h = sink.handle();
    assert!(
        h.wait_until(Duration::from_secs(15), |s| !s.messages().is_empty())
            .await,
        "not delivered"
    );
    let rec = h.snapshot();
    assert!(
        rec.auth.iter().any(|a| a.accepted && a.tls),
        "outbound AUTH over TLS with the Vault password"
    );
    let delivered = rec.messages()[0].data.clone();

    // dkimpy verifies the Vault-keyed signature.
    let out = tempfile::tempdir().unwrap();
    let eml = out.path().join("m.eml");
    std::fs::write(&eml, &delivered).unwrap();
    let rec_dns = dns_record("seed.test", "vault", Algorithm::RsaSha256, &rsa_pub).unwrap();
    let records: HashMap<String, String> = [(rec_dns.name.clone(), rec_dns.txt_value())].into();
    let records_path = out.path().join("records.json");
    std::fs::write(&records_path, serde_json::to_vec(&records).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dkim/tests/verify_dkim.py");
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let v = Command::new(python)
        .arg(&script)
        .arg(&records_path)
        .arg(&eml)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&v.stdout)
    );

    // No secret, token or key reached a log record or stderr.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = format!("{:?}", d.read_log_records());
    let stderr = d.stderr();
    let stdout = d.stdout();
    for secret in [
        "tiger-from-vault",
        "relay-secret-42",
        vault.root_token(),
        "PRIVATE KEY",
        &b64("\0scott\0tiger-from-vault"),
        &b64("\0scott\0relay-secret-42"),
    ] {
        for (name, text) in [("logs", &logs), ("stderr", &stderr), ("stdout", &stdout)] {
            assert!(!text.contains(secret), "a secret appeared in {name}");
        }
    }
}
