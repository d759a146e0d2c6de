//! The built-in default policy and the CLI surface: `--print-default-policy`,
//! `ironpost serve` with no `--policy` (127.0.0.1:2525, ./ironpost-data/
//! created 0700 with spool and logs 2770, loopback-only relaying), and the
//! refusal of data directories other users can access.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient, TlsTrust};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run ironpost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn print_default_policy() {
    let (code, stdout, _) = run(&["serve", "--print-default-policy"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("127.0.0.1:2525"), "{stdout}");
    assert!(stdout.contains("kumo.start_esmtp_listener"), "{stdout}");
    assert!(stdout.contains("./ironpost-data/spool"), "{stdout}");
    assert!(stdout.contains("./ironpost-data/logs"), "{stdout}");

    // What it prints is a working policy an operator can start from.
    let lua = stdout.replace("127.0.0.1:2525", "127.0.0.1:0");
    let d = start(&lua);
    assert!(d.smtp_addr().ip().is_loopback());
}

#[test]
fn version_and_help() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("ironpost "), "{stdout}");
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("serve"), "{stdout}");
    let (code, stdout, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in ["--policy", "--user", "--print-default-policy"] {
        assert!(stdout.contains(flag), "{flag} in {stdout}");
    }
    let (code, _, stderr) = run(&["serve", "--no-such-flag"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[tokio::test]
async fn builtin_default_policy() {
    // The default listens on a fixed port; skip if something else has it.
    if std::net::TcpListener::bind("127.0.0.1:2525").is_err() {
        eprintln!("SKIPPED builtin_default_policy: 127.0.0.1:2525 is in use");
        return;
    }
    let d = match Daemon::start(DaemonOptions::new(BIN)) {
        Ok(d) => d,
        // Lost a race for the port with another process.
        Err(e) if format!("{e:#}").contains("in use") => {
            eprintln!("SKIPPED builtin_default_policy: {e:#}");
            return;
        }
        Err(e) => panic!("{e:#}"),
    };
    assert_eq!(d.smtp, vec!["127.0.0.1:2525".parse().unwrap()]);
    let stdout = d.stdout();
    assert!(stdout.contains("self-signed"), "{stdout}");
    assert!(stdout.contains("ironpost-data/spool"), "{stdout}");

    let data = d.workdir.join("ironpost-data");
    assert_eq!(mode(&data), 0o700, "ironpost-data");
    assert_eq!(mode(&data.join("spool")), 0o2770, "spool");
    assert_eq!(mode(&data.join("logs")), 0o2770, "logs");

    // Loopback relays anywhere, over TLS with the generated certificate.
    let (mut c, greeting) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    assert_eq!(greeting.code, 220);
    assert!(greeting.text().ends_with(" ESMTP Ironpost"), "{greeting}");
    c.ehlo("client.test").await.unwrap();
    let r = c
        .starttls("localhost", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    assert_eq!(r.code, 220);
    c.ehlo("client.test").await.unwrap();
    let id = send_ok(
        &mut c,
        "a@example.test",
        &["someone@elsewhere.test"],
        &message("default"),
    )
    .await;
    // (Not checked in the spool: the default policy delivers, and where
    // this message goes depends on the machine's DNS.)
    let rec = reception(&d, &id);
    assert!(rec["tls_cipher"].is_string(), "{rec}");

    // Another loopback address is not in the default relay_hosts.
    let (mut c, _) =
        SmtpClient::connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), d.smtp_addr())
            .await
            .unwrap();
    c.ehlo("client.test").await.unwrap();
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<someone@elsewhere.test>", 550, "5.7.1").await;
}

#[test]
fn insecure_data_directories_are_refused() {
    for (dir, what) in [
        ("ironpost-data/spool", "spool"),
        ("ironpost-data/logs", "log"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let path = work.path().join(dir);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        let opts = DaemonOptions::new(BIN)
            .policy(policy("", ""))
            .workdir(work.path());
        let (code, stderr) = Daemon::try_start_expect_failure(opts).unwrap();
        assert_ne!(code, 0);
        assert!(stderr.contains(what), "{stderr}");
        assert!(stderr.contains(dir), "names the path: {stderr}");
        assert!(stderr.contains("777"), "names the mode: {stderr}");
    }
}

#[test]
fn world_writable_policy_directory_is_refused() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let opts = DaemonOptions::new(BIN)
        .policy(policy("", ""))
        .workdir(work.path());
    let (code, stderr) = Daemon::try_start_expect_failure(opts).unwrap();
    assert_ne!(code, 0);
    assert!(stderr.contains("writable"), "{stderr}");
    // Make it private again so the temp dir is removed cleanly.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}
