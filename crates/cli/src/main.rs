//! `ironpost`: the daemon and its tooling in one binary.

mod admin_backend;
mod admin_cmd;
mod check;
mod cluster;
mod dkim_cmd;
mod dns_cmd;
mod hosting;
mod log_hooks;
mod paths;
mod privileges;
mod serve;
mod signing;
mod tls_report_cmd;
mod tls_reports;
mod traffic_gen_cmd;

use clap::{Parser, Subcommand, ValueEnum};

/// jemalloc rather than glibc's malloc. With 200,000 messages queued
/// (bench/rss_million.sh) it held 225 MiB against glibc's 308 and
/// mimalloc's 265, and took them in 37% faster: no per-chunk header on the
/// small allocations a queued message is made of, less fragmentation from
/// the sessions' churn, and per-thread caches instead of arena locks.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation. Buffers above 256 KiB
/// (large message content) go to the arena that gives pages back as soon as
/// they are freed, as glibc's mmap threshold did: a flood of large messages
/// must not leave hundreds of MB of freed extents resident
/// (tests/daemon/inflight_memory.rs). The threshold sits above the
/// sessions' 128 KiB DATA buffers: at 128 KiB every message paid for
/// mapping and unmapping its buffer (page faults, TLB shootdowns), 50 µs of
/// CPU per message in bench/profile.sh.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &std::ffi::c_char =
    // SAFETY: a NUL-terminated literal that lives as long as the program.
    unsafe { &*c"oversize_threshold:262144".as_ptr() };

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ironpost",
    version,
    about = "Ironpost: a security-first mail transfer agent"
)]
struct Cli {
    /// How diagnostics are written to stderr: `text` (coloured only when
    /// stderr is a terminal and NO_COLOR is unset or empty) or `json` (one
    /// JSON object per line, with `timestamp`, `level` and `message`).
    /// IRONPOST_LOG sets the filter (default `info`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the MTA daemon.
    ///
    /// With no --policy (and no /etc/ironpost/policy.lua), runs the built-in
    /// default: SMTP on 127.0.0.1:2525, relaying only for loopback, spool
    /// and logs under ./ironpost-data/.
    Serve(ServeArgs),
    /// Internal: the signer process `serve` starts (not for direct use).
    #[command(hide = true)]
    SignerSupervisor(signing::SupervisorArgs),
    /// Check a policy without starting: run its `init`, load its helper
    /// files and keysources, check directory modes; print every problem.
    Check(check::CheckArgs),
    /// DKIM key tooling: generate keys and check their DNS records.
    Dkim(dkim_cmd::DkimArgs),
    /// The sending domain's DNS posture: records to publish, checks of what is live.
    Dns(dns_cmd::DnsArgs),
    /// Print a day's TLS report (RFC 8460) as sent or to be sent, with the
    /// state of each destination.
    TlsReport(tls_report_cmd::TlsReportArgs),
    /// Load generator: send mail over SMTP (pipelining, STARTTLS, AUTH) and
    /// report msg/s, latency per phase and errors by reply code; `sink`
    /// accepts and counts mail for benchmarks.
    TrafficGen(traffic_gen_cmd::TrafficGenArgs),
    /// Admin API client commands (queue summary, bounce, suspend, inspect).
    #[command(flatten)]
    Admin(admin_cmd::AdminCommand),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Lua policy file (KumoMTA policy API). Defaults to
    /// /etc/ironpost/policy.lua when it exists (an installed package), else
    /// the built-in policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Drop all privileges to this user after binding listeners (when
    /// started as root).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Print the built-in default policy and exit.
    #[arg(long)]
    print_default_policy: bool,
    /// Give the policy the full Lua standard library (io, os, package)
    /// instead of the sandbox. Only for policies you fully trust.
    #[arg(long)]
    lua_unrestricted: bool,
    /// Memory for message content being received, across all connections
    /// (bytes, or "512MB", "2GiB"). Beyond it new transactions get
    /// `452 4.3.1`. Default: a quarter of the machine's memory.
    #[arg(long, value_name = "SIZE", value_parser = ironpost_admin::config::parse_size)]
    max_inflight_memory: Option<usize>,
    /// A directory, besides the policy's own, where the policy's
    /// `sqlite.open` may open databases. Repeatable.
    #[arg(long, value_name = "DIR", value_parser = existing_dir)]
    sqlite_dir: Vec<PathBuf>,
    /// The user the signer process (which holds the DKIM keys) runs as.
    /// Default: --user. A user of its own keeps the keys from the network
    /// process even if that process is taken over.
    #[arg(long, value_name = "USER")]
    signer_user: Option<String>,
    /// A directory under which the signer reads DKIM key files; keys
    /// elsewhere are refused. Repeatable. Without it, key files are
    /// confined only with a --signer-user of its own, to the policy's
    /// directory, /etc/ironpost/dkim and /opt/kumomta/etc/dkim.
    #[arg(long, value_name = "DIR")]
    signer_key_dir: Vec<PathBuf>,
    /// Load DKIM keys in the network process, with no signer process and
    /// no seccomp filter (as KumoMTA does). Weaker; for comparison only.
    #[arg(long)]
    in_process_signing: bool,
}

