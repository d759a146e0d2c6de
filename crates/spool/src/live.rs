//! In-memory index of live messages and per-segment live counts, which decides
//! when a segment's space can be reclaimed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::SpoolId;

/// A spool id as two words: a `u128` is 16-byte aligned, which would pad
/// each map entry from 24 to 32 bytes (16 MiB more at a million messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key([u64; 2]);

impl From<SpoolId> for Key {
    fn from(id: SpoolId) -> Key {
        Key([(id.0 >> 64) as u64, id.0 as u64])
    }
}

#[derive(Debug, Default)]
pub(crate) struct LiveSet {
    /// Segment holding each live message's Message record.
    owner: HashMap<Key, u64>,
    /// Every segment on disk, with how many live messages it holds.
    counts: BTreeMap<u64, u64>,
    /// Segments with an unreadable record; moved aside rather than deleted.
    corrupt: BTreeSet<u64>,
}

impl LiveSet {
    pub(crate) fn add_segment(&mut self, seq: u64) {
        self.counts.entry(seq).or_insert(0);
    }

    pub(crate) fn mark_corrupt(&mut self, seq: u64) {
        self.corrupt.insert(seq);
    }

    pub(crate) fn is_corrupt(&self, seq: u64) -> bool {
        self.corrupt.contains(&seq)
    }

    pub(crate) fn contains(&self, id: SpoolId) -> bool {
        self.owner.contains_key(&Key::from(id))
    }

    /// Records that `id` now lives in `seq`; a later store of the same id wins.
    pub(crate) fn store(&mut self, id: SpoolId, seq: u64) {
        if let Some(old) = self.owner.insert(Key::from(id), seq) {
            self.decrement(old);
        }
        *self.counts.entry(seq).or_insert(0) += 1;
    }

    pub(crate) fn remove(&mut self, id: SpoolId) -> bool {
        match self.owner.remove(&Key::from(id)) {
            Some(seq) => {
                self.decrement(seq);
                true
            }
            None => false,
        }
    }

    fn decrement(&mut self, seq: u64) {
        if let Some(n) = self.counts.get_mut(&seq) {
            *n = n.saturating_sub(1);
        }
    }

    pub(crate) fn messages(&self) -> usize {
        self.owner.len()
    }

    pub(crate) fn segments(&self) -> usize {
        self.counts.len()
    }

    /// The oldest segment, if it may be deleted now. Only the oldest ever qualifies:
    /// a tombstone lives in the same segment as its message or a newer one, so
    /// deleting oldest-first can never drop a tombstone whose message is still on disk.
    pub(crate) fn reclaimable(&self, active: u64) -> Option<u64> {
        let (&seq, &live) = self.counts.first_key_value()?;
        (seq != active && live == 0).then_some(seq)
    }

    pub(crate) fn forget_segment(&mut self, seq: u64) {
        self.counts.remove(&seq);
        self.corrupt.remove(&seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_oldest_empty_non_active_segment_is_reclaimable() {
        let mut live = LiveSet::default();
        for seq in 1..=3 {
            live.add_segment(seq);
        }
        live.store(SpoolId(1), 1);
        live.store(SpoolId(2), 2);
        assert_eq!(live.reclaimable(3), None);
        live.remove(SpoolId(2));
        // Segment 2 is empty, but segment 1 still holds a live message.
        assert_eq!(live.reclaimable(3), None);
        live.remove(SpoolId(1));
        assert_eq!(live.reclaimable(3), Some(1));
        live.forget_segment(1);
        assert_eq!(live.reclaimable(3), Some(2));
        live.forget_segment(2);
        assert_eq!(
            live.reclaimable(3),
            None,
            "the active segment is never reclaimed"
        );
    }

    #[test]
    fn restore_of_same_id_moves_the_count() {
        let mut live = LiveSet::default();
        live.add_segment(1);
        live.add_segment(2);
        live.store(SpoolId(9), 1);
        live.store(SpoolId(9), 2);
        assert_eq!(live.messages(), 1);
        assert_eq!(live.reclaimable(2), Some(1));
        assert!(live.remove(SpoolId(9)));
        assert!(!live.remove(SpoolId(9)));
    }
}
