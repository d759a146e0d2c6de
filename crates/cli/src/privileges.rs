//! Dropping root completely: real, effective and saved uid and gid, no
//! supplementary groups, and no_new_privs so nothing executed later can
//! regain privilege. Not the half-drop that keeps a capability on.

use anyhow::{bail, Context, Result};
use nix::unistd::{Gid, Uid, User};

pub fn lookup(user: &str) -> Result<User> {
    User::from_name(user)
        .with_context(|| format!("cannot look up user {user}"))?
        .with_context(|| format!("--user: no such user {user}"))
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

/// File access as `user` until dropped: the policy's `init` runs this way,
/// so it reads nothing the daemon could not read after the drop. Only the
/// effective ids change (the saved ones stay root), because binding
/// privileged ports, reading TLS keys and the full drop still follow.
pub struct Impersonation {
    active: bool,
}

pub fn impersonate(user: &User) -> Result<Impersonation> {
    if !Uid::effective().is_root() {
        // Not root: nothing to lend; `drop_to` reports the misuse.
        return Ok(Impersonation { active: false });
    }
    nix::unistd::setgroups(&[user.gid]).context("setgroups")?;
    nix::unistd::setegid(user.gid).context("setegid")?;
    nix::unistd::seteuid(user.uid).context("seteuid")?;
    Ok(Impersonation { active: true })
}

impl Impersonation {
    /// Back to root, for what only root may do before the drop.
    pub fn end(mut self) -> Result<()> {
        self.active = false;
        nix::unistd::seteuid(Uid::from_raw(0)).context("seteuid back to root")?;
        nix::unistd::setegid(Gid::from_raw(0)).context("setegid back to root")?;
        Ok(())
    }
}

impl Drop for Impersonation {
    fn drop(&mut self) {
        // Only on an early return, which ends the start anyway.
        if self.active {
            let _ = nix::unistd::seteuid(Uid::from_raw(0));
            let _ = nix::unistd::setegid(Gid::from_raw(0));
        }
    }
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
