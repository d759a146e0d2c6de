//! Operational log records as JSON lines (`kumo.configure_local_logs`).
//!
//! Records are handed to a dedicated writer thread over a channel so a slow
//! disk never stalls an SMTP session; the writer batches writes and flushes
//! whenever the channel runs dry, so records reach the file within
//! milliseconds under light load and in large writes under heavy load.

mod record;

pub use record::{
    AttemptRecord, AuthRecord, DiscoveryFailure, Inbound, MessageRecord, PeerAddress, Record,
    Response,
};

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub max_segment_duration: Option<Duration>,
    pub max_file_size: Option<u64>,
}

enum Msg {
    /// A record and its RFC 3339 timestamp (taken when it was logged).
    Record(Box<Record>, String),
    Flush(mpsc::Sender<()>),
}

/// Sees every record as it is logged (metrics counters).
pub type Observer = std::sync::Arc<dyn Fn(&Record) + Send + Sync>;

/// A record as written: its fields, `type`, and `timestamp`.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    record: &'a Record,
    timestamp: &'a str,
}

#[derive(Clone)]
pub struct Logger {
    tx: Option<mpsc::Sender<Msg>>,
    observer: Option<Observer>,
}

impl Logger {
    /// A logger that drops records (no `configure_local_logs` in the policy).
    pub fn disabled() -> Logger {
        Logger {
            tx: None,
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: Observer) -> Logger {
        self.observer = Some(observer);
        self
    }

    pub fn start(cfg: LogConfig) -> Result<Logger, LogError> {
        let io = |source| LogError::Io {
            path: cfg.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.dir).map_err(io)?;
        let (tx, rx) = mpsc::channel();
        let mut writer = SegmentWriter::new(cfg.clone());
        writer.open().map_err(io)?;
        std::thread::Builder::new()
            .name("ironpost-logs".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Logger {
            tx: Some(tx),
            observer: None,
        })
    }

    /// Queue a record; a timestamp is added.
    pub fn log(&self, record: Record) {
        if let Some(o) = &self.observer {
            o(&record);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Record(
                Box::new(record),
                chrono::Utc::now().to_rfc3339(),
            ));
        }
    }

    /// Wait until every record queued so far is written to the file.
    pub fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(5));
            }
        }
    }
}

struct SegmentWriter {
    cfg: LogConfig,
    out: Option<BufWriter<File>>,
    opened: Instant,
    written: u64,
}

impl SegmentWriter {
    fn new(cfg: LogConfig) -> SegmentWriter {
        SegmentWriter {
            cfg,
            out: None,
            opened: Instant::now(),
            written: 0,
        }
    }

    fn segment_path(dir: &Path) -> PathBuf {
        let now = chrono::Utc::now();
        let base = now.format("%Y%m%d-%H%M%S%.6f").to_string();
        dir.join(format!("{base}.jsonl"))
    }

    fn open(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::segment_path(&self.cfg.dir);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        self.out = Some(BufWriter::with_capacity(256 * 1024, file));
        self.opened = Instant::now();
        self.written = 0;
        Ok(())
    }

    fn needs_rotation(&self) -> bool {
        self.cfg
            .max_segment_duration
            .is_some_and(|d| self.opened.elapsed() >= d)
            || self.cfg.max_file_size.is_some_and(|s| self.written >= s)
    }

    fn write(&mut self, record: &Record, timestamp: &str) {
        if self.needs_rotation() {
            if let Some(mut out) = self.out.take() {
                let _ = out.flush();
            }
            if let Err(e) = self.open() {
                tracing::error!(
                    "cannot open a new log segment in {}: {e}",
                    self.cfg.dir.display()
                );
            }
        }
        let Some(out) = self.out.as_mut() else { return };
        let mut line = serde_json::to_vec(&Line { record, timestamp }).unwrap_or_default();
        line.push(b'\n');
        self.written += line.len() as u64;
        if let Err(e) = out.write_all(&line) {
            tracing::error!("cannot write log record in {}: {e}", self.cfg.dir.display());
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(r, at) => self.write(&r, &at),
                    Msg::Flush(done) => {
                        self.flush();
                        let _ = done.send(());
                    }
                }
                next = rx.try_recv().ok();
            }
            self.flush();
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let logger = Logger::start(LogConfig {
            dir: dir.path().to_path_buf(),
            max_segment_duration: None,
            max_file_size: Some(200),
        })
        .unwrap();
        for i in 0..10 {
            logger.log(Record::Reception(MessageRecord {
                size: Some(i),
                meta: serde_json::value::RawValue::from_string(format!(r#"{{"n":{i}}}"#)).ok(),
                ..Default::default()
            }));
        }
        logger.flush();
        let mut count = 0;
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(files.len() > 1, "rotated by size");
        for f in files {
            for line in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["type"], "Reception");
                assert!(v["timestamp"].is_string());
                assert_eq!(v["meta"]["n"], v["size"]);
                count += 1;
            }
        }
        assert_eq!(count, 10);
    }
}
