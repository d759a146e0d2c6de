//! Client certificates on the SMTP listener (seed 003, tip 7): Required and
//! Optional modes, and a policy that needs both a certificate and AUTH.

use base64::Engine;
use ironpost_testkit::{Daemon, SmtpClient, TestCa, TlsTrust};
use std::path::Path;

fn policy(ca: &Path, mode: &str) -> String {
    format!(
        r#"
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{
    listen = '127.0.0.1:0', relay_hosts = {{ '10.255.255.1' }},
    tls_required_client_ca = '{}', tls_client_certificates = '{mode}',
  }}
end)
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  -- Both a certificate and a password: the certificate's CN must be the user.
  local subject = conn_meta:get_meta('tls_client_subject')
  if not subject or not conn_meta:get_meta('tls_client_fingerprint') then
    return false
  end
  return password == 'tiger' and subject == ('CN=' .. authc)
end)
"#,
        ca.display()
    )
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ironpost"))
}

async fn connect(d: &Daemon) -> SmtpClient {
    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    c
}

fn plain(user: &str, pw: &str) -> String {
    format!(
        "AUTH PLAIN {}",
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn required_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("clients");
    let other = TestCa::new("someone else");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let d = Daemon::start_policy(bin(), &policy(&ca_path, "Required")).unwrap();

    let (cert, key) = ca.issue_client("scott");
    let mut c = connect(&d).await;
    c.starttls_with_client_cert(
        "localhost",
        TlsTrust::AcceptAnyInsecure,
        cert.as_bytes(),
        key.as_bytes(),
    )
    .await
    .expect("a certificate from the trusted CA is accepted");
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.cmd(&plain("scott", "tiger")).await.unwrap().code, 235);

    // The certificate names scott, so another user's password is not enough.
    let mut c = connect(&d).await;
    c.starttls_with_client_cert(
        "localhost",
        TlsTrust::AcceptAnyInsecure,
        cert.as_bytes(),
        key.as_bytes(),
    )
    .await
    .unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.cmd(&plain("mallory", "tiger")).await.unwrap().code, 535);

    // No certificate, or one from another CA: the handshake fails.
    let mut c = connect(&d).await;
    let no_cert = async {
        c.starttls("localhost", TlsTrust::AcceptAnyInsecure).await?;
        // TLS 1.3 reports the client-auth failure on the first read.
        c.ehlo("client.test").await
    };
    assert!(
        no_cert.await.is_err(),
        "no client certificate must fail when Required"
    );
    let (bad_cert, bad_key) = other.issue_client("scott");
    let mut c = connect(&d).await;
    let wrong_ca = async {
        c.starttls_with_client_cert(
            "localhost",
            TlsTrust::AcceptAnyInsecure,
            bad_cert.as_bytes(),
            bad_key.as_bytes(),
        )
        .await?;
        c.ehlo("client.test").await
    };
    assert!(
        wrong_ca.await.is_err(),
        "a certificate from another CA must fail"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("clients");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let d = Daemon::start_policy(bin(), &policy(&ca_path, "Optional")).unwrap();

    // Without a certificate the handshake works, but this policy refuses AUTH.
    let mut c = connect(&d).await;
    c.starttls("localhost", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.cmd(&plain("scott", "tiger")).await.unwrap().code, 535);

    let (cert, key) = ca.issue_client("scott");
    let mut c = connect(&d).await;
    c.starttls_with_client_cert(
        "localhost",
        TlsTrust::AcceptAnyInsecure,
        cert.as_bytes(),
        key.as_bytes(),
    )
    .await
    .unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.cmd(&plain("scott", "tiger")).await.unwrap().code, 235);
}
