//! Durable on-disk message spool for the MTA.
//!
//! Messages are appended to segment files by a single writer thread that groups
//! every queued request into one write and one fdatasync (group commit): `store`
//! returns only once its record is on disk, yet concurrent sessions share syncs.
//! On open, segments are replayed to rebuild the live set; a write torn by a crash
//! is cut off the newest segment. Segments whose messages are all removed are
//! deleted oldest-first so a removal can never be undone by a lost tombstone.

mod dir;
mod error;
mod id;
mod live;
pub mod meta;
mod record;
mod recovery;
mod segment;
mod stats;
mod writer;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use nix::fcntl::Flock;
use tokio::sync::oneshot;

pub use error::SpoolError;
pub use id::{ParseSpoolIdError, SpoolId};
pub use meta::{MetaError, MetaObject, SpoolMeta, FORMAT_VERSION};
pub use stats::SpoolStats;

use error::io_at;
use record::Record;
use writer::{Request, Writer};

/// Default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub path: PathBuf,
    /// fdatasync each batch before acknowledging it. Only tests and benchmarks of
    /// the non-durable path should turn this off.
    pub flush: bool,
    /// The active segment is sealed once it reaches this many bytes.
    pub segment_size: u64,
}

impl SpoolConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            path: path.into(),
            flush: true,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Where a message record lives; pass it back to [`Spool::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub segment: u64,
    /// Byte offset of the record in its segment.
    pub offset: u64,
    /// Length of the whole record.
    pub len: u32,
}

/// A message that was live when the spool was opened.
#[derive(Debug, Clone)]
pub struct RecoveredMessage {
    pub id: SpoolId,
    pub location: Location,
    /// The newest meta: from the message itself or its last update.
    pub meta: Vec<u8>,
}

/// What open found on disk.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Live messages in write order.
    pub messages: Vec<RecoveredMessage>,
    /// Segment files scanned.
    pub segments: usize,
    /// Bytes cut off the newest segment as a torn write.
    pub truncated_bytes: u64,
    /// Older segments in which a bad record stopped the scan (see the error log).
    pub corrupt_segments: usize,
}

/// Handle to an open spool; clones share one writer thread.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<stats::Stats>,
    // Held until the writer is joined (fields drop after Drop::drop).
    _lock: Flock<File>,
}

impl Spool {
    /// Opens (creating if needed) the spool directory, recovers its contents and
    /// starts the writer thread. Blocking: call it before or outside the runtime.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        let path = cfg.path;
        dir::prepare(&path)?;
        let lock = dir::lock(&path)?;
        let recovered = recovery::recover(&path)?;
        let mut live = recovered.live;
        let (active_seq, active, active_len) = match recovered.last {
            Some((seq, len)) => (seq, segment::open_append(&segment::path(&path, seq))?, len),
            None => {
                live.add_segment(1);
                (1, segment::create(&path, 1)?, 0)
            }
        };
        let stats = Arc::new(stats::Stats::default());
        stats.publish(&live);
        let writer = Writer {
            dir: path.clone(),
            flush: cfg.flush,
            segment_size: cfg.segment_size,
            active_seq,
            active,
            active_len,
            live,
            stats: stats.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_at(&path))?;
        let inner = Inner {
            path,
            tx,
            writer: Mutex::new(Some(handle)),
            stats,
            _lock: lock,
        };
        Ok((
            Spool {
                inner: Arc::new(inner),
            },
            recovered.report,
        ))
    }

    /// Appends a message; resolves once it is durable (with `flush`).
    pub async fn store(
        &self,
        id: SpoolId,
        meta: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<Location, SpoolError> {
        let rx = self.submit_store(id, meta, data)?;
        rx.await.map_err(|_| self.closed())?
    }

    /// [`Spool::store`] for threads outside an async runtime. Panics if called
    /// from within one (it would block a runtime worker).
    pub fn store_blocking(
        &self,
        id: SpoolId,
        meta: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<Location, SpoolError> {
        let rx = self.submit_store(id, meta, data)?;
        rx.blocking_recv().map_err(|_| self.closed())?
    }

    fn submit_store(
        &self,
        id: SpoolId,
        meta: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Location, SpoolError>>, SpoolError> {
        let record = Record::Message {
            id,
            meta: &meta,
            data: &data,
        };
        if record.encoded_len().is_none() {
            return Err(self.too_large(id, meta.len() + data.len()));
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Store {
            id,
            meta,
            data,
            reply,
        })?;
        Ok(rx)
    }

    /// Replaces a live message's meta (e.g. remaining recipients, retry schedule);
    /// durable on return. `NotFound` if the message is not live.
    pub async fn update_meta(&self, id: SpoolId, meta: Vec<u8>) -> Result<(), SpoolError> {
        if (Record::UpdateMeta { id, meta: &meta })
            .encoded_len()
            .is_none()
        {
            return Err(self.too_large(id, meta.len()));
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Request::UpdateMeta { id, meta, reply })?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Removes a message; the removal is durable on return. Removing a message
    /// that is not live succeeds and writes nothing.
    pub async fn remove(&self, id: SpoolId) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Remove { id, reply })?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Reads a message's (meta, data) back, verifying its checksum. Blocking pread;
    /// from async code use `spawn_blocking` for large messages.
    pub fn read(&self, loc: &Location) -> Result<(Vec<u8>, Vec<u8>), SpoolError> {
        let path = segment::path(&self.inner.path, loc.segment);
        let corrupt = |reason: String| SpoolError::Corrupt {
            path: path.clone(),
            offset: loc.offset,
            reason,
        };
        let file = segment::open_read(&path)?;
        let file_len = file.metadata().map_err(io_at(&path))?.len();
        // Checked before allocating so a bogus location cannot demand 4 GiB.
        if loc.offset.saturating_add(u64::from(loc.len)) > file_len {
            return Err(corrupt(format!(
                "location of {} bytes runs past end of segment ({file_len} bytes)",
                loc.len
            )));
        }
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(io_at(&path))?;
        let (meta, data_len) = match Record::decode(&buf) {
            Ok(Record::Message { meta, data, .. }) => (meta.to_vec(), data.len()),
            Ok(other) => {
                return Err(corrupt(format!(
                    "record for {} is not a message",
                    other.id()
                )))
            }
            Err(reason) => return Err(corrupt(reason)),
        };
        // Data is the record's tail: split it off instead of copying it.
        let data = buf.split_off(buf.len() - data_len);
        Ok((meta, data))
    }

    /// Reads only a message's metadata (the head of its record), for callers
    /// that need no content: two small preads whatever the message's size.
    /// The checksum covers the whole record, so it is not verified here;
    /// [`Spool::read`] verifies it whenever the content is read.
    pub fn read_meta(&self, loc: &Location) -> Result<Vec<u8>, SpoolError> {
        let path = segment::path(&self.inner.path, loc.segment);
        let corrupt = |reason: String| SpoolError::Corrupt {
            path: path.clone(),
            offset: loc.offset,
            reason,
        };
        if (loc.len as usize) < record::MESSAGE_HEAD {
            return Err(corrupt(format!(
                "a message record cannot be {} bytes",
                loc.len
            )));
        }
        let file = segment::open_read(&path)?;
        let mut head = [0u8; record::MESSAGE_HEAD];
        file.read_exact_at(&mut head, loc.offset)
            .map_err(io_at(&path))?;
        let meta_len = record::message_meta_len(&head, loc.len).map_err(corrupt)?;
        let mut meta = vec![0u8; meta_len];
        file.read_exact_at(&mut meta, loc.offset + record::MESSAGE_HEAD as u64)
            .map_err(io_at(&path))?;
        Ok(meta)
    }

    pub fn stats(&self) -> SpoolStats {
        self.inner.stats.snapshot()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the writer once everything queued before this call is written, and
    /// waits for it. Later calls on any clone fail with `Closed`. Blocking.
    pub fn shutdown(&self) {
        self.inner.stop();
    }

    fn submit(&self, req: Request) -> Result<(), SpoolError> {
        self.inner.tx.send(req).map_err(|_| self.closed())
    }

    fn closed(&self) -> SpoolError {
        SpoolError::Closed {
            path: self.inner.path.clone(),
        }
    }

    fn too_large(&self, id: SpoolId, payload: usize) -> SpoolError {
        SpoolError::TooLarge {
            path: self.inner.path.clone(),
            id,
            len: payload as u64,
        }
    }
}

impl Inner {
    fn stop(&self) {
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = self.tx.send(Request::Shutdown);
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "spool: writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}
