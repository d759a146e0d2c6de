//! RFC 8460 reports, the daemon's side: session counts kept in
//! `<spool>/tls-reports.sqlite` (always, so `ironpost tls-report` can show
//! them), and, when `policy-extras.posture` enables `tls_reports`, a task
//! that sends each finished UTC day's report to the domain's published
//! `rua`: `mailto:` through our own queue (the policy's
//! `http_message_generated` sees it, and signs it as it signs any
//! generated mail), `https:` by POST. Failed sends are retried with
//! backoff, durably.

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use ironpost_delivery::tls_reports::TlsReporter;
use ironpost_dns::Dns;
use ironpost_policy::helpers::posture::TlsReports;
use ironpost_policy::ConnMeta;
use ironpost_server::reception::{Arrival, Client, Reception, Source};
use ironpost_tls_report::{
    build_message, parse_txt, post_https, record_name, render, report_id, retry_delay, FailOutcome,
    Recorder, ReportMessage, ReportOptions, Rua, Store, DEFAULT_CAPACITY,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn db_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join("tls-reports.sqlite")
}

/// The recorder delivery feeds.
pub fn reporter(db: &Path, cfg: Option<&TlsReports>) -> Result<Arc<TlsReporter>> {
    let store = Store::open(db).with_context(|| format!("TLS report store {}", db.display()))?;
    let recorder = Recorder::spawn(store, DEFAULT_CAPACITY)
        .with_context(|| format!("TLS report store {}", db.display()))?;
    let sender = cfg.filter(|c| c.enable).map(|c| c.sender());
    Ok(Arc::new(TlsReporter::new(recorder, sender)))
}

/// What the sender needs.
pub struct Sender {
    pub cfg: TlsReports,
    pub db: PathBuf,
    pub dns: Dns,
    pub reception: Reception,
    pub hostname: String,
}

/// Tests only, and loud about it: `IRONPOST_TEST_TLSRPT_TODAY` moves the
/// sender's "today" (so a day can end without waiting for midnight), and
/// `IRONPOST_TEST_TLSRPT_CA` adds a CA for `https:` destinations.
fn today() -> NaiveDate {
    match std::env::var("IRONPOST_TEST_TLSRPT_TODAY") {
        Ok(d) => d.parse().unwrap_or_else(|_| Utc::now().date_naive()),
        Err(_) => Utc::now().date_naive(),
    }
}

