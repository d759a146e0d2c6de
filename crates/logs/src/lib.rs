//! Operational log records as JSON lines (`kumo.configure_local_logs`).
//!
//! Records are handed to a dedicated writer thread over a channel so a slow
//! disk never stalls an SMTP session; the writer batches writes and flushes
//! whenever the channel runs dry, so records reach the file within
//! milliseconds under light load and in large writes under heavy load.
//!
//! Records that must survive a crash ([`Logger::log_written`]: a Reception
//! before its `250`, a Delivery before the spool forgets the message) are
//! acknowledged once the writer has handed them to the kernel, so a
//! `kill -9` after the acknowledgement cannot lose them.

pub mod classify;
mod record;

pub use record::{
    name_matches, AttemptRecord, AuthRecord, AuthenticationResult, DiscoveryFailure, Inbound,
    MessageRecord, PeerAddress, Record, Response,
};

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bounce classifier rules {file}: {reason}")]
    Classifier { file: String, reason: String },
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub max_segment_duration: Option<Duration>,
    pub max_file_size: Option<u64>,
    /// By record kind (`Reception`, ...) or `Any` for the kinds not listed.
    pub per_record: HashMap<String, RecordRoute>,
    /// The metadata keys and headers delivery records keep here (they may
    /// carry more, for log hooks).
    pub meta: Vec<String>,
    pub headers: Vec<String>,
}

/// Where one kind of record goes (`configure_local_logs{ per_record }`).
#[derive(Clone, Debug)]
pub struct RecordRoute {
    pub enable: bool,
    /// Appended to segment file names (before `.jsonl`).
    pub suffix: Option<String>,
    /// Instead of the main log directory.
    pub log_dir: Option<PathBuf>,
    /// Written at the start of each new segment (a CSV header, say).
    pub segment_header: Option<String>,
}

impl Default for RecordRoute {
    fn default() -> Self {
        RecordRoute {
            enable: true,
            suffix: None,
            log_dir: None,
            segment_header: None,
        }
    }
}

enum Msg {
    /// A record and its RFC 3339 timestamp (taken when it was logged).
    Record(Box<Record>, String, Option<Written>),
    Flush(mpsc::Sender<()>),
}

/// Told once a record is in the kernel's hands.
type Written = tokio::sync::oneshot::Sender<()>;

/// A batch is flushed, and its acknowledgements sent, after this many
/// records even when the channel never runs dry.
const MAX_BATCH: usize = 1024;

/// Sees every record as it is logged (metrics counters).
pub type Observer = std::sync::Arc<dyn Fn(&Record) + Send + Sync>;

/// A record as written: its fields, `type`, and `timestamp`.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    record: &'a Record,
    timestamp: &'a str,
}

/// Hands records to the writer thread of every configured log
/// (`configure_local_logs` may be called more than once: each call is a log
/// of its own, with its own directory and options).
#[derive(Clone)]
pub struct Logger {
    txs: Vec<mpsc::Sender<Msg>>,
    observer: Option<Observer>,
    /// Gives delivery records their `bounce_classification`.
    classifier: Option<std::sync::Arc<classify::BounceClassifier>>,
}

impl Logger {
    /// A logger that drops records (no `configure_local_logs` in the policy).
    pub fn disabled() -> Logger {
        Logger {
            txs: Vec::new(),
            observer: None,
            classifier: None,
        }
    }

    pub fn with_classifier(mut self, c: std::sync::Arc<classify::BounceClassifier>) -> Logger {
        self.classifier = Some(c);
        self
    }

    pub fn with_observer(mut self, observer: Observer) -> Logger {
        self.observer = Some(observer);
        self
    }

    pub fn start(cfg: LogConfig) -> Result<Logger, LogError> {
        Logger::start_all(vec![cfg])
    }

