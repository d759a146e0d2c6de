//! `ironpost dns records|check`: what a mail domain should publish, derived
//! from the policy, and how what is live compares.

use anyhow::{bail, Context, Result};
use ironpost_policy::{EngineOptions, InitConfig, PolicyEngine, PolicySource};
use ironpost_posture::{Bimi, DkimKey, ListenerCert, MtaSts, Posture};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DnsArgs {
    #[command(subcommand)]
    command: DnsCommand,
}

#[derive(clap::Subcommand)]
enum DnsCommand {
    /// Print the records to publish for a mail domain (zone-file lines
    /// with a comment each): SPF from the egress sources, DKIM for each
    /// signing key, DMARC, MTA-STS, TLS-RPT, BIMI, TLSA.
    Records(Target),
    /// Resolve what is live (through a validating resolver) and grade each
    /// record: pass, warn or fail. Exits non-zero on any fail.
    Check(CheckTarget),
}

#[derive(clap::Args)]
struct Target {
    /// The mail domain.
    #[arg(long, value_name = "DOMAIN")]
    domain: String,
    /// The policy (default: the one `serve` would use).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print JSON instead of zone-file lines.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct CheckTarget {
    #[command(flatten)]
    target: Target,
    /// Ask this name server (ip:port) instead of the policy's resolver.
    #[arg(long, value_name = "IP:PORT")]
    resolver: Option<SocketAddr>,
    /// DNSKEY records (zone-file format) to trust instead of the root's.
    #[arg(long, value_name = "FILE")]
    trust_anchor: Option<PathBuf>,
}

pub fn run(args: DnsArgs) -> Result<()> {
    match args.command {
        DnsCommand::Records(t) => records(t),
        DnsCommand::Check(c) => check(c),
    }
}

fn normalise(domain: &str) -> Result<String> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() || !d.contains('.') || d.split('.').any(|l| l.is_empty()) {
        bail!("--domain: '{domain}' is not a domain name");
    }
    Ok(d)
}

/// The policy's engine and `init` result, for tooling (one Lua state).
fn engine(policy: Option<PathBuf>) -> Result<(PolicyEngine, InitConfig)> {
    let source = match policy.or_else(crate::serve::installed_policy) {
        Some(p) => PolicySource::File(p),
        None => PolicySource::Builtin,
    };
    let opts = EngineOptions {
        pool_size: 1,
        ..Default::default()
    };
    PolicyEngine::start(source, opts).map_err(|e| anyhow::anyhow!("policy: {e}"))
}

