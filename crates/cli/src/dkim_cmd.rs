//! `ironpost dkim`: create a DKIM key with the DNS record to publish, and
//! check that a published record matches a key.
//!
//! `verify-dns` prints one verdict line on stdout (`Match: ...`,
//! `Mismatch: ...` or `Missing: ...`) and exits non-zero unless it is a
//! match. The private key is never printed.

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use ironpost_dkim::{
    check_record, dns_record, generate, public_key_from_private, write_key_file, Algorithm,
    DkimError, RecordCheck, SigningKey, Zeroizing,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// RSA modulus size when `--bits` is not given.
const DEFAULT_RSA_BITS: usize = 2048;
/// Per-query timeout for `verify-dns` lookups.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct DkimArgs {
    #[command(subcommand)]
    command: DkimCommand,
}

#[derive(Subcommand)]
enum DkimCommand {
    /// Generate a private key and print the DNS TXT record to publish.
    ///
    /// The key is written with mode 0600 to <OUT>/<DOMAIN>/<SELECTOR>.key;
    /// an existing file is never overwritten.
    Keygen(KeygenArgs),
    /// Check that the DKIM TXT record published for a selector matches a
    /// private key. Exits non-zero unless it matches.
    VerifyDns(VerifyArgs),
}

#[derive(Args)]
struct KeygenArgs {
    /// Signing domain (d=).
    #[arg(long)]
    domain: String,
    /// Selector (s=).
    #[arg(long)]
    selector: String,
    /// Key algorithm: ed25519 or rsa.
    #[arg(long, value_parser = parse_algo)]
    algo: Algorithm,
    /// RSA modulus size in bits (2048 to 4096; default 2048). RSA only.
    #[arg(long)]
    bits: Option<usize>,
    /// Directory that holds the keys, one subdirectory per domain.
    #[arg(long, value_name = "DIR", default_value = "dkim")]
    out: PathBuf,
}

#[derive(Args)]
struct VerifyArgs {
    /// Signing domain (d=).
    #[arg(long)]
    domain: String,
    /// Selector (s=).
    #[arg(long)]
    selector: String,
    /// Private key file (PEM or DER).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Key algorithm: ed25519 or rsa. Detected from the key when absent.
    #[arg(long, value_parser = parse_algo)]
    algo: Option<Algorithm>,
    /// Check this record text instead of looking it up in DNS (the value,
    /// or zone-file quoted strings).
    #[arg(long, value_name = "RECORD", conflicts_with = "resolver")]
    txt: Option<String>,
    /// Ask this DNS server (ip:port) instead of the system resolvers.
    #[arg(long, value_name = "IP:PORT")]
    resolver: Option<SocketAddr>,
}

fn parse_algo(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s).map_err(|e| e.to_string())
}

pub fn run(args: DkimArgs) -> anyhow::Result<()> {
    match args.command {
        DkimCommand::Keygen(a) => keygen(a),
        DkimCommand::VerifyDns(a) => verify_dns(a),
    }
}

fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let bits = match (a.algo, a.bits) {
        (Algorithm::RsaSha256, bits) => bits.unwrap_or(DEFAULT_RSA_BITS),
        (Algorithm::Ed25519Sha256, None) => 0,
        (Algorithm::Ed25519Sha256, Some(_)) => {
            bail!("--bits applies to RSA keys only; an Ed25519 key has a fixed size")
        }
    };
    // Check the names before spending seconds on an RSA key: the record for
    // a placeholder 32-byte key fails exactly when the names are invalid.
    dns_record(
        &a.domain,
        &a.selector,
        Algorithm::Ed25519Sha256,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )?;
    let (pem, public) = generate(a.algo, bits)?;
    let record = dns_record(&a.domain, &a.selector, a.algo, &public)?;
    let path = write_key_file(&a.out, &a.domain, &a.selector, &pem)?;

    println!(
        "Wrote the {} private key to {} (mode 0600).",
        a.algo.k_tag(),
        path.display()
    );
    println!();
    println!("Publish this DNS TXT record:");
    println!("  name:  {}", record.name);
    println!("  value: {}", record.txt_value());
    println!();
    if record.txt_strings.len() > 1 {
        println!(
            "Zone file line (the value split into {} strings of at most 255 bytes):",
            record.txt_strings.len()
        );
    } else {
        println!("Zone file line:");
    }
    println!("{}", record.zone_line());
    Ok(())
}

