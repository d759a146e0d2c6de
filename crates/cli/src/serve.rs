//! `ironpost serve`: the start-up sequence.
//!
//! Order matters for security: the policy is loaded with the user's file
//! access (effective ids only), listeners are bound (and TLS keys read) as
//! root; then privileges are dropped;
//! only then are the spool and logs opened and connections accepted, so every
//! file the daemon creates belongs to the unprivileged user.

use crate::paths;
use crate::privileges;
use crate::ServeArgs;
use anyhow::{bail, Context, Result};
use ironpost_admin::Metrics;
use ironpost_delivery::{DeliveryOptions, QueueManager};
use ironpost_dns::{Dns, DnsConfig};
use ironpost_logs::{LogConfig, Logger};
use ironpost_policy::{EngineOptions, InitConfig, PolicyEngine, PolicySource, DEFAULT_POLICY};
use ironpost_server::{PreparedListener, Reception, Services};
use ironpost_spool::{Spool, SpoolConfig};
use std::io::Write;
use std::sync::Arc;

/// How long a stop waits for messages being received.
const RECEPTION_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the package installs the policy: `serve` and `check` use it when
/// no `--policy` is given and it exists.
pub const INSTALLED_POLICY: &str = "/etc/ironpost/policy.lua";

/// The installed policy, when there is one.
pub fn installed_policy() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(INSTALLED_POLICY);
    p.exists().then_some(p)
}

