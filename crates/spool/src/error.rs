use std::io;
use std::path::{Path, PathBuf};

use crate::SpoolId;

/// Every variant names the file or directory involved so an operator can act on it.
#[derive(thiserror::Error, Debug)]
pub enum SpoolError {
    #[error("spool I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "spool directory {path} has insecure mode 0{mode:o}: it must grant no permission to other users"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("spool path {path} exists but is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("spool directory {path} is already opened by another process or handle")]
    Locked { path: PathBuf },
    #[error("corrupt spool record in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("spool record for {id} in {path} would be {len} bytes, above the 4 GiB record limit")]
    TooLarge {
        path: PathBuf,
        id: SpoolId,
        len: u64,
    },
    #[error("message {id} is not in spool {path}")]
    NotFound { path: PathBuf, id: SpoolId },
    #[error("spool {path} refuses writes until it is reopened: {reason}")]
    Failed { path: PathBuf, reason: String },
    #[error("spool {path} is shut down")]
    Closed { path: PathBuf },
}

impl SpoolError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Copy of an error for fanning one batch failure out to every waiting caller
    /// (io::Error is not Clone, so its source is rebuilt from kind and text).
    pub(crate) fn duplicate(&self) -> Self {
        use SpoolError::*;
        match self {
            Io { path, source } => Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            InsecurePermissions { path, mode } => InsecurePermissions {
                path: path.clone(),
                mode: *mode,
            },
            NotADirectory { path } => NotADirectory { path: path.clone() },
            Locked { path } => Locked { path: path.clone() },
            Corrupt {
                path,
                offset,
                reason,
            } => Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            TooLarge { path, id, len } => TooLarge {
                path: path.clone(),
                id: *id,
                len: *len,
            },
            NotFound { path, id } => NotFound {
                path: path.clone(),
                id: *id,
            },
            Failed { path, reason } => Failed {
                path: path.clone(),
                reason: reason.clone(),
            },
            Closed { path } => Closed { path: path.clone() },
        }
    }
}

/// Shorthand for `.map_err(SpoolError::io(path, _))`.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |e| SpoolError::io(path, e)
}
