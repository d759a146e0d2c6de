//! Throughput of the group-commit spool against the classic file-per-message design
//! (write, fdatasync, rename into place, fsync the directory), both fully durable.
//!
//! Runs in a temporary directory under $SPOOL_BENCH_DIR or the current directory:
//! fsync cost is the point, so it must be a real disk, not tmpfs.
//! $SPOOL_BENCH_SECS sets the length of each run (default 3).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_spool::{Spool, SpoolConfig, SpoolId};

const MESSAGE_SIZE: usize = 10 * 1024;
const CONCURRENCY: [usize; 3] = [1, 20, 100];

struct Outcome {
    messages: u64,
    syncs: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::var("SPOOL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let run_for = Duration::from_secs_f64(secs);
    let parent = match std::env::var_os("SPOOL_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()?,
    };
    let base = tempfile::Builder::new()
        .prefix("spool-bench-")
        .tempdir_in(&parent)?;
    let fs_type = filesystem_type(base.path());
    println!(
        "spool_bench: {MESSAGE_SIZE}-byte messages, {secs} s per run, in {} ({fs_type})",
        base.path().display()
    );
    if fs_type == "tmpfs" || fs_type == "ramfs" {
        println!("WARNING: {fs_type} has no real fsync; set SPOOL_BENCH_DIR to a disk path");
    }
    println!(
        "{:<22} {:>5} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "design", "conc", "messages", "msgs/s", "syncs/msg", "p50 ms", "p99 ms"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for concurrency in CONCURRENCY {
        let dir = base.path().join(format!("spool-{concurrency}"));
        let (spool, _) = Spool::open(SpoolConfig::new(&dir))?;
        let outcome = rt.block_on(bench_spool(spool.clone(), concurrency, run_for));
        spool.shutdown();
        report("spool (group commit)", concurrency, outcome);
        fs::remove_dir_all(&dir)?;

        let dir = base.path().join(format!("files-{concurrency}"));
        let outcome = rt.block_on(bench_files(dir.clone(), concurrency, run_for))?;
        report("file-per-message", concurrency, outcome);
        fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

fn payload() -> (Vec<u8>, Vec<u8>) {
    let meta = br#"{"from":"sender@example.org","rcpt":["a@example.net"],"helo":"mx.example.org"}"#;
    let data = (0..MESSAGE_SIZE).map(|i| b'a' + (i % 26) as u8).collect();
    (meta.to_vec(), data)
}

async fn bench_spool(spool: Spool, concurrency: usize, run_for: Duration) -> Outcome {
    let (meta, data) = payload();
    let before = spool.stats();
    let start = Instant::now();
    let deadline = start + run_for;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (spool, meta, data) = (spool.clone(), meta.clone(), data.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    spool
                        .store(SpoolId::new(), meta.clone(), data.clone())
                        .await
                        .expect("spool store");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies = join_all(tasks).await;
    let elapsed = start.elapsed();
    let after = spool.stats();
    Outcome {
        messages: after.records_written - before.records_written,
        syncs: after.syncs - before.syncs,
        elapsed,
        latencies,
    }
}

async fn bench_files(
    dir: PathBuf,
    concurrency: usize,
    run_for: Duration,
) -> std::io::Result<Outcome> {
    let (tmp_dir, final_dir) = (dir.join("tmp"), dir.join("queue"));
    fs::create_dir_all(&tmp_dir)?;
    fs::create_dir_all(&final_dir)?;
    let (meta, data) = payload();
    let syncs = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run_for;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (tmp_dir, final_dir) = (tmp_dir.clone(), final_dir.clone());
            let (meta, data, syncs) = (meta.clone(), data.clone(), syncs.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (tmp_dir, final_dir) = (tmp_dir.clone(), final_dir.clone());
                    let (meta, data, syncs) = (meta.clone(), data.clone(), syncs.clone());
                    tokio::task::spawn_blocking(move || {
                        store_file(&tmp_dir, &final_dir, &meta, &data, &syncs)
                    })
                    .await
                    .expect("blocking task")
                    .expect("file store");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies = join_all(tasks).await;
    let elapsed = start.elapsed();
    Ok(Outcome {
        messages: latencies.len() as u64,
        syncs: syncs.load(Relaxed),
        elapsed,
        latencies,
    })
}

/// The durable file-per-message protocol used by classic MTA queues.
fn store_file(
    tmp_dir: &Path,
    final_dir: &Path,
    meta: &[u8],
    data: &[u8],
    syncs: &AtomicU64,
) -> std::io::Result<()> {
    let name = SpoolId::new().to_string();
    let tmp = tmp_dir.join(&name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    file.write_all(&(meta.len() as u32).to_le_bytes())?;
    file.write_all(meta)?;
    file.write_all(data)?;
    file.sync_data()?;
    fs::rename(&tmp, final_dir.join(&name))?;
    File::open(final_dir)?.sync_all()?;
    syncs.fetch_add(2, Relaxed);
    Ok(())
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("bench task"));
    }
    all
}

fn report(design: &str, concurrency: usize, mut o: Outcome) {
    o.latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((o.latencies.len() as f64 * p) as usize).min(o.latencies.len().saturating_sub(1));
        o.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:<22} {:>5} {:>9} {:>10.0} {:>10.3} {:>8.2} {:>8.2}",
        design,
        concurrency,
        o.messages,
        o.messages as f64 / o.elapsed.as_secs_f64(),
        o.syncs as f64 / o.messages.max(1) as f64,
        pct(0.50),
        pct(0.99),
    );
}

/// Type of the filesystem holding `path`, from the longest matching mount point.
fn filesystem_type(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fstype.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown filesystem".into(), |(_, fstype)| fstype)
}
