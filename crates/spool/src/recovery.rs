//! Rebuilds the live set by replaying every segment in order at open.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufReader, Read};
use std::path::Path;

use tracing::{error, info, warn};

use crate::error::{io_at, SpoolError};
use crate::live::LiveSet;
use crate::record::{self, Record, HEADER_LEN};
use crate::{segment, Location, RecoveredMessage, Recovery, SpoolId};

pub(crate) struct Recovered {
    pub(crate) report: Recovery,
    pub(crate) live: LiveSet,
    /// The newest segment and its length after any torn tail was cut off.
    pub(crate) last: Option<(u64, u64)>,
}

/// Where reading a segment stopped.
struct Scanned {
    valid_len: u64,
    file_len: u64,
    /// Set when a record failed validation at `valid_len`.
    bad: Option<String>,
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let seqs = segment::list(dir)?;
    let mut index: HashMap<SpoolId, (Location, Vec<u8>)> = HashMap::new();
    let mut live = LiveSet::default();
    let mut report = Recovery {
        messages: Vec::new(),
        segments: seqs.len(),
        truncated_bytes: 0,
        corrupt_segments: 0,
    };
    let mut last = None;

    for (i, &seq) in seqs.iter().enumerate() {
        live.add_segment(seq);
        let path = segment::path(dir, seq);
        let is_last = i + 1 == seqs.len();
        let scanned = scan_segment(&path, seq, &mut index)?;
        if let Some(reason) = scanned.bad {
            let offset = scanned.valid_len;
            if is_last {
                // Only the newest segment can hold an unsynced batch, so a bad record
                // there is a write torn by a crash and was never acknowledged.
                let cut = scanned.file_len - offset;
                warn!(path = %path.display(), offset, bytes = cut, %reason,
                    "spool: truncating torn tail of last segment");
                truncate(&path, offset)?;
                report.truncated_bytes += cut;
            } else {
                // Older segments were fsynced before the switch, so this is real damage.
                // Keep the file for inspection; records after the damage are lost.
                error!(path = %path.display(), offset, %reason,
                    "spool: corrupt record in sealed segment; ignoring the rest of it");
                report.corrupt_segments += 1;
                live.mark_corrupt(seq);
            }
        }
        if is_last {
            last = Some((seq, scanned.valid_len));
        }
    }

    for (id, (location, meta)) in index {
        live.store(id, location.segment);
        report
            .messages
            .push(RecoveredMessage { id, location, meta });
    }
    report
        .messages
        .sort_unstable_by_key(|m| (m.location.segment, m.location.offset));
    info!(dir = %dir.display(), messages = report.messages.len(), segments = report.segments,
        truncated_bytes = report.truncated_bytes, corrupt_segments = report.corrupt_segments,
        "spool: recovered");
    Ok(Recovered { report, live, last })
}

/// Replays one segment into `index`, stopping at the first invalid record.
fn scan_segment(
    path: &Path,
    seq: u64,
    index: &mut HashMap<SpoolId, (Location, Vec<u8>)>,
) -> Result<Scanned, SpoolError> {
    let file = segment::open_read(path)?;
    let file_len = file.metadata().map_err(io_at(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let bad = |offset, reason: String| Scanned {
        valid_len: offset,
        file_len,
        bad: Some(reason),
    };

    while offset < file_len {
        let remaining = file_len - offset;
        if remaining < HEADER_LEN as u64 {
            return Ok(bad(
                offset,
                format!("{remaining} trailing bytes, less than a header"),
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header).map_err(io_at(path))?;
        let len = match record::parse_header(&header) {
            Ok(len) => len,
            Err(reason) => return Ok(bad(offset, reason)),
        };
        if u64::from(len) > remaining {
            let reason = format!("record of {len} bytes runs past end of file ({remaining} left)");
            return Ok(bad(offset, reason));
        }
        buf.clear();
        buf.extend_from_slice(&header);
        buf.resize(len as usize, 0);
        reader
            .read_exact(&mut buf[HEADER_LEN..])
            .map_err(io_at(path))?;
        match Record::decode(&buf) {
            Ok(Record::Message { id, meta, .. }) => {
                let location = Location {
                    segment: seq,
                    offset,
                    len,
                };
                index.insert(id, (location, meta.to_vec()));
            }
            Ok(Record::UpdateMeta { id, meta }) => {
                if let Some(entry) = index.get_mut(&id) {
                    entry.1 = meta.to_vec();
                }
            }
            Ok(Record::Remove { id }) => {
                index.remove(&id);
            }
            Err(reason) => return Ok(bad(offset, reason)),
        }
        offset += u64::from(len);
    }
    Ok(Scanned {
        valid_len: offset,
        file_len,
        bad: None,
    })
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len).map_err(io_at(path))?;
    // sync_all, not sync_data: the new size is the whole point.
    file.sync_all().map_err(io_at(path))
}
