//! `ironpost queue summary`, `ironpost bounce`, `ironpost suspend` and
//! `ironpost inspect`: a client for the daemon's HTTP admin API.
//!
//! Each takes `--endpoint` (default `http://127.0.0.1:8000`, where the
//! default listener trusts loopback, so no credentials are needed there).
//! For a remote listener give `--user` and `--password-file` (the password
//! never goes on the command line, where `ps` would show it); credentials
//! are sent only over https or to a loopback endpoint. For an https
//! listener with a self-signed certificate pass `--ca-file` with its
//! certificate, or `--insecure` to skip verification.
//!
//! Responses are printed as pretty JSON on stdout; an HTTP error is the
//! command's error (non-zero exit).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ironpost_admin::client::{AdminClient, ClientOptions, DEFAULT_ENDPOINT};
use std::io::Read;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Admin API base URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// User for HTTP Basic authorization (checked by the policy's
    /// http_server_validate_auth_basic). Not needed from a trusted host.
    #[arg(long, value_name = "USER", requires = "password_file")]
    pub user: Option<String>,
    /// File whose first line is the password; "-" reads standard input.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
    /// PEM certificate(s) to trust for an https endpoint.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the https endpoint's certificate.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Queues held by the daemon.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Bounce queued messages for a destination domain and/or tenant now.
    Bounce {
        /// Recipient domain.
        #[arg(long, required_unless_present = "tenant")]
        domain: Option<String>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Reason recorded in the bounces.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Suspend delivery for a destination domain, tenant, campaign or
    /// egress source (kept across restarts).
    Suspend {
        /// Recipient domain.
        #[arg(long, required_unless_present_any = ["tenant", "campaign", "source"])]
        domain: Option<String>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Campaign.
        #[arg(long)]
        campaign: Option<String>,
        /// Egress source (its pools send from their other sources).
        #[arg(long)]
        source: Option<String>,
        /// Reason recorded for the suspension.
        #[arg(long)]
        reason: String,
        /// How long, such as "30m" or "1h" (the daemon's default if absent).
        #[arg(long)]
        duration: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the suspensions in force.
    SuspendList {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a suspension early.
    SuspendCancel {
        /// Its id (from suspend or suspend-list).
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List what traffic-shaping automation holds: suspensions, egress
    /// path overrides and bounces, with their ids.
    AutomationList {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End an automation suspension, override or bounce early.
    AutomationCancel {
        /// Its id (from automation-list).
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a spooled message's envelope and metadata.
    Inspect {
        /// Spool id (as in "250 2.0.0 OK id=...").
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum QueueCommand {
    /// Messages per scheduled queue.
    Summary {
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn read_password(path: &PathBuf) -> anyhow::Result<String> {
    let mut raw = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("reading the password from standard input")?;
    } else {
        raw = std::fs::read_to_string(path)
            .with_context(|| format!("reading the password file {}", path.display()))?;
    }
    let password = raw.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        bail!("the password file {} is empty", path.display());
    }
    Ok(password)
}

fn connect(args: &ClientArgs) -> anyhow::Result<AdminClient> {
    let password = args.password_file.as_ref().map(read_password).transpose()?;
    Ok(AdminClient::new(ClientOptions {
        endpoint: args.endpoint.clone(),
        user: args.user.clone(),
        password,
        ca_file: args.ca_file.clone(),
        insecure: args.insecure,
        ..ClientOptions::default()
    })?)
}

fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Queue {
            command: QueueCommand::Summary { client },
        } => print(&connect(&client)?.queue_summary()?),
        AdminCommand::Bounce {
            domain,
            tenant,
            reason,
            client,
        } => print(&connect(&client)?.bounce(domain.as_deref(), tenant.as_deref(), &reason)?),
        AdminCommand::Suspend {
            domain,
            tenant,
            campaign,
            source,
            reason,
            duration,
            client,
        } => {
            let scope: Vec<(&str, &str)> = [
                ("domain", &domain),
                ("tenant", &tenant),
                ("campaign", &campaign),
                ("source", &source),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect();
            print(&connect(&client)?.suspend(&scope, &reason, duration.as_deref())?)
        }
        AdminCommand::SuspendList { client } => print(&connect(&client)?.suspensions()?),
        AdminCommand::SuspendCancel { id, client } => {
            if !connect(&client)?.cancel_suspension(id)? {
                bail!("no suspension with id {id}");
            }
            print(&serde_json::json!({ "cancelled": id }))
        }
        AdminCommand::AutomationList { client } => print(&connect(&client)?.automation()?),
        AdminCommand::AutomationCancel { id, client } => {
            if !connect(&client)?.cancel_automation(id)? {
                bail!("no automation hold with id {id}");
            }
            print(&serde_json::json!({ "cancelled": id }))
        }
        AdminCommand::Inspect { id, client } => match connect(&client)?.inspect(&id)? {
            Some(v) => print(&v),
            None => bail!("no message with id {id}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: AdminCommand,
    }

    fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("ironpost").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn parses() {
        match parse(&["queue", "summary"]).unwrap() {
            AdminCommand::Queue {
                command: QueueCommand::Summary { client },
            } => {
                assert_eq!(client.endpoint, "http://127.0.0.1:8000");
                assert!(client.user.is_none());
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "bounce",
            "--domain",
            "example.com",
            "--tenant",
            "t",
            "--reason",
            "purge",
            "--endpoint",
            "https://10.0.0.1:8000",
            "--user",
            "admin",
            "--password-file",
            "/run/pw",
        ])
        .unwrap()
        {
            AdminCommand::Bounce {
                domain,
                tenant,
                reason,
                client,
            } => {
                assert_eq!(domain.as_deref(), Some("example.com"));
                assert_eq!(tenant.as_deref(), Some("t"));
                assert_eq!(reason, "purge");
                assert_eq!(client.user.as_deref(), Some("admin"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "suspend",
            "--domain",
            "d.example",
            "--reason",
            "r",
            "--duration",
            "1h",
        ])
        .unwrap()
        {
            AdminCommand::Suspend { duration, .. } => assert_eq!(duration.as_deref(), Some("1h")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["inspect", "0190abc"]).unwrap(),
            AdminCommand::Inspect { .. }
        ));
        // Tenant alone is a valid scope.
        assert!(parse(&["bounce", "--tenant", "t", "--reason", "r"]).is_ok());
    }

    #[test]
    fn rejects() {
        // No scope, no reason, user without password file and vice versa.
        assert!(parse(&["bounce", "--reason", "r"]).is_err());
        assert!(parse(&["bounce", "--domain", "d"]).is_err());
        assert!(parse(&["queue", "summary", "--user", "u"]).is_err());
        assert!(parse(&["queue", "summary", "--password-file", "f"]).is_err());
        // No password on the command line.
        assert!(parse(&["queue", "summary", "--password", "x"]).is_err());
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        assert_eq!(read_password(&p).unwrap(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_password(&p).is_err());
    }

    #[test]
    fn no_credentials_in_clear_to_a_remote_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let args = ClientArgs {
            endpoint: "http://192.0.2.1:8000".into(),
            user: Some("admin".into()),
            password_file: Some(p),
            ca_file: None,
            insecure: false,
        };
        let e = connect(&args).err().unwrap().to_string();
        assert!(e.contains("https"), "{e}");
    }
}
