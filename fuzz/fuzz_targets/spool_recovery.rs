//! Recovery of a damaged or hostile spool: segment files are written from
//! fuzz input (well-formed records, with the documented encoding of
//! crates/spool/src/record.rs, mixed with raw bytes, flipped bytes and cut
//! tails) and the real `Spool::open` replays them from a temporary
//! directory (on /dev/shm when there is one: recovery fsyncs).
//!
//! Recovery may report damage but must never panic, and:
//! - every recovered message reads back (checksum verified);
//! - with only well-formed records it finds exactly the live messages of a
//!   model of the log, with their newest meta and their data;
//! - recovering is idempotent: opening again finds the same messages and
//!   nothing more to cut;
//! - the recovered spool keeps working: a message stored and one removed
//!   after recovery are there (or gone) at the next open.
#![no_main]

use arbitrary::Arbitrary;
use ironpost_spool::{Recovery, Spool, SpoolConfig, SpoolId};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const MAGIC: &[u8; 4] = b"IPS1";

#[derive(Arbitrary, Debug)]
enum Op {
    /// Ids from a small range, so records refer to each other.
    Message {
        id: u8,
        meta: Vec<u8>,
        data: Vec<u8>,
    },
    Remove {
        id: u8,
    },
    UpdateMeta {
        id: u8,
        meta: Vec<u8>,
    },
    /// Start the next segment; `gap` skips sequence numbers.
    NewSegment {
        gap: u8,
    },
    /// Damage: arbitrary bytes appended, a byte changed, the tail cut.
    Raw(Vec<u8>),
    Poke {
        at: u16,
        value: u8,
    },
    Cut {
        bytes: u8,
    },
}

fn id(n: u8) -> SpoolId {
    // Spread over the whole u128, as real (UUIDv7) ids are.
    SpoolId(u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834) | 1)
}

/// The on-disk record: magic, total length, crc32 of the rest, kind, id,
/// body (all little endian).
fn encode(kind: u8, id: SpoolId, body: &[&[u8]]) -> Vec<u8> {
    let len = 12 + 1 + 16 + body.iter().map(|b| b.len()).sum::<usize>();
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(MAGIC);
    r.extend_from_slice(&(len as u32).to_le_bytes());
    r.extend_from_slice(&[0; 4]);
    r.push(kind);
    r.extend_from_slice(&id.to_le_bytes());
    for b in body {
        r.extend_from_slice(b);
    }
    let crc = crc32fast::hash(&r[12..]);
    r[8..12].copy_from_slice(&crc.to_le_bytes());
    r
}

/// A live message of the model: (meta, data).
type Model = HashMap<SpoolId, (Vec<u8>, Vec<u8>)>;

/// The segments (sequence number, bytes), the model's live set, and
/// whether any damage was done (then the model says nothing).
fn build(ops: &[Op]) -> (Vec<(u64, Vec<u8>)>, Model, bool) {
    // No operation, no segment: the spool starts from nothing.
    if ops.is_empty() {
        return (Vec::new(), Model::new(), false);
    }
    let mut segments = vec![(1u64, Vec::new())];
    let mut live = Model::new();
    let mut damaged = false;
    for op in ops {
        let seg = &mut segments.last_mut().unwrap().1;
        match op {
            Op::Message { id: n, meta, data } => {
                let meta_len = (meta.len() as u32).to_le_bytes();
                seg.extend(encode(1, id(*n), &[&meta_len, meta, data]));
                live.insert(id(*n), (meta.clone(), data.clone()));
            }
            Op::Remove { id: n } => {
                seg.extend(encode(2, id(*n), &[]));
                live.remove(&id(*n));
            }
            Op::UpdateMeta { id: n, meta } => {
                seg.extend(encode(3, id(*n), &[meta]));
                if let Some(m) = live.get_mut(&id(*n)) {
                    m.0 = meta.clone();
                }
            }
            Op::NewSegment { gap } => {
                let next = segments.last().unwrap().0 + 1 + u64::from(*gap);
                segments.push((next, Vec::new()));
            }
            Op::Raw(bytes) => {
                seg.extend_from_slice(bytes);
                damaged = true;
            }
            Op::Poke { at, value } => {
                if !seg.is_empty() {
                    let at = usize::from(*at) % seg.len();
                    damaged |= seg[at] != *value;
                    seg[at] = *value;
                }
            }
            Op::Cut { bytes } => {
                let keep = seg.len().saturating_sub(usize::from(*bytes));
                damaged |= keep != seg.len();
                seg.truncate(keep);
            }
        }
    }
    (segments, live, damaged)
}

/// Where the spools go: /dev/shm when there is one (recovery fsyncs).
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

fn open(dir: &Path) -> (Spool, Recovery) {
    let mut cfg = SpoolConfig::new(dir);
    // Durability is not under test; recovery's own fsyncs still happen.
    cfg.flush = false;
    Spool::open(cfg).expect("a spool of regular segment files opens")
}

/// The recovered messages as (id, segment, offset, meta), in write order.
fn summary(r: &Recovery) -> Vec<(SpoolId, u64, u64, Vec<u8>)> {
    r.messages
        .iter()
        .map(|m| (m.id, m.location.segment, m.location.offset, m.meta.clone()))
        .collect()
}

fuzz_target!(|ops: Vec<Op>| {
    let (segments, model, damaged) = build(&ops);
    let dir = tempfile::Builder::new()
        .prefix("ironpost-fuzz-spool-")
        // The spool refuses a directory others can read.
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(scratch_root())
        .unwrap();
    for (seq, bytes) in &segments {
        let name = format!("segment-{seq:016x}.log");
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }

    let (spool, first) = open(dir.path());
    assert_eq!(first.segments, segments.len());
    let mut recovered = HashMap::new();
    for m in &first.messages {
        let (meta, data) = spool
            .read(&m.location)
            .unwrap_or_else(|e| panic!("recovered message {} does not read: {e}", m.id));
        recovered.insert(m.id, (m.meta.clone(), meta, data));
    }
    if !damaged {
        assert_eq!(first.truncated_bytes, 0);
        assert_eq!(first.corrupt_segments, 0);
        assert_eq!(recovered.len(), model.len());
        for (id, (meta, data)) in &model {
            let (newest, _, read) = &recovered[id];
            assert_eq!(newest, meta);
            assert_eq!(read, data);
        }
    }

    // Keep using it: store one message and remove a recovered one.
    let added = SpoolId(u128::MAX);
    spool
        .store_blocking(added, b"meta".to_vec(), b"data".to_vec())
        .unwrap();
    let removed = first.messages.first().map(|m| m.id);
    if let Some(gone) = removed {
        runtime().block_on(spool.remove(gone)).unwrap();
    }
    spool.shutdown();
    drop(spool);

    let (spool, second) = open(dir.path());
    assert_eq!(second.truncated_bytes, 0, "recovery left a torn tail");
    let mut expected: Vec<_> = summary(&first)
        .into_iter()
        .filter(|m| Some(m.0) != removed)
        .collect();
    let mut got = summary(&second);
    let new = got
        .iter()
        .position(|m| m.0 == added)
        .expect("stored message lost");
    assert_eq!(got.remove(new).3, b"meta");
    // Segments whose messages were all removed may have been deleted, but
    // what is live stays where it was.
    expected.retain(|m| m.0 != added);
    assert_eq!(got, expected);
    spool.shutdown();
});