    /// One writer thread per log, each record written to every log (with
    /// that log's own selection of metadata and headers). No logs: the
    /// same as [`Logger::disabled`].
    pub fn start_all(cfgs: Vec<LogConfig>) -> Result<Logger, LogError> {
        // Every directory is checked before any thread starts.
        let mut routers = Vec::with_capacity(cfgs.len());
        for cfg in cfgs {
            let io = |source| LogError::Io {
                path: cfg.dir.clone(),
                source,
            };
            std::fs::create_dir_all(&cfg.dir).map_err(io)?;
            for dir in cfg.per_record.values().filter_map(|r| r.log_dir.as_ref()) {
                std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            let mut writer = Router::new(cfg.clone());
            writer.open_default().map_err(io)?;
            routers.push(writer);
        }
        let mut txs = Vec::with_capacity(routers.len());
        for writer in routers {
            let (tx, rx) = mpsc::channel();
            let dir = writer.cfg.dir.clone();
            std::thread::Builder::new()
                .name("ironpost-logs".into())
                .spawn(move || writer.run(rx))
                .map_err(|source| LogError::Io { path: dir, source })?;
            txs.push(tx);
        }
        Ok(Logger {
            txs,
            observer: None,
            classifier: None,
        })
    }

    /// Queue a record; a timestamp is added.
    pub fn log(&self, record: Record) {
        self.send(record, false);
    }

    /// Queue a record and wait until every log has written it to its file
    /// (handed to the kernel, not fsynced): from then on a `kill -9` cannot
    /// lose it. A log whose writer has gone is not waited for.
    pub async fn log_written(&self, record: Record) {
        for written in self.send(record, true) {
            let _ = written.await;
        }
    }

    fn send(&self, mut record: Record, ack: bool) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        if let (Some(c), Some(a)) = (&self.classifier, record.attempt_mut()) {
            a.bounce_classification = Some(c.classify_response(&a.response));
        }
        if let Some(o) = &self.observer {
            o(&record);
        }
        let Some((last, others)) = self.txs.split_last() else {
            return Vec::new();
        };
        let at = chrono::Utc::now().to_rfc3339();
        let mut waits = Vec::new();
        let mut ack = || {
            ack.then(|| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                waits.push(rx);
                tx
            })
        };
        for tx in others {
            let _ = tx.send(Msg::Record(Box::new(record.clone()), at.clone(), ack()));
        }
        let _ = last.send(Msg::Record(Box::new(record), at, ack()));
        waits
    }

    /// Wait until every record queued so far is written to the files.
    pub fn flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let waits: Vec<_> = self
            .txs
            .iter()
            .filter_map(|tx| {
                let (done_tx, done_rx) = mpsc::channel();
                tx.send(Msg::Flush(done_tx)).ok().map(|()| done_rx)
            })
            .collect();
        for done in waits {
            let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

/// Sends each record to the segment writer its kind is routed to.
struct Router {
    cfg: LogConfig,
    writers: HashMap<(PathBuf, String), SegmentWriter>,
}

impl Router {
    fn new(cfg: LogConfig) -> Router {
        Router {
            cfg,
            writers: HashMap::new(),
        }
    }

    fn writer(
        &mut self,
        dir: PathBuf,
        suffix: String,
        header: Option<String>,
    ) -> &mut SegmentWriter {
        let cfg = &self.cfg;
        self.writers
            .entry((dir.clone(), suffix.clone()))
            .or_insert_with(|| SegmentWriter {
                dir,
                suffix,
                header,
                max_segment_duration: cfg.max_segment_duration,
                max_file_size: cfg.max_file_size,
                out: None,
                opened: Instant::now(),
                written: 0,
            })
    }

    fn open_default(&mut self) -> std::io::Result<()> {
        let dir = self.cfg.dir.clone();
        self.writer(dir, String::new(), None).open()
    }

    fn write(&mut self, record: &Record, timestamp: &str) {
        let route = self
            .cfg
            .per_record
            .get(record.kind())
            .or_else(|| self.cfg.per_record.get("Any"))
            .cloned()
            .unwrap_or_default();
        if !route.enable {
            return;
        }
        let dir = route.log_dir.unwrap_or_else(|| self.cfg.dir.clone());
        self.writer(dir, route.suffix.unwrap_or_default(), route.segment_header)
            .write(record, timestamp);
    }

    fn flush(&mut self) {
        for w in self.writers.values_mut() {
            w.flush();
        }
    }

    /// Reception records carry the headers every log asked for; this log
    /// keeps its own.
    fn select_reception_headers(&self, record: &mut Record) {
        if let Record::Reception(m) | Record::Rejection(m) = record {
            if let Some(h) = m.headers.take() {
                let picked: std::collections::BTreeMap<String, String> = h
                    .into_iter()
                    .filter(|(k, _)| name_matches(&self.cfg.headers, k, true))
                    .collect();
                m.headers = (!picked.is_empty()).then_some(picked);
            }
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut acks: Vec<Written> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut batch = 0;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(mut r, at, ack) => {
                        r.select_fields(&self.cfg.meta, &self.cfg.headers, false);
                        self.select_reception_headers(&mut r);
                        self.write(&r, &at);
                        acks.extend(ack);
                    }
                    Msg::Flush(done) => {
                        self.flush_and_ack(&mut acks);
                        let _ = done.send(());
                    }
                }
                batch += 1;
                if batch >= MAX_BATCH {
                    self.flush_and_ack(&mut acks);
                    batch = 0;
                }
                next = rx.try_recv().ok();
            }
            self.flush_and_ack(&mut acks);
        }
        self.flush_and_ack(&mut acks);
    }

    fn flush_and_ack(&mut self, acks: &mut Vec<Written>) {
        self.flush();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

struct SegmentWriter {
    dir: PathBuf,
    suffix: String,
    header: Option<String>,
    max_segment_duration: Option<Duration>,
    max_file_size: Option<u64>,
    out: Option<BufWriter<File>>,
    opened: Instant,
    written: u64,
}

impl SegmentWriter {
    fn segment_path(&self) -> PathBuf {
        let now = chrono::Utc::now();
        let base = now.format("%Y%m%d-%H%M%S%.6f").to_string();
        self.dir.join(format!("{base}{}.jsonl", self.suffix))
    }

    fn open(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A new file every time: two logs may share a directory (two
        // configure_local_logs calls with one log_dir), and each writer's
        // lines must stay in files of its own. A name taken this
        // microsecond is tried again in the next.
        let mut tries = 0;
        let file = loop {
            match OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o640)
                .open(self.segment_path())
            {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 1000 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_micros(10));
                }
                other => break other?,
            }
        };
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        self.written = 0;
        if let Some(h) = &self.header {
            out.write_all(h.as_bytes())?;
            self.written = h.len() as u64;
        }
        self.out = Some(out);
        self.opened = Instant::now();
        Ok(())
    }

    fn needs_rotation(&self) -> bool {
        self.out.is_none()
            || self
                .max_segment_duration
                .is_some_and(|d| self.opened.elapsed() >= d)
            || self.max_file_size.is_some_and(|s| self.written >= s)
    }

    fn write(&mut self, record: &Record, timestamp: &str) {
        if self.needs_rotation() {
            if let Some(mut out) = self.out.take() {
                let _ = out.flush();
            }
            if let Err(e) = self.open() {
                tracing::error!(
                    "cannot open a new log segment in {}: {e}",
                    self.dir.display()
                );
            }
        }
        let Some(out) = self.out.as_mut() else { return };
        let mut line = serde_json::to_vec(&Line { record, timestamp }).unwrap_or_default();
        line.push(b'\n');
        self.written += line.len() as u64;
        if let Err(e) = out.write_all(&line) {
            tracing::error!("cannot write log record in {}: {e}", self.dir.display());
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `log_written` returns only once the record is in the file, with no
    /// `flush` and while a burst of plain records is still being written.
    #[tokio::test]
    async fn a_written_record_is_in_the_file_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |d: &std::path::Path| LogConfig {
            dir: d.to_path_buf(),
            max_segment_duration: None,
            max_file_size: None,
            per_record: HashMap::new(),
            meta: Vec::new(),
            headers: Vec::new(),
        };
        let second = dir.path().join("second");
        let logger = Logger::start_all(vec![cfg(dir.path()), cfg(&second)]).unwrap();
        for i in 0..5000 {
            logger.log(Record::TransientFailure(AttemptRecord {
                num_attempts: i,
                ..Default::default()
            }));
        }
        logger
            .log_written(Record::Reception(MessageRecord {
                size: Some(4242),
                ..Default::default()
            }))
            .await;
        for d in [dir.path(), second.as_path()] {
            let text: String = std::fs::read_dir(d)
                .unwrap()
                .filter_map(|f| f.ok())
                .filter(|f| f.path().is_file())
                .map(|f| std::fs::read_to_string(f.path()).unwrap())
                .collect();
            assert!(text.contains("\"size\":4242"), "in {}", d.display());
        }
        // With no log at all there is nothing to wait for.
        Logger::disabled()
            .log_written(Record::Reception(MessageRecord::default()))
            .await;
    }

    #[test]
    fn records_are_json_lines_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let logger = Logger::start(LogConfig {
            dir: dir.path().to_path_buf(),
            max_segment_duration: None,
            max_file_size: Some(200),
            per_record: HashMap::new(),
            meta: Vec::new(),
            headers: Vec::new(),
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

    #[test]
    fn per_record_routes_disables_and_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let delivery_dir = dir.path().join("delivery");
        let per_record = HashMap::from([
            (
                "Reception".to_string(),
                RecordRoute {
                    suffix: Some("_recv".into()),
                    ..Default::default()
                },
            ),
            (
                "Delivery".to_string(),
                RecordRoute {
                    log_dir: Some(delivery_dir.clone()),
                    ..Default::default()
                },
            ),
            (
                "Any".to_string(),
                RecordRoute {
                    enable: false,
                    ..Default::default()
                },
            ),
        ]);
        let logger = Logger::start(LogConfig {
            dir: dir.path().join("main"),
            max_segment_duration: None,
            max_file_size: None,
            per_record,
            meta: Vec::new(),
            headers: Vec::new(),
        })
        .unwrap();
        logger.log(Record::Reception(MessageRecord::default()));
        logger.log(Record::Delivery(AttemptRecord::default()));
        logger.log(Record::Bounce(AttemptRecord::default()));
        logger.flush();
        let lines = |d: &std::path::Path| -> Vec<(String, String)> {
            let mut out = Vec::new();
            for f in std::fs::read_dir(d).unwrap() {
                let path = f.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                for l in std::fs::read_to_string(&path).unwrap().lines() {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    out.push((name.clone(), v["type"].as_str().unwrap().to_string()));
                }
            }
            out
        };
        let main = lines(&dir.path().join("main"));
        assert_eq!(main.len(), 1, "{main:?}");
        assert!(main[0].0.ends_with("_recv.jsonl") && main[0].1 == "Reception");
        let delivery = lines(&delivery_dir);
        assert_eq!(delivery.len(), 1);
        assert_eq!(delivery[0].1, "Delivery");
    }

    #[test]
    fn several_logs_each_get_every_record_with_their_own_selection() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |name: &str, field: &str| LogConfig {
            dir: dir.path().join(name),
            max_segment_duration: None,
            max_file_size: None,
            per_record: HashMap::new(),
            meta: vec![field.to_string()],
            headers: vec![field.to_string()],
        };
        let logger = Logger::start_all(vec![cfg("a", "A"), cfg("b", "B")]).unwrap();
        let headers = || {
            Some(std::collections::BTreeMap::from([
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
            ]))
        };
        logger.log(Record::Reception(MessageRecord {
            headers: headers(),
            ..Default::default()
        }));
        logger.log(Record::Delivery(AttemptRecord {
            meta: serde_json::value::RawValue::from_string(r#"{"A":1,"B":2}"#.into()).ok(),
            headers: headers(),
            ..Default::default()
        }));
        logger.flush();
        for (name, keep, drop) in [("a", "A", "B"), ("b", "B", "A")] {
            let mut records = Vec::new();
            for f in std::fs::read_dir(dir.path().join(name)).unwrap() {
                for l in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
                    records.push(serde_json::from_str::<serde_json::Value>(l).unwrap());
                }
            }
            assert_eq!(records.len(), 2, "{name}: {records:?}");
            assert_eq!(records[0]["type"], "Reception");
            assert_eq!(records[1]["type"], "Delivery");
            for r in &records {
                assert!(r["headers"][keep].is_string(), "{name}: {r}");
                assert!(r["headers"][drop].is_null(), "{name}: {r}");
            }
            assert!(records[1]["meta"][keep].is_number(), "{name}");
            assert!(records[1]["meta"][drop].is_null(), "{name}");
        }
    }

    #[test]
    fn two_logs_in_one_directory_write_separate_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || LogConfig {
            dir: dir.path().to_path_buf(),
            max_segment_duration: None,
            max_file_size: None,
            per_record: HashMap::new(),
            meta: Vec::new(),
            headers: Vec::new(),
        };
        let logger = Logger::start_all(vec![cfg(), cfg()]).unwrap();
        for i in 0..100 {
            logger.log(Record::Reception(MessageRecord {
                size: Some(i),
                ..Default::default()
            }));
        }
        logger.flush();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 2);
        for f in files {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let sizes: Vec<u64> = text
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["size"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!(sizes, (0..100).collect::<Vec<_>>());
        }
    }

    #[test]
    fn no_logs_is_disabled() {
        let logger = Logger::start_all(Vec::new()).unwrap();
        logger.log(Record::Reception(MessageRecord::default()));
        logger.flush();
    }
}
