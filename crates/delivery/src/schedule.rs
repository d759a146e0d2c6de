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

#[derive(Default)]
struct Slots {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    waiting: HashMap<u64, QueuedPart>,
    seq: u64,
}

impl Schedule {
    pub fn len(&self) -> usize {
        lock(&self.slots).waiting.len()
    }

    fn add(&self, part: QueuedPart, delay: Duration) {
        let due = Instant::now() + delay;
        let mut s = lock(&self.slots);
        s.seq += 1;
        let seq = s.seq;
        s.waiting.insert(seq, part);
        let earliest = s.heap.peek().map(|Reverse((t, _))| *t);
        s.heap.push(Reverse((due, seq)));
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
        while let Some(Reverse((t, seq))) = s.heap.peek().copied() {
            if t > now {
                break;
            }
            s.heap.pop();
            if let Some(part) = s.waiting.remove(&seq) {
                due.entry(part.queue_name()).or_default().push(part);
            }
        }
        (due, s.heap.peek().map(|Reverse((t, _))| *t))
    }

    /// Takes the waiting parts that `pick` selects (their heap entries are
    /// skipped when they come due).
    pub fn take_matching(&self, pick: impl Fn(&QueuedPart) -> bool) -> Vec<QueuedPart> {
        let mut s = lock(&self.slots);
        let keys: Vec<u64> = s
            .waiting
            .iter()
            .filter(|(_, p)| pick(p))
            .map(|(k, _)| *k)
            .collect();
        keys.iter().filter_map(|k| s.waiting.remove(k)).collect()
    }

    /// Calls `f` on every waiting part.
    pub fn for_each(&self, mut f: impl FnMut(&QueuedPart)) {
        lock(&self.slots).waiting.values().for_each(&mut f);
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
