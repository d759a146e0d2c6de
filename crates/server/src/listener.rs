//! Binding listeners and accepting connections under `max_connections`.

use crate::conn::Conn;
use crate::session::{run_session, ListenerRuntime};
use crate::tls::{TlsOptions, TlsSource};
use crate::ServerError;
use ironpost_logs::Logger;
use ironpost_policy::{ClientCertMode, EsmtpListenerConfig, PolicyEngine};
use ironpost_wire::Reply;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Pending connections the kernel may queue (capped by
/// net.core.somaxconn). The std default of 128 overflows when hundreds of
/// clients connect at once, and every dropped SYN costs the client a 1 s+
/// retransmission.
const LISTEN_BACKLOG: i32 = 4096;

fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What every session needs besides its own listener's settings.
#[derive(Clone)]
pub struct Services {
    pub policy: PolicyEngine,
    pub logger: Logger,
    /// Where accepted messages go: policy event, spool, delivery queues.
    pub reception: crate::reception::Reception,
    /// Called for every accepted connection (metrics).
    pub on_connection: Option<Arc<dyn Fn() + Send + Sync>>,
    /// AUTH failure counters shared by every listener and connection.
    pub auth_throttle: Arc<crate::auth::AuthThrottle>,
    /// Message content held in memory while being received, across every
    /// listener and connection.
    pub inflight: Arc<crate::budget::InflightBudget>,
    /// Where DATA past a small threshold is kept while it arrives (none:
    /// in memory, under the budget).
    pub spill_dir: Option<Arc<std::path::PathBuf>>,
}

/// A listener whose socket is bound and whose TLS material is loaded, made
/// before any privilege drop, not yet serving.
pub struct PreparedListener {
    socket: std::net::TcpListener,
    runtime: Arc<ListenerRuntime>,
}

impl PreparedListener {
    pub fn prepare(cfg: EsmtpListenerConfig) -> Result<PreparedListener, ServerError> {
        let relay_hosts = cfg.validate().map_err(|reason| ServerError::Config {
            listen: cfg.listen.clone(),
            reason,
        })?;
        let hostname = cfg.hostname.clone().unwrap_or_else(crate::system_hostname);
        let client_auth = match &cfg.tls_required_client_ca {
            Some(ca) => Some(
                crate::tls::client_verifier(
                    ca,
                    cfg.tls_client_certificates
                        .unwrap_or(ClientCertMode::Required),
                )
                .map_err(|source| ServerError::Tls {
                    listen: cfg.listen.clone(),
                    source: Box::new(source),
                })?,
            ),
            None => None,
        };
        let tls = TlsSource::new(
            cfg.tls_certificate.clone(),
            cfg.tls_private_key.clone(),
            // The host name and the listening address (unless it is the
            // wildcard) as the self-signed certificate's names.
            TlsOptions::new({
                let mut names = vec![hostname.clone()];
                if let Ok(sa) = cfg.listen.parse::<SocketAddr>() {
                    if !sa.ip().is_unspecified() {
                        names.push(sa.ip().to_string());
                    }
                }
                names
            })
            .client_auth(client_auth)
            .label(format!("listener {}", cfg.listen)),
        )
        .map_err(|source| ServerError::Tls {
            listen: cfg.listen.clone(),
            source: Box::new(source),
        })?;
        let bind_err = |source| ServerError::Bind {
            addr: cfg.listen.clone(),
            source,
        };
        let addr: SocketAddr = cfg.listen.parse().map_err(|_| ServerError::Config {
            listen: cfg.listen.clone(),
            reason: "listen: not an ip:port address".into(),
        })?;
        let socket = bind_listener(addr).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        let local = socket.local_addr().map_err(bind_err)?;
        Ok(PreparedListener {
            socket,
            runtime: Arc::new(ListenerRuntime {
                name: local.to_string(),
                relay_hosts,
                hostname,
                tls: Arc::new(tls),
                cfg,
            }),
        })
    }

    /// Register the socket with the running tokio runtime.
    pub fn start(self, services: Services) -> Result<BoundListener, ServerError> {
        let name = self.runtime.name.clone();
        let listener = TcpListener::from_std(self.socket)
            .map_err(|source| ServerError::Bind { addr: name, source })?;
        Ok(BoundListener {
            listener,
            slots: Arc::new(Semaphore::new(self.runtime.cfg.max_connections)),
            per_ip: Arc::default(),
            spare: std::fs::File::open("/dev/null").ok(),
            runtime: self.runtime,
            services,
        })
    }
}

pub struct BoundListener {
    listener: TcpListener,
    runtime: Arc<ListenerRuntime>,
    services: Services,
    slots: Arc<Semaphore>,
    per_ip: Arc<crate::per_ip::PerIp>,
    /// A descriptor held in reserve: when accept fails for want of
    /// descriptors, it is let go so the waiting client can be accepted and
    /// told `421 4.3.2` instead of hanging without a greeting.
    spare: Option<std::fs::File>,
}

impl BoundListener {
    /// Answer a connection that gets no session, log why, and close it.
    fn refuse(&self, stream: tokio::net::TcpStream, peer: SocketAddr, reply: Reply) {
        self.services.logger.log(ironpost_logs::Record::Rejection(
            ironpost_logs::MessageRecord {
                inbound: ironpost_logs::Inbound {
                    peer_address: ironpost_logs::PeerAddress {
                        name: None,
                        addr: Some(peer.ip().to_string()),
                    },
                    received_from: Some(peer.to_string()),
                    listener: Some(self.runtime.name.clone()),
                    ..Default::default()
                },
                response: Some(crate::reception::response(&reply)),
                reason: crate::reception::refusal_reason(&reply),
                ..Default::default()
            },
        ));
        tokio::spawn(async move {
            let mut conn = Conn::Plain(stream);
            let _ = conn
                .write_all(&reply.to_bytes(), Duration::from_secs(5))
                .await;
            conn.shutdown().await;
        });
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound socket has an address")
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (hostname {}, STARTTLS with {})",
            self.local_addr(),
            self.runtime.hostname,
            self.runtime.tls.describe()
        )
    }

    pub async fn serve(mut self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok((stream, peer)) if crate::stop::closing() => {
                    let reply = Reply::new(421, "4.3.2", "Shutting down, try again later");
                    self.refuse(stream, peer, reply);
                    continue;
                }
                Ok(x) => x,
                Err(e) => {
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if out_of_fds && self.spare.take().is_some() {
                        // Free one descriptor, answer the client with it,
                        // and take it back.
                        if let Ok((stream, peer)) = self.listener.accept().await {
                            let reply =
                                Reply::new(421, "4.3.2", "Too many connections, try again later");
                            self.refuse(stream, peer, reply);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        self.spare = std::fs::File::open("/dev/null").ok();
                        continue;
                    }
                    tracing::warn!("accept on {}: {e}", self.runtime.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.spare = self
                        .spare
                        .take()
                        .or_else(|| std::fs::File::open("/dev/null").ok());
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if let Some(hook) = &self.services.on_connection {
                hook();
            }
            let counted = !self.runtime.relay_hosts.contains(peer.ip());
            let ip_slot = if counted {
                match crate::per_ip::PerIp::take(
                    &self.per_ip,
                    peer.ip(),
                    self.runtime.cfg.max_connections_per_ip,
                ) {
                    Some(slot) => Some(slot),
                    None => {
                        let reply = Reply::new(
                            421,
                            "4.7.0",
                            "Too many connections from your address, try again later",
                        );
                        self.refuse(stream, peer, reply);
                        continue;
                    }
                }
            } else {
                None
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let runtime = self.runtime.clone();
                    let services = self.services.clone();
                    tokio::spawn(async move {
                        run_session(Conn::Plain(stream), peer, runtime, services).await;
                        drop(permit);
                        drop(ip_slot);
                    });
                }
                Err(_) => {
                    let reply = Reply::new(421, "4.3.2", "Too many connections, try again later");
                    self.refuse(stream, peer, reply);
                }
            }
        }
    }
}
