mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use ironpost_spool::{Location, SpoolId};

const SEGMENT_SIZE: u64 = 4096;
const DATA_LEN: usize = 1000;

fn recovered_ids(r: &ironpost_spool::Recovery) -> HashSet<SpoolId> {
    r.messages.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn segments_rotate_at_the_configured_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, SEGMENT_SIZE);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = SpoolId::new();
        spool
            .store(id, meta_for(id), data_for(id, DATA_LEN))
            .await
            .unwrap();
        ids.push(id);
    }
    spool.shutdown();
    let files = segment_files(&dir);
    assert!(files.len() >= 4, "{files:?}");
    assert_eq!(spool.stats().segments, files.len() as u64);
    // Every sealed segment reached the size limit before the switch.
    for &seq in &files[..files.len() - 1] {
        let len = std::fs::metadata(segment_path(&dir, seq)).unwrap().len();
        assert!(
            len >= SEGMENT_SIZE && len < SEGMENT_SIZE + 2 * DATA_LEN as u64,
            "{len}"
        );
    }
    drop(spool);
    let (spool, recovery) = open(&dir, SEGMENT_SIZE);
    assert_eq!(recovery.segments, files.len());
    assert_eq!(
        recovery.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids
    );
    assert_recovered_intact(&spool, &recovery, |_| DATA_LEN);
}

#[tokio::test]
async fn dead_segments_are_deleted_oldest_first_without_resurrection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, SEGMENT_SIZE);
    let mut by_segment: BTreeMap<u64, Vec<SpoolId>> = BTreeMap::new();
    let mut locations: BTreeMap<SpoolId, Location> = BTreeMap::new();
    for _ in 0..30 {
        let id = SpoolId::new();
        let loc = spool
            .store(id, meta_for(id), data_for(id, DATA_LEN))
            .await
            .unwrap();
        by_segment.entry(loc.segment).or_default().push(id);
        locations.insert(id, loc);
    }
    let segs: Vec<u64> = by_segment.keys().copied().collect();
    assert!(segs.len() >= 6, "{segs:?}");
    let mut removed = HashSet::new();

    // Empty a middle segment: its tombstones sit in a newer segment, and the oldest
    // segment is still live, so nothing may be deleted yet.
    for &id in &by_segment[&segs[2]] {
        spool.remove(id).await.unwrap();
        removed.insert(id);
    }
    spool.shutdown();
    assert_eq!(segment_files(&dir)[..3], segs[..3]);
    drop(spool);
    let (spool, recovery) = open(&dir, SEGMENT_SIZE);
    assert!(
        recovered_ids(&recovery).is_disjoint(&removed),
        "removed messages came back"
    );
    assert_eq!(recovery.messages.len(), 30 - removed.len());

    // Empty the two oldest: now segments 0..=2 are dead and go, oldest first.
    for seq in &segs[..2] {
        for &id in &by_segment[seq] {
            spool.remove(id).await.unwrap();
            removed.insert(id);
        }
    }
    spool.shutdown();
    let files = segment_files(&dir);
    assert_eq!(files.first(), Some(&segs[3]), "{files:?}");
    assert_eq!(spool.stats().segments, files.len() as u64);
    drop(spool);
    let (spool, recovery) = open(&dir, SEGMENT_SIZE);
    let live = recovered_ids(&recovery);
    assert!(live.is_disjoint(&removed), "removed messages came back");
    assert_eq!(live.len(), 30 - removed.len());
    assert_recovered_intact(&spool, &recovery, |_| DATA_LEN);

    // Remove everything: only the active segment remains, and nothing comes back.
    for id in live {
        spool.remove(id).await.unwrap();
    }
    spool.shutdown();
    assert_eq!(segment_files(&dir).len(), 1);
    drop(spool);
    let (spool, recovery) = open(&dir, SEGMENT_SIZE);
    assert!(recovery.messages.is_empty());
    assert_eq!(spool.stats().segments, 1);
}

#[tokio::test]
async fn restoring_an_id_in_a_newer_segment_frees_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = open(&dir, SEGMENT_SIZE);
    let id = SpoolId::new();
    let first = spool
        .store(id, b"v1".to_vec(), data_for(id, DATA_LEN))
        .await
        .unwrap();
    for _ in 0..5 {
        let other = SpoolId::new();
        spool
            .store(other, vec![], data_for(other, DATA_LEN))
            .await
            .unwrap();
        spool.remove(other).await.unwrap();
    }
    let second = spool
        .store(id, b"v2".to_vec(), data_for(id, DATA_LEN))
        .await
        .unwrap();
    assert!(second.segment > first.segment);
    spool.shutdown();
    assert!(!segment_path(&dir, first.segment).exists());
    drop(spool);
    let (_, recovery) = open(&dir, SEGMENT_SIZE);
    assert_eq!(recovery.messages.len(), 1);
    assert_eq!(recovery.messages[0].location, second);
    assert_eq!(recovery.messages[0].meta, b"v2");
}
