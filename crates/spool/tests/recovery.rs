mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use ironpost_spool::{Location, SpoolError, SpoolId};

fn size_for(id: SpoolId) -> usize {
    200 + (id.0 % 300) as usize
}

/// Writes `n` messages into a fresh spool; returns them in write order.
fn write_messages(dir: &Path, n: usize, segment_size: u64) -> Vec<(SpoolId, Location)> {
    let (spool, _) = open(dir, segment_size);
    let out = (0..n)
        .map(|_| {
            let id = SpoolId::new();
            let loc = spool
                .store_blocking(id, meta_for(id), data_for(id, size_for(id)))
                .unwrap();
            (id, loc)
        })
        .collect();
    spool.shutdown();
    out
}

fn ids(r: &ironpost_spool::Recovery) -> Vec<SpoolId> {
    r.messages.iter().map(|m| m.id).collect()
}

#[test]
fn torn_tail_is_truncated_at_every_kind_of_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let written = write_messages(&source, 12, 1 << 20);
    let seq = written[0].1.segment;
    let bytes = fs::read(segment_path(&source, seq)).unwrap();

    let mut cuts = Vec::new();
    for k in [0, 5, 11] {
        let Location { offset, len, .. } = written[k].1;
        let len = u64::from(len);
        // Inside the header, right after it, after kind+id, mid-body, one byte short.
        for within in [1, 4, 8, 11, 12, 29, 33, len / 2, len - 1] {
            cuts.push((k, offset + within));
        }
    }
    for (case, (k, cut)) in cuts.into_iter().enumerate() {
        let dir = tmp.path().join(format!("cut-{case}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(segment_path(&dir, seq), &bytes[..cut as usize]).unwrap();

        let (spool, recovery) = open(&dir, 1 << 20);
        let boundary = written[k].1.offset;
        let expected: Vec<SpoolId> = written[..k].iter().map(|w| w.0).collect();
        assert_eq!(ids(&recovery), expected, "cut at {cut}");
        assert_eq!(recovery.truncated_bytes, cut - boundary, "cut at {cut}");
        assert_eq!(recovery.corrupt_segments, 0);
        assert_eq!(
            fs::metadata(segment_path(&dir, seq)).unwrap().len(),
            boundary
        );
        assert_recovered_intact(&spool, &recovery, size_for);

        // Appends continue cleanly right where the torn record was.
        let id = SpoolId::new();
        let loc = spool
            .store_blocking(id, meta_for(id), data_for(id, size_for(id)))
            .unwrap();
        assert_eq!(loc.offset, boundary);
        drop(spool);
        let (_, again) = open(&dir, 1 << 20);
        assert_eq!(again.truncated_bytes, 0);
        let mut want = expected.clone();
        want.push(id);
        assert_eq!(ids(&again), want);
    }
}

#[test]
fn garbage_after_the_last_record_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let written = write_messages(&dir, 5, 1 << 20);
    let path = segment_path(&dir, written[0].1.segment);
    let mut bytes = fs::read(&path).unwrap();
    let clean_len = bytes.len() as u64;

    // A whole, well-formed-looking record with one flipped byte (crc mismatch)
    // followed by zeros, as a crash can leave behind.
    let mut torn = bytes[written[4].1.offset as usize..].to_vec();
    torn[40] ^= 1;
    bytes.extend_from_slice(&torn);
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&path, &bytes).unwrap();

    let (spool, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.messages.len(), 5);
    assert_eq!(recovery.truncated_bytes, torn.len() as u64 + 100);
    assert_eq!(fs::metadata(&path).unwrap().len(), clean_len);
    assert_recovered_intact(&spool, &recovery, size_for);
}

#[test]
fn corruption_inside_an_older_segment_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let written = write_messages(&dir, 30, 2048);
    let segments = segment_files(&dir);
    assert!(segments.len() >= 4, "{segments:?}");

    // Damage the second record of the second segment, which has later segments.
    let victim_seq = segments[1];
    let in_victim: Vec<&(SpoolId, Location)> = written
        .iter()
        .filter(|w| w.1.segment == victim_seq)
        .collect();
    assert!(in_victim.len() >= 3);
    let victim = in_victim[1].1;
    let path = segment_path(&dir, victim_seq);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(victim.offset + u64::from(victim.len) / 2) as usize] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let (spool, recovery) = open(&dir, 2048);
    assert_eq!(recovery.corrupt_segments, 1);
    assert_eq!(recovery.truncated_bytes, 0);
    assert!(path.exists(), "a damaged segment is kept for inspection");
    assert_eq!(fs::metadata(&path).unwrap().len(), bytes.len() as u64);

    // Everything except the damaged record and those after it in that segment.
    let lost: HashSet<SpoolId> = in_victim[1..].iter().map(|w| w.0).collect();
    let expected: Vec<SpoolId> = written
        .iter()
        .map(|w| w.0)
        .filter(|id| !lost.contains(id))
        .collect();
    assert_eq!(ids(&recovery), expected);
    assert_recovered_intact(&spool, &recovery, size_for);
    let err = spool.read(&victim).unwrap_err();
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));

    // Once everything is removed, the damaged segment is moved aside, not deleted,
    // and it no longer blocks reclaiming the segments after it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for m in &recovery.messages {
            spool.remove(m.id).await.unwrap();
        }
    });
    spool.shutdown();
    assert!(!path.exists());
    assert!(path.with_extension("log.corrupt").exists());
    let left = segment_files(&dir);
    // Only the active segment is left (the removals may have rotated into a new one).
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0] >= *segments.last().unwrap());
    drop(spool);
    let (_, after) = open(&dir, 2048);
    assert!(after.messages.is_empty());
    assert_eq!(after.corrupt_segments, 0);
}
