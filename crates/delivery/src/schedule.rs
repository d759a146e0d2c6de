//! Parts waiting for their time: a min-heap of due instants over a map of
//! parts, and the scheduler task that hands due parts, grouped by queue, to
//! routing ([`crate::ready`]).

use crate::model::QueuedPart;
use crate::queue_manager::{lock, QueueManager};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Schedule {
    slots: Mutex<Slots>,
    /// Woken when a part becomes due earlier than the scheduler expects.
    wake: Notify,
}

/// The waiting parts in a slab (a free list over a `Vec`) rather than a
/// hash map: with a million parts queued, a map's buckets cost about 150
/// bytes a part, the slab 72. A heap entry names its slot and the slot's
/// generation, so an entry whose part was taken early is skipped, never
/// mistaken for the part that reused the slot.
#[derive(Default)]
struct Slots {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    slab: Vec<Slot>,
    free: Vec<u32>,
    waiting: usize,
}

struct Slot {
    generation: u32,
    part: Option<QueuedPart>,
}

impl Slots {
    fn insert(&mut self, part: QueuedPart) -> (u32, u32) {
        self.waiting += 1;
        if let Some(i) = self.free.pop() {
            let slot = &mut self.slab[i as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.part = Some(part);
            return (i, slot.generation);
        }
        let i = u32::try_from(self.slab.len()).expect("fewer than 2^32 parts waiting");
        self.slab.push(Slot {
            generation: 0,
            part: Some(part),
        });
        (i, 0)
    }

    fn take(&mut self, i: u32) -> Option<QueuedPart> {
        let part = self.slab.get_mut(i as usize)?.part.take()?;
        self.waiting -= 1;
        self.free.push(i);
        Some(part)
    }
}

impl Schedule {
    pub fn len(&self) -> usize {
        lock(&self.slots).waiting
    }

    fn add(&self, part: QueuedPart, delay: Duration) {
        let due = Instant::now() + delay;
        let mut s = lock(&self.slots);
        let (slot, generation) = s.insert(part);
        let earliest = s.heap.peek().map(|Reverse((t, ..))| *t);
        s.heap.push(Reverse((due, slot, generation)));
        drop(s);
        if earliest.is_none_or(|t| due < t) {
            self.wake.notify_one();
        }
    }

    /// Every part due now, grouped by queue name, and when the next is due.
    fn take_due(&self) -> (HashMap<String, Vec<QueuedPart>>, Option<Instant>) {
        let mut s = lock(&self.slots);
        let now = Instant::now();
        let mut due: HashMap<String, Vec<QueuedPart>> = HashMap::new();
        while let Some(Reverse((t, slot, generation))) = s.heap.peek().copied() {
            if t > now {
                break;
            }
            s.heap.pop();
            if s.slab[slot as usize].generation != generation {
                continue;
            }
            if let Some(part) = s.take(slot) {
                due.entry(part.queue_name()).or_default().push(part);
            }
        }
        if s.waiting == 0 && s.slab.capacity() > 4096 {
            // Nothing waits: give the memory of a drained large queue back.
            s.heap = BinaryHeap::new();
            s.slab = Vec::new();
            s.free = Vec::new();
        }
        (due, s.heap.peek().map(|Reverse((t, ..))| *t))
    }

    /// Takes the waiting parts that `pick` selects (their heap entries are
    /// skipped when they come due).
    pub fn take_matching(&self, pick: impl Fn(&QueuedPart) -> bool) -> Vec<QueuedPart> {
        let mut s = lock(&self.slots);
        let picked: Vec<u32> = (0..s.slab.len() as u32)
            .filter(|&i| s.slab[i as usize].part.as_ref().is_some_and(&pick))
            .collect();
        picked.into_iter().filter_map(|i| s.take(i)).collect()
    }

    /// Calls `f` on every waiting part.
    pub fn for_each(&self, mut f: impl FnMut(&QueuedPart)) {
        lock(&self.slots)
            .slab
            .iter()
            .filter_map(|s| s.part.as_ref())
            .for_each(&mut f);
    }
}

impl QueueManager {
    /// Put a part on the schedule, due after `delay`.
    pub(crate) fn schedule(&self, part: QueuedPart, delay: Duration) {
        self.0.schedule.add(part, delay);
    }

    pub(crate) async fn scheduler(self) {
        loop {
            let (due, next) = self.0.schedule.take_due();
            for (_, parts) in due {
                let me = self.clone();
                tokio::spawn(async move { me.make_ready(parts).await });
            }
            let wake = self.0.schedule.wake.notified();
            match next {
                Some(t) => {
                    let _ = tokio::time::timeout_at(t.into(), wake).await;
                }
                None => wake.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RouteLabels, SharedMessage};
    use ironpost_spool::{Location, SpoolId, SpoolMeta};
    use std::sync::Arc;

    fn part(domain: &str) -> QueuedPart {
        let rcpt = vec![format!("r@{domain}")];
        let meta = SpoolMeta::new(
            "x".into(),
            "s@a.test".into(),
            rcpt.clone(),
            None,
            "2026-12-07T00:00:00Z".into(),
        );
        let loc = Location {
            segment: 1,
            offset: 0,
            len: 0,
        };
        let labels = Arc::new(RouteLabels::default());
        QueuedPart {
            msg: Arc::new(SharedMessage::new(
                SpoolId::new(),
                loc,
                meta,
                ("s@a.test".into(), labels),
                0,
                1,
            )),
            domain: domain.into(),
            recipients: rcpt,
            attempts: 0,
            egress: None,
        }
    }

    #[test]
    fn due_parts_come_out_grouped_by_queue() {
        let s = Schedule::default();
        for d in ["a.test", "a.test", "b.test"] {
            s.add(part(d), Duration::ZERO);
        }
        s.add(part("c.test"), Duration::from_secs(3600));
        let (due, next) = s.take_due();
        assert_eq!(due.len(), 2);
        assert_eq!(due["a.test"].len(), 2);
        assert_eq!(due["b.test"].len(), 1);
        assert!(next.is_some());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_reused_slot_is_not_taken_by_the_old_entry() {
        let s = Schedule::default();
        s.add(part("a.test"), Duration::ZERO);
        // Taken early (an operator action): its heap entry stays behind.
        assert_eq!(s.take_matching(|p| &*p.domain == "a.test").len(), 1);
        assert_eq!(s.len(), 0);
        // The slot is reused by a part due in an hour; the stale entry,
        // due now, must not hand it out.
        s.add(part("b.test"), Duration::from_secs(3600));
        let (due, next) = s.take_due();
        assert!(due.is_empty());
        assert!(next.is_some());
        assert_eq!(s.len(), 1);
        let mut seen = 0;
        s.for_each(|_| seen += 1);
        assert_eq!(seen, 1);
    }
}
