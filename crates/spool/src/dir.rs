//! The spool directory: creation with safe permissions, the permission check,
//! the single-owner lock and directory fsync.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{io_at, SpoolError};

/// setgid so files inherit the spool group; nothing for "other".
const DIR_MODE: u32 = 0o2770;

/// Creates `path` (and parents) if missing, then refuses it if "other" has any access:
/// spooled mail is private, and a world-writable spool lets anyone forge messages.
pub(crate) fn prepare(path: &Path) -> Result<(), SpoolError> {
    match fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path)?,
        Err(e) => return Err(SpoolError::io(path, e)),
    }
    let md = fs::metadata(path).map_err(io_at(path))?;
    if !md.is_dir() {
        return Err(SpoolError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(SpoolError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn create(path: &Path) -> Result<(), SpoolError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        // Lost a race with another creator: fall through to the permission check.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(SpoolError::io(path, e)),
    }
    // mkdir applies the umask and Linux ignores setgid in its mode, so set it explicitly.
    // Until then the mode is DIR_MODE minus umask bits, never wider.
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE)).map_err(io_at(path))?;
    if let Some(parent) = parent {
        sync(parent)?;
    }
    Ok(())
}

/// Exclusive advisory lock on the directory itself, held for the spool's lifetime:
/// two writers appending to the same segment would interleave records.
pub(crate) fn lock(path: &Path) -> Result<Flock<File>, SpoolError> {
    let dir = File::open(path).map_err(io_at(path))?;
    Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        Errno::EWOULDBLOCK => SpoolError::Locked {
            path: path.to_path_buf(),
        },
        other => SpoolError::io(path, io::Error::from(other)),
    })
}

/// fsync a directory so entries created, renamed or removed in it are durable.
pub(crate) fn sync(path: &Path) -> Result<(), SpoolError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_at(path))
}
