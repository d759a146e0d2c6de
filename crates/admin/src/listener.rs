//! Binding (before the privilege drop) and serving (after it).

use crate::api::{router, AdminBackend, AppState, ConnInfo};
use crate::auth::{AuthThrottle, BasicAuthHook};
use crate::config::HttpListenerConfig;
use crate::mta_sts::MtaStsHosting;
use crate::tls::TlsSource;
use hyper_util::rt::{TokioIo, TokioTimer};
use ironpost_policy::CidrSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connections served at once by one listener; beyond it new ones are
/// closed at once.
pub const MAX_CONNECTIONS: usize = 256;
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection is closed (gracefully, after its current request) once
/// it is this old, so idle keep-alive clients cannot hold every slot.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("http listener {listen}: {reason}")]
    Config { listen: String, reason: String },
    #[error("http listener {listen}: cannot bind: {source}")]
    Bind {
        listen: String,
        source: std::io::Error,
    },
}

/// A listener bound and with its TLS keys loaded, not yet serving.
pub struct BoundHttpListener {
    socket: std::net::TcpListener,
    local: SocketAddr,
    trusted: CidrSet,
    tls: Option<Arc<TlsSource>>,
    body_limit: usize,
    throttle: Arc<AuthThrottle>,
    hostname: Option<String>,
    mta_sts: MtaStsHosting,
}

/// Bind with a deep accept backlog: std's 128 overflows when many clients
/// (injectors, scrapers) connect at once, as the SMTP listeners found.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Validate `cfg`, load TLS material (while still privileged) and bind.
/// Needs no async runtime.
pub fn bind(cfg: HttpListenerConfig) -> Result<BoundHttpListener, AdminError> {
    let config_err = |reason: String| AdminError::Config {
        listen: cfg.listen.clone(),
        reason,
    };
    let v = cfg.validate().map_err(config_err)?;
    let tls = if cfg.use_tls {
        let mut names = vec!["localhost".to_string()];
        names.extend(cfg.hostname.clone());
        if !v.listen.ip().is_unspecified() {
            names.push(v.listen.ip().to_string());
        }
        Some(Arc::new(
            crate::tls::source(
                cfg.tls_certificate.clone(),
                cfg.tls_private_key.clone(),
                names,
                &cfg.listen,
            )
            .map_err(config_err)?,
        ))
    } else {
        None
    };
    if !cfg.use_tls && !crate::auth::is_loopback(v.listen.ip()) {
        tracing::warn!(
            "http listener {}: plain HTTP on a non-loopback address; Basic credentials from non-loopback clients will be refused (set use_tls = true)",
            cfg.listen
        );
    }
    let bind_err = |source| AdminError::Bind {
        listen: cfg.listen.clone(),
        source,
    };
    let socket = listen(v.listen).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    let local = socket.local_addr().map_err(bind_err)?;
    Ok(BoundHttpListener {
        socket,
        local,
        trusted: v.trusted_hosts,
        tls,
        body_limit: cfg.request_body_limit,
        throttle: Arc::default(),
        hostname: cfg.hostname.clone(),
        mta_sts: MtaStsHosting::default(),
    })
}

/// [`bind`] then [`BoundHttpListener::serve`].
pub async fn serve(
    cfg: HttpListenerConfig,
    backend: Arc<dyn AdminBackend>,
    validate_basic: BasicAuthHook,
) -> Result<(), AdminError> {
    bind(cfg)?.serve(backend, validate_basic).await
}

impl BoundHttpListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// For the start-up line `http listener: ...`.
    pub fn describe(&self) -> String {
        match &self.tls {
            Some(t) => format!("{} (https, {})", self.local, t.describe()),
            None => format!("{} (plain http)", self.local),
        }
    }

    /// Share failure counting with other listeners, or with SMTP AUTH,
    /// whose `ip:` and `user:` keys are the same. Each listener has its own
    /// otherwise.
    pub fn with_throttle(mut self, throttle: Arc<AuthThrottle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Serve these MTA-STS policies (over TLS only) beside the admin API.
    pub fn with_mta_sts(mut self, hosting: MtaStsHosting) -> Self {
        if self.tls.is_none() && !hosting.is_empty() {
            tracing::warn!(
                "http listener {}: plain HTTP, so it serves no MTA-STS policy (RFC 8461 fetches over HTTPS; set use_tls = true)",
                self.local
            );
        }
        self.mta_sts = hosting;
        self
    }

    /// Accept and serve until the task is dropped. Must run inside a
    /// tokio runtime; the future is `Send + 'static`, ready for
    /// `tokio::spawn`.
    pub async fn serve(
        self,
        backend: Arc<dyn AdminBackend>,
        validate_basic: BasicAuthHook,
    ) -> Result<(), AdminError> {
        let name = self.local.to_string();
        let listener =
            tokio::net::TcpListener::from_std(self.socket).map_err(|source| AdminError::Bind {
                listen: name.clone(),
                source,
            })?;
        let mut state = AppState::new(backend, validate_basic, self.trusted, self.throttle);
        state.local = self.local;
        state.hostname = self.hostname.clone();
        let app = router(state, self.body_limit);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("http listener {name}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!("http listener {name}: {MAX_CONNECTIONS} connections open; closing one from {peer}");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let tls = self.tls.clone();
            let hosting = self.mta_sts.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(tls) = tls else {
                    let info = ConnInfo { peer, tls: false };
                    return serve_connection(stream, info, app, hosting).await;
                };
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake(stream, &tls, &hosting))
                    .await
                {
                    Ok(Ok(s)) => {
                        serve_connection(s, ConnInfo { peer, tls: true }, app, hosting).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("http listener: TLS handshake with {peer}: {e}")
                    }
                    Err(_) => {
                        tracing::debug!("http listener: TLS handshake with {peer} timed out")
                    }
                }
            });
        }
    }
}

/// The TLS handshake, presenting the certificate of a hosted MTA-STS name
/// when the client asks for one (SNI), the listener's otherwise.
async fn handshake(
    stream: tokio::net::TcpStream,
    tls: &Arc<TlsSource>,
    hosting: &MtaStsHosting,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    if hosting.is_empty() {
        return tokio_rustls::TlsAcceptor::from(tls.config().await)
            .accept(stream)
            .await;
    }
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let source = hosting
        .tls_for(start.client_hello().server_name())
        .unwrap_or_else(|| tls.clone());
    start.into_stream(source.config().await).await
}

async fn serve_connection<S>(stream: S, info: ConnInfo, app: axum::Router, hosting: MtaStsHosting)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let hosted = hosting.answer(&req, info.tls);
            req.extensions_mut().insert(info);
            let app = app.clone();
            async move {
                match hosted {
                    Some(response) => Ok(response),
                    None => app.oneshot(req).await,
                }
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(age);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = &mut age => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("http listener: connection from {}: {e}", info.peer);
    }
}
