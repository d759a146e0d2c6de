//! Connections to a site and message transactions over them, with the
//! egress path's TLS policy and outbound AUTH rules.
//!
//! TLS modes (`enable_tls`):
//! - `Opportunistic`: STARTTLS when offered, and the certificate must
//!   validate; a validation failure fails this host (the next MX is tried),
//!   it never falls back to cleartext on the same host.
//! - `OpportunisticInsecure`: STARTTLS when offered without validation
//!   (whether it would have validated is recorded); if the handshake fails
//!   the same host is retried in cleartext.
//! - `Required` / `RequiredInsecure`: no STARTTLS means this host fails.
//! - `Disabled`: never STARTTLS.
//!
//! AUTH credentials are only sent over TLS whose certificate validated,
//! unless `allow_smtp_auth_plain_without_tls` says otherwise.
//!
//! A host's MTA-STS or DANE policy ([`crate::tls_policy`]) can only raise
//! the mode: `enforce` makes it `Required`; usable TLSA records make TLS
//! mandatory and authenticated by them alone; unusable TLSA records make
//! TLS mandatory without authentication. No policy path ever retries in
//! cleartext.

use crate::bounce::FailedRecipient;
use crate::egress::EgressPath;
use crate::model::QueuedPart;
use crate::queue_manager::Context;
pub use crate::route::Site;
use crate::route::Target;
use crate::tls_policy::{DaneSpec, HostPolicy};
use ironpost_policy::TlsMode;
use ironpost_smtp_client::dane::{dane_config, DaneFailure, DaneVerifier};
use ironpost_smtp_client::tls::{
    check_certificate, insecure_config, root_store, verifying_config, webpki_verifier, ClientCert,
};
use ironpost_smtp_client::tls_report::{
    classify_client_error, classify_rustls_error, TlsResultType,
};
use ironpost_smtp_client::{ClientError, MailParams, Reply, SmtpClient, Timeouts};
use ironpost_spool::{MetaObject, SpoolMeta};
use rustls::client::WebPkiServerVerifier;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What one attempt looked like, for logs and DSNs.
#[derive(Clone, Debug, Default)]
pub struct Attempt {
    /// The site (MX host set) it was made to, when routing got that far.
    pub site: Option<String>,
    pub host: Option<String>,
    pub ip: Option<IpAddr>,
    /// (code, enhanced code, text) of the deciding reply.
    pub reply: Option<(u16, Option<String>, String)>,
    pub error: Option<String>,
    pub tls: Option<(String, String)>,
    pub tls_validated: Option<bool>,
    /// The downgrade-resistant policy that applied ("none",
    /// "mta-sts-testing", "mta-sts-enforce", "dane").
    pub tls_policy: Option<&'static str>,
    /// "success" or an RFC 8460 result type, with detail for failures.
    pub tls_result: Option<(&'static str, Option<String>)>,
}

impl Attempt {
    pub fn local(reason: &str) -> Attempt {
        Attempt {
            error: Some(reason.to_string()),
            ..Default::default()
        }
    }

    /// A destination refused by a TLS policy before any connection.
    pub fn policy_failure(policy: &'static str, result: &'static str, reason: &str) -> Attempt {
        Attempt {
            error: Some(reason.to_string()),
            tls_policy: Some(policy),
            tls_result: Some((result, Some(reason.to_string()))),
            ..Default::default()
        }
    }

    fn at(host: &str, ip: IpAddr) -> Attempt {
        Attempt {
            host: Some(host.to_string()),
            ip: Some(ip),
            ..Default::default()
        }
    }

    fn failed(mut self, e: &ClientError) -> Attempt {
        match e.reply() {
            Some(r) => self.set_reply(r),
            None => self.error = Some(e.to_string()),
        }
        self
    }

    fn because(mut self, reason: String) -> Attempt {
        self.error = Some(reason);
        self
    }

    fn tls_failed(&mut self, result: TlsResultType, detail: String) {
        self.tls_result = Some((result.as_str(), Some(detail)));
    }

    fn set_reply(&mut self, r: &Reply) {
        self.reply = Some((r.code, r.enhanced.map(|e| e.to_string()), r.text()));
    }

