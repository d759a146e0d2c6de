//! `ironpost check`: a policy is loaded and its `init` run without serving;
//! every problem is reported (not only the first), each naming its path,
//! mode and fix; a clean policy passes. Also the key-file and policy
//! ownership rules that `serve` applies at start.

use crate::common::BIN;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn check(policy: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--policy"])
        .arg(policy)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn policy(dir: &Path, listener_extra: &str) -> String {
    format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  \
         kumo.define_spool {{ name = 'data', path = '{d}/spool' }}\n  \
         kumo.configure_local_logs {{ log_dir = '{d}/logs' }}\n  \
         kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', {listener_extra} }}\nend)\n",
        d = dir.display()
    )
}

#[test]
fn three_problems_are_three_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    // 1: a spool other users can enter; 2: logs the same; 3: a key file
    // that does not exist.
    for sub in ["spool", "logs"] {
        std::fs::create_dir(d.join(sub)).unwrap();
        std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let p = d.join("policy.lua");
    write(
        &p,
        &policy(
            d,
            &format!(
                "tls_certificate = '{0}/cert.pem', tls_private_key = '{0}/missing-key.pem'",
                d.display()
            ),
        ),
        0o644,
    );
    write(&d.join("cert.pem"), "not a certificate", 0o644);
    let (ok, out) = check(&p);
    assert!(!ok, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{out}");
    assert!(
        out.contains("spool 'data' directory") && out.contains("755"),
        "{out}"
    );
    assert!(out.contains("chmod o-rwx"), "names the fix: {out}");
    assert!(out.contains("log directory"), "{out}");
    assert!(out.contains("missing-key.pem"), "{out}");
    assert!(out.contains("3 problem(s)"), "{out}");
}

#[test]
fn a_clean_policy_passes_and_a_lua_error_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = d.join("policy.lua");
    write(&p, &policy(d, ""), 0o644);
    let (ok, out) = check(&p);
    assert!(ok, "{out}");
    assert!(out.contains("no problems found"), "{out}");
    assert!(!d.join("spool").exists(), "check opens no spool");
    write(
        &p,
        "local kumo = require 'kumo'\nkumo.no_such_function()\n",
        0o644,
    );
    let (ok, out) = check(&p);
    assert!(!ok);
    assert!(out.contains("policy.lua:2"), "{out}");
}

#[test]
fn key_files_and_policies_open_to_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pki = crate::delivery_common::Pki::new();
    let (cert, key) = pki.valid(&["localhost"]);
    write(&d.join("cert.pem"), &cert, 0o644);
    // Readable by every user: refused, naming mode and fix.
    write(&d.join("key.pem"), &key, 0o644);
    let p = d.join("policy.lua");
    let tls = format!(
        "tls_certificate = '{0}/cert.pem', tls_private_key = '{0}/key.pem'",
        d.display()
    );
    write(&p, &policy(d, &tls), 0o644);
    let (ok, out) = check(&p);
    assert!(!ok, "{out}");
    assert!(
        out.contains("key.pem") && out.contains("644") && out.contains("chmod 0640"),
        "{out}"
    );
    // The safe layout (root:ironpost 0640 in packages): accepted.
    write(&d.join("key.pem"), &key, 0o640);
    let (ok, out) = check(&p);
    assert!(ok, "{out}");
    // A world-writable policy file is refused.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, out) = check(&p);
    assert!(
        !ok && out.contains("policy file") && out.contains("chmod o-w"),
        "{out}"
    );
}

/// SIGTERM while a client is in the middle of DATA: the daemon stops taking
/// connections and commands, but that message is received, answered 250
/// and spooled before the daemon exits; a restart finds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_lets_a_message_being_received_finish() {
    use ironpost_testkit::SmtpClient;
    let mut d = crate::common::start_default();
    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<a@origin.test>").await.unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@example.test>").await.unwrap().code, 250);
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: during a stop\r\n\r\nfirst half\r\n")
        .await
        .unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(d.is_running(), "exited with a message half received");
    // A new connection is refused meanwhile.
    if let Ok((_, greeting)) = SmtpClient::connect(d.smtp_addr()).await {
        assert_eq!(greeting.code, 421, "{greeting}");
    }
    c.send_raw(b"second half\r\n.\r\n").await.unwrap();
    let r = c.read_reply().await.unwrap();
    assert_eq!(r.code, 250, "{r}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while d.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after the message"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rec = d
        .read_log_records()
        .into_iter()
        .filter(|r| r["type"] == "Reception")
        .count();
    assert_eq!(rec, 1, "the message was received and logged");
}

/// The seed's KumoMTA layout, a policy directory owned by the daemon user
/// at 755, is accepted with a warning; a policy the daemon's group may
/// write is refused, naming the fix.
#[test]
fn the_seed_layout_passes_with_a_warning_and_group_write_is_refused() {
    use std::os::unix::fs::chown;
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("nobody");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("policy");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = d.join("init.lua");
    write(&p, &policy(dir.path(), ""), 0o644);
    chown(&d, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).unwrap();
    chown(&p, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).unwrap();
    let run = || {
        let out = Command::new(BIN)
            .args(["check", "--user", "nobody", "--policy"])
            .arg(&p)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run();
    assert!(ok, "{out}");
    assert!(out.contains("owned by the daemon user"), "warned: {out}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (ok, out) = run();
    assert!(!ok, "{out}");
    assert!(
        out.contains("daemon's group") && out.contains("chmod g-w"),
        "{out}"
    );
}
