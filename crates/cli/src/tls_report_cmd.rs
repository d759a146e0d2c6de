//! `ironpost tls-report`: the RFC 8460 aggregate of a day, as the report
//! that was or will be sent (read from the daemon's store; nothing sent).

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use ironpost_policy::{EngineOptions, PolicyEngine, PolicySource};
use ironpost_tls_report::{build_report, report_id, ReportOptions, Store};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TlsReportArgs {
    /// The UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "DAY")]
    day: NaiveDate,
    /// Only this policy domain.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// The policy whose spool holds the counts (default: the one `serve`
    /// would use).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

pub fn run(args: TlsReportArgs) -> Result<()> {
    let source = match args.policy.or_else(crate::serve::installed_policy) {
        Some(p) => PolicySource::File(p),
        None => PolicySource::Builtin,
    };
    let opts = EngineOptions {
        pool_size: 1,
        ..Default::default()
    };
    let (engine, init) =
        PolicyEngine::start(source, opts).map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let Some(spool) = init.spools.iter().find(|s| s.name == "data") else {
        bail!("the policy defines no 'data' spool");
    };
    let db = crate::tls_reports::db_path(&spool.path);
    if !db.exists() {
        bail!("{}: no TLS report counts yet", db.display());
    }
    let store = Store::open(&db).with_context(|| db.display().to_string())?;
    let cfg = engine.posture_config().and_then(|p| p.tls_reports.clone());
    let org = ReportOptions {
        organization_name: cfg
            .as_ref()
            .map_or("(tls_reports not configured)".into(), |c| {
                c.organization_name.clone()
            }),
        contact_info: cfg
            .as_ref()
            .map_or(String::new(), |c| c.contact_info.clone()),
        submitter: cfg
            .as_ref()
            .map_or_else(ironpost_server::system_hostname, |c| c.submitter.clone()),
    };
    let domains = match args.domain {
        Some(d) => vec![d.trim_end_matches('.').to_ascii_lowercase()],
        None => store.domains(args.day)?,
    };
    let mut reports = Vec::new();
    for d in domains {
        let agg = store.aggregate(args.day, &d)?;
        if agg.is_empty() {
            continue;
        }
        let sends = store.sends(args.day, &d)?;
        let report = build_report(&agg, &org, &report_id(args.day, &d, &org.submitter));
        reports.push(serde_json::json!({
            "report": report,
            "sends": sends.iter().map(|s| serde_json::json!({
                "rua": s.rua, "state": format!("{:?}", s.state), "attempts": s.attempts,
                "last_error": s.last_error,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&reports)?);
    Ok(())
}