    pub fn describe(&self) -> String {
        let mut s = match (&self.reply, &self.error) {
            (Some((code, _, text)), _) => format!("{code} {text}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "unknown".into(),
        };
        if let Some(h) = &self.host {
            s = format!("{h}: {s}");
        }
        s
    }
}

/// Hosts whose TLS handshake failed, until when (`remember_broken_tls`);
/// in memory, per node, as in KumoMTA.
#[derive(Default)]
pub(crate) struct BrokenTls(
    std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
);

impl BrokenTls {
    fn is_broken(&self, host: &str) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(host) {
            Some(until) if *until > std::time::Instant::now() => true,
            Some(_) => {
                m.remove(host);
                false
            }
            None => false,
        }
    }

    fn remember(&self, host: &str, d: std::time::Duration) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(host.to_string(), std::time::Instant::now() + d);
    }
}

/// TLS configurations derived from an egress path, built once per path.
pub struct TlsMaterial {
    /// Validating config and verifier; an error when no trust anchors exist
    /// (no system roots and no `tls_extra_ca`), which only matters for
    /// connections that must validate.
    verifying: Result<(Arc<ClientConfig>, Arc<WebPkiServerVerifier>), String>,
    insecure: Arc<ClientConfig>,
    /// Kept to build per-host DANE configurations.
    client_cert: Option<Arc<ClientCert>>,
}

fn build_tls(path: &EgressPath) -> Result<TlsMaterial, String> {
    let extra = match &path.cfg.tls_extra_ca {
        Some(ks) => Some(ks.load().map_err(|e| format!("tls_extra_ca: {e}"))?),
        None => None,
    };
    let client_cert = match (&path.cfg.tls_certificate, &path.cfg.tls_private_key) {
        (Some(c), Some(k)) => {
            let cert = c.load().map_err(|e| format!("tls_certificate: {e}"))?;
            let key = k.load().map_err(|e| format!("tls_private_key: {e}"))?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.expose())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("tls_certificate: {}: not a PEM certificate", c.describe()))?;
            let key = PrivateKeyDer::from_pem_slice(key.expose())
                .map_err(|_| format!("tls_private_key: {}: no PEM private key", k.describe()))?;
            Some((chain, key))
        }
        _ => None,
    };
    let extra_bytes = extra.as_ref().map(|s| s.expose());
    let verifying = (|| {
        let verifier = webpki_verifier(root_store(extra_bytes).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let config = verifying_config(
            extra_bytes,
            client_cert
                .as_ref()
                .map(|(c, k)| (c.clone(), k.clone_key())),
        )
        .map_err(|e| e.to_string())?;
        Ok((config, verifier))
    })();
    let insecure = insecure_config(
        client_cert
            .as_ref()
            .map(|(c, k)| (c.clone(), k.clone_key())),
    )
    .map_err(|e| e.to_string())?;
    Ok(TlsMaterial {
        verifying,
        insecure,
        client_cert: client_cert.map(Arc::new),
    })
}

async fn material(path: &Arc<EgressPath>) -> Result<Arc<TlsMaterial>, String> {
    path.tls
        .get_or_init(|| {
            let p = path.clone();
            async move {
                tokio::task::spawn_blocking(move || build_tls(&p).map(Arc::new))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
        })
        .await
        .clone()
}

fn timeouts(path: &EgressPath) -> Timeouts {
    let c = &path.cfg;
    let mut t = Timeouts::default();
    let set = |slot: &mut std::time::Duration, v: Option<std::time::Duration>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut t.connect, c.connect_timeout);
    set(&mut t.banner, c.banner_timeout);
    set(&mut t.ehlo, c.ehlo_timeout);
    set(&mut t.starttls, c.starttls_timeout);
    set(&mut t.auth, c.auth_timeout);
    set(&mut t.mail_from, c.mail_from_timeout);
    set(&mut t.rcpt_to, c.rcpt_to_timeout);
    set(&mut t.data, c.data_timeout);
    set(&mut t.data_dot, c.data_dot_timeout);
    t
}