/// A directory that exists, as its canonical path (so that `..` and links
/// cannot widen what it admits later).
fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let p = std::path::Path::new(s)
        .canonicalize()
        .map_err(|e| format!("{s}: {e}"))?;
    if !p.is_dir() {
        return Err(format!("{s}: not a directory"));
    }
    Ok(p)
}

/// ANSI colour only for a terminal, and never when NO_COLOR is set to a
/// non-empty value (<https://no-color.org>).
fn use_colour(stderr_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Diagnostics (tracing events) go to stderr; stdout carries the start-up
/// lines (`smtp listener: ...`, `ready`) and command output.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let filter = EnvFilter::try_from_env("IRONPOST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    // kumo.set_diagnostic_log_filter swaps the filter at run time.
    ironpost_policy::diagnostics::install_filter_hook(Box::new(move |directives| {
        let filter = EnvFilter::try_new(directives).map_err(|e| format!("{directives:?}: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())
    }));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(use_colour(
                        std::io::stderr().is_terminal(),
                        std::env::var_os("NO_COLOR"),
                    )),
            )
            .init(),
        // Fields at the top level (`"message"`, `"level"`, the event's own
        // fields) rather than nested under `"fields"`, as log shippers
        // expect; the target stays, it is what one filters on.
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Commands::Serve(args) => serve::run(args, cli.log_format == LogFormat::Json),
        Commands::SignerSupervisor(args) => signing::supervise(args),
        Commands::Check(args) => check::run(args),
        Commands::Dkim(args) => dkim_cmd::run(args),
        Commands::Dns(args) => dns_cmd::run(args),
        Commands::TlsReport(args) => tls_report_cmd::run(args),
        Commands::TrafficGen(args) => traffic_gen_cmd::run(args),
        Commands::Admin(cmd) => admin_cmd::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match cli.log_format {
                LogFormat::Text => eprintln!("ironpost: {e:#}"),
                // Keep stderr all JSON lines, the fatal error included.
                LogFormat::Json => tracing::error!("{e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The man pages and shell completions the package installs
    /// (packaging/man, packaging/completions) are generated from these
    /// clap definitions; this fails when they are out of date, and
    /// `IRONPOST_UPDATE_PACKAGING=1 cargo test -p ironpost packaging_files`
    /// rewrites them.
    #[test]
    fn packaging_files_are_current() {
        use clap::CommandFactory;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
        let mut files: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
        let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone().name("ironpost"))
            .section("8")
            .render(&mut page)
            .unwrap();
        files.push((root.join("man/ironpost.8"), page));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("ironpost-{}", sub.get_name());
            let mut page = Vec::new();
            clap_mangen::Man::new(sub.clone().name(&*Box::leak(name.clone().into_boxed_str())))
                .section("8")
                .render(&mut page)
                .unwrap();
            files.push((root.join(format!("man/{name}.8")), page));
        }
        for (shell, file) in [
            (clap_complete::Shell::Bash, "ironpost.bash"),
            (clap_complete::Shell::Zsh, "_ironpost"),
            (clap_complete::Shell::Fish, "ironpost.fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), "ironpost", &mut out);
            files.push((root.join("completions").join(file), out));
        }
        let update = std::env::var_os("IRONPOST_UPDATE_PACKAGING").is_some();
        let mut stale = Vec::new();
        for (path, content) in &files {
            if std::fs::read(path).ok().as_deref() != Some(content.as_slice()) {
                if update {
                    std::fs::write(path, content).unwrap();
                } else {
                    stale.push(path.display().to_string());
                }
            }
        }
        assert!(
            stale.is_empty(),
            "out of date (run IRONPOST_UPDATE_PACKAGING=1 cargo test -p ironpost packaging_files): {stale:?}"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(true, Some("0".into())));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some("".into())));
    }

    #[test]
    fn log_format_is_global_and_defaults_to_text() {
        let cli = Cli::try_parse_from(["ironpost", "serve"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Text);
        let cli = Cli::try_parse_from(["ironpost", "--log-format", "json", "serve"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["ironpost", "serve", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["ironpost", "--log-format", "xml", "serve"]).is_err());
    }
}
