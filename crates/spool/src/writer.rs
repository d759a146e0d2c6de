//! The writer thread: sole owner of the active segment. It turns whatever requests
//! are queued into one write and one fdatasync (group commit), so concurrent
//! sessions share the cost of durability.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::error::{io_at, SpoolError};
use crate::live::LiveSet;
use crate::record::Record;
use crate::stats::Stats;
use crate::{dir, segment, Location, SpoolId};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

pub(crate) enum Request {
    Store {
        id: SpoolId,
        meta: Vec<u8>,
        data: Vec<u8>,
        reply: Reply<Location>,
    },
    UpdateMeta {
        id: SpoolId,
        meta: Vec<u8>,
        reply: Reply<()>,
    },
    Remove {
        id: SpoolId,
        reply: Reply<()>,
    },
    /// Finish everything queued before this, then exit.
    Shutdown,
}

impl Request {
    fn payload_len(&self) -> usize {
        match self {
            Request::Store { meta, data, .. } => meta.len() + data.len(),
            Request::UpdateMeta { meta, .. } => meta.len(),
            Request::Remove { .. } | Request::Shutdown => 0,
        }
    }

    fn fail(self, err: &SpoolError) {
        // A send error only means the caller stopped waiting.
        match self {
            Request::Store { reply, .. } => drop(reply.send(Err(err.duplicate()))),
            Request::UpdateMeta { reply, .. } | Request::Remove { reply, .. } => {
                drop(reply.send(Err(err.duplicate())))
            }
            Request::Shutdown => {}
        }
    }
}

/// A request whose record is in the batch buffer, waiting for the sync.
enum Pending {
    Stored {
        id: SpoolId,
        location: Location,
        reply: Reply<Location>,
    },
    /// An update, or a removal that an earlier record in this batch already did.
    Ack {
        reply: Reply<()>,
    },
    Removed {
        id: SpoolId,
        reply: Reply<()>,
    },
}

impl Pending {
    fn fail(self, err: &SpoolError) {
        match self {
            Pending::Stored { reply, .. } => drop(reply.send(Err(err.duplicate()))),
            Pending::Ack { reply } | Pending::Removed { reply, .. } => {
                drop(reply.send(Err(err.duplicate())))
            }
        }
    }
}

fn is_live(touched: &HashMap<SpoolId, bool>, live: &LiveSet, id: SpoolId) -> bool {
    touched
        .get(&id)
        .copied()
        .unwrap_or_else(|| live.contains(id))
}

/// Stop draining the queue into one batch past this many payload bytes.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Batch buffer capacity kept between batches.
const KEEP_BUF_CAPACITY: usize = 4 << 20;

pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) flush: bool,
    pub(crate) segment_size: u64,
    pub(crate) active_seq: u64,
    pub(crate) active: File,
    pub(crate) active_len: u64,
    pub(crate) live: LiveSet,
    pub(crate) stats: Arc<Stats>,
}