/// How long a transaction on `path` may run on at shutdown:
/// `system_shutdown_timeout`, or (as KumoMTA computes it) the sum of the
/// per-message timeouts.
pub(crate) fn shutdown_timeout(path: &EgressPath) -> std::time::Duration {
    path.cfg.system_shutdown_timeout.unwrap_or_else(|| {
        let t = timeouts(path);
        t.mail_from + t.rcpt_to + t.data + t.data_dot
    })
}

/// The protocol version as Reception records (and KumoMTA) spell it:
/// rustls's `TLSv1_3`, not the client's `TLSv1.3`, so inbound and outbound
/// records of one daemon can be compared.
fn log_version(v: &str) -> String {
    v.replace('.', "_")
}

pub struct Connection {
    client: SmtpClient,
    attempt: Attempt,
}

impl Connection {
    pub async fn quit(self) {
        self.client.quit().await;
    }
}

/// Connect to the first host of the site that works, in MX order.
pub async fn connect(
    ctx: &Context,
    site: &Site,
    path: &Arc<EgressPath>,
    sender: &str,
) -> Result<Connection, Attempt> {
    let reporter = ctx.tls_reports.as_ref().filter(|r| !r.exempt(sender));
    let tls = material(path)
        .await
        .map_err(|e| Attempt::local(&format!("egress path TLS setup: {e}")))?;
    check_source(&path.source).map_err(|e| Attempt::local(&e))?;
    let mut last = Attempt::local("no usable host");
    for target in &site.hosts {
        let port = path
            .source
            .remote_port
            .or(target.port)
            .unwrap_or(path.cfg.smtp_port);
        let lookup = match target.addr {
            Some(ip) => Ok(vec![ip]),
            None => ctx.dns.ips(&target.host).await,
        };
        let ips = match lookup {
            Ok(ips) => ips,
            Err(e) => {
                last = Attempt {
                    host: Some(target.host.clone()),
                    error: Some(e.to_string()),
                    ..Default::default()
                };
                continue;
            }
        };
        for ip in ips {
            if path.prohibited.contains(ip) {
                last =
                    Attempt::at(&target.host, ip).because(format!("{ip} is in prohibited_hosts"));
                continue;
            }
            let result = try_host(ctx, target, SocketAddr::new(ip, port), path, &tls).await;
            if let Some(r) = reporter {
                let attempt = match &result {
                    Ok(c) => &c.attempt,
                    Err(a) => a,
                };
                r.session(site, target, attempt, path.source.source_address);
            }
            match result {
                Ok(c) => return Ok(c),
                Err(a) => {
                    tracing::debug!(host = %target.host, %ip, "connection failed: {}", a.describe());
                    last = a;
                }
            }
        }
    }
    Err(last)
}

