//! Recording sessions from delivery without ever waiting on the disk: a
//! bounded channel to one writer thread that commits whatever is pending
//! as one transaction (one fsync for the batch), then the next batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::Session;
use crate::store::Store;

/// Default channel bound: sessions waiting for the writer. Beyond it
/// sessions are dropped (and counted) rather than delaying delivery.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// At most this many sessions per transaction, so a flood still commits
/// (and acknowledges flushes) regularly.
const MAX_BATCH: usize = 4_096;

enum Msg {
    Session(Box<Session>),
    /// Answered once everything sent before it is committed.
    Flush(mpsc::Sender<Result<(), String>>),
}

struct Shared {
    dropped: AtomicU64,
    /// Set while sessions are being dropped, so the warning is logged once
    /// per episode rather than once per session.
    overflowing: AtomicBool,
}

/// A cloneable handle to the writer thread. The thread ends, after
/// committing what it was sent, when the last handle is dropped; call
/// [`flush`](Recorder::flush) first at shutdown to know it is done.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl Recorder {
    /// Starts the writer thread, which owns `store`, with a channel of
    /// `capacity` sessions.
    pub fn spawn(store: Store, capacity: usize) -> Result<Recorder> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name("tls-report-writer".into())
            .spawn(move || writer(store, rx))
            .map_err(|e| Error::Recorder(format!("starting the writer thread: {e}")))?;
        Ok(Recorder {
            tx,
            shared: Arc::new(Shared {
                dropped: AtomicU64::new(0),
                overflowing: AtomicBool::new(false),
            }),
        })
    }

    /// Queues `session` for the writer; never blocks. Returns false if it
    /// was dropped (channel full, or the writer is gone).
    pub fn record(&self, session: Session) -> bool {
        match self.tx.try_send(Msg::Session(Box::new(session))) {
            Ok(()) => {
                if self.shared.overflowing.load(Ordering::Relaxed) {
                    self.shared.overflowing.store(false, Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.shared.overflowing.swap(true, Ordering::Relaxed) {
                    match e {
                        TrySendError::Full(_) => tracing::warn!(
                            dropped_total = total,
                            "TLS-RPT: recorder queue full, dropping sessions"
                        ),
                        TrySendError::Disconnected(_) => tracing::error!(
                            dropped_total = total,
                            "TLS-RPT: recorder writer is gone, dropping sessions"
                        ),
                    }
                }
                false
            }
        }
    }

    /// Sessions dropped so far by [`record`](Recorder::record).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Blocks until every session recorded through any handle before this
    /// call is committed. An error says that some sessions were lost since
    /// the previous flush (a failed commit) or that the writer is gone.
    /// From async code, call it through `spawn_blocking`.
    pub fn flush(&self) -> Result<()> {
        let (ack_tx, ack_rx) = mpsc::channel();
        // Blocking send: a flush must not be dropped like a session; it
        // waits for room behind what is already queued.
        self.tx
            .send(Msg::Flush(ack_tx))
            .map_err(|_| Error::Recorder("writer thread is gone".into()))?;
        match ack_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Recorder(e)),
            Err(_) => Err(Error::Recorder("writer thread is gone".into())),
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

fn writer(mut store: Store, rx: Receiver<Msg>) {
    // Failures since the last flush, reported to the next one.
    let mut lost: u64 = 0;
    let mut last_error = String::new();
    let mut sessions = Vec::new();
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Session(s) => sessions.push(*s),
                Msg::Flush(ack) => acks.push(ack),
            }
            if sessions.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !sessions.is_empty() {
            if let Err(e) = store.record(&sessions) {
                lost += sessions.len() as u64;
                last_error = e.to_string();
                tracing::error!(
                    sessions = sessions.len(),
                    error = %e,
                    "TLS-RPT: committing recorded sessions failed, they are lost"
                );
            }
            sessions.clear();
        }
        if !acks.is_empty() {
            let answer = if lost == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{lost} sessions lost since the previous flush: {last_error}"
                ))
            };
            lost = 0;
            for ack in acks.drain(..) {
                let _ = ack.send(answer.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PolicyType, SessionPolicy};

    fn session(domain: &str) -> Session {
        Session::success(
            "2024-05-01".parse().unwrap(),
            SessionPolicy {
                policy_type: PolicyType::NoPolicyFound,
                policy_domain: domain.into(),
                policy_strings: vec![],
                mx_host: vec![],
            },
        )
    }

    #[test]
    fn flush_commits_everything_sent_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let rec = Recorder::spawn(Store::open(&path).unwrap(), 100_000).unwrap();
        let other = rec.clone();
        for i in 0..10_000 {
            assert!(if i % 2 == 0 { &rec } else { &other }.record(session("a.example")));
        }
        rec.flush().unwrap();
        let reader = Store::open(&path).unwrap();
        let agg = reader
            .aggregate("2024-05-01".parse().unwrap(), "a.example")
            .unwrap();
        assert_eq!(agg.policies[0].successful_sessions, 10_000);
        assert_eq!(rec.dropped(), 0);
    }

    #[test]
    fn full_channel_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // Hold the write lock so the writer is stuck in its first commit
        // (busy timeout) while the channel of 1 fills up.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        let store = Store::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let rec = Recorder::spawn(store, 1).unwrap();
        let mut accepted = 0;
        for _ in 0..100 {
            if rec.record(session("a.example")) {
                accepted += 1;
            }
        }
        assert!(rec.dropped() > 0);
        assert_eq!(rec.dropped() + accepted, 100);
        blocker.execute_batch("COMMIT").unwrap();
        rec.flush().unwrap();
        let agg = Store::open(&path)
            .unwrap()
            .aggregate("2024-05-01".parse().unwrap(), "a.example")
            .unwrap();
        assert_eq!(agg.policies[0].successful_sessions, accepted);
    }
}