/// What the policy says about `domain`, and what could not be read.
async fn posture(engine: &PolicyEngine, init: &InitConfig, domain: &str) -> (Posture, Vec<String>) {
    let mut notes = Vec::new();
    let probed = engine.probe_sources(domain).await;
    notes.extend(probed.problems);
    let mut addrs: Vec<_> = probed
        .sources
        .iter()
        .filter_map(|s| s.source_address)
        .collect();
    addrs.sort();
    addrs.dedup();
    let unnamed: Vec<_> = probed
        .sources
        .iter()
        .filter(|s| s.source_address.is_none())
        .map(|s| s.name.clone())
        .collect();
    if !unnamed.is_empty() {
        notes.push(format!(
            "egress source(s) {} have no source_address: they send from the host's default address, which SPF must also list",
            unnamed.join(", ")
        ));
    }
    let signers = engine.probe_signers(domain).await;
    notes.extend(signers.problems);
    let mut dkim = Vec::new();
    for s in &signers.signers {
        let cfg = s.config();
        if !cfg.domain.eq_ignore_ascii_case(domain) {
            notes.push(format!(
                "mail from {domain} is signed with d={} (selector {}): its record belongs in that zone",
                cfg.domain, cfg.selector
            ));
            continue;
        }
        let key = s.key();
        let algo = key.algorithm();
        dkim.push(DkimKey {
            selector: cfg.selector.clone(),
            key_type: algo.k_tag().to_string(),
            public_key_b64: key.public_key_b64(),
            bits: ironpost_posture::rsa_bits(key.public_key_der()),
        });
    }
    let cfg = engine.posture_config();
    let dp = cfg
        .as_ref()
        .and_then(|c| c.domain.get(domain).cloned())
        .unwrap_or_default();
    let mut listener_certs = Vec::new();
    for l in &init.listeners {
        let port = l
            .listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(25);
        let hostname = l
            .hostname
            .clone()
            .unwrap_or_else(ironpost_server::system_hostname);
        let Some(ks) = &l.tls_certificate else {
            notes.push(format!(
                "listener {} presents a self-signed certificate made at start: no TLSA record can pin it (set tls_certificate)",
                l.listen
            ));
            continue;
        };
        match ks.load() {
            Ok(pem) => match CertificateDer::pem_slice_iter(pem.expose()).next() {
                Some(Ok(cert)) => listener_certs.push(ListenerCert {
                    hostname,
                    port,
                    cert_der: cert.to_vec(),
                }),
                _ => notes.push(format!(
                    "listener {}: tls_certificate holds no PEM certificate",
                    l.listen
                )),
            },
            Err(e) => notes.push(format!("listener {}: tls_certificate: {e}", l.listen)),
        }
    }
    let posture = Posture {
        domain: domain.to_string(),
        source_addresses: addrs,
        sources_complete: unnamed.is_empty(),
        dkim,
        dmarc_rua: dp.dmarc_rua.clone(),
        tls_rpt_rua: dp.tls_rpt_rua.clone(),
        mta_sts: dp.mta_sts.as_ref().map(|s| MtaSts {
            mode: s.mode.as_str().to_string(),
            mx: s.mx.clone(),
            max_age: s.max_age.as_secs(),
        }),
        bimi: dp.bimi_logo.as_ref().map(|l| Bimi {
            logo_url: l.clone(),
            authority_url: dp.bimi_authority.clone(),
        }),
        listener_certs,
    };
    (posture, notes)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn records(t: Target) -> Result<()> {
    let domain = normalise(&t.domain)?;
    let (engine, init) = engine(t.policy)?;
    let (posture, notes) = runtime()?.block_on(posture(&engine, &init, &domain));
    let mut records = ironpost_posture::records::build(&posture);
    records.notes.extend(notes);
    if t.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", records.zone_file());
    }
    Ok(())
}

fn check(c: CheckTarget) -> Result<()> {
    let domain = normalise(&c.target.domain)?;
    let (engine, init) = engine(c.target.policy)?;
    // The policy's resolver, or the one named; validating either way:
    // the DNSSEC and TLSA verdicts mean nothing otherwise.
    let mut dns_cfg = crate::serve::dns_config(init.resolver.as_ref())?;
    if let Some(addr) = c.resolver {
        dns_cfg.name_servers = vec![addr.into()];
    }
    dns_cfg.validate = true;
    if let Some(anchor) = c.trust_anchor {
        dns_cfg.trust_anchor_file = Some(anchor);
    }
    let mut fetch = ironpost_mta_sts::FetchConfig::default();
    // The same test-only switches as the daemon's fetcher, as loud.
    if let Ok(port) = std::env::var("IRONPOST_TEST_MTA_STS_PORT") {
        fetch.https_port = port.parse().context("IRONPOST_TEST_MTA_STS_PORT")?;
        eprintln!("TEST MODE: MTA-STS policies are fetched from port {port}, not 443");
    }
    if let Ok(path) = std::env::var("IRONPOST_TEST_MTA_STS_CA") {
        fetch.extra_ca_pem = Some(std::fs::read(&path).with_context(|| path.clone())?);
        eprintln!("TEST MODE: MTA-STS policy hosts may present certificates from {path}");
    }
    let report = runtime()?.block_on(async {
        let dns = ironpost_dns::Dns::new(&dns_cfg)?;
        let (posture, notes) = posture(&engine, &init, &domain).await;
        for n in &notes {
            eprintln!("note: {n}");
        }
        let mut opts = ironpost_posture::check::CheckOptions::new(dns);
        opts.mta_sts_fetch = fetch;
        anyhow::Ok(ironpost_posture::check::check(&posture, &opts).await)
    })?;
    if c.target.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if report.failed() {
        bail!("{domain}: some checks failed");
    }
    Ok(())
}
