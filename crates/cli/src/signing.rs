//! The signer process, from the daemon's side: started before privileges
//! are dropped, handed the Vault token (which then leaves this process's
//! environment), and installed as the policy's key backend, so DKIM and
//! ARC keys are used here only through it.

use crate::privileges;
use anyhow::{Context, Result};
use ironpost_dkim::{Algorithm, SigningKey};
use ironpost_keysource::KeySource;
use ironpost_signer::protocol::KeyRef;
use ironpost_signer::{KeyPolicy, RemoteKey, SignerClient};
use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// `ironpost signer-supervisor` (internal): what `serve` starts.
#[derive(clap::Args)]
pub struct SupervisorArgs {
    /// Directories under which key files may be read. Repeatable.
    #[arg(long = "key-dir", value_name = "DIR")]
    key_dirs: Vec<PathBuf>,
    /// The user to run as (when started as root).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Serve key files only under --key-dir (the signer has a user of its
    /// own, so it can read what the network process cannot).
    #[arg(long)]
    confine_key_files: bool,
}

/// Runs the supervisor on the control socket `serve` left on fd 3.
pub fn supervise(args: SupervisorArgs) -> Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: `serve` put the control socket on this descriptor
    // (SignerClient::spawn); nothing else in this process owns it.
    let control = unsafe { UnixStream::from_raw_fd(ironpost_signer::client::CONTROL_FD) };
    if let Some(name) = &args.user {
        let user = privileges::lookup(name)?;
        let me = nix::unistd::geteuid();
        if me.is_root() {
            privileges::drop_to(&user)?;
        } else if user.uid != me {
            // Not silently the wrong user: the separation asked for is not
            // there, so the daemon does not start.
            anyhow::bail!("the signer cannot run as {name}: Ironpost was not started as root");
        }
    }
    let key_dirs = args
        .key_dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    ironpost_signer::supervisor::run(
        control,
        KeyPolicy {
            key_dirs,
            vault_addr: None,
            confine_files: args.confine_key_files,
        },
    )
    .context("signer")
}

/// The key directories the signer serves: those given, or by default the
/// policy's own directory (where KumoMTA layouts keep `dkim/`) and the
/// conventional `/etc/ironpost/dkim` and `/opt/kumomta/etc/dkim`.
pub fn key_dirs(given: &[PathBuf], policy: Option<&Path>) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut dirs: Vec<PathBuf> = policy
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .into_iter()
        .collect();
    for d in ["/etc/ironpost/dkim", "/opt/kumomta/etc/dkim"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The variable that gives the signer a Vault token of its own.
pub const SIGNER_VAULT_TOKEN: &str = "IRONPOST_SIGNER_VAULT_TOKEN";

/// Takes [`SIGNER_VAULT_TOKEN`] out of this process: the value is returned
/// (for the signer) and its bytes in the environment block are
/// overwritten, since removing the variable alone leaves them in memory.
/// `VAULT_TOKEN` itself stays: the policy's other Vault secrets (SMTP AUTH
/// passwords, say) are read here, as in KumoMTA. Call while the process
/// has a single thread.
pub fn take_vault_token() -> Option<Zeroizing<Vec<u8>>> {
    use std::os::unix::ffi::OsStringExt;
    let value = Zeroizing::new(std::env::var_os(SIGNER_VAULT_TOKEN)?.into_vec());
    let prefix = format!("{SIGNER_VAULT_TOKEN}=");
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: single-threaded (the caller's contract); each entry of
    // `environ` is a NUL-terminated string we may write within.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let s = *entry;
            let bytes = std::ffi::CStr::from_ptr(s).to_bytes();
            if bytes.starts_with(prefix.as_bytes()) {
                std::ptr::write_bytes(s.add(prefix.len()), 0, bytes.len() - prefix.len());
            }
            entry = entry.add(1);
        }
    }
    std::env::remove_var(SIGNER_VAULT_TOKEN);
    Some(value)
}

/// Starts the supervisor and returns the client the policy signs through.
pub fn start(
    key_dirs: &[PathBuf],
    user: Option<&str>,
    confine_key_files: bool,
    json_logs: bool,
    vault_token: Option<Zeroizing<Vec<u8>>>,
) -> Result<(Arc<SignerClient>, std::process::Child)> {
    let exe = std::env::current_exe().context("the signer: cannot find this program")?;
    let mut args: Vec<OsString> = Vec::new();
    if json_logs {
        args.extend(["--log-format".into(), "json".into()]);
    }
    args.push("signer-supervisor".into());
    for d in key_dirs {
        args.push("--key-dir".into());
        args.push(d.into());
    }
    if let Some(u) = user {
        args.push("--user".into());
        args.push(u.into());
    }
    if confine_key_files {
        args.push("--confine-key-files".into());
    }
    let (client, child) =
        SignerClient::spawn(&exe, &args, vault_token).context("cannot start the signer")?;
    let client = Arc::new(client);
    client
        .health()
        .context("the signer does not answer at start")?;
    Ok((client, child))
}

/// The policy's key backend: keys are references to the signer's.
pub struct SignerBackend(pub Arc<SignerClient>);

impl ironpost_policy::dkim::KeyBackend for SignerBackend {
    fn key(
        &self,
        algo: Algorithm,
        source: &KeySource,
        ttl: Duration,
    ) -> Result<SigningKey, String> {
        let key = KeyRef::from_source(source)
            .ok_or_else(|| format!("{}: not a key the signer holds", source.describe()))?;
        Ok(SigningKey::remote(
            algo,
            Arc::new(RemoteKey {
                client: self.0.clone(),
                key,
                ttl,
            }),
        ))
    }
}