pub fn run(args: ServeArgs, json_logs: bool) -> Result<()> {
    if args.print_default_policy {
        print!("{DEFAULT_POLICY}");
        return Ok(());
    }
    return_large_buffers_on_free();
    let max_inflight = args
        .max_inflight_memory
        .unwrap_or_else(ironpost_server::budget::InflightBudget::default_limit);

    let user = args.user.as_deref().map(privileges::lookup).transpose()?;
    let policy = args.policy.clone().or_else(installed_policy);
    // The signer starts first, while this process has one thread (the
    // Vault token is taken out of its environment) and its privileges.
    let sandboxed = !args.in_process_signing;
    let _signer = if args.in_process_signing {
        tracing::warn!(
            "--in-process-signing: DKIM keys and the Vault token are in the network process"
        );
        None
    } else {
        let token = crate::signing::take_vault_token();
        let dirs = crate::signing::key_dirs(&args.signer_key_dir, policy.as_deref());
        let signer_user = args.signer_user.as_deref().or(args.user.as_deref());
        // Key files are confined when the signer has a user of its own
        // (the default directories), or when the operator names them.
        let own_user = args.signer_user.is_some() && args.signer_user != args.user;
        let confine = own_user || !args.signer_key_dir.is_empty();
        let (client, child) = crate::signing::start(&dirs, signer_user, confine, json_logs, token)?;
        ironpost_policy::dkim::set_key_backend(Arc::new(crate::signing::SignerBackend(client)));
        Some(child)
    };
    let source = match &policy {
        Some(p) => {
            // The daemon's own user: --user's, or the one it runs as (under
            // systemd's User=).
            let run_as = user.as_ref().map(|u| u.uid.as_raw()).or_else(|| {
                let me = nix::unistd::geteuid();
                (!me.is_root()).then(|| me.as_raw())
            });
            paths::check_policy_dir(p, run_as)?;
            PolicySource::File(p.clone())
        }
        None => PolicySource::Builtin,
    };
    let opts = EngineOptions {
        unrestricted_stdlib: args.lua_unrestricted,
        sqlite_dirs: args.sqlite_dir.clone(),
        ..EngineOptions::default()
    };
    if args.lua_unrestricted {
        tracing::warn!(
            "the policy runs with the unrestricted Lua standard library (--lua-unrestricted)"
        );
    }
    // `init` (and everything the policy does at load) runs with the user's
    // file access: a policy reads nothing as root, and what it reads now it
    // can read again after the drop.
    let as_user = user.as_ref().map(privileges::impersonate).transpose()?;
    let (engine, init) = PolicyEngine::start(source, opts)?;
    if let Some(i) = as_user {
        i.end()?;
    }
    warn_inline_secrets(&init);
    // A private key other users could read (or anyone but its owner
    // replace) is refused before anything is served with it.
    for (helper, path) in engine.key_files() {
        paths::check_key_path(path).with_context(|| helper.clone())?;
    }
    for l in &init.listeners {
        if let Some(ironpost_keysource::KeySource::File(p)) = &l.tls_private_key {
            paths::check_key_file(p)
                .with_context(|| format!("listener {}: tls_private_key", l.listen))?;
        }
    }

    if init.listeners.is_empty() {
        bail!("the policy starts no listener: call kumo.start_esmtp_listener{{...}} in the 'init' event");
    }
    let spool_def = init
        .spools
        .iter()
        .find(|s| s.name == "data")
        .context("the policy defines no spool: call kumo.define_spool{ name = 'data', path = ... } in the 'init' event")?;
    if let Some(meta) = init.spools.iter().find(|s| s.name == "meta") {
        if meta.path != spool_def.path {
            tracing::warn!(
                "spool 'meta' at {} is not used: Ironpost commits metadata together with content in the 'data' spool",
                meta.path.display()
            );
        }
    }
    for def in &init.spools {
        if let Some(notice) = def.kind_notice() {
            tracing::info!("{notice}");
        }
    }
    if !spool_def.flush {
        tracing::warn!("spool 'data' has flush = false: accepted messages can be lost in a crash");
    }

    let mut listener_cfgs = init.listeners.clone();
    fit_connections_to_descriptors(&mut listener_cfgs);
    let listeners = listener_cfgs
        .into_iter()
        .map(PreparedListener::prepare)
        .collect::<Result<Vec<_>, _>>()?;
    let http_listeners = init
        .http_listeners
        .iter()
        .map(|v| {
            let cfg: ironpost_admin::HttpListenerConfig = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("kumo.start_http_listener: {e}"))?;
            ironpost_admin::bind(cfg).map_err(|e| anyhow::anyhow!("kumo.start_http_listener: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Certificates for hosted MTA-STS names are read now, while privileged.
    let hosting = crate::hosting::mta_sts_hosting(engine.posture_config().as_deref(), &init)?;
    let http_listeners: Vec<_> = http_listeners
        .into_iter()
        .map(|l| l.with_mta_sts(hosting.clone()))
        .collect();

    let mut created = Vec::new();
    created.extend(paths::ensure_private_dir(&spool_def.path, "spool")?);
    // MTA-STS policies are cached inside the spool directory (segment
    // scans ignore it) so they survive restarts: RFC 8461 §5.1, a cached
    // policy protects against a blocked fetch.
    let sts_dir = spool_def.path.join("mta-sts");
    created.extend(paths::ensure_private_dir(&sts_dir, "MTA-STS cache")?);
    // DATA past a small threshold waits here, in unnamed files, while it
    // arrives: the spool's filesystem, private to the daemon.
    let spill_dir = spool_def.path.join("spill");
    created.extend(paths::ensure_private_dir(&spill_dir, "DATA spill")?);
    // One per configure_local_logs call; every record goes to each.
    let log_cfg = init.logs.clone();
    for logs in &log_cfg {
        created.extend(paths::ensure_private_dir(&logs.log_dir, "log")?);
    }
    if let Some(user) = &user {
        paths::hand_over(&created, user)?;
        paths::check_owner(&spool_def.path, "spool", user)?;
        paths::check_owner(&sts_dir, "MTA-STS cache", user)?;
        paths::check_owner(&spill_dir, "DATA spill", user)?;
        for logs in &log_cfg {
            paths::check_owner(&logs.log_dir, "log", user)?;
        }
        privileges::drop_to(user)?;
        tracing::info!(
            "dropped privileges to {} (uid {}, gid {})",
            user.name,
            user.uid,
            user.gid
        );
    }

    let mut spool_cfg = SpoolConfig::new(&spool_def.path);
    spool_cfg.flush = spool_def.flush;
    let (spool, recovery) = Spool::open(spool_cfg)?;
    let logger = Logger::start_all(
        log_cfg
            .iter()
            .map(|l| LogConfig {
                dir: l.log_dir.clone(),
                max_segment_duration: l.max_segment_duration,
                max_file_size: l.max_file_size,
                per_record: l
                    .per_record
                    .iter()
                    .map(|(kind, p)| {
                        let route = ironpost_logs::RecordRoute {
                            enable: p.enable,
                            suffix: p.suffix.clone(),
                            log_dir: p.log_dir.clone(),
                            segment_header: p.segment_header.clone(),
                        };
                        (kind.clone(), route)
                    })
                    .collect(),
                meta: l.meta.clone(),
                headers: l.headers.clone(),
            })
            .collect(),
    )?;
    let metrics = Arc::new(Metrics::new());
    crate::log_hooks::check(&init.log_hooks, &engine)?;
    // Records go to the metrics and, when hooks are configured, to them.
    let (hook_tx, hook_rx) = tokio::sync::mpsc::channel(crate::log_hooks::BACKLOG);
    let wanted = crate::log_hooks::Wanted::new(&init.log_hooks);
    let count = crate::admin_backend::observer(metrics.clone());
    let hooked = !init.log_hooks.is_empty();
    // Delivery records get a bounce_classification: from the policy's
    // rules files, or the built-in rules.
    let classifier = match &init.bounce_classifier_files {
        Some(files) => ironpost_logs::classify::BounceClassifier::from_files(files)
            .context("kumo.configure_bounce_classifier")?,
        None => ironpost_logs::classify::BounceClassifier::builtin(),
    };
    let logger = logger.with_classifier(Arc::new(classifier));
    let logger = logger.with_observer(Arc::new(move |rec: &ironpost_logs::Record| {
        count(rec);
        if hooked && wanted.any(rec.kind()) {
            crate::log_hooks::offer_record(&hook_tx, rec);
        }
    }));
    // Delivery records carry what every local log and every hook want;
    // each keeps its own selection.
    let union = |pick: fn(&ironpost_policy::LogHookConfig) -> &Vec<String>, local: Vec<&String>| {
        let mut all: Vec<String> = local.into_iter().cloned().collect();
        for h in &init.log_hooks {
            all.extend(pick(h).iter().cloned());
        }
        all.sort();
        all.dedup();
        all
    };
    let log_meta = union(|h| &h.meta, log_cfg.iter().flat_map(|l| &l.meta).collect());
    let log_headers = union(
        |h| &h.headers,
        log_cfg.iter().flat_map(|l| &l.headers).collect(),
    );
    let log_hook_queues = crate::log_hooks::helper_queues(&init.log_hooks);
    // Operator suspensions live beside the spool and outlast restarts.
    let suspensions =
        ironpost_delivery::suspensions::Suspensions::load(spool_def.path.join("suspensions.json"))
            .map_err(|e| anyhow::anyhow!("operator suspensions: {e}"))?;
    let dns_cfg = dns_config(init.resolver.as_ref())?;
    let sts = Arc::new(mta_sts_resolver(sts_dir)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ironpost")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let dns = Dns::new(&dns_cfg)?;
        // The policy's inbound checks (kumo.spf, msg:dkim_verify, ...)
        // resolve through the same resolver as delivery.
        engine.set_authenticator(ironpost_authn::Authenticator::new(
            &dns,
            ironpost_authn::Limits::default(),
        ));
        let hostname = init
            .listeners
            .first()
            .and_then(|l| l.hostname.clone())
            .unwrap_or_else(ironpost_server::system_hostname);
        let shared = match &init.redis_throttles {
            Some(r) => Some(crate::cluster::connect(r).await?),
            None => None,
        };
        if let Some(r) = &shared {
            engine.share_throttles(r.clone());
        }
        // RFC 8460 session counts: kept always, sent when the policy says.
        let tls_report_cfg = engine
            .posture_config()
            .and_then(|p| p.tls_reports.clone())
            .filter(|t| t.enable);
        let tls_report_db = crate::tls_reports::db_path(spool.path());
        let tls_reporter = crate::tls_reports::reporter(&tls_report_db, tls_report_cfg.as_ref())?;
        let report_dns = Dns::new(&dns_cfg)?;
        let queue = QueueManager::new(
            spool.clone(),
            engine.clone(),
            logger.clone(),
            DeliveryOptions {
                tls_reports: Some(tls_reporter.clone()),
                hostname: hostname.clone(),
                dns,
                mta_sts: Some(sts),
                log_meta,
                log_headers: log_headers.clone(),
                log_hook_queues,
                suspensions,
                shared: shared.clone(),
            },
        );
        queue.start();
        if hooked {
            let pump = crate::log_hooks::Pump {
                hooks: init.log_hooks.clone(),
                policy: engine.clone(),
                spool: spool.clone(),
                queue: queue.clone(),
            };
            tokio::spawn(pump.run(hook_rx));
        }
        let recovered = recovery.messages.len();
        let truncated_bytes = recovery.truncated_bytes;
        // Consumed, not borrowed: the raw metadata of a large recovered
        // queue is hundreds of MB that the queue has its own copy of.
        for m in recovery.messages {
            match ironpost_spool::SpoolMeta::decode(&m.meta) {
                Ok(meta) => queue.enqueue(m.id, m.location, meta),
                // Left in the spool, untouched, for a build that can read it.
                Err(e) => tracing::error!(id = %m.id, "cannot queue recovered message: {e}"),
            }
        }
        release_freed_memory();
        let reception = Reception {
            spool: spool.clone(),
            policy: engine.clone(),
            logger: logger.clone(),
            // Reception records carry the headers any log or hook names;
            // each keeps its own.
            log_headers: Arc::new(log_headers),
            queue: queue.clone(),
        };
        if let Some(cfg) = tls_report_cfg {
            tokio::spawn(crate::tls_reports::run(crate::tls_reports::Sender {
                cfg,
                db: tls_report_db.clone(),
                dns: report_dns,
                reception: reception.clone(),
                hostname: hostname.clone(),
            }));
        }
        let backend = Arc::new(crate::admin_backend::Backend {
            reception: reception.clone(),
            queue: queue.clone(),
            logger: logger.clone(),
            metrics: metrics.clone(),
            hostname,
        });
        let basic_engine = engine.clone();
        let basic_hook: ironpost_admin::BasicAuthHook = Arc::new(move |user, password| {
            let e = basic_engine.clone();
            Box::pin(async move {
                e.validate_http_basic(user, password)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let connection_metrics = metrics.clone();
        let inflight = ironpost_server::budget::InflightBudget::new(max_inflight);
        tokio::spawn(release_memory_after_peaks(inflight.clone()));
        let reloadable = (engine.clone(), queue.clone());
        let services = Services {
            policy: engine,
            on_connection: Some(Arc::new(move || {
                Metrics::inc(&connection_metrics.connections)
            })),
            logger: logger.clone(),
            reception,
            auth_throttle: {
                let t = Arc::new(ironpost_server::auth::AuthThrottle::default());
                if let Some(r) = &shared {
                    t.share(r.clone());
                }
                t
            },
            inflight: inflight.clone(),
            spill_dir: Some(Arc::new(spill_dir.clone())),
        };
        let mut out = std::io::stdout().lock();
        for prepared in listeners {
            let bound = prepared.start(services.clone())?;
            writeln!(out, "smtp listener: {}", bound.describe())?;
            tokio::spawn(bound.serve());
        }
        for http in http_listeners {
            writeln!(out, "http listener: {}", http.describe())?;
            let (b, h) = (backend.clone(), basic_hook.clone());
            tokio::spawn(async move {
                if let Err(e) = http.serve(b, h).await {
                    tracing::error!("http listener stopped: {e}");
                }
            });
        }
        writeln!(
            out,
            "spool: {} (recovered {} messages)",
            spool.path().display(),
            recovered
        )?;
        // The first log keeps the `logs: DIR` line tools read; the others
        // follow as `logs N: DIR`.
        for (i, l) in log_cfg.iter().enumerate() {
            match i {
                0 => writeln!(out, "logs: {}", l.log_dir.display())?,
                _ => writeln!(out, "logs {}: {}", i + 1, l.log_dir.display())?,
            }
        }
        let shutdown = shutdown_signal()?;
        reload_on_hangup(reloadable.0, reloadable.1)?;
        // Start-up is over: from here this process runs no other program,
        // traces nothing and changes no identity.
        if sandboxed {
            ironpost_signer::sandbox::apply_network_filter()
                .context("cannot apply the network process's seccomp filter")?;
        }
        exec_probe();
        writeln!(out, "ready")?;
        out.flush()?;
        drop(out);
        // systemd (Type=notify): listeners bound, spool recovered.
        notify_systemd("READY=1");
        tracing::info!(
            recovered,
            truncated_bytes,
            "spool recovered {recovered} messages"
        );
        shutdown.await;
        notify_systemd("STOPPING=1");
        tracing::info!("shutting down");
        // Messages being received get their answer (and their 250 is
        // durable) before anything else stops.
        ironpost_server::stop::close();
        let left = ironpost_server::stop::wait_idle(RECEPTION_GRACE).await;
        if left > 0 {
            tracing::warn!("shutdown: {left} messages still being received are cut off");
        }
        queue.drain().await;
        let reporter = tls_reporter.clone();
        let _ = tokio::task::spawn_blocking(move || reporter.flush()).await;
        logger.flush();
        spool.shutdown();
        Ok::<(), anyhow::Error>(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

/// Descriptors kept for the spool, logs, DNS, policy and delivery sockets.
const FD_RESERVE: u64 = 1024;

/// Raise the open-file limit to its hard limit, then lower the listeners'
/// `max_connections` (in proportion) if their sum still would not fit, so
/// a client is told `421 4.3.2` rather than left without a greeting.
fn fit_connections_to_descriptors(listeners: &mut [ironpost_policy::EsmtpListenerConfig]) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let available = soft.saturating_sub(FD_RESERVE).max(64);
    let total: u64 = listeners.iter().map(|l| l.max_connections as u64).sum();
    if total <= available {
        return;
    }
    for l in listeners.iter_mut() {
        let fitted = ((l.max_connections as u64 * available) / total).max(1) as usize;
        tracing::warn!(
            "listener {}: max_connections lowered from {} to {fitted} to fit the open-file limit ({soft})",
            l.listen,
            l.max_connections
        );
        l.max_connections = fitted;
    }
}

/// Message buffers (DATA, spool reads) are large and short-lived. glibc
/// raises its mmap threshold each time such a buffer is freed, after which
/// they come from the heap and, freed, stay in the process: a flood of
/// large messages left RSS a gigabyte above idle. A fixed threshold keeps
/// every large buffer in its own mapping, returned to the system on free.
fn return_large_buffers_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator parameters; called at start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    }
}

/// After a peak of mail in flight has passed, gives the freed memory back
/// to the system: the many small per-connection buffers of a flood stay in
/// glibc's arenas otherwise.
async fn release_memory_after_peaks(budget: Arc<ironpost_server::budget::InflightBudget>) {
    const PEAK: usize = 16 << 20;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        let high = budget.take_high_water();
        if high >= PEAK && budget.used() < high / 4 {
            tokio::task::spawn_blocking(release_freed_memory);
        }
    }
}

/// Give memory freed after recovery (or a burst) back to the system now,
/// rather than when jemalloc's decay gets to it: a large recovered queue
/// would otherwise leave the daemon's RSS far above what it uses.
fn release_freed_memory() {
    // SAFETY: "arena.4096.purge" (MALLCTL_ARENAS_ALL) reads and writes
    // nothing through the pointers, which are null as mallctl allows.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
    // C libraries (SQLite) still allocate through glibc.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; 0 keeps no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Installs the SIGTERM and SIGINT handlers now (before `ready` is
/// printed, so a signal right after it is never the default, abrupt exit)
/// and returns what waits for either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// SIGHUP (systemd's `ExecReload`): every listener re-reads its certificate
/// and key at its next handshake, without dropping a connection, and the
/// policy file is loaded again for every event from then on (a policy that
/// no longer loads leaves the running one in place, logged). `init` is not
/// run again: listeners, spool and logs need a restart.
fn reload_on_hangup(engine: PolicyEngine, queue: QueueManager) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            ironpost_listen::tls::reload_now();
            let e = engine.clone();
            match tokio::task::spawn_blocking(move || e.reload()).await {
                Ok(Ok(())) => {
                    queue.policy_reloaded();
                    tracing::info!(
                        "SIGHUP: policy reloaded; certificates will be re-read at the next handshake"
                    )
                }
                Ok(Err(e)) => {
                    tracing::error!("SIGHUP: the policy did not load, the running one stays: {e}")
                }
                Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
            }
        }
    });
    Ok(())
}

/// Tell systemd about the daemon's state (`NOTIFY_SOCKET`, set under
/// `Type=notify`); nothing without it.
/// Test builds only: with `IRONPOST_TEST_EXEC_PROBE` set, try to run a
/// program once the sandbox is on and report what happened on stderr, so
/// a test can see `execve` refused. Not compiled into release builds.
#[cfg(debug_assertions)]
fn exec_probe() {
    if let Some(program) = std::env::var_os("IRONPOST_TEST_EXEC_PROBE") {
        match std::process::Command::new(program).status() {
            Ok(s) => eprintln!("exec probe: ran, {s}"),
            Err(e) => eprintln!("exec probe: refused: {e}"),
        }
    }
}

#[cfg(not(debug_assertions))]
fn exec_probe() {}

fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return tracing::warn!("sd_notify: {e}"),
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        // An abstract socket.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify {state}: {e}");
    }
}

pub(crate) fn dns_config(
    settings: Option<&ironpost_policy::ResolverSettings>,
) -> Result<DnsConfig> {
    use ironpost_policy::delivery_config::{
        NameServerProtocol, ServerOrderingStrategy, UseHostsFile,
    };
    let Some(s) = settings else {
        return Ok(DnsConfig::default());
    };
    let name_servers = s
        .name_servers
        .iter()
        .map(|n| ironpost_dns::NameServer {
            addr: n.socket_addr,
            transport: match n.protocol {
                NameServerProtocol::Udp => ironpost_dns::Transport::Udp,
                NameServerProtocol::Tcp => ironpost_dns::Transport::Tcp,
                NameServerProtocol::UdpThenTcp => ironpost_dns::Transport::UdpThenTcp,
            },
            trust_negative_responses: n.trust_negative_responses,
            bind_addr: n.bind_addr,
        })
        .collect();
    let o = &s.options;
    // The policy has already turned a trust_anchor_file into validate = true.
    let validate = o.validate == Some(true);
    if validate {
        tracing::info!(
            "DNSSEC validation on (trust anchors: {})",
            o.trust_anchor_file
                .as_deref()
                .unwrap_or("the built-in root keys")
        );
    }
    Ok(DnsConfig {
        name_servers,
        domain: s.domain.clone(),
        search: s.search.clone(),
        timeout: o.timeout,
        attempts: o.attempts,
        validate,
        trust_anchor_file: o.trust_anchor_file.as_ref().map(std::path::PathBuf::from),
        tuning: ironpost_dns::ResolverTuning {
            ndots: o.ndots,
            edns0: o.edns0,
            cache_size: o.cache_size,
            use_hosts_file: o.use_hosts_file.map(|h| match h {
                UseHostsFile::Always => ironpost_dns::HostsFile::Always,
                UseHostsFile::Auto => ironpost_dns::HostsFile::Auto,
                UseHostsFile::Never => ironpost_dns::HostsFile::Never,
            }),
            positive_min_ttl: o.positive_min_ttl,
            negative_min_ttl: o.negative_min_ttl,
            positive_max_ttl: o.positive_max_ttl,
            negative_max_ttl: o.negative_max_ttl,
            num_concurrent_reqs: o.num_concurrent_reqs,
            server_ordering: o.server_ordering_strategy.map(|v| match v {
                ServerOrderingStrategy::QueryStatistics => {
                    ironpost_dns::ServerOrdering::QueryStatistics
                }
                ServerOrderingStrategy::RoundRobin => ironpost_dns::ServerOrdering::RoundRobin,
                ServerOrderingStrategy::UserProvidedOrder => {
                    ironpost_dns::ServerOrdering::UserProvidedOrder
                }
            }),
            recursion_desired: o.recursion_desired,
            case_randomization: o.case_randomization,
        },
    })
}

/// The MTA-STS resolver. Two environment variables exist for the test
/// suites only, and are loud about it: `IRONPOST_TEST_MTA_STS_PORT` (the
/// policy host's HTTPS port instead of 443) and `IRONPOST_TEST_MTA_STS_CA`
/// (a PEM file of extra CAs trusted for policy fetches).
fn mta_sts_resolver(cache_dir: std::path::PathBuf) -> Result<ironpost_delivery::StsResolver> {
    let mut cfg = ironpost_delivery::StsConfig::new(cache_dir);
    if let Ok(port) = std::env::var("IRONPOST_TEST_MTA_STS_PORT") {
        cfg.https_port = port
            .parse()
            .with_context(|| format!("IRONPOST_TEST_MTA_STS_PORT: {port:?} is not a port"))?;
        tracing::warn!("TEST MODE: MTA-STS policies are fetched from port {port}, not 443");
    }
    if let Ok(path) = std::env::var("IRONPOST_TEST_MTA_STS_CA") {
        cfg.extra_ca_pem = Some(
            std::fs::read(&path)
                .with_context(|| format!("IRONPOST_TEST_MTA_STS_CA: cannot read {path}"))?,
        );
        tracing::warn!("TEST MODE: MTA-STS policy hosts may present certificates from {path}");
    }
    ironpost_delivery::StsResolver::new(cfg).map_err(|e| anyhow::anyhow!("MTA-STS: {e}"))
}

fn warn_inline_secrets(init: &InitConfig) {
    for place in &init.inline_secrets {
        tracing::warn!("{place} is given inline as key_data; keep secrets in a file or in Vault");
    }
}
