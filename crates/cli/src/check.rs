//! `ironpost check`: what `postfix check` or `nginx -t` do. Loads the
//! policy and runs `init` (no socket is bound, no spool opened), which also
//! loads every helper file, then checks what a start would: the policy
//! directory, the data directories' modes, and every listener keysource
//! (read, never printed). Every problem is printed, each naming its file
//! or key; any problem is a failure.

use crate::paths;
use anyhow::{bail, Result};
use ironpost_keysource::KeySource;
use ironpost_policy::{EngineOptions, PolicyEngine, PolicySource};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The policy to check (default: the one `serve` would use).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The user the daemon would drop to: its policy must not be writable
    /// by it.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
}

/// Problems found, in order.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    fn check(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.add(format!("{e:#}"));
        }
    }
}

pub fn run(args: CheckArgs) -> Result<()> {
    let mut report = Report::default();
    let source = match args.policy.or_else(crate::serve::installed_policy) {
        Some(p) => PolicySource::File(p),
        None => PolicySource::Builtin,
    };
    let run_as = match &args.user {
        Some(u) => match crate::privileges::lookup(u) {
            Ok(user) => Some(user),
            Err(e) => {
                report.add(format!("--user {u}: {e:#}"));
                None
            }
        },
        None => None,
    };
    if let PolicySource::File(p) = &source {
        let uid = run_as.as_ref().map(|u| u.uid.as_raw()).or_else(|| {
            let me = nix::unistd::geteuid();
            (!me.is_root()).then(|| me.as_raw())
        });
        report.check(paths::check_policy_dir(p, uid));
    }
    let described = match &source {
        PolicySource::File(p) => p.display().to_string(),
        PolicySource::Builtin => "the built-in default policy".to_string(),
    };
    let opts = EngineOptions {
        pool_size: 1,
        ..Default::default()
    };
    match PolicyEngine::start(source, opts) {
        Err(e) => report.add(format!("policy: {e}")),
        Ok((engine, init)) => {
            for (helper, path) in engine.key_files() {
                match paths::check_key_path(path) {
                    Ok(true) => {}
                    Ok(false) => {
                        report.add(format!("{helper}: key {} does not exist", path.display()))
                    }
                    Err(e) => report.add(format!("{helper}: {e:#}")),
                }
            }
            for s in &init.spools {
                report.check(existing_private_dir(
                    &s.path,
                    &format!("spool '{}'", s.name),
                ));
            }
            for l in &init.logs {
                report.check(existing_private_dir(&l.log_dir, "log"));
            }
            for (i, l) in init.listeners.iter().enumerate() {
                let name = format!("listener {} ({})", i + 1, l.listen);
                for (key, ks) in [
                    ("tls_certificate", &l.tls_certificate),
                    ("tls_private_key", &l.tls_private_key),
                    ("tls_required_client_ca", &l.tls_required_client_ca),
                ] {
                    if let Some(ks) = ks {
                        report.check(keysource(&name, key, ks, key == "tls_private_key"));
                    }
                }
            }
            if let Some(r) = &init.redis_throttles {
                if let Err(e) = r.node_url() {
                    report.add(format!("kumo.configure_redis_throttles: {e}"));
                }
            }
        }
    }
    if report.0.is_empty() {
        println!("{described}: no problems found");
        return Ok(());
    }
    for p in &report.0 {
        println!("error: {p}");
    }
    bail!("{described}: {} problem(s) found", report.0.len())
}

/// A data directory that exists must be private (start creates a missing
/// one at 2770).
fn existing_private_dir(dir: &Path, what: &str) -> Result<()> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        bail!(
            "{what} directory {} has mode {mode:o} (owner uid {}): other users can access it; fix: chmod o-rwx {}",
            dir.display(),
            meta.uid(),
            dir.display()
        );
    }
    Ok(())
}

/// A keysource can be read; a key file is not open to other users.
fn keysource(place: &str, key: &str, ks: &KeySource, secret: bool) -> Result<()> {
    if let (KeySource::File(path), true) = (ks, secret) {
        paths::check_key_file(path).map_err(|e| anyhow::anyhow!("{place}: {key}: {e:#}"))?;
    }
    ks.load()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{place}: {key}: {e}"))
}
