//! Runs the real `ironpost` binary as a child process.
//!
//! Start-up contract (stdout, one item per line, in order):
//! `smtp listener: ADDR ...`, `http listener: ADDR ...`,
//! `spool: PATH (recovered N messages)`, `logs: PATH`, then `ready`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);

#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    pub bin: PathBuf,
    /// Lua text written to `<workdir>/policy.lua`; None = built-in default.
    pub policy: Option<String>,
    /// Extra arguments after `serve [--policy FILE]`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Existing directory to run in (for restarts); None = fresh temp dir.
    pub workdir: Option<PathBuf>,
}

impl DaemonOptions {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        DaemonOptions {
            bin: bin.into(),
            ..Default::default()
        }
    }

    pub fn policy(mut self, lua: impl Into<String>) -> Self {
        self.policy = Some(lua.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }
}

pub struct Daemon {
    pub smtp: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    /// N from `spool: PATH (recovered N messages)`.
    pub recovered: Option<u64>,
    pub workdir: PathBuf,
    pub spool_dir: Option<PathBuf>,
    /// Directory printed after `logs: `, resolved against the workdir.
    pub logs_dir: Option<PathBuf>,
    child: Child,
    exit: Option<ExitStatus>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Owned temp dir; None when the caller supplied the workdir or took it.
    tempdir: Option<TempDir>,
    opts: DaemonOptions,
}

/// A spawned child plus the threads draining its pipes.
struct Spawned {
    child: Child,
    lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: JoinHandle<()>,
    workdir: PathBuf,
    tempdir: Option<TempDir>,
}

