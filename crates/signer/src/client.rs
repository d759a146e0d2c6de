//! The network process's side: start the supervisor, and sign through it.
//!
//! Requests go over a few connections, each to its own signer process (one
//! per core, so signatures are made in parallel); on each, one request at
//! a time (its mutex is the queue). When a signer has died, its connection
//! fails; the client asks the supervisor for a new signer and sends the
//! request again, for up to
//! [`SignerClient::patience`]. Past that the signing fails, and the
//! message waits (`451 4.3.0`): it is never sent unsigned.

use crate::protocol::{self, Algo, KeyRef, Op, Reply, Request, Response, SignRequest, VERSION};
use crate::SignerError;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::ffi::OsString;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The descriptor the supervisor finds its control socket on.
pub const CONTROL_FD: i32 = 3;

/// What a signing request came to, when not a signature.
#[derive(Debug, thiserror::Error)]
pub enum SignFailure {
    #[error("the signer refused: {0}")]
    Refused(String),
    #[error("the signer could not sign: {0}")]
    Failed(String),
    #[error(transparent)]
    Unavailable(#[from] SignerError),
}

pub struct SignerClient {
    control: Mutex<UnixStream>,
    conns: Vec<Mutex<Option<UnixStream>>>,
    next_conn: AtomicU64,
    next_id: AtomicU64,
    /// How long one answer may take.
    pub timeout: Duration,
    /// How long a request waits for a signer to come back.
    pub patience: Duration,
}

impl SignerClient {
    /// Starts `exe` with `args` (the supervisor subcommand) joined by a
    /// socketpair, and hands it `vault_token` (for the signers only).
    pub fn spawn(
        exe: &Path,
        args: &[OsString],
        vault_token: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<(SignerClient, std::process::Child), SignerError> {
        let (ours, theirs) = UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        cmd.args(args).stdin(std::process::Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls: dup2
        // puts the control socket where the supervisor expects it (dup2
        // clears close-on-exec on the copy).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        let mut control = ours;
        let token = vault_token.unwrap_or_default();
        let frame = Zeroizing::new({
            let mut f = (token.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&token);
            f
        });
        protocol::write_frame(&mut control, &frame)?;
        Ok((SignerClient::new(control), child))
    }

    /// A client over an existing control socket (tests).
    pub fn new(control: UnixStream) -> SignerClient {
        SignerClient {
            control: Mutex::new(control),
            conns: (0..connections()).map(|_| Mutex::new(None)).collect(),
            next_conn: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            timeout: Duration::from_secs(10),
            patience: Duration::from_secs(30),
        }
    }

    /// A free connection if there is one, else the next in turn.
    fn pick(&self) -> std::sync::MutexGuard<'_, Option<UnixStream>> {
        let start = self.next_conn.fetch_add(1, Ordering::Relaxed) as usize;
        let n = self.conns.len();
        for i in 0..n {
            if let Ok(guard) = self.conns[(start + i) % n].try_lock() {
                return guard;
            }
        }
        self.conns[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection to a freshly forked signer.
    fn connect(&self) -> Result<UnixStream, SignerError> {
        let (ours, theirs) = UnixStream::pair()?;
        let control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let fds = [theirs.as_raw_fd()];
        sendmsg::<()>(
            control.as_raw_fd(),
            &[IoSlice::new(&[1])],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| SignerError::Unavailable(format!("the signer supervisor is gone: {e}")))?;
        ours.set_read_timeout(Some(self.timeout))?;
        ours.set_write_timeout(Some(self.timeout))?;
        Ok(ours)
    }

    fn exchange(
        &self,
        conn: &mut UnixStream,
        req: &Request,
        frame: &[u8],
    ) -> Result<Response, SignerError> {
        protocol::write_frame(conn, frame)?;
        let payload = protocol::read_frame(conn)?
            .ok_or_else(|| SignerError::Protocol("the signer closed the connection".into()))?;
        let resp: Response = protocol::decode(&payload)?;
        if resp.id != req.id {
            return Err(SignerError::Protocol(format!(
                "answer {} to request {}",
                resp.id, req.id
            )));
        }
        Ok(resp)
    }

    /// Sends `op`, restarting the signer as needed, within `patience`.
    fn call(&self, op: Op) -> Result<Reply, SignerError> {
        let req = Request {
            version: VERSION,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            op,
        };
        // A request that cannot be framed fails now, not after retries.
        let frame = protocol::encode(&req)?;
        let deadline = Instant::now() + self.patience;
        let mut conn = self.pick();
        let mut last = None;
        while Instant::now() < deadline {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => conn.insert(c),
                    Err(e @ SignerError::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        last = Some(e);
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                },
            };
            match self.exchange(c, &req, &frame) {
                Ok(resp) => return Ok(resp.reply),
                Err(e) => {
                    tracing::warn!("signer connection lost ({e}); starting another signer");
                    *conn = None;
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Err(SignerError::Unavailable(
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no answer".into()),
        ))
    }

    /// Whether a signer answers.
    pub fn health(&self) -> Result<(), SignerError> {
        match self.call(Op::Health)? {
            Reply::Healthy => Ok(()),
            other => Err(SignerError::Protocol(format!(
                "unexpected answer to health: {other:?}"
            ))),
        }
    }

    /// The signature of `data` with `key`.
    pub fn sign(
        &self,
        key: &KeyRef,
        algorithm: Algo,
        ttl: Duration,
        data: &[u8],
    ) -> Result<Vec<u8>, SignFailure> {
        let op = Op::Sign(SignRequest {
            key: key.clone(),
            algorithm,
            ttl_secs: ttl.as_secs().clamp(1, u32::MAX as u64) as u32,
            data: data.to_vec(),
        });
        match self.call(op)? {
            Reply::Signature(s) => Ok(s),
            Reply::Refused(why) => Err(SignFailure::Refused(why)),
            Reply::Failed { reason, .. } => Err(SignFailure::Failed(reason)),
            Reply::Healthy => Err(SignFailure::Failed("unexpected answer".into())),
        }
    }
}

/// Signer connections: one per core, two to eight.
fn connections() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// A key held by the signer, for `ironpost_dkim::SigningKey::remote`.
pub struct RemoteKey {
    pub client: std::sync::Arc<SignerClient>,
    pub key: KeyRef,
    pub ttl: Duration,
}

impl ironpost_dkim::RemoteSign for RemoteKey {
    fn sign(&self, algorithm: ironpost_dkim::Algorithm, data: &[u8]) -> Result<Vec<u8>, String> {
        self.client
            .sign(&self.key, algorithm.into(), self.ttl, data)
            .map_err(|e| format!("{}: {e}", self.key.describe()))
    }
}
