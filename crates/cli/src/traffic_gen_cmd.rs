//! `ironpost traffic-gen`: the SMTP load generator, and `traffic-gen sink`,
//! the counting sink benchmarks send to. The work is in ironpost-loadgen;
//! this is the command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ironpost_loadgen::{numbered_domains, Addressing, ClientTls, GenConfig, Progress};

#[derive(Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Without --messages or --duration, 1000 messages are sent. \
                  Ctrl-C (or SIGTERM) stops the run: the transactions under way \
                  finish and the report is printed."
)]
pub struct TrafficGenArgs {
    #[command(subcommand)]
    command: Option<TrafficGenCommand>,
    // Boxed: the generator's options would make every `Commands` value
    // as large as they are.
    #[command(flatten)]
    gen: Box<GenArgs>,
}

#[derive(Subcommand)]
enum TrafficGenCommand {
    /// Accept and discard mail, counting it: the far end of benchmarks.
    ///
    /// Offers PIPELINING, 8BITMIME, SIZE and ENHANCEDSTATUSCODES, and
    /// STARTTLS when asked. Prints `ready` once listening; on SIGTERM or
    /// SIGINT prints `accepted N` and exits 0.
    Sink(SinkArgs),
}

#[derive(Args)]
struct GenArgs {
    /// The SMTP server to send to.
    #[arg(long, value_name = "HOST:PORT", required = true)]
    target: Option<String>,
    /// Connections open at once.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// Stop after this many messages (with --duration: at whichever comes
    /// first).
    #[arg(long, short = 'n', value_name = "N")]
    messages: Option<u64>,
    /// Stop after this long, e.g. `30s` or `5m`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Size of each message in bytes, headers included (`10KiB` and `1MB`
    /// work too). The body is padded with 76-character lines.
    #[arg(long, value_name = "BYTES", default_value = "10240",
          value_parser = ironpost_admin::config::parse_size)]
    size: usize,
    /// Sender domains, comma-separated, used in turn (`sender<N>@domain`).
    /// Default: traffic-gen.test.
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
    sender_domains: Vec<String>,
    /// Recipient domains, comma-separated, used in turn (`user<N>@domain`).
    /// Default: example.test.
    #[arg(
        long,
        value_name = "DOMAINS",
        value_delimiter = ',',
        conflicts_with = "domains_count"
    )]
    recipient_domains: Vec<String>,
    /// Recipient domains dom1.test … dom<N>.test, so that routing and
    /// per-domain queues are exercised.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    domains_count: Option<u64>,
    /// One sender address for every message.
    #[arg(long, value_name = "ADDRESS")]
    from: Option<String>,
    /// One recipient address for every message.
    #[arg(long, value_name = "ADDRESS")]
    to: Option<String>,
    /// The name sent with EHLO.
    #[arg(long, value_name = "NAME", default_value = "traffic-gen.test")]
    ehlo_name: String,
    /// STARTTLS on every connection (a server that does not offer it is an
    /// error). Without --tls-verify any certificate is accepted.
    #[arg(long)]
    starttls: bool,
    /// Validate the server's certificate and name against the system roots
    /// (and --tls-ca).
    #[arg(long, requires = "starttls")]
    tls_verify: bool,
    /// Trust this CA (PEM) too; implies --tls-verify.
    #[arg(long, value_name = "FILE", requires = "starttls")]
    tls_ca: Option<PathBuf>,
    /// The name for SNI and certificate verification. Default: the
    /// target's host.
    #[arg(long, value_name = "NAME", requires = "starttls")]
    tls_name: Option<String>,
    /// AUTH PLAIN as this user, after STARTTLS.
    #[arg(long, value_name = "USER", requires_all = ["auth_password", "starttls"])]
    auth_user: Option<String>,
    /// The password for --auth-user (visible to other local users in the
    /// process list: use a test account).
    #[arg(long, value_name = "PASSWORD", requires = "auth_user")]
    auth_password: Option<String>,
    /// Messages sent on a connection before it is closed and a new one
    /// opened (1: a connection per message). Default: unlimited.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    messages_per_connection: Option<u64>,
    /// Limit of each step: connecting, each reply, each write.
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// A progress line on stderr every second even when stderr is not a
    /// terminal (on a terminal it is always shown).
    #[arg(long)]
    progress: bool,
}

#[derive(Args)]
struct SinkArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2600")]
    listen: SocketAddr,
    /// Offer STARTTLS (with a self-signed certificate unless --tls-cert).
    #[arg(long)]
    starttls: bool,
    /// Refuse MAIL before STARTTLS with `530 5.7.0`; implies --starttls.
    #[arg(long)]
    require_starttls: bool,
    /// Certificate chain (PEM) for STARTTLS; implies --starttls.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Rewritten every 50 ms (a temporary file, then a rename) with the
    /// number of messages accepted so far, for benchmarks to poll.
    #[arg(long, value_name = "PATH")]
    count_file: Option<PathBuf>,
    /// The name in the banner, the EHLO reply and the self-signed
    /// certificate.
    #[arg(long, value_name = "NAME", default_value = "sink.traffic-gen.test")]
    hostname: String,
    /// Largest message accepted (advertised with SIZE).
    #[arg(long, value_name = "BYTES", default_value = "64MiB",
          value_parser = ironpost_admin::config::parse_size)]
    max_message_size: usize,
}

