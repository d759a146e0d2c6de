//! Data and policy directory checks made at start.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Create missing parents of a data directory as 0700 so a fresh
/// `./ironpost-data/` is private from the first byte. Returns the parent
/// when it was created here (it then belongs to the daemon user).
pub fn create_private_parents(dir: &Path) -> Result<Option<std::path::PathBuf>> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            return Ok(Some(parent.to_path_buf()));
        }
    }
    Ok(None)
}

/// Create (0o2770) or check a spool, log or key directory: other users must
/// have no access at all.
pub fn ensure_private_dir(dir: &Path, what: &str) -> Result<Option<std::path::PathBuf>> {
    let created_parent = create_private_parents(dir)?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o770)
            .create(dir)
            .with_context(|| format!("cannot create {what} directory {}", dir.display()))?;
        // setgid is not applied through mkdir's mode on every system.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770))
            .with_context(|| format!("cannot set mode of {}", dir.display()))?;
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
    Ok(created_parent)
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