/// Writer state that only exists while running.
struct Running {
    w: Writer,
    active_path: PathBuf,
    /// Set once the segment's on-disk state is unknown; every later write is refused
    /// until the spool is reopened and recovery re-reads what actually reached disk.
    failed: Option<String>,
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn run(self, rx: Receiver<Request>) {
        let active_path = segment::path(&self.dir, self.active_seq);
        let mut r = Running {
            w: self,
            active_path,
            failed: None,
            buf: Vec::new(),
        };
        r.reclaim();
        let mut batch = Vec::new();
        // Ends when every handle is gone or on Shutdown.
        while let Ok(first) = rx.recv() {
            if matches!(first, Request::Shutdown) {
                break;
            }
            let mut stop = false;
            let mut bytes = first.payload_len();
            batch.push(first);
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(Request::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Ok(req) => {
                        bytes += req.payload_len();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            r.commit(&mut batch);
            if stop {
                break;
            }
        }
        r.close();
    }
}

impl Running {
    fn commit(&mut self, batch: &mut Vec<Request>) {
        if let Some(reason) = &self.failed {
            let err = SpoolError::Failed {
                path: self.active_path.clone(),
                reason: reason.clone(),
            };
            batch.drain(..).for_each(|req| req.fail(&err));
            return;
        }

        self.buf.clear();
        let mut pending = Vec::with_capacity(batch.len());
        let mut records = 0u64;
        // Liveness of ids stored or removed earlier in this same batch.
        let mut touched: HashMap<SpoolId, bool> = HashMap::new();
        for req in batch.drain(..) {
            let offset = self.w.active_len + self.buf.len() as u64;
            match req {
                Request::Store {
                    id,
                    meta,
                    data,
                    reply,
                } => {
                    let record = Record::Message {
                        id,
                        meta: &meta,
                        data: &data,
                    };
                    let len = record.encoded_len().expect("size checked by Spool::store");
                    record.encode_into(&mut self.buf);
                    records += 1;
                    touched.insert(id, true);
                    let location = Location {
                        segment: self.w.active_seq,
                        offset,
                        len,
                    };
                    pending.push(Pending::Stored {
                        id,
                        location,
                        reply,
                    });
                }
                Request::UpdateMeta { id, meta, reply } => {
                    if !is_live(&touched, &self.w.live, id) {
                        let path = self.w.dir.clone();
                        let _ = reply.send(Err(SpoolError::NotFound { path, id }));
                        continue;
                    }
                    Record::UpdateMeta { id, meta: &meta }.encode_into(&mut self.buf);
                    records += 1;
                    pending.push(Pending::Ack { reply });
                }
                Request::Remove { id, reply } => {
                    if !is_live(&touched, &self.w.live, id) {
                        // Already gone: removal is idempotent and needs no record, but
                        // if the removal is in this very batch it is not durable yet.
                        if touched.contains_key(&id) {
                            pending.push(Pending::Ack { reply });
                        } else {
                            let _ = reply.send(Ok(()));
                        }
                        continue;
                    }
                    Record::Remove { id }.encode_into(&mut self.buf);
                    records += 1;
                    touched.insert(id, false);
                    pending.push(Pending::Removed { id, reply });
                }
                Request::Shutdown => unreachable!("shutdown is never batched"),
            }
        }
        // (An Ack without a record of its own always follows a record in this batch.)
        if pending.is_empty() {
            return;
        }

        if let Err(err) = self.append() {
            pending.into_iter().for_each(|p| p.fail(&err));
            return;
        }

        // Durable: only now does the batch become visible in the live set.
        let stats = &self.w.stats;
        stats.records_written.fetch_add(records, Relaxed);
        stats
            .bytes_written
            .fetch_add(self.buf.len() as u64, Relaxed);
        for p in &pending {
            match *p {
                Pending::Stored { id, location, .. } => self.w.live.store(id, location.segment),
                Pending::Removed { id, .. } => {
                    self.w.live.remove(id);
                }
                Pending::Ack { .. } => {}
            }
        }
        // Counts first, so a caller that got its reply sees stats that include it.
        self.publish_counts();
        for p in pending {
            // A send error only means the caller stopped waiting.
            match p {
                Pending::Stored {
                    location, reply, ..
                } => drop(reply.send(Ok(location))),
                Pending::Ack { reply } | Pending::Removed { reply, .. } => drop(reply.send(Ok(()))),
            }
        }
        self.maybe_rotate();
        self.reclaim();
        // Don't pin the memory of one huge burst forever.
        if self.buf.capacity() > KEEP_BUF_CAPACITY {
            self.buf = Vec::new();
        }
    }

    /// One write and (with flush) one fdatasync for the whole batch.
    fn append(&mut self) -> Result<(), SpoolError> {
        let path = &self.active_path;
        if let Err(e) = self.w.active.write_all(&self.buf) {
            // Cut off the partial batch: records appended behind garbage would be
            // discarded as a torn tail by the next recovery.
            if let Err(e2) = self.w.active.set_len(self.w.active_len) {
                self.failed = Some(format!(
                    "write failed ({e}) and the partial batch could not be cut off ({e2})"
                ));
            }
            return Err(SpoolError::io(path, e));
        }
        if self.w.flush {
            if let Err(e) = self.w.active.sync_data() {
                // After a failed fsync Linux may drop the dirty pages and report the
                // next fsync clean, so the file's contents can no longer be trusted.
                self.failed = Some(format!("fdatasync failed: {e}"));
                return Err(SpoolError::io(path, e));
            }
            self.w.stats.syncs.fetch_add(1, Relaxed);
        }
        self.w.active_len += self.buf.len() as u64;
        Ok(())
    }

    fn maybe_rotate(&mut self) {
        if self.w.active_len < self.w.segment_size {
            return;
        }
        if let Err(e) = self.rotate() {
            error!(error = %e, "spool: cannot start a new segment; appending to the current one");
        }
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        // The old segment must be complete on disk before a newer one exists: recovery
        // only treats a bad tail in the newest segment as a harmless torn write.
        if !self.w.flush {
            self.w
                .active
                .sync_data()
                .map_err(io_at(&self.active_path))?;
            self.w.stats.syncs.fetch_add(1, Relaxed);
        }
        let seq = self.w.active_seq + 1;
        self.w.active = segment::create(&self.w.dir, seq)?;
        self.w.active_seq = seq;
        self.w.active_len = 0;
        self.active_path = segment::path(&self.w.dir, seq);
        self.w.live.add_segment(seq);
        self.publish_counts();
        Ok(())
    }

    /// Deletes dead segments oldest-first, fsyncing the directory after each, so the
    /// segments on disk are always a contiguous newest run, even after a crash midway.
    fn reclaim(&mut self) {
        while let Some(seq) = self.w.live.reclaimable(self.w.active_seq) {
            let path = segment::path(&self.w.dir, seq);
            let result = if self.w.live.is_corrupt(seq) {
                // Nothing live remains, but keep the damaged bytes for the operator.
                fs::rename(&path, path.with_extension("log.corrupt"))
            } else {
                fs::remove_file(&path)
            };
            let result = match result {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(io_at(&path)),
            };
            if let Err(e) = result.and_then(|()| dir::sync(&self.w.dir)) {
                error!(error = %e, "spool: cannot reclaim segment; will retry");
                return;
            }
            info!(path = %path.display(), "spool: reclaimed segment");
            self.w.live.forget_segment(seq);
            self.publish_counts();
        }
    }

    fn publish_counts(&self) {
        self.w.stats.publish(&self.w.live);
    }

    fn close(&mut self) {
        // Without flush nothing was synced; a clean shutdown still leaves data durable.
        if !self.w.flush && self.failed.is_none() {
            match self.w.active.sync_data() {
                Ok(()) => {
                    self.w.stats.syncs.fetch_add(1, Relaxed);
                }
                Err(e) => warn!(path = %self.active_path.display(), error = %e,
                    "spool: final sync failed"),
            }
        }
    }
}