/// Reads the key and works out its algorithm when not given.
fn load_key(
    path: &Path,
    algo: Option<Algorithm>,
) -> anyhow::Result<(Zeroizing<Vec<u8>>, Algorithm)> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    let context = || format!("key file {}", path.display());
    if let Some(algo) = algo {
        SigningKey::from_bytes(algo, &bytes).with_context(context)?;
        return Ok((bytes, algo));
    }
    match SigningKey::from_bytes(Algorithm::RsaSha256, &bytes) {
        Ok(_) => Ok((bytes, Algorithm::RsaSha256)),
        Err(DkimError::WrongKeyType { .. }) => {
            SigningKey::from_bytes(Algorithm::Ed25519Sha256, &bytes).with_context(context)?;
            Ok((bytes, Algorithm::Ed25519Sha256))
        }
        Err(e) => Err(anyhow::Error::new(e).context(context())),
    }
}

fn verify_dns(a: VerifyArgs) -> anyhow::Result<()> {
    let (key, algo) = load_key(&a.key, a.algo)?;
    let name = format!(
        "{}._domainkey.{}",
        a.selector,
        a.domain.trim_end_matches('.')
    );
    let (records, source) = match &a.txt {
        Some(txt) => (vec![txt.clone()], "the given record".to_string()),
        None => match lookup_txt(&name, a.resolver)? {
            Some(records) if !records.is_empty() => (records, format!("the TXT record at {name}")),
            _ => {
                println!("Missing: no TXT record is published at {name}");
                bail!("no DKIM record at {name}");
            }
        },
    };

    if records.len() > 1 {
        println!(
            "Mismatch: {} TXT records are published at {name}; publish exactly one",
            records.len()
        );
        for (i, r) in records.iter().enumerate() {
            println!(
                "  record {}: {}",
                i + 1,
                describe(&check_record(r, algo, &key), algo)
            );
        }
        bail!("the DKIM record at {name} is ambiguous");
    }

    match check_record(&records[0], algo, &key) {
        Ok(RecordCheck::Match) => {
            println!(
                "Match: {source} publishes the {} public key of {}",
                algo.k_tag(),
                a.key.display()
            );
            Ok(())
        }
        other => {
            println!("Mismatch: {source}: {}", describe(&other, algo));
            if let Ok(public) = public_key_from_private(algo, &key) {
                if let Ok(expected) = dns_record(&a.domain, &a.selector, algo, &public) {
                    println!("expected: {}", expected.txt_value());
                }
            }
            bail!(
                "the DKIM record for {name} does not match {}",
                a.key.display()
            )
        }
    }
}

fn describe(check: &Result<RecordCheck, DkimError>, algo: Algorithm) -> String {
    match check {
        Ok(RecordCheck::Match) => "matches the key".to_string(),
        Ok(RecordCheck::AlgorithmMismatch { published }) => format!(
            "algorithm mismatch: the record says k={published} but the key is {}",
            algo.k_tag()
        ),
        Ok(RecordCheck::KeyMismatch) => {
            "key mismatch: the record publishes a different public key".to_string()
        }
        Ok(RecordCheck::Revoked) => "revoked: the record has an empty p= tag".to_string(),
        Err(e) => e.to_string(),
    }
}

/// The TXT records at `name`, each one's strings concatenated (RFC 6376
/// §3.6.2.2). `None` when the name does not exist or has no TXT records.
fn lookup_txt(name: &str, resolver: Option<SocketAddr>) -> anyhow::Result<Option<Vec<String>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the DNS client runtime")?;
    rt.block_on(async {
        let mut builder = match resolver {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| anyhow!("cannot read the system resolver configuration: {e}"))?,
        };
        builder.options_mut().timeout = DNS_TIMEOUT;
        let resolver = builder
            .build()
            .map_err(|e| anyhow!("cannot set up the DNS resolver: {e}"))?;
        let fqdn = format!("{name}.");
        match resolver.lookup(fqdn.as_str(), RecordType::TXT).await {
            Ok(lookup) => Ok(Some(
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .map(|s| String::from_utf8_lossy(s))
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(None),
            Err(e) => Err(anyhow!("DNS lookup of {name} TXT failed: {e}")),
        }
    })
}
