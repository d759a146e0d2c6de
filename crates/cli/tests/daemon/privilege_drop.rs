//! `--user`: started as root, the daemon binds, reads its keys, then drops
//! to the user completely (real, effective, saved and filesystem ids, no
//! supplementary groups, no_new_privs) and still spools mail. The policy's
//! `init` already runs with the user's file access. Skipped when the tests
//! do not run as root.

use crate::common::status_field;
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient};
use std::os::unix::fs::PermissionsExt;

const POLICY: &str = r#"
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = './ironpost-data/spool' }
  kumo.configure_local_logs { log_dir = './ironpost-data/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:9' } } }, retry_interval = '1h' }
end)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn drops_every_privilege_and_still_spools() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let dir = tempfile::tempdir().unwrap();
    // The user must be able to reach its data directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut d = Daemon::start(
        DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost"))
            .policy(POLICY)
            .arg("--user")
            .arg("nobody")
            .workdir(dir.path()),
    )
    .unwrap();
    let pid = d.pid();
    let uid = nobody.uid.as_raw().to_string();
    let gid = nobody.gid.as_raw().to_string();
    assert_eq!(
        status_field(pid, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![uid.as_str(); 4]
    );
    assert_eq!(
        status_field(pid, "Gid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![gid.as_str(); 4]
    );
    assert_eq!(status_field(pid, "Groups:"), "");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");

    let (mut c, _) = SmtpClient::connect(d.smtp_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let r = c
        .send_message("a@b.test", &["c@d.test"], b"Subject: x\r\n\r\nbody\r\n")
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    d.stop();
}

/// A compromised daemon owns its data directories. Links it plants there
/// must not make root hand it other files on the next start: existing
/// files are never chowned, and a data directory swapped for a link to a
/// root-owned directory is refused.
#[tokio::test(flavor = "multi_thread")]
async fn planted_symlinks_do_not_make_root_chown_their_targets() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let opts = DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost"))
        .policy(POLICY)
        .arg("--user")
        .arg("nobody")
        .workdir(dir.path());
    let mut d = Daemon::start(opts.clone()).unwrap();
    d.stop();
    // What the "daemon" plants: a link to a root-owned file in the spool
    // and in the MTA-STS cache.
    let victim = tempfile::NamedTempFile::new().unwrap();
    let spool = dir.path().join("ironpost-data/spool");
    std::os::unix::fs::symlink(victim.path(), spool.join("planted")).unwrap();
    std::os::unix::fs::symlink(victim.path(), spool.join("mta-sts/evil.test.json")).unwrap();
    std::fs::hard_link(victim.path(), spool.join("hardlink")).unwrap();
    let d = Daemon::start(opts).unwrap();
    assert_eq!(std::fs::metadata(victim.path()).unwrap().uid(), 0);
    drop(d);

    // The cache directory itself replaced by a symlink (to a root-owned
    // directory) is refused.
    let target = tempfile::tempdir().unwrap();
    std::fs::set_permissions(target.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_dir_all(spool.join("mta-sts")).unwrap();
    std::os::unix::fs::symlink(target.path(), spool.join("mta-sts")).unwrap();
    nix::unistd::fchownat(
        None,
        &spool.join("mta-sts"),
        Some(nix::unistd::User::from_name("nobody").unwrap().unwrap().uid),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let (code, out) = Daemon::try_start_expect_failure(
        DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost"))
            .policy(POLICY)
            .arg("--user")
            .arg("nobody")
            .workdir(dir.path()),
    )
    .unwrap();
    assert_ne!(code, 0);
    assert!(out.contains("does not change the owner"), "{out}");
    assert_eq!(std::fs::metadata(target.path()).unwrap().uid(), 0);
}

/// `init` runs with the user's file access: a root-only file is out of its
/// reach (and a user-readable one is not), and a SQLite database it may
/// open is still refused outside the allowed directories.
#[tokio::test(flavor = "multi_thread")]
async fn init_reads_files_as_the_user_not_as_root() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let secret = dir.path().join("root-only.toml");
    std::fs::write(&secret, "password = 'hunter2'\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = dir.path().join("public.toml");
    std::fs::write(&public, "greeting = 'hello'\n").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let with_read = |file: &std::path::Path| {
        POLICY.replace(
            "kumo.on('init', function()",
            &format!(
                "kumo.on('init', function()\n  local t = kumo.serde.toml_load('{}')",
                file.display()
            ),
        )
    };
    let opts = |policy: String| {
        DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost"))
            .policy(policy)
            .arg("--user")
            .arg("nobody")
            .workdir(dir.path())
    };
    let (code, out) = Daemon::try_start_expect_failure(opts(with_read(&secret))).unwrap();
    assert_ne!(code, 0);
    assert!(out.contains("ermission denied"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let d = Daemon::start(opts(with_read(&public))).unwrap();
    drop(d);
}
