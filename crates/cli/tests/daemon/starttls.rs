//! STARTTLS with the in-memory self-signed certificate and with provided
//! certificates (files and inline `key_data`), state reset after TLS, and the
//! cleartext command-injection class (CVE-2011-0411).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use ironpost_testkit::tls::{parse_certs, provider, InsecureAcceptAnyServerCert};
use ironpost_testkit::{SmtpClient, TestCa, TlsTrust};

/// Runs a message over an established TLS session and checks what the
/// daemon recorded about TLS: log fields and the Received header.
async fn send_over_tls_and_check(d: &ironpost_testkit::Daemon, c: &mut SmtpClient) {
    let (version, cipher) = c.tls_info().expect("TLS is up");
    let id = send_ok(c, "a@example.test", &["b@example.test"], &message("tls")).await;
    let rec = reception(d, &id);
    assert_eq!(rec["tls_protocol_version"], version.as_str(), "{rec}");
    assert_eq!(rec["tls_cipher"], cipher.as_str(), "{rec}");
    assert_eq!(rec["reception_protocol"], "ESMTPS");
    let stored = spool_of(d);
    let m = stored.iter().find(|m| m.id == id).expect("stored");
    let text = String::from_utf8_lossy(&m.data).into_owned();
    let trace = format!(
        "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Ironpost) with ESMTPS id {id}\r\n\t(using {version} with cipher {cipher})\r\n"
    );
    assert!(text.starts_with(&trace), "{text}");
}

#[tokio::test]
async fn self_signed_certificate_and_state_reset() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    let r = c
        .starttls("mx.test", TlsTrust::AcceptAnyInsecure)
        .await
        .expect("STARTTLS");
    check(&r, 220, "2.0.0", "STARTTLS");
    assert!(c.is_tls());
    // The generated certificate names the listener host.
    let certs = c.peer_certificates_der().expect("peer certificate");
    assert!(
        contains(&certs[0], b"mx.test"),
        "self-signed cert is for the listener hostname"
    );

    // RFC 3207 4.2: the EHLO from before TLS is forgotten.
    expect(&mut c, "MAIL FROM:<a@example.test>", 503, "5.5.1").await;
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert_eq!(ehlo.code, 250);
    assert!(
        !ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "STARTTLS not offered again: {ehlo}"
    );
    assert!(ehlo.lines.iter().any(|l| l == "PIPELINING"));
    expect(&mut c, "STARTTLS", 503, "5.5.1").await;
    // No SASL mechanisms are configured, so AUTH stays unavailable.
    expect(&mut c, "AUTH PLAIN", 502, "5.5.1").await;
    send_over_tls_and_check(&d, &mut c).await;
    expect(&mut c, "QUIT", 221, "2.0.0").await;
}

#[tokio::test]
async fn tls12_client() {
    let d = start_default();
    let mut c = connect_ehlo(&d).await;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(InsecureAcceptAnyServerCert::new()))
        .with_no_client_auth();
    expect(&mut c, "STARTTLS", 220, "2.0.0").await;
    c.tls_handshake_with_config("mx.test", Arc::new(config))
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(c.tls_info().unwrap().0, "TLSv1_2");
    c.ehlo("client.test").await.unwrap();
    send_over_tls_and_check(&d, &mut c).await;
}

