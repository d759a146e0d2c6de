//! kill -9 at arbitrary moments must never lose an acknowledged store or undo an
//! acknowledged removal. The test re-runs this test binary as a child that spools
//! messages, printing each acknowledgement, and SIGKILLs it mid-stream.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ironpost_spool::SpoolId;

const CHILD_ENV: &str = "IRONPOST_SPOOL_CRASH_CHILD_DIR";
const SEGMENT_SIZE: u64 = 64 << 10;

fn size_for(id: SpoolId) -> usize {
    (id.0 % 3000) as usize
}

/// The child side; a no-op unless started by the test below.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (spool, _) = open(Path::new(&dir), SEGMENT_SIZE);
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (spool, out) = (spool.clone(), out.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let id = SpoolId::new();
                        spool
                            .store(id, meta_for(id), data_for(id, size_for(id)))
                            .await
                            .unwrap();
                        writeln!(out.lock().unwrap(), "S {id}").unwrap();
                        mine.push(id);
                        // Deliver (remove) about half, so segments get reclaimed too.
                        if mine.len() % 2 == 0 {
                            let victim = mine.swap_remove(id.0 as usize % mine.len());
                            // Announce first: a kill between the removal and its "R"
                            // line leaves a removal the parent must allow either way.
                            writeln!(out.lock().unwrap(), "D {victim}").unwrap();
                            spool.remove(victim).await.unwrap();
                            writeln!(out.lock().unwrap(), "R {victim}").unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn kill9_never_loses_acknowledged_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let mut stored = HashSet::new();
    let mut removed = HashSet::new();
    // Removals started but not acknowledged: either outcome is correct.
    let mut removing = HashSet::new();

    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 200 + round * 150;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut acks = 0;
        while acks < target && Instant::now() < deadline {
            match lines.next() {
                Some(line) => {
                    acks += record_ack(&line.unwrap(), &mut stored, &mut removing, &mut removed)
                }
                None => panic!("child exited early: {:?}", child.wait()),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Anything printed before death was acknowledged too.
        for line in lines {
            record_ack(&line.unwrap(), &mut stored, &mut removing, &mut removed);
        }

        let (spool, recovery) = open(&dir, SEGMENT_SIZE);
        let live: HashSet<SpoolId> = recovery.messages.iter().map(|m| m.id).collect();
        for id in stored.difference(&removed) {
            let in_doubt = removing.contains(id);
            assert!(
                live.contains(id) || in_doubt,
                "round {round}: acknowledged {id} lost"
            );
        }
        for id in &removed {
            assert!(!live.contains(id), "round {round}: removed {id} came back");
        }
        assert_eq!(recovery.corrupt_segments, 0);
        assert_recovered_intact(&spool, &recovery, size_for);
        eprintln!(
            "round {round}: {} acked stores, {} acked removals, {} live, {} segments, {} torn bytes cut",
            stored.len(),
            removed.len(),
            live.len(),
            recovery.segments,
            recovery.truncated_bytes
        );
        // Settle what was in flight, so later rounds check it too: stores that made
        // it to disk are live from now on, removals that made it stay removed.
        for id in removing.drain() {
            if !live.contains(&id) {
                removed.insert(id);
            }
        }
        stored.extend(live);
    }
}

fn record_ack(
    line: &str,
    stored: &mut HashSet<SpoolId>,
    removing: &mut HashSet<SpoolId>,
    removed: &mut HashSet<SpoolId>,
) -> usize {
    match line.split_once(' ') {
        Some(("D", id)) => {
            removing.insert(id.parse().unwrap());
            0
        }
        Some(("S", id)) => {
            stored.insert(id.parse().unwrap());
            1
        }
        Some(("R", id)) => {
            removed.insert(id.parse().unwrap());
            1
        }
        _ => 0, // libtest chatter
    }
}
