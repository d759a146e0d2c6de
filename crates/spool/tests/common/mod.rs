//! Helpers shared by the integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use ironpost_spool::{Recovery, Spool, SpoolConfig, SpoolId};

pub fn config(dir: &Path, segment_size: u64) -> SpoolConfig {
    SpoolConfig {
        segment_size,
        ..SpoolConfig::new(dir)
    }
}

pub fn open(dir: &Path, segment_size: u64) -> (Spool, Recovery) {
    Spool::open(config(dir, segment_size)).expect("open spool")
}

/// Deterministic content derived from the id, so any message can be checked later.
pub fn data_for(id: SpoolId, len: usize) -> Vec<u8> {
    let seed = id.to_le_bytes();
    (0..len)
        .map(|i| seed[i % 16].wrapping_add((i / 16) as u8))
        .collect()
}

pub fn meta_for(id: SpoolId) -> Vec<u8> {
    format!("{{\"id\":\"{id}\",\"rcpt\":[\"a@example.org\"]}}").into_bytes()
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:016x}.log"))
}

/// Sequence numbers of the segment files present, ascending.
pub fn segment_files(dir: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let hex = name.strip_prefix("segment-")?.strip_suffix(".log")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Asserts that every recovered message reads back with the expected content.
pub fn assert_recovered_intact(
    spool: &Spool,
    recovery: &Recovery,
    data_len: impl Fn(SpoolId) -> usize,
) {
    for m in &recovery.messages {
        let (meta, data) = spool.read(&m.location).expect("read recovered message");
        assert_eq!(meta, m.meta, "meta of {}", m.id);
        assert_eq!(data, data_for(m.id, data_len(m.id)), "data of {}", m.id);
    }
}
