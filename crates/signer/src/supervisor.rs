//! The signer's side of start-up and restarts.
//!
//! `ironpost serve` starts the supervisor (the same binary) before it
//! drops privileges; the supervisor drops to the signer's user and then
//! does one thing: for each socket the daemon sends it over the control
//! socket (SCM_RIGHTS), it forks a signer that serves that socket under
//! its seccomp filter. A signer that dies is replaced the next time the
//! daemon asks, with no privilege needed on either side. The supervisor
//! is single-threaded, so forking it is safe, and it holds no key: keys
//! are loaded by each signer on first use.

use crate::keys::KeyPolicy;
use crate::{protocol, sandbox, service, SignerError};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use zeroize::Zeroize;

/// Marks the process undumpable (its memory unreadable, and untraceable,
/// by other processes of its user) and unable to gain privileges.
pub fn harden_process() -> Result<(), SignerError> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(SignerError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        return Err(SignerError::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs the supervisor on `control` until the daemon closes it. The first
/// frame on it is the Vault token meant for the signer (empty: none).
pub fn run(mut control: UnixStream, mut policy: KeyPolicy) -> Result<(), SignerError> {
    harden_process()?;
    // Children are reaped by the kernel.
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map_err(|e| SignerError::Io(e.into()))?;
    let mut token = protocol::read_frame(&mut control)?.unwrap_or_default();
    if !token.is_empty() {
        let value = String::from_utf8_lossy(&token).into_owned();
        // The signers are forked from here and read it as Vault keysources
        // do; this process is single-threaded, so setting it is safe.
        std::env::set_var("VAULT_TOKEN", &value);
        let mut value = value;
        value.zeroize();
    }
    token.zeroize();
    if policy.vault_addr.is_none() {
        policy.vault_addr = std::env::var("VAULT_ADDR").ok();
    }
    if policy.confine_files {
        tracing::info!(
            "signer: serving key files under {}",
            policy
                .key_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    while let Some(conn) = receive_socket(&control)? {
        // SAFETY: this process has one thread; the child only runs the
        // signer loop and exits.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(control);
                let code = signer(conn, &policy);
                std::process::exit(code);
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => drop(conn),
            Err(e) => tracing::error!("signer: cannot start a signer: {e}"),
        }
    }
    Ok(())
}

/// A forked signer: sandboxed, then serving one connection.
fn signer(conn: OwnedFd, policy: &KeyPolicy) -> i32 {
    if let Err(e) = sandbox::apply_signer_filter() {
        tracing::error!("signer: cannot apply the seccomp filter, not serving: {e}");
        return 1;
    }
    match service::serve(UnixStream::from(conn), policy) {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!("signer: connection closed: {e}");
            2
        }
    }
}

/// The next socket the daemon sends; `None` when it has gone.
fn receive_socket(control: &UnixStream) -> Result<Option<OwnedFd>, SignerError> {
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = match recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SignerError::Io(e.into())),
        };
        if msg.bytes == 0 {
            return Ok(None);
        }
        let mut got = None;
        for c in msg.cmsgs().map_err(|e| SignerError::Io(e.into()))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just gave us this descriptor.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if got.is_none() {
                        got = Some(owned);
                    }
                }
            }
        }
        match got {
            Some(fd) => return Ok(Some(fd)),
            None => tracing::warn!("signer: a control message without a socket, ignored"),
        }
    }
}
