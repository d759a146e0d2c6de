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

/// The policy file and its directory must not be writable by other users,
/// nor by the daemon's group: a compromised daemon must not be able to
/// rewrite its own policy. Owned by the daemon's user itself (KumoMTA's
/// documented layout: a kumod-owned 755 policy directory) they are
/// accepted with a warning. `run_as`: the daemon's (uid, gid).
pub fn check_policy_dir(policy: &Path, run_as_uid: Option<u32>) -> Result<()> {
    let file = policy
        .canonicalize()
        .with_context(|| format!("cannot read policy {}", policy.display()))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let gid = run_as_uid.and_then(|u| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
    });
    for (what, path) in [("policy directory", &dir), ("policy file", &file)] {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
        let mode = meta.mode() & 0o7777;
        let fix = |how: &str| format!("fix: {how} {}", path.display());
        if mode & 0o002 != 0 {
            bail!(
                "{what} {} has mode {mode:o} (owner uid {}): it is writable by every user; {}",
                path.display(),
                meta.uid(),
                fix("chmod o-w")
            );
        }
        let Some(uid) = run_as_uid.filter(|u| *u != 0) else {
            continue;
        };
        if gid.is_some_and(|g| g == meta.gid()) && mode & 0o020 != 0 {
            bail!(
                "{what} {} has mode {mode:o} and the daemon's group (gid {}): the daemon can rewrite its own policy; {}",
                path.display(),
                meta.gid(),
                fix("chmod g-w")
            );
        }
        if meta.uid() == uid && mode & 0o200 != 0 {
            tracing::warn!(
                "{what} {} is owned by the daemon user (uid {uid}), which can rewrite it (KumoMTA's documented layout); safer: chown root {}",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// A private key file (a TLS or DKIM key given as a file keysource): no
/// access for other users, no writing by the group, and in a directory
/// other users cannot write (or they could swap the file).
pub fn check_key_file(path: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o027 != 0 {
        bail!(
            "key file {} has mode {mode:o} (owner uid {}, group gid {}): only its owner may write it and only its owner and group read it; fix: chmod 0640 {}",
            path.display(),
            meta.uid(),
            meta.gid(),
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dmeta =
            std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
        let dmode = dmeta.mode() & 0o7777;
        if dmode & 0o002 != 0 && dmode & 0o1000 == 0 {
            bail!(
                "key directory {} has mode {dmode:o} (owner uid {}): any user can replace the keys in it; fix: chmod o-w {}",
                dir.display(),
                dmeta.uid(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// A key directory: no access for other users (the seed's 2770 kumod
/// layout and the package's 2750 root:ironpost both pass).
pub fn check_key_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        bail!(
            "key directory {} has mode {mode:o} (owner uid {}, group gid {}): other users can reach the keys; fix: chmod o-rwx {}",
            dir.display(),
            meta.uid(),
            meta.gid(),
            dir.display()
        );
    }
    Ok(())
}

/// A key file or directory a helper named: checked as its kind. `Ok(false)`
/// when it does not exist.
pub fn check_key_path(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(m) if m.is_dir() => check_key_dir(path).map(|_| true),
        Ok(_) => check_key_file(path).map(|_| true),
    }
}