fn spawn(opts: &DaemonOptions) -> anyhow::Result<Spawned> {
    let (workdir, tempdir) = match &opts.workdir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("ironpost-test-")
                .tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let mut cmd = Command::new(&opts.bin);
    cmd.arg("serve");
    if let Some(policy) = &opts.policy {
        let file = workdir.join("policy.lua");
        std::fs::write(&file, policy).with_context(|| format!("write {}", file.display()))?;
        cmd.arg("--policy").arg(&file);
    }
    cmd.args(&opts.args)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", opts.bin.display()))?;

    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, lines) = mpsc::channel();
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let out_buf = stdout.clone();
    // Dropping tx at EOF is how `start` learns the child went away.
    thread::spawn(move || {
        let mut line = Vec::new();
        while matches!(out.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            out_buf.lock().unwrap().extend_from_slice(&line);
            let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
            line.clear();
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let err_buf = stderr.clone();
    let stderr_thread = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = err.read(&mut chunk) {
            err_buf.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Ok(Spawned {
        child,
        lines,
        stdout,
        stderr,
        stderr_thread,
        workdir,
        tempdir,
    })
}

fn lossy(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Waits for the child to exit (bounded), then for stderr to be drained so
/// error messages are complete.
fn reap(sp: &mut Spawned, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let status = loop {
        match sp.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            _ => break None,
        }
    };
    // A grandchild could hold stderr open; do not hang on it forever.
    while !sp.stderr_thread.is_finished() && Instant::now() < deadline + Duration::from_secs(2) {
        thread::sleep(POLL);
    }
    status
}

fn first_token(rest: &str) -> &str {
    rest.split_whitespace().next().unwrap_or("")
}

/// What the start-up lines said.
#[derive(Default)]
struct Startup {
    smtp: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    recovered: Option<u64>,
    spool_dir: Option<PathBuf>,
    logs_dir: Option<PathBuf>,
}

impl Startup {
    /// Returns true on `ready`. Paths are resolved against `workdir`.
    fn apply(&mut self, workdir: &Path, line: &str) -> anyhow::Result<bool> {
        let addr = |rest: &str| -> anyhow::Result<SocketAddr> {
            first_token(rest)
                .parse()
                .with_context(|| format!("bad listener address in {line:?}"))
        };
        if line == "ready" {
            return Ok(true);
        } else if let Some(rest) = line.strip_prefix("smtp listener: ") {
            self.smtp.push(addr(rest)?);
        } else if let Some(rest) = line.strip_prefix("http listener: ") {
            self.http.push(addr(rest)?);
        } else if let Some(rest) = line.strip_prefix("spool: ") {
            const MARK: &str = " (recovered ";
            let (path, recovered) = match rest.rfind(MARK) {
                Some(i) => {
                    let n = first_token(&rest[i + MARK.len()..]);
                    let n = n
                        .parse()
                        .with_context(|| format!("bad recovered count in {line:?}"))?;
                    (&rest[..i], Some(n))
                }
                None => (rest, None),
            };
            self.spool_dir = Some(workdir.join(path.trim()));
            self.recovered = recovered;
        } else if let Some(rest) = line.strip_prefix("logs: ") {
            self.logs_dir = Some(workdir.join(rest.trim()));
        }
        Ok(false)
    }
}

/// Reads start-up lines until `ready`, the child exiting, or the timeout.
fn await_ready(sp: &mut Spawned) -> anyhow::Result<Startup> {
    let mut startup = Startup::default();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match sp
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => {
                if startup.apply(&sp.workdir, &line)? {
                    return Ok(startup);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                bail!("daemon not ready after {READY_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: the daemon is exiting.
                let status = reap(sp, Duration::from_secs(10));
                bail!(
                    "daemon exited before ready ({})",
                    status.map_or("but is still running".into(), |s| s.to_string())
                );
            }
        }
    }
}

impl Daemon {
    /// Starts the daemon and waits up to 30 s for `ready`. On failure the
    /// error carries the daemon's stdout and stderr.
    pub fn start(opts: DaemonOptions) -> anyhow::Result<Daemon> {
        let mut sp = spawn(&opts)?;
        let startup = match await_ready(&mut sp) {
            Ok(startup) => startup,
            Err(e) => {
                let _ = sp.child.kill();
                let _ = sp.child.wait();
                return Err(e.context(format!(
                    "starting {}\nstdout:\n{}\nstderr:\n{}",
                    opts.bin.display(),
                    lossy(&sp.stdout),
                    lossy(&sp.stderr)
                )));
            }
        };
        Ok(Daemon {
            smtp: startup.smtp,
            http: startup.http,
            recovered: startup.recovered,
            workdir: sp.workdir,
            spool_dir: startup.spool_dir,
            logs_dir: startup.logs_dir,
            child: sp.child,
            exit: None,
            stdout: sp.stdout,
            stderr: sp.stderr,
            tempdir: sp.tempdir,
            opts,
        })
    }

    pub fn start_policy(bin: &Path, policy: &str) -> anyhow::Result<Daemon> {
        Self::start(DaemonOptions::new(bin).policy(policy))
    }

    /// Runs the daemon expecting it to refuse to start (e.g. bad policy).
    /// Returns (exit code, stderr); a signal death maps to 128 + signal.
    /// Err if it reaches `ready` or is still running after 30 s.
    pub fn try_start_expect_failure(opts: DaemonOptions) -> anyhow::Result<(i32, String)> {
        let mut sp = spawn(&opts)?;
        let outcome = await_ready(&mut sp);
        if let Ok(Some(status)) = sp.child.try_wait() {
            return Ok((exit_code(status), lossy(&sp.stderr)));
        }
        let _ = sp.child.kill();
        let _ = sp.child.wait();
        let what = match outcome {
            Ok(_) => "daemon became ready; expected a start-up failure".to_string(),
            Err(e) => format!("daemon neither became ready nor exited: {e}"),
        };
        bail!("{what}\nstderr:\n{}", lossy(&sp.stderr))
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        *self.smtp.first().expect("daemon reported no smtp listener")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap: simulates a crash.
    pub fn kill9(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // our own unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return;
            }
            thread::sleep(POLL);
        }
        self.kill9();
    }

    /// Exit status if the daemon has exited (checks without blocking).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    pub fn stderr(&self) -> String {
        lossy(&self.stderr)
    }

    pub fn stdout(&self) -> String {
        lossy(&self.stdout)
    }

    /// Stops (if still running) and starts again in the same workdir with
    /// the same options; the temp dir, if owned, carries over.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.restart_with(|_| {})
    }

    /// Like `restart`, after letting `edit` change the options (for example
    /// a new policy). The workdir is always kept.
    pub fn restart_with(&mut self, edit: impl FnOnce(&mut DaemonOptions)) -> anyhow::Result<()> {
        self.stop();
        let mut opts = self.opts.clone();
        edit(&mut opts);
        opts.workdir = Some(self.workdir.clone());
        let mut next = Daemon::start(opts)?;
        next.opts.workdir = self.opts.workdir.clone();
        next.tempdir = self.tempdir.take();
        *self = next;
        Ok(())
    }

    /// Hands the temp workdir to the caller so it outlives this Daemon
    /// (pass its path as `workdir` to start another). None if not owned.
    pub fn take_workdir(&mut self) -> Option<TempDir> {
        self.tempdir.take()
    }

    /// Makes the workdir permanent (never deleted) and returns its path.
    pub fn keep_workdir(&mut self) -> PathBuf {
        if let Some(tmp) = self.tempdir.take() {
            let _ = tmp.keep();
        }
        self.workdir.clone()
    }

    /// The printed `logs:` dir, else `<workdir>/ironpost-data/logs`.
    pub fn log_dir(&self) -> PathBuf {
        self.logs_dir
            .clone()
            .unwrap_or_else(|| self.workdir.join("ironpost-data").join("logs"))
    }

    /// Every JSON line in every file under the log dir (recursively, files
    /// in path order). Unterminated last lines and non-JSON lines are skipped.
    pub fn read_log_records(&self) -> Vec<serde_json::Value> {
        let mut files = Vec::new();
        collect_files(&self.log_dir(), &mut files);
        files.sort();
        let mut records = Vec::new();
        for file in files {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let complete = match bytes.iter().rposition(|&b| b == b'\n') {
                Some(i) => &bytes[..i],
                None => continue,
            };
            records.extend(
                complete
                    .split(|&b| b == b'\n')
                    .filter_map(|line| serde_json::from_slice(line).ok()),
            );
        }
        records
    }

    /// Polls the logs until a record matches `pred` or `timeout` passes.
    pub fn wait_for_log(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(hit) = self.read_log_records().into_iter().find(|r| pred(r)) {
                return Some(hit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        // Surface the daemon's side of the story when a test fails.
        if thread::panicking() {
            eprintln!(
                "--- ironpost stdout ---\n{}--- ironpost stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }
}