/// A source whose address this host does not have cannot send: its mail
/// waits, and never leaves from another address.
fn check_source(source: &ironpost_policy::EgressSource) -> Result<(), String> {
    let Some(ip) = source.source_address else {
        return Ok(());
    };
    let socket = match ip {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    socket
        .and_then(|s| s.bind(SocketAddr::new(ip, 0)))
        .map_err(|e| {
            format!(
                "egress source '{}' cannot bind its source_address {ip}: {e}",
                source.name
            )
        })
}

/// Connect from the path's source and say EHLO; a failure is an attempt
/// under `policy`.
async fn open(
    ctx: &Context,
    host: &str,
    addr: SocketAddr,
    path: &EgressPath,
    t: &Timeouts,
    policy: &'static str,
) -> Result<SmtpClient, Attempt> {
    let mut base = Attempt::at(host, addr.ip());
    base.tls_policy = Some(policy);
    let (mut client, _) = SmtpClient::connect(addr, path.source.source_address, t)
        .await
        .map_err(|e| base.clone().failed(&e))?;
    client
        .ehlo(path.ehlo_name(&ctx.hostname))
        .await
        .map_err(|e| base.failed(&e))?;
    Ok(client)
}

/// How one connection negotiates TLS: the egress path's mode, raised (never
/// lowered) by the host's MTA-STS or DANE policy.
struct Plan {
    mode: TlsMode,
    dane: Option<Arc<DaneSpec>>,
}

fn plan(configured: TlsMode, policy: &HostPolicy) -> Plan {
    let mode = match policy {
        HostPolicy::None | HostPolicy::StsTesting { .. } => configured,
        HostPolicy::StsEnforce | HostPolicy::Dane(_) => TlsMode::Required,
        HostPolicy::DaneUnusable => match configured {
            TlsMode::Opportunistic | TlsMode::Required => TlsMode::Required,
            _ => TlsMode::RequiredInsecure,
        },
    };
    let dane = match policy {
        HostPolicy::Dane(spec) => Some(spec.clone()),
        _ => None,
    };
    Plan { mode, dane }
}

fn classify(e: &ClientError) -> (TlsResultType, String) {
    let kind = classify_client_error(e).unwrap_or(TlsResultType::ValidationFailure);
    // DANE failures carry their own clean text (the presented digests).
    let detail = match e {
        ClientError::Tls(t) => t
            .rustls
            .as_ref()
            .and_then(DaneFailure::from_rustls_error)
            .map(|f| f.to_string())
            .unwrap_or_else(|| t.to_string()),
        other => other.to_string(),
    };
    (kind, detail)
}

async fn try_host(
    ctx: &Context,
    target: &Target,
    addr: SocketAddr,
    path: &EgressPath,
    tls: &TlsMaterial,
) -> Result<Connection, Attempt> {
    let host = target.host.as_str();
    let t = timeouts(path);
    let mut attempt = Attempt::at(host, addr.ip());
    let policy = &target.policy;
    attempt.tls_policy = Some(policy.name());
    let mut client = open(ctx, host, addr, path, &t, policy.name()).await?;
    let Plan { mode, dane } = plan(path.cfg.enable_tls, policy);
    // `remember_broken_tls`: a host whose handshake failed lately is sent
    // in cleartext at once, but only where the mode already falls back to
    // cleartext (OpportunisticInsecure); validating modes never downgrade.
    let downgrade_ok = mode == TlsMode::OpportunisticInsecure && dane.is_none();
    let remembered =
        downgrade_ok && path.cfg.remember_broken_tls.is_some() && ctx.broken_tls.is_broken(host);
    let offered = client.capabilities().starttls && !remembered;
    if remembered {
        attempt.tls_failed(
            TlsResultType::StartTlsNotSupported,
            format!("{host}: TLS remembered as broken (remember_broken_tls)"),
        );
    }
    let required = matches!(mode, TlsMode::Required | TlsMode::RequiredInsecure);
    if mode != TlsMode::Disabled && !offered && !remembered {
        let detail = format!("{host} does not offer STARTTLS");
        attempt.tls_failed(TlsResultType::StartTlsNotSupported, detail.clone());
        if required {
            client.quit().await;
            let why = match policy {
                HostPolicy::None | HostPolicy::StsTesting { .. } => {
                    format!("enable_tls = {mode:?}")
                }
                p => format!("its {} policy requires TLS", p.name()),
            };
            return Err(attempt.because(format!("{detail} and {why}")));
        }
    }
    if mode != TlsMode::Disabled && offered {
        let insecure = dane.is_none()
            && matches!(
                mode,
                TlsMode::OpportunisticInsecure | TlsMode::RequiredInsecure
            );
        let config = if let Some(spec) = &dane {
            let verifier = Arc::new(DaneVerifier::new(&spec.records, &spec.names));
            let cert = tls
                .client_cert
                .as_ref()
                .map(|c| (c.0.clone(), c.1.clone_key()));
            match dane_config(verifier, cert) {
                Ok(c) => c,
                Err(e) => {
                    client.quit().await;
                    return Err(attempt.because(format!("DANE TLS setup: {e}")));
                }
            }
        } else if insecure {
            tls.insecure.clone()
        } else {
            match &tls.verifying {
                Ok((config, _)) => config.clone(),
                Err(e) => {
                    client.quit().await;
                    return Err(attempt.because(format!("cannot validate certificates: {e}")));
                }
            }
        };
        let sni = dane.as_ref().map_or(host, |spec| spec.base.as_str());
        match client.starttls(sni, config).await {
            Ok(info) => {
                attempt.tls = Some((log_version(&info.protocol_version), info.cipher.clone()));
                let validated = if insecure {
                    match &tls.verifying {
                        Ok((_, verifier)) => {
                            match check_certificate(&**verifier, host, &info.peer_certificates) {
                                Ok(()) => true,
                                Err(e) => {
                                    if matches!(policy, HostPolicy::StsTesting { .. }) {
                                        attempt
                                            .tls_failed(classify_rustls_error(&e), e.to_string());
                                    }
                                    false
                                }
                            }
                        }
                        Err(_) => false,
                    }
                } else {
                    true
                };
                attempt.tls_validated = Some(validated);
                if attempt.tls_result.is_none() {
                    attempt.tls_result = Some(("success", None));
                }
                client
                    .ehlo(path.ehlo_name(&ctx.hostname))
                    .await
                    .map_err(|e| attempt.clone().failed(&e))?;
            }
            Err(e) if downgrade_ok => {
                let (kind, detail) = classify(&e);
                if let Some(d) = path.cfg.remember_broken_tls {
                    ctx.broken_tls.remember(host, d);
                }
                tracing::info!(%host, "TLS handshake failed ({e}); retrying in cleartext (OpportunisticInsecure)");
                client = open(ctx, host, addr, path, &t, policy.name()).await?;
                attempt.tls_failed(kind, detail);
            }
            Err(e) => {
                let (kind, detail) = classify(&e);
                attempt.tls_failed(kind, detail);
                return Err(attempt.failed(&e));
            }
        }
    }
    if let HostPolicy::StsTesting { mx_match: false } = policy {
        if matches!(attempt.tls_result, None | Some(("success", _))) {
            attempt.tls_failed(
                TlsResultType::ValidationFailure,
                format!("{host} is not listed in the MTA-STS policy (testing mode)"),
            );
        }
    }
    if let (HostPolicy::StsTesting { .. }, Some((result, Some(detail)))) =
        (policy, &attempt.tls_result)
    {
        tracing::warn!(%host, "MTA-STS (testing) would refuse this delivery: {result}: {detail}");
    }
    if let (Some(user), Some(secret)) = (
        &path.cfg.smtp_auth_plain_username,
        &path.cfg.smtp_auth_plain_password,
    ) {
        if attempt.tls_validated != Some(true) && !path.cfg.allow_smtp_auth_plain_without_tls {
            client.quit().await;
            return Err(attempt.because(format!(
                "not sending SMTP AUTH credentials to {host}: the connection has no TLS with a validated certificate \
                 (allow_smtp_auth_plain_without_tls is false)"
            )));
        }
        let src = secret.clone();
        let password = tokio::task::spawn_blocking(move || src.load())
            .await
            .map_err(|e| attempt.clone().because(e.to_string()))?
            .map_err(|e| {
                attempt
                    .clone()
                    .because(format!("smtp_auth_plain_password: {e}"))
            })?;
        if let Err(e) = client.auth_plain(user, password.expose()).await {
            client.quit().await;
            return Err(attempt.failed(&e));
        }
    }
    Ok(Connection { client, attempt })
}

/// The result of one transaction for one queued part.
pub struct Outcome {
    pub delivered: Vec<String>,
    pub failed: Vec<FailedRecipient>,
    pub deferred: Vec<String>,
    /// The attempt with its final reply (for the Delivery record).
    pub attempt: Attempt,
    /// The attempt with the reply that failed `failed` (for the Bounce
    /// record): a recipient's 550 must not be logged as the 250 that
    /// DATA got for the other recipients.
    pub failed_attempt: Attempt,
    /// The attempt with the reply that deferred `deferred`.
    pub deferred_attempt: Attempt,
    pub connection_usable: bool,
}

fn status_of(r: &Reply) -> String {
    r.enhanced
        .map(|e| e.to_string())
        .unwrap_or_else(|| format!("{}.0.0", r.code / 100))
}

/// A refusal as the policy's `smtp_client_rewrite_delivery_status` would
/// have it: a different code to act on, noted in the text. If the event
/// fails, the refusal is kept but made temporary, so a policy error never
/// bounces mail.
async fn rewritten(ctx: &Context, part: &QueuedPart, r: Reply) -> Reply {
    const EVENT: &str = "smtp_client_rewrite_delivery_status";
    if r.is_positive() || !ctx.policy.has_handler(EVENT) {
        return r;
    }
    let q = part.queue();
    let line = format!("{} {}", r.code, r.text());
    let (code, note) = match ctx
        .policy
        .rewrite_delivery_status(
            line,
            (
                q.domain.clone(),
                q.tenant,
                q.campaign,
                q.routing_domain.or(Some(q.domain)),
            ),
        )
        .await
        .and_then(|c| match c {
            // A refusal cannot become a success: the server took nothing.
            Some(code) if code < 400 => Err(ironpost_policy::EventError::Failed(format!(
                "returned {code}: a refusal cannot be rewritten into a success"
            ))),
            other => Ok(other),
        }) {
        Ok(Some(code)) if code != r.code => (
            code,
            format!(
                "(status was rewritten from {} -> {code} by {EVENT})",
                r.code
            ),
        ),
        Ok(_) => return r,
        Err(e) => {
            tracing::error!(id = %part.msg.id, "{EVENT} failed: {e}");
            if !r.is_permanent() {
                return r;
            }
            (
                451,
                format!("(kept as a temporary failure: {EVENT} failed: {e})"),
            )
        }
    };
    let mut out = r;
    out.code = code;
    if let Some(e) = out.enhanced.as_mut() {
        e.class = (code / 100) as u8;
    }
    match out.lines.last_mut() {
        Some(last) => {
            last.push(' ');
            last.push_str(&note);
        }
        None => out.lines.push(note),
    }
    out
}

/// The message's content, read from the spool off the async threads; a
/// failure is an attempt to retry.
pub(crate) async fn read_body(ctx: &Context, part: &QueuedPart) -> Result<Vec<u8>, Attempt> {
    read_record(ctx, part).await.map(|(_, data)| data)
}

/// The message as reception stored it: the policy's metadata and the
/// content, in one spool read.
pub(crate) async fn read_stored(
    ctx: &Context,
    part: &QueuedPart,
) -> Result<(Option<MetaObject>, Vec<u8>), Attempt> {
    let (meta, data) = read_record(ctx, part).await?;
    match SpoolMeta::decode(&meta) {
        Ok(meta) => Ok((meta.meta, data)),
        Err(e) => Err(spool_failure(part, &e.to_string())),
    }
}

/// Records up to this size are read on the worker itself: a pread of a
/// recently written record (in the page cache) costs less than the two
/// thread hops of `spawn_blocking`, which the profile showed as a large
/// share of a delivery's CPU.
const INLINE_READ: u32 = 64 * 1024;

/// Only the policy's metadata, as reception stored it: the head of the
/// spool record, two small reads whatever the message's size, on the
/// worker itself. `None` when there is none or it cannot be read (logged).
pub(crate) fn read_meta(ctx: &Context, part: &QueuedPart) -> Option<MetaObject> {
    let decoded = ctx
        .spool
        .read_meta(&part.msg.location)
        .map_err(|e| e.to_string())
        .and_then(|m| SpoolMeta::decode(&m).map_err(|e| e.to_string()));
    match decoded {
        Ok(meta) => meta.meta,
        Err(reason) => {
            spool_failure(part, &reason);
            None
        }
    }
}

async fn read_record(ctx: &Context, part: &QueuedPart) -> Result<(Vec<u8>, Vec<u8>), Attempt> {
    let spool = ctx.spool.clone();
    let loc = part.msg.location;
    let read = if loc.len <= INLINE_READ {
        Ok(spool.read(&loc))
    } else {
        tokio::task::spawn_blocking(move || spool.read(&loc)).await
    };
    let reason = match read {
        Ok(Ok(record)) => return Ok(record),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(spool_failure(part, &reason))
}

fn spool_failure(part: &QueuedPart, reason: &str) -> Attempt {
    tracing::error!(id = %part.msg.id, "cannot read message from the spool: {reason}");
    Attempt::local(&format!("spool read failed: {reason}"))
}

pub async fn deliver(ctx: &Context, conn: &mut Connection, part: &QueuedPart) -> Outcome {
    let mut attempt = conn.attempt.clone();
    let data = match read_body(ctx, part).await {
        Ok(data) => data,
        Err(attempt) => {
            return Outcome {
                delivered: vec![],
                failed: vec![],
                deferred: part.recipients.clone(),
                failed_attempt: attempt.clone(),
                deferred_attempt: attempt.clone(),
                attempt,
                connection_usable: true,
            };
        }
    };
    let params = MailParams {
        size: Some(data.len() as u64),
        eight_bit: !data.is_ascii(),
        smtputf8: !part.msg.sender.is_ascii() || part.recipients.iter().any(|r| !r.is_ascii()),
    };
    let remote = attempt.host.clone();
    let fail = |rcpt: &str, r: &Reply| FailedRecipient {
        recipient: rcpt.to_string(),
        status: status_of(r),
        diagnostic: format!("smtp; {} {}", r.code, r.text()),
        remote_mta: remote.clone(),
    };
    let mut out = Outcome {
        delivered: vec![],
        failed: vec![],
        deferred: vec![],
        attempt: Attempt::default(),
        failed_attempt: Attempt::default(),
        deferred_attempt: Attempt::default(),
        connection_usable: true,
    };
    let mut failed_with: Option<Reply> = None;
    let mut deferred_with: Option<Reply> = None;
    match conn
        .client
        .send_envelope_and_data(&part.msg.sender, &part.recipients, &data, params)
        .await
    {
        Ok(mut tr) => {
            for (_, reply) in tr.recipients.iter_mut() {
                *reply = rewritten(ctx, part, reply.clone()).await;
            }
            if let Some(r) = tr.data_reply.take() {
                tr.data_reply = Some(rewritten(ctx, part, r).await);
            }
            let mut accepted = Vec::new();
            for (rcpt, reply) in &tr.recipients {
                if reply.is_positive() {
                    accepted.push(rcpt.clone());
                } else if reply.is_permanent() {
                    out.failed.push(fail(rcpt, reply));
                    failed_with.get_or_insert_with(|| reply.clone());
                    attempt.set_reply(reply);
                } else {
                    out.deferred.push(rcpt.clone());
                    deferred_with.get_or_insert_with(|| reply.clone());
                    attempt.set_reply(reply);
                }
            }
            if let Some(r) = &tr.data_reply {
                attempt.set_reply(r);
                if r.is_positive() {
                    out.delivered = accepted;
                } else if r.is_permanent() {
                    out.failed.extend(accepted.iter().map(|a| fail(a, r)));
                    failed_with.get_or_insert_with(|| r.clone());
                } else {
                    out.deferred.extend(accepted);
                    deferred_with.get_or_insert_with(|| r.clone());
                }
            }
            out.connection_usable = conn.client.is_usable();
        }
        Err(e) => {
            attempt = attempt.failed(&e);
            let original = e.reply().cloned();
            let reply = match &original {
                Some(r) => Some(rewritten(ctx, part, r.clone()).await),
                None => None,
            };
            let was_rewritten = reply.as_ref().map(|r| r.code) != original.as_ref().map(|r| r.code);
            if let Some(r) = &reply {
                attempt.set_reply(r);
            }
            match reply.as_ref() {
                Some(r) if r.is_permanent() => out
                    .failed
                    .extend(part.recipients.iter().map(|a| fail(a, r))),
                Some(_) if was_rewritten => out.deferred = part.recipients.clone(),
                _ if !e.is_transient_for_host() => {
                    let diag = format!("local; {e}");
                    out.failed
                        .extend(part.recipients.iter().map(|a| FailedRecipient {
                            recipient: a.clone(),
                            status: "5.3.4".into(),
                            diagnostic: diag.clone(),
                            remote_mta: remote.clone(),
                        }));
                }
                _ => out.deferred = part.recipients.clone(),
            }
            out.connection_usable =
                conn.client.is_usable() && matches!(e, ClientError::Rejected { .. });
        }
    }
    let with = |r: Option<Reply>| {
        let mut a = attempt.clone();
        if let Some(r) = r {
            a.set_reply(&r);
        }
        a
    };
    out.failed_attempt = with(failed_with);
    out.deferred_attempt = with(deferred_with);
    out.attempt = attempt;
    out
}
