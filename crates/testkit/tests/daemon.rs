//! The daemon harness against a shell script that follows the start-up
//! contract, so the harness is tested without the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use ironpost_testkit::{Daemon, DaemonOptions};

const FAKE: &str = r#"#!/bin/sh
if [ "$2" = "--policy" ] && grep -q BAD "$3"; then
  echo "policy error: BAD at line 1" >&2
  exit 3
fi
mkdir -p ironpost-data/logs/sub
printf '{"event":"a"}\nnot json\n{"event":"b","n":2}\n{"event":"cut' > ironpost-data/logs/sub/x.jsonl
n=$(cat runs 2>/dev/null || echo 0)
echo $((n + 1)) > runs
echo "smtp listener: 127.0.0.1:40123 (plain, policy $3)"
echo "smtp listener: [::1]:40124"
echo "http listener: 127.0.0.1:8000"
echo "spool: ironpost-data/spool (recovered $n messages)"
echo "logs: ironpost-data/logs"
echo "starting up" >&2
echo ready
exec sleep 60
"#;

/// Written once, before any test spawns a process, so no forked child can
/// hold a write handle to it (which would make exec fail with ETXTBSY).
fn fake_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Per-process name: parallel test runs must not rewrite each
        // other's script while it is being executed.
        let name = format!("fake-ironpost-{}", std::process::id());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, FAKE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    })
}

#[test]
fn start_parses_contract_and_logs() {
    let d = Daemon::start_policy(fake_bin(), "-- ok").unwrap();
    assert_eq!(
        d.smtp,
        [
            "127.0.0.1:40123".parse().unwrap(),
            "[::1]:40124".parse().unwrap()
        ]
    );
    assert_eq!(d.smtp_addr(), d.smtp[0]);
    assert_eq!(d.http, ["127.0.0.1:8000".parse().unwrap()]);
    assert_eq!(d.recovered, Some(0));
    assert_eq!(d.spool_dir, Some(d.workdir.join("ironpost-data/spool")));
    assert!(d.stdout().contains(&format!(
        "policy {}",
        d.workdir.join("policy.lua").display()
    )));
    assert_eq!(
        std::fs::read_to_string(d.workdir.join("policy.lua")).unwrap(),
        "-- ok"
    );

    let records = d.read_log_records();
    let events: Vec<_> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["a", "b"]);
    let hit = d.wait_for_log(|r| r["n"] == 2, Duration::from_secs(1));
    assert_eq!(hit.unwrap()["event"], "b");
    assert!(d
        .wait_for_log(|r| r["event"] == "zzz", Duration::from_millis(100))
        .is_none());

    // stderr is drained by a thread, so give it a moment.
    assert!(wait_until(|| d.stderr().contains("starting up")));
}

#[test]
fn stop_kill_and_restart_keep_workdir() {
    let mut d = Daemon::start(DaemonOptions::new(fake_bin())).unwrap();
    let workdir = d.workdir.clone();
    assert!(d.is_running());
    d.stop();
    assert!(!d.is_running());

    d.restart().unwrap();
    assert_eq!(d.workdir, workdir);
    assert_eq!(d.recovered, Some(1));
    d.kill9();

    d.restart_with(|o| o.policy = Some("-- new".into()))
        .unwrap();
    assert_eq!(d.recovered, Some(2));
    assert!(workdir.join("policy.lua").exists());

    let tmp = d.take_workdir().unwrap();
    drop(d);
    assert!(workdir.exists(), "taken workdir must outlive the Daemon");
    let d = Daemon::start(DaemonOptions::new(fake_bin()).workdir(tmp.path())).unwrap();
    assert_eq!(d.recovered, Some(3));
    drop(d);
    assert!(workdir.exists(), "caller-supplied workdir is not deleted");
    drop(tmp);
    assert!(!workdir.exists());
}

#[test]
fn bad_policy_reports_exit_code_and_stderr() {
    let opts = || DaemonOptions::new(fake_bin()).policy("BAD");
    let (code, stderr) = Daemon::try_start_expect_failure(opts()).unwrap();
    assert_eq!(code, 3);
    assert!(stderr.contains("policy error"), "{stderr}");

    let err = format!("{:#}", Daemon::start(opts()).err().unwrap());
    assert!(
        err.contains("exited before ready") && err.contains("policy error"),
        "{err}"
    );

    let good = DaemonOptions::new(fake_bin()).policy("-- ok");
    let err = Daemon::try_start_expect_failure(good).unwrap_err();
    assert!(err.to_string().contains("became ready"), "{err:#}");
}

#[test]
fn missing_binary_is_an_error() {
    let _ = fake_bin(); // see fake_bin: no fork while it is being written
    let err = Daemon::start(DaemonOptions::new("/nonexistent/ironpost"))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("spawn"), "{err:#}");
}

fn wait_until(cond: impl Fn() -> bool) -> bool {
    (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        cond()
    })
}
