use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::live::LiveSet;

/// Counters shared between the writer thread and handles.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) records_written: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) live_messages: AtomicU64,
    pub(crate) segments: AtomicU64,
}

/// A snapshot of spool activity since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records (messages, removals, meta updates) appended.
    pub records_written: u64,
    /// fdatasync calls on segment files (group commits; excludes directory syncs).
    pub syncs: u64,
    pub bytes_written: u64,
    pub live_messages: u64,
    /// Segment files currently on disk.
    pub segments: u64,
}

impl Stats {
    pub(crate) fn publish(&self, live: &LiveSet) {
        self.live_messages.store(live.messages() as u64, Relaxed);
        self.segments.store(live.segments() as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SpoolStats {
        SpoolStats {
            records_written: self.records_written.load(Relaxed),
            syncs: self.syncs.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            live_messages: self.live_messages.load(Relaxed),
            segments: self.segments.load(Relaxed),
        }
    }
}
