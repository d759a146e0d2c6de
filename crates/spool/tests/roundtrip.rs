mod common;

use std::collections::HashMap;

use common::*;
use ironpost_spool::{Spool, SpoolConfig, SpoolError, SpoolId};

fn size_for(id: SpoolId) -> usize {
    (id.0 % 5000) as usize
}

#[tokio::test]
async fn store_then_reopen_recovers_identical_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, recovery) = Spool::open(SpoolConfig::new(&dir)).unwrap();
    assert!(recovery.messages.is_empty());

    let mut stored = HashMap::new();
    for i in 0..50 {
        let id = SpoolId::new();
        let data = data_for(id, size_for(id));
        let meta = if i == 0 { Vec::new() } else { meta_for(id) };
        let loc = spool.store(id, meta.clone(), data.clone()).await.unwrap();
        assert_eq!(spool.read(&loc).unwrap(), (meta.clone(), data));
        assert_eq!(spool.read_meta(&loc).unwrap(), meta);
        stored.insert(id, (loc, meta));
    }
    assert_eq!(spool.stats().live_messages, 50);
    drop(spool); // dropping the last handle stops the writer and releases the lock

    let (spool, recovery) = Spool::open(SpoolConfig::new(&dir)).unwrap();
    assert_eq!(recovery.messages.len(), 50);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.corrupt_segments, 0);
    for m in &recovery.messages {
        let (loc, meta) = &stored[&m.id];
        assert_eq!(&m.location, loc);
        assert_eq!(&m.meta, meta);
    }
    assert_recovered_intact(&spool, &recovery, size_for);
    // Recovered in write order.
    assert!(recovery
        .messages
        .windows(2)
        .all(|w| w[0].location.offset < w[1].location.offset));
}

#[test]
fn store_blocking_works_outside_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = open(&tmp.path().join("s"), 1 << 20);
    let id = SpoolId::new();
    let loc = spool
        .store_blocking(id, b"m".to_vec(), b"d".to_vec())
        .unwrap();
    assert_eq!(spool.read(&loc).unwrap(), (b"m".to_vec(), b"d".to_vec()));
    assert_eq!(spool.stats().syncs, 1);
}

#[tokio::test]
async fn remove_and_update_meta_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, 1 << 20);
    let ids: Vec<SpoolId> = (0..10).map(|_| SpoolId::new()).collect();
    for &id in &ids {
        spool
            .store(id, meta_for(id), data_for(id, 100))
            .await
            .unwrap();
    }
    for &id in &ids[..3] {
        spool.remove(id).await.unwrap();
    }
    for &id in &ids[3..6] {
        spool.update_meta(id, b"first".to_vec()).await.unwrap();
        spool
            .update_meta(id, format!("retry {id}").into_bytes())
            .await
            .unwrap();
    }
    drop(spool);

    let (spool, recovery) = open(&dir, 1 << 20);
    let got: HashMap<SpoolId, Vec<u8>> = recovery
        .messages
        .iter()
        .map(|m| (m.id, m.meta.clone()))
        .collect();
    assert_eq!(got.len(), 7);
    for id in &ids[..3] {
        assert!(!got.contains_key(id), "removed {id} came back");
    }
    for id in &ids[3..6] {
        assert_eq!(got[id], format!("retry {id}").into_bytes());
    }
    for id in &ids[6..] {
        assert_eq!(got[id], meta_for(*id));
    }
    // read() returns the message's original meta; the current one comes from recovery.
    assert_recovered_intact_data(&spool, &recovery);
}

fn assert_recovered_intact_data(spool: &Spool, recovery: &ironpost_spool::Recovery) {
    for m in &recovery.messages {
        let (_, data) = spool.read(&m.location).unwrap();
        assert_eq!(data, data_for(m.id, 100));
    }
}

#[tokio::test]
async fn unknown_ids_and_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, 1 << 20);
    let id = SpoolId::new();

    // Removing what is not there is a no-op; updating it is an error naming the spool.
    spool.remove(id).await.unwrap();
    assert_eq!(spool.stats().records_written, 0);
    let err = spool.update_meta(id, b"x".to_vec()).await.unwrap_err();
    assert!(matches!(err, SpoolError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&dir.display().to_string()));

    // A second store of the same id replaces the first.
    spool
        .store(id, b"v1".to_vec(), b"one".to_vec())
        .await
        .unwrap();
    let loc2 = spool
        .store(id, b"v2".to_vec(), b"two".to_vec())
        .await
        .unwrap();
    assert_eq!(spool.stats().live_messages, 1);
    drop(spool);
    let (spool, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.messages.len(), 1);
    assert_eq!(recovery.messages[0].location, loc2);
    assert_eq!(
        spool.read(&loc2).unwrap(),
        (b"v2".to_vec(), b"two".to_vec())
    );
}

#[tokio::test]
async fn shutdown_finishes_queued_work_then_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, 1 << 20);
    let clone = spool.clone();
    let id = SpoolId::new();
    spool.store(id, vec![], b"x".to_vec()).await.unwrap();
    spool.shutdown();
    let err = clone
        .store(SpoolId::new(), vec![], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::Closed { .. }), "{err}");
    assert!(err.to_string().contains(&dir.display().to_string()));
    drop((spool, clone));
    let (_, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.messages.len(), 1);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, 1 << 20);
    let err = Spool::open(SpoolConfig::new(&dir)).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    drop(spool);
    open(&dir, 1 << 20); // released with the last handle
}

#[test]
fn read_detects_corrupted_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, 1 << 20);
    let id = SpoolId::new();
    let loc = spool
        .store_blocking(id, b"meta".to_vec(), data_for(id, 64))
        .unwrap();
    let path = segment_path(&dir, loc.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = (loc.offset + u64::from(loc.len) - 1) as usize;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let err = spool.read(&loc).unwrap_err();
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let bogus = ironpost_spool::Location {
        len: u32::MAX,
        ..loc
    };
    assert!(matches!(
        spool.read(&bogus),
        Err(SpoolError::Corrupt { .. })
    ));
    assert!(matches!(
        spool.read_meta(&bogus),
        Err(SpoolError::Corrupt { .. })
    ));
    // A location that is not the start of a record.
    let shifted = ironpost_spool::Location {
        offset: loc.offset + 1,
        ..loc
    };
    assert!(matches!(
        spool.read_meta(&shifted),
        Err(SpoolError::Corrupt { .. })
    ));
    let missing = ironpost_spool::Location { segment: 99, ..loc };
    let err = spool.read(&missing).unwrap_err();
    assert!(
        matches!(err, SpoolError::Io { .. })
            && err.to_string().contains("segment-0000000000000063.log"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_removes_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, 1 << 20);
    let id = SpoolId::new();
    spool.store(id, vec![], b"x".to_vec()).await.unwrap();
    let removes: Vec<_> = (0..20)
        .map(|_| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.remove(id).await })
        })
        .collect();
    for r in removes {
        r.await.unwrap().unwrap();
    }
    // Only one tombstone was needed.
    assert_eq!(spool.stats().records_written, 2);
    drop(spool);
    let (_, recovery) = open(&dir, 1 << 20);
    assert!(recovery.messages.is_empty());
}
