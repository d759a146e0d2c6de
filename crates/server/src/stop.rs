//! A graceful stop for inbound SMTP: once [`close`] is called, listeners
//! refuse new connections (`421 4.3.2`), sessions end at their next
//! command, and [`wait_idle`] waits for messages being received (from the
//! `354` to the final reply) to finish, so a client in the middle of DATA
//! gets its answer rather than a dropped connection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio::sync::Notify;

static CLOSING: AtomicBool = AtomicBool::new(false);
static RECEIVING: AtomicUsize = AtomicUsize::new(0);
static IDLE: Notify = Notify::const_new();

/// Stop taking connections and commands.
pub fn close() {
    CLOSING.store(true, SeqCst);
}

pub fn closing() -> bool {
    CLOSING.load(SeqCst)
}

/// Held while a message is received.
pub struct Receiving(());

impl Receiving {
    pub fn begin() -> Receiving {
        RECEIVING.fetch_add(1, SeqCst);
        Receiving(())
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if RECEIVING.fetch_sub(1, SeqCst) == 1 {
            IDLE.notify_waiters();
        }
    }
}

/// Wait, up to `limit`, until no message is being received; how many
/// still were when it gave up.
pub async fn wait_idle(limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let idle = IDLE.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        let n = RECEIVING.load(SeqCst);
        if n == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            return RECEIVING.load(SeqCst);
        }
    }
}