pub fn run(args: TrafficGenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    match args.command {
        Some(TrafficGenCommand::Sink(sink)) => rt.block_on(run_sink(sink)),
        None => rt.block_on(run_generator(*args.gen)),
    }
}

/// Completes at the first SIGINT or SIGTERM.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
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

fn gen_config(a: GenArgs) -> GenConfig {
    let defaults = Addressing::default();
    let recipient_domains = match (a.domains_count, a.recipient_domains.is_empty()) {
        (Some(n), _) => numbered_domains(n as usize),
        (None, true) => defaults.recipient_domains,
        (None, false) => a.recipient_domains,
    };
    let sender_domains = if a.sender_domains.is_empty() {
        defaults.sender_domains
    } else {
        a.sender_domains
    };
    let messages = match (a.messages, a.duration) {
        (None, None) => Some(1000),
        (m, _) => m,
    };
    GenConfig {
        target: a.target.unwrap_or_default(),
        concurrency: a.concurrency as usize,
        messages,
        duration: a.duration,
        size: a.size,
        addressing: Addressing {
            from: a.from,
            to: a.to,
            sender_domains,
            recipient_domains,
        },
        ehlo_name: a.ehlo_name,
        starttls: a.starttls.then(|| ClientTls {
            verify: a.tls_verify || a.tls_ca.is_some(),
            ca_file: a.tls_ca,
            name: a.tls_name,
        }),
        auth: a.auth_user.zip(a.auth_password),
        messages_per_connection: a.messages_per_connection,
        timeout: a.timeout,
        progress: if a.progress {
            Progress::Always
        } else {
            Progress::Auto
        },
    }
}

async fn run_generator(args: GenArgs) -> anyhow::Result<()> {
    let json = args.json;
    let cfg = gen_config(args);
    let report = ironpost_loadgen::run(cfg, stop_signal()?).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_table())?;
    }
    out.flush()?;
    if report.sent > 0 && report.accepted == 0 {
        anyhow::bail!("no message was accepted");
    }
    Ok(())
}

async fn run_sink(a: SinkArgs) -> anyhow::Result<()> {
    let tls = if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        Some(ironpost_loadgen::tls::server_config_from_files(cert, key)?)
    } else if a.starttls || a.require_starttls {
        let names = vec![
            a.hostname.clone(),
            "localhost".into(),
            a.listen.ip().to_string(),
        ];
        Some(ironpost_loadgen::tls::self_signed_server_config(&names)?)
    } else {
        None
    };
    let offered = tls.is_some();
    let sink = ironpost_loadgen::Sink::bind(ironpost_loadgen::SinkConfig {
        listen: a.listen,
        hostname: a.hostname,
        tls,
        require_starttls: a.require_starttls,
        max_message_size: a.max_message_size as u64,
        count_file: a.count_file,
        ..ironpost_loadgen::SinkConfig::default()
    })
    .await?;
    let stop = stop_signal()?;
    {
        let mut out = std::io::stdout().lock();
        let mode = match (offered, a.require_starttls) {
            (_, true) => " (STARTTLS required)",
            (true, false) => " (STARTTLS offered)",
            (false, false) => "",
        };
        writeln!(
            out,
            "traffic-gen sink: listening on {}{mode}",
            sink.local_addr()
        )?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let total = sink.serve(stop).await?;
    println!("accepted {total}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrafficGenArgs,
    }

    fn parse(args: &[&str]) -> Result<TrafficGenArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("traffic-gen").chain(args.iter().copied()))
            .map(|c| c.args)
    }

    #[test]
    fn generator_options() {
        let a = parse(&[
            "--target",
            "127.0.0.1:2525",
            "-c",
            "20",
            "--size",
            "10KiB",
            "--domains-count",
            "3",
            "--starttls",
            "--tls-ca",
            "/tmp/ca.pem",
            "--duration",
            "30s",
        ])
        .unwrap();
        assert!(a.command.is_none());
        let c = gen_config(*a.gen);
        assert_eq!(c.concurrency, 20);
        assert_eq!(c.size, 10240);
        assert_eq!(c.messages, None);
        assert_eq!(c.duration, Some(Duration::from_secs(30)));
        assert_eq!(c.addressing.recipient_domains.len(), 3);
        assert!(c.starttls.unwrap().verify);

        let c = gen_config(*parse(&["--target", "h:25"]).unwrap().gen);
        assert_eq!(c.messages, Some(1000));
        assert!(c.starttls.is_none());

        assert!(parse(&[]).is_err(), "--target is required");
        assert!(parse(&["--target", "h:25", "--tls-verify"]).is_err());
        assert!(parse(&[
            "--target",
            "h:25",
            "--auth-user",
            "u",
            "--auth-password",
            "p"
        ])
        .is_err());
        assert!(parse(&[
            "--target",
            "h:25",
            "--recipient-domains",
            "a",
            "--domains-count",
            "2"
        ])
        .is_err());
        assert!(parse(&["--target", "h:25", "--messages-per-connection", "0"]).is_err());
    }

    #[test]
    fn sink_options() {
        let a = parse(&["sink", "--listen", "127.0.0.1:2700", "--require-starttls"]).unwrap();
        let Some(TrafficGenCommand::Sink(s)) = a.command else {
            panic!("sink subcommand")
        };
        assert_eq!(s.listen.port(), 2700);
        assert!(s.require_starttls);
        assert_eq!(s.max_message_size, 64 << 20);
        assert!(parse(&["sink", "--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--target", "h:25", "sink"]).is_err());
    }
}
