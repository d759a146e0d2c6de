//! Dropping root completely: real, effective and saved uid and gid, no
//! supplementary groups, and no_new_privs so nothing executed later can
//! regain privilege. Not the half-drop that keeps a capability on.

use anyhow::{bail, Context, Result};
use nix::unistd::{Gid, Uid, User};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn lookup(user: &str) -> Result<User> {
    User::from_name(user)
        .with_context(|| format!("cannot look up user {user}"))?
        .with_context(|| format!("--user: no such user {user}"))
}

/// Hand the data directories (and what is in them) to the daemon user.
///
/// This runs as root on every start, inside directories the daemon user
/// owns: a compromised daemon could have planted symlinks there to get root
/// to chown `/etc/shadow` on the next start. So `dir` may only be a symlink
/// that root owns, and entries are changed with `lchown` (a symlink's own
/// owner, never its target's); anything but plain files and directories is
/// left alone.
pub fn chown_tree(dir: &Path, user: &User) -> Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    // A symlink the operator (root) made, e.g. /var/spool/x -> /data/x, is
    // followed; one owned by anyone else could be the daemon's doing.
    let link =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if link.file_type().is_symlink() && link.uid() != 0 {
        bail!(
            "{} is a symlink owned by uid {}, not root; refusing to hand its target to {}",
            dir.display(),
            link.uid(),
            user.name
        );
    }
    let resolved;
    let dir = if link.file_type().is_symlink() {
        resolved = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        resolved.as_path()
    } else {
        dir
    };
    if !std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot stat {}", dir.display()))?
        .is_dir()
    {
        bail!("{} is not a directory", dir.display());
    }
    let chown = |p: &Path| {
        std::os::unix::fs::lchown(p, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .with_context(|| format!("cannot chown {}", p.display()))
    };
    chown(dir)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_file() || t.is_dir() => chown(&e.path())?,
                _ => tracing::warn!(
                    "{}: not a plain file or directory; ownership left alone",
                    e.path().display()
                ),
            }
        }
    }
    Ok(())
}

pub fn drop_to(user: &User) -> Result<()> {
    if !Uid::effective().is_root() {
        bail!("--user {} requires starting as root", user.name);
    }
    nix::unistd::setgroups(&[]).context("setgroups")?;
    nix::unistd::setresgid(user.gid, user.gid, user.gid).context("setresgid")?;
    nix::unistd::setresuid(user.uid, user.uid, user.uid).context("setresuid")?;
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        bail!(
            "prctl(PR_SET_NO_NEW_PRIVS): {}",
            std::io::Error::last_os_error()
        );
    }
    verify(user.uid, user.gid)
}

fn verify(uid: Uid, gid: Gid) -> Result<()> {
    let r = nix::unistd::getresuid()?;
    let g = nix::unistd::getresgid()?;
    if [r.real, r.effective, r.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        bail!("privilege drop incomplete");
    }
    if !nix::unistd::getgroups()?.is_empty() {
        bail!("supplementary groups remain after privilege drop");
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("regained root after privilege drop");
    }
    Ok(())
}