fn write_pair(dir: &std::path::Path, cert: &str, key: &str) -> (String, String) {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    // Only its owner reads a private key (Ironpost refuses one others can).
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// A handshake verified against `ca` succeeds and presents exactly `cert`;
/// one against an unrelated CA, or for another name, fails.
async fn verify_provided_certificate(d: &ironpost_testkit::Daemon, ca: &TestCa, cert: &str) {
    let mut c = connect_ehlo(d).await;
    let r = c
        .starttls("mx.test", TlsTrust::CaPem(ca.cert_pem.clone().into_bytes()))
        .await
        .expect("handshake verified against the test CA");
    assert_eq!(r.code, 220);
    let presented = c.peer_certificates_der().unwrap();
    let expected = parse_certs(cert.as_bytes()).unwrap();
    assert_eq!(presented[0], expected[0].to_vec(), "configured cert served");
    c.ehlo("client.test").await.unwrap();
    send_over_tls_and_check(d, &mut c).await;

    let other = TestCa::new("Unrelated CA");
    let mut c = connect_ehlo(d).await;
    let res = c
        .starttls(
            "mx.test",
            TlsTrust::CaPem(other.cert_pem.clone().into_bytes()),
        )
        .await;
    assert!(res.is_err(), "an unrelated CA must not verify the server");

    let mut c = connect_ehlo(d).await;
    let res = c
        .starttls(
            "other.test",
            TlsTrust::CaPem(ca.cert_pem.clone().into_bytes()),
        )
        .await;
    assert!(res.is_err(), "the certificate is not valid for other.test");
}

#[tokio::test]
async fn provided_certificate_from_files() {
    let ca = TestCa::new("Ironpost Test CA");
    let (cert, key) = ca.issue_server(&["mx.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = write_pair(dir.path(), &cert, &key);
    let d = start(&policy(
        &format!("tls_certificate = '{cert_path}', tls_private_key = '{key_path}',"),
        "",
    ));
    assert!(
        d.stdout().contains("STARTTLS with certificate from"),
        "{}",
        d.stdout()
    );
    verify_provided_certificate(&d, &ca, &cert).await;
}

#[tokio::test]
async fn provided_certificate_inline_key_data() {
    let ca = TestCa::new("Ironpost Test CA");
    let (cert, key) = ca.issue_server(&["mx.test"]);
    let d = start(&policy(
        &format!(
            "tls_certificate = {{ key_data = [[{cert}]] }}, tls_private_key = {{ key_data = [[{key}]] }},"
        ),
        "",
    ));
    verify_provided_certificate(&d, &ca, &cert).await;
    // Inline secrets are allowed but warned about; the key never appears.
    let stderr = stderr_with(&d, &["key_data"]);
    assert!(stderr.contains("key_data"), "{stderr}");
    assert!(
        !stderr.contains("PRIVATE KEY"),
        "key material leaked to stderr"
    );
}

#[tokio::test]
async fn broken_certificate_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = write_pair(dir.path(), "not a certificate", "not a key");
    let opts = ironpost_testkit::DaemonOptions::new(BIN).policy(policy(
        &format!("tls_certificate = '{cert_path}', tls_private_key = '{key_path}',"),
        "",
    ));
    let (code, stderr) = ironpost_testkit::Daemon::try_start_expect_failure(opts).unwrap();
    assert_ne!(code, 0);
    assert!(stderr.contains("tls_certificate"), "{stderr}");
}

#[tokio::test]
async fn cleartext_pipelined_after_starttls_is_discarded() {
    let d = start_default();

    // The injected MAIL arrives in the same packet as STARTTLS.
    let mut c = connect_ehlo(&d).await;
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n")
        .await
        .unwrap();
    expect_reply(&mut c, 220, "2.0.0", "STARTTLS").await;
    // tls_handshake_only also fails if any plaintext followed the 220.
    c.tls_handshake_only("mx.test", TlsTrust::AcceptAnyInsecure, None)
        .await
        .expect("handshake after STARTTLS");
    c.ehlo("client.test").await.unwrap();
    // Had the injected MAIL run, this RCPT would be accepted.
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;
    send_over_tls_and_check(&d, &mut c).await;

    // Injected EHLO, MAIL and RCPT: none of them survives.
    let mut c = connect_ehlo(&d).await;
    c.send_raw(
        b"STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\n",
    )
    .await
    .unwrap();
    expect_reply(&mut c, 220, "2.0.0", "STARTTLS").await;
    c.tls_handshake_only("mx.test", TlsTrust::AcceptAnyInsecure, None)
        .await
        .expect("handshake after STARTTLS");
    expect(&mut c, "MAIL FROM:<a@example.test>", 503, "5.5.1").await;
    c.ehlo("client.test").await.unwrap();
    expect(&mut c, "DATA", 503, "5.5.1").await;
    expect(&mut c, "RCPT TO:<b@example.test>", 503, "5.5.1").await;

    // Nothing from the attacker reached the logs or the spool.
    settle_logs();
    for rec in d.read_log_records() {
        assert!(!rec.to_string().contains("attacker"), "{rec}");
    }
    for m in spool_of(&d) {
        assert!(!contains(&m.data, b"attacker"));
        assert_ne!(m.meta["sender"], "evil@attacker.test");
    }
}

#[tokio::test]
async fn failed_handshake_closes_only_that_connection() {
    let d = start(&policy("client_timeout = '1s',", ""));
    // Garbage instead of a ClientHello.
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "STARTTLS", 220, "2.0.0").await;
    c.send_raw(b"MAIL FROM:<a@example.test>\r\n\r\n\r\n")
        .await
        .unwrap();
    assert!(c.expect_closed().await, "garbage handshake closes");

    // A client that never starts the handshake is dropped after the timeout.
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "STARTTLS", 220, "2.0.0").await;
    let t = Instant::now();
    assert!(c.expect_closed().await, "stalled handshake closes");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    // The daemon still serves others.
    let mut c = connect_ehlo(&d).await;
    c.starttls("mx.test", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    send_ok(
        &mut c,
        "a@example.test",
        &["b@example.test"],
        &message("ok"),
    )
    .await;
}

/// SIGHUP (systemd's reload): a replaced certificate is served from the
/// next handshake on while a connection made before goes on working, and
/// the policy file is loaded again (here, a new `smtp_server_mail_from`
/// rule applies at once).
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_certificates_and_policy_without_dropping_connections() {
    let ca = TestCa::new("Reload CA");
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = ca.issue_server(&["mx.test"]);
    let (cert_path, key_path) = write_pair(dir.path(), &old_cert, &old_key);
    let listener = format!("tls_certificate = '{cert_path}', tls_private_key = '{key_path}',");
    let work = tempfile::tempdir().unwrap();
    let mut d = ironpost_testkit::Daemon::start(
        ironpost_testkit::DaemonOptions::new(BIN)
            .policy(policy(&listener, ""))
            .workdir(work.path()),
    )
    .unwrap();
    let trust = || TlsTrust::CaPem(ca.cert_pem.clone().into_bytes());
    let served = |c: &SmtpClient| c.peer_certificates_der().unwrap()[0].clone();

    let mut before = connect_ehlo(&d).await;
    before.starttls("mx.test", trust()).await.unwrap();
    before.ehlo("client.test").await.unwrap();
    assert_eq!(
        served(&before),
        parse_certs(old_cert.as_bytes()).unwrap()[0].to_vec()
    );

    let (new_cert, new_key) = ca.issue_server(&["mx.test"]);
    write_pair(dir.path(), &new_cert, &new_key);
    let policy_file = work.path().join("policy.lua");
    std::fs::write(
        &policy_file,
        policy(
            &listener,
            "kumo.on('smtp_server_mail_from', function(sender)\n  \
             if tostring(sender):find('reloaded') then kumo.reject(550, '5.7.1 refused by the new policy') end\nend)\n",
        ),
    )
    .unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(d.is_running(), "SIGHUP stopped the daemon");

    let mut after = connect_ehlo(&d).await;
    after.starttls("mx.test", trust()).await.unwrap();
    after.ehlo("client.test").await.unwrap();
    assert_eq!(
        served(&after),
        parse_certs(new_cert.as_bytes()).unwrap()[0].to_vec()
    );
    let r = after.cmd("MAIL FROM:<reloaded@origin.test>").await.unwrap();
    assert_eq!(r.code, 550, "the reloaded policy applies: {r}");
    // The connection made before the reload still works.
    assert_eq!(before.cmd("NOOP").await.unwrap().code, 250);
    let r = before.cmd("MAIL FROM:<a@origin.test>").await.unwrap();
    assert_eq!(r.code, 250, "{r}");
}