fn https_tls() -> Result<Option<rustls::ClientConfig>> {
    let Ok(path) = std::env::var("IRONPOST_TEST_TLSRPT_CA") else {
        return Ok(None);
    };
    tracing::warn!("TEST MODE: TLS reports may be posted to hosts with certificates from {path}");
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let pem = std::fs::read(&path).with_context(|| format!("IRONPOST_TEST_TLSRPT_CA: {path}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.context("IRONPOST_TEST_TLSRPT_CA: not PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Some(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Checks for finished days and due sends now, then every 10 minutes.
pub async fn run(s: Sender) {
    let tls = match https_tls() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("TLS reports: {e:#}");
            return;
        }
    };
    if std::env::var("IRONPOST_TEST_TLSRPT_TODAY").is_ok() {
        tracing::warn!("TEST MODE: the TLS report sender's day is IRONPOST_TEST_TLSRPT_TODAY");
    }
    loop {
        if let Err(e) = round(&s, tls.as_ref()).await {
            tracing::warn!("TLS reports: {e:#}");
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}

async fn round(s: &Sender, tls: Option<&rustls::ClientConfig>) -> Result<()> {
    let db = s.db.clone();
    let mut store = tokio::task::spawn_blocking(move || Store::open(db)).await??;
    let today = today();
    for (day, domain) in store.days_ready(today)? {
        let ruas = match s.dns.txt(&record_name(&domain)).await {
            Ok(txt) => match parse_txt(&txt) {
                Ok(r) => r.rua,
                Err(e) => {
                    tracing::info!(%domain, %day, "no TLS report sent: {e}");
                    Vec::new()
                }
            },
            Err(e) if e.is_permanent() => Vec::new(),
            // A lookup that failed for now: the day stays ready.
            Err(e) => {
                tracing::info!(%domain, "TLS-RPT record lookup: {e}; trying later");
                continue;
            }
        };
        if ruas.is_empty() {
            store.mark_no_rua(day, &domain)?;
        } else {
            let uris: Vec<String> = ruas.iter().map(|r| r.uri().to_string()).collect();
            store.start_sends(day, &domain, &uris, Utc::now())?;
        }
    }
    for send in store.pending_sends(Utc::now())? {
        let agg = store.aggregate(send.day, &send.policy_domain)?;
        let result = deliver(s, tls, &agg, &send.rua).await;
        match result {
            Ok(()) => {
                tracing::info!(domain = %send.policy_domain, day = %send.day, rua = %send.rua, "TLS report sent");
                store.mark_sent(send.day, &send.policy_domain, &send.rua)?;
            }
            Err(e) => {
                let next = Utc::now() + retry_delay(send.attempts + 1);
                let why = format!("{e:#}");
                match store.mark_failed(send.day, &send.policy_domain, &send.rua, &why, next)? {
                    FailOutcome::RetryAt(at) => tracing::warn!(
                        domain = %send.policy_domain, rua = %send.rua,
                        "TLS report not sent ({why}); next try at {at}"
                    ),
                    FailOutcome::GaveUp(r) => tracing::warn!(
                        domain = %send.policy_domain, rua = %send.rua,
                        "TLS report abandoned: {r}"
                    ),
                }
            }
        }
    }
    store.prune(today)?;
    Ok(())
}

async fn deliver(
    s: &Sender,
    tls: Option<&rustls::ClientConfig>,
    agg: &ironpost_tls_report::Aggregate,
    rua: &str,
) -> Result<()> {
    let org = ReportOptions {
        organization_name: s.cfg.organization_name.clone(),
        contact_info: s.cfg.contact_info.clone(),
        submitter: s.cfg.submitter.clone(),
    };
    let id = report_id(agg.day, &agg.policy_domain, &s.cfg.submitter);
    let rendered = render(agg, &org, &id)?;
    let parsed = ironpost_tls_report::parse_record(&format!("v=TLSRPTv1; rua={rua}"))?;
    match parsed.rua.first() {
        Some(Rua::Https { uri }) => {
            post_https(uri, rendered.gzip, tls, Duration::from_secs(30)).await?;
            Ok(())
        }
        Some(Rua::Mailto { address, .. }) => {
            let from = s.cfg.sender();
            let data = build_message(&ReportMessage {
                from: &from,
                to: address,
                submitter: &s.cfg.submitter,
                policy_domain: &agg.policy_domain,
                report_id: &id,
                file_name: &rendered.file_name,
                report_gzip: &rendered.gzip,
                date: Utc::now(),
                message_id: None,
            })?;
            inject(s, &from, address, data).await
        }
        None => anyhow::bail!("{rua}: not a report destination"),
    }
}

/// Into our own queue, as generated mail: `http_message_generated` runs
/// (and signs, where the policy signs), then spool and delivery.
async fn inject(s: &Sender, from: &str, to: &str, data: Vec<u8>) -> Result<()> {
    let client = Client {
        peer: "127.0.0.1:0".parse()?,
        hostname: s.hostname.clone(),
        listener: None,
        helo: None,
        tls: None,
        client_cert: None,
        auth: None,
        http_auth: Some("ironpost-tls-reports".into()),
    };
    let arrival = Arrival {
        source: Source::Http,
        conn_meta: ConnMeta::new(client.conn_meta()),
        client,
        protocol: "LocalReport",
        sender: from.to_string(),
        recipients: vec![to.to_string()],
        content: data,
        trace: Default::default(),
    };
    match s.reception.receive(arrival).await {
        Ok(_) => Ok(()),
        Err(r) => anyhow::bail!(
            "our own queue refused the report: {} {} {}",
            r.code,
            r.enhanced,
            r.text()
        ),
    }
}
