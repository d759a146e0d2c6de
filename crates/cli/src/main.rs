//! `ironpost`: the daemon and its tooling in one binary.

mod admin_backend;
mod admin_cmd;
mod dkim_cmd;
mod paths;
mod privileges;
mod serve;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ironpost",
    version,
    about = "Ironpost: a security-first mail transfer agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the MTA daemon.
    ///
    /// With no --policy, runs the built-in default: SMTP on 127.0.0.1:2525,
    /// relaying only for loopback, spool and logs under ./ironpost-data/.
    Serve(ServeArgs),
    /// DKIM key tooling: generate keys and check their DNS records.
    Dkim(dkim_cmd::DkimArgs),
    /// Admin API client commands (queue summary, bounce, suspend, inspect).
    #[command(flatten)]
    Admin(admin_cmd::AdminCommand),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Lua policy file (KumoMTA policy API). Defaults to the built-in policy.
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Serve(args) => serve::run(args),
        Commands::Dkim(args) => dkim_cmd::run(args),
        Commands::Admin(cmd) => admin_cmd::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironpost: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
