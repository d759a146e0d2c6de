//! Segment files: `segment-<16 hex digit seq>.log`, append-only.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{io_at, SpoolError};

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".log";
/// Read by the spool owner and its group (e.g. a delivery helper), written by the owner.
const FILE_MODE: u32 = 0o640;

pub(crate) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:016x}{SUFFIX}"))
}

/// Only the exact canonical name is a segment; anything else (`.corrupt`, editor
/// backups, uppercase hex) is ignored so it can never be replayed by mistake.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Sequence numbers of all segments in `dir`, ascending.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Opens a segment for reading. O_NOFOLLOW: a planted symlink must not redirect us.
pub(crate) fn open_read(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_at(path))
}

/// Opens an existing segment for appending.
pub(crate) fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_at(path))
}

/// Creates segment `seq` and makes its directory entry durable before any record
/// lands in it. An empty leftover from an earlier failed attempt is reused.
pub(crate) fn create(dir_path: &Path, seq: u64) -> Result<File, SpoolError> {
    let path = path(dir_path, seq);
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_at(&path))?;
    let len = file.metadata().map_err(io_at(&path))?.len();
    if len != 0 {
        return Err(SpoolError::io(
            &path,
            io::Error::new(io::ErrorKind::AlreadyExists, "new segment is not empty"),
        ));
    }
    if let Err(e) = dir::sync(dir_path) {
        // Without a durable entry, acknowledged records could vanish with the file.
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_reject_lookalikes() {
        let p = path(Path::new("/s"), 0x1f);
        assert_eq!(p, Path::new("/s/segment-000000000000001f.log"));
        assert_eq!(parse_name("segment-000000000000001f.log"), Some(0x1f));
        for bad in [
            "segment-000000000000001F.log",
            "segment-1f.log",
            "segment-000000000000001f.log.corrupt",
            "segment-+00000000000001f.log",
            "xsegment-000000000000001f.log",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
