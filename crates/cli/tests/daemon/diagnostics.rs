//! Diagnostics on stderr: ANSI colour only when stderr is a terminal and
//! NO_COLOR is unset or empty; `--log-format json` gives one JSON object
//! per line (level and message at the top level), fatal errors included.

use crate::common::*;
use ironpost_testkit::{Daemon, DaemonOptions};
use serde_json::Value;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ESC: char = '\x1b';
/// The info event every start logs, right after `ready`.
const STARTED: &str = "spool recovered 0 messages";

/// The daemon's stderr up to and including the start-up event, in whole
/// lines (the pipe is drained by a thread, so it can lag), then stops it.
fn through_started(d: &mut Daemon) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stderr = loop {
        let err = d.stderr();
        let done = err.contains(STARTED) && err.ends_with('\n');
        if done || std::time::Instant::now() >= deadline {
            break err;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    d.stop();
    assert!(stderr.contains(STARTED), "stderr: {stderr}");
    stderr
}

#[test]
fn piped_stderr_has_no_colour() {
    // NO_COLOR empty does not disable colour (no-color.org): only the pipe does.
    let mut d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy("", ""))
            .env("NO_COLOR", ""),
    )
    .expect("daemon starts");
    let stderr = through_started(&mut d);
    assert!(!stderr.contains(ESC), "ANSI escape on a pipe: {stderr:?}");
    // The text format is unchanged otherwise: level, then the message.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains(STARTED)),
        "stderr: {stderr}"
    );
}

/// Every non-empty stderr line, parsed; panics on a line that is not a
/// JSON object with string `level`, `message` and `timestamp`.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nstderr: {stderr}"));
            for field in ["level", "message", "timestamp"] {
                assert!(v[field].is_string(), "no string {field:?} in {l}");
            }
            v
        })
        .collect()
}

#[test]
fn log_format_json_gives_json_lines() {
    let mut d = Daemon::start(
        DaemonOptions::new(BIN)
            .policy(policy("", ""))
            .arg("--log-format")
            .arg("json"),
    )
    .expect("daemon starts");
    let stderr = through_started(&mut d);
    assert!(!stderr.contains(ESC), "ANSI escape: {stderr:?}");
    let lines = json_lines(&stderr);
    let started = lines
        .iter()
        .find(|v| v["message"] == STARTED)
        .unwrap_or_else(|| panic!("no {STARTED:?} event: {stderr}"));
    assert_eq!(started["level"], "INFO", "{started}");
    // The event's own fields sit beside the message.
    assert_eq!(started["recovered"], 0, "{started}");
    // The target (module path) is kept: it is what one filters on.
    assert!(
        started["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("ironpost")),
        "{started}"
    );
}

#[test]
fn log_format_json_reports_a_fatal_error_as_json() {
    // A policy that starts no listener is refused at start.
    let lua = "local kumo = require 'kumo'\nkumo.on('init', function() end)\n";
    let (code, stderr) = Daemon::try_start_expect_failure(
        DaemonOptions::new(BIN)
            .policy(lua)
            .arg("--log-format")
            .arg("json"),
    )
    .unwrap();
    assert_ne!(code, 0, "stderr: {stderr}");
    let lines = json_lines(&stderr);
    assert!(
        lines.iter().any(|v| v["level"] == "ERROR"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("starts no listener"))),
        "stderr: {stderr}"
    );
}

/// Runs the daemon with stderr on a pseudo-terminal and returns what it
/// wrote there up to the start-up event.
fn stderr_on_terminal(no_color: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.lua"), policy("", "")).unwrap();
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; the null
    // name, termios and winsize pointers are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned only here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--policy", "policy.lua"])
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd.spawn().expect("spawn ironpost");
    // Close our copy of the terminal's slave side: once the child is gone,
    // reading the master side ends.
    drop(cmd);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut chunk) {
            seen.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&seen).contains(STARTED) {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let out = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let out = out.unwrap_or_else(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default());
    assert!(out.contains(STARTED), "terminal output: {out:?}");
    out
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let coloured = stderr_on_terminal(None);
    assert!(
        coloured.contains(ESC),
        "no colour on a terminal: {coloured:?}"
    );
    let coloured = stderr_on_terminal(Some(""));
    assert!(
        coloured.contains(ESC),
        "empty NO_COLOR disabled colour: {coloured:?}"
    );
    let plain = stderr_on_terminal(Some("1"));
    assert!(!plain.contains(ESC), "colour despite NO_COLOR=1: {plain:?}");
}
