//! Data and policy directory checks made at start.

use anyhow::{bail, Context, Result};
use nix::unistd::User;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Create (parents 0700, `dir` 2770) or check a spool, log or cache
/// directory: other users must have no access at all. Returns every
/// directory created here, outermost first: only those may be handed to the
/// daemon user (see [`hand_over`]).
pub fn ensure_private_dir(dir: &Path, what: &str) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut p = dir.parent();
    while let Some(q) = p.filter(|q| !q.as_os_str().is_empty() && !q.exists()) {
        missing.push(q.to_path_buf());
        p = q.parent();
    }
    let mut created = Vec::new();
    for q in missing.into_iter().rev() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&q)
            .with_context(|| format!("cannot create {}", q.display()))?;
        created.push(q);
    }
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o770)
            .create(dir)
            .with_context(|| format!("cannot create {what} directory {}", dir.display()))?;
        // setgid is not applied through mkdir's mode on every system.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770))
            .with_context(|| format!("cannot set mode of {}", dir.display()))?;
        created.push(dir.to_path_buf());
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot stat {}", dir.display()))?
        .mode();
    if mode & 0o007 != 0 {
        bail!(
            "{what} directory {} has mode {:o}, which lets other users access it; expected 2770 or stricter (chmod o-rwx)",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(created)
}

/// Give directories created at this start to the daemon user. Nothing that
/// existed before is ever chowned: as root, following names in directories
/// the daemon user owns would let a compromised daemon point root at
/// `/etc/shadow` (symlinks, hard links, swapped path components).
pub fn hand_over(created: &[PathBuf], user: &User) -> Result<()> {
    for dir in created {
        std::os::unix::fs::lchown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .with_context(|| format!("cannot chown {}", dir.display()))?;
    }
    Ok(())
}

/// An existing data directory must already belong to the daemon user (or
/// be writable by its group): it is not chowned for it.
pub fn check_owner(dir: &Path, what: &str, user: &User) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    let group_rw = meta.gid() == user.gid.as_raw() && meta.mode() & 0o070 == 0o070;
    if meta.uid() != user.uid.as_raw() && !group_rw {
        bail!(
            "{what} directory {} belongs to uid {} and is not writable by {}'s group; \
             ironpost does not change the owner of existing files as root \
             (run `chown -R {}: {}` if the daemon should own it)",
            dir.display(),
            meta.uid(),
            user.name,
            user.name,
            dir.display()
        );
    }
    Ok(())
}

/// The policy directory must not be writable by anyone but its owner, and
/// not by the user the daemon runs as: a compromised daemon must not be able
/// to rewrite its own policy.
pub fn check_policy_dir(policy: &Path, run_as_uid: Option<u32>) -> Result<()> {
    let dir = policy
        .canonicalize()
        .with_context(|| format!("cannot read policy {}", policy.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let meta = std::fs::metadata(&dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        bail!(
            "policy directory {} has mode {mode:o}: it is writable by every user",
            dir.display()
        );
    }
    if let Some(uid) = run_as_uid {
        if uid != 0 && (meta.uid() == uid && mode & 0o200 != 0) {
            bail!(
                "policy directory {} is writable by the daemon user (uid {uid}); it should be owned by root or another account",
                dir.display()
            );
        }
    }
    Ok(())
}
