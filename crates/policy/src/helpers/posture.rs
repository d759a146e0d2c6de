//! `require 'policy-extras.posture'` (Ironpost's own; KumoMTA has none):
//! what each mail domain publishes beyond what the rest of the policy
//! implies, the MTA-STS policies the HTTP listener hosts, and whether and
//! how TLS reports (RFC 8460) are sent.
//!
//! ```toml
//! [tls_reports]
//! enable = true
//! organization_name = "Example Mail"
//! contact_info = "mailto:postmaster@example.com"
//! submitter = "example.com"
//!
//! [domain."example.com"]
//! dmarc_rua = ["mailto:dmarc@example.com"]
//! tls_rpt_rua = ["mailto:tls-reports@example.com"]
//! bimi_logo = "https://example.com/logo.svg"
//!
//! [domain."example.com".mta_sts]
//! mode = "enforce"
//! mx = ["mx1.example.com", "*.mx.example.net"]
//! max_age = "7d"
//! tls_certificate = "/etc/ironpost/mta-sts.example.com.crt"
//! tls_private_key = "/etc/ironpost/mta-sts.example.com.key"
//! ```
//!
//! `posture:setup { files or tables }` merges them in order. The data is
//! kept for `ironpost dns records|check`, the HTTP listener and delivery.

use super::Source;
use crate::duration;
use ironpost_keysource::KeySource;
use mlua::{Lua, Table, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const MODULE: &str = "policy-extras.posture";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureConfig {
    #[serde(default)]
    pub tls_reports: Option<TlsReports>,
    #[serde(default)]
    pub domain: BTreeMap<String, DomainPosture>,
}

/// Sending RFC 8460 reports about the TLS sessions Ironpost made.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsReports {
    #[serde(default = "yes")]
    pub enable: bool,
    pub organization_name: String,
    /// A `mailto:` URI or address receivers can write to.
    pub contact_info: String,
    /// Our domain, as reports name it (`TLS-Report-Submitter`).
    pub submitter: String,
    /// The `From:` of mailed reports (default: `noreply-tls-reports@<submitter>`).
    #[serde(default)]
    pub report_sender: Option<String>,
}

fn yes() -> bool {
    true
}

impl TlsReports {
    pub fn sender(&self) -> String {
        self.report_sender
            .clone()
            .unwrap_or_else(|| format!("noreply-tls-reports@{}", self.submitter))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainPosture {
    #[serde(default)]
    pub dmarc_rua: Vec<String>,
    #[serde(default)]
    pub tls_rpt_rua: Vec<String>,
    #[serde(default)]
    pub bimi_logo: Option<String>,
    /// The VMC or CMC (`a=`).
    #[serde(default)]
    pub bimi_authority: Option<String>,
    #[serde(default)]
    pub mta_sts: Option<HostedMtaSts>,
}

/// An MTA-STS policy the HTTP listener serves for `mta-sts.<domain>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostedMtaSts {
    pub mode: StsMode,
    pub mx: Vec<String>,
    #[serde(
        default = "default_max_age",
        deserialize_with = "duration::deserialize"
    )]
    pub max_age: Duration,
    /// The certificate for `mta-sts.<domain>` (with its private key); the
    /// HTTP listener presents it for that name (SNI).
    pub tls_certificate: KeySource,
    pub tls_private_key: KeySource,
}

fn default_max_age() -> Duration {
    // RFC 8461 §3.2 suggests weeks; one week is the common choice.
    Duration::from_secs(7 * 86400)
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StsMode {
    Enforce,
    Testing,
    None,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StsMode::Enforce => "enforce",
            StsMode::Testing => "testing",
            StsMode::None => "none",
        }
    }
}

/// An `mx` pattern of RFC 8461 §4.1: a host name, or `*.` and a suffix
/// (the wildcard covers exactly one label).
fn valid_mx_pattern(p: &str) -> bool {
    let host = p.strip_prefix("*.").unwrap_or(p);
    !host.is_empty()
        && host.split('.').count() >= 2
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Whether `host` matches an MTA-STS `mx` pattern.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => host == pattern,
    }
}

fn valid_rua(uri: &str, https_ok: bool) -> bool {
    let lower = uri.to_ascii_lowercase();
    (lower.starts_with("mailto:") && uri[7..].contains('@'))
        || (https_ok && lower.starts_with("https://") && uri.len() > 8)
}

/// Checks and merges the data sources in order.
pub fn load(sources: &[Source]) -> Result<PostureConfig, String> {
    let mut merged = serde_json::Map::new();
    for s in sources {
        for key in s.data.keys() {
            if key != "tls_reports" && key != "domain" {
                return Err(format!(
                    "{}: unknown table [{key}] (expected [tls_reports] or [domain.\"name\"])",
                    s.name
                ));
            }
        }
        super::merge(&mut merged, s.data.clone());
    }
    let what = sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let cfg: PostureConfig = serde_path_to_error::deserialize(serde_json::Value::Object(merged))
        .map_err(|e| format!("{what}: key '{}': {}", e.path(), e.inner()))?;
    for (name, d) in &cfg.domain {
        let at = format!("{what}: [domain.\"{name}\"]");
        if name != &name.to_ascii_lowercase() || !valid_mx_pattern(name) || name.starts_with("*.") {
            return Err(format!("{at}: '{name}' is not a lower-case domain name"));
        }
        for r in &d.dmarc_rua {
            if !valid_rua(r, false) {
                return Err(format!(
                    "{at}: key 'dmarc_rua': expected mailto: URIs, got '{r}'"
                ));
            }
        }
        for r in &d.tls_rpt_rua {
            if !valid_rua(r, true) {
                return Err(format!(
                    "{at}: key 'tls_rpt_rua': expected mailto: or https: URIs, got '{r}'"
                ));
            }
        }
        for (key, url) in [
            ("bimi_logo", &d.bimi_logo),
            ("bimi_authority", &d.bimi_authority),
        ] {
            if let Some(u) = url {
                if !u.starts_with("https://") || u.contains(';') {
                    return Err(format!(
                        "{at}: key '{key}': expected an https: URL, got '{u}'"
                    ));
                }
            }
        }
        if let Some(sts) = &d.mta_sts {
            if sts.mx.is_empty() && sts.mode != StsMode::None {
                return Err(format!(
                    "{at}.mta_sts: key 'mx': a policy in mode {} needs at least one mx pattern",
                    sts.mode.as_str()
                ));
            }
            if let Some(bad) = sts.mx.iter().find(|p| !valid_mx_pattern(p)) {
                return Err(format!(
                    "{at}.mta_sts: key 'mx': '{bad}' is not a host name or *.suffix pattern"
                ));
            }
            if sts.max_age.as_secs() > 31_557_600 {
                return Err(format!(
                    "{at}.mta_sts: key 'max_age': at most one year (RFC 8461 §3.2)"
                ));
            }
        }
    }
    if let Some(t) = &cfg.tls_reports {
        if !valid_mx_pattern(&t.submitter) || t.submitter.starts_with("*.") {
            return Err(format!(
                "{what}: [tls_reports]: key 'submitter': expected a domain name, got '{}'",
                t.submitter
            ));
        }
        if !t.sender().contains('@') {
            return Err(format!(
                "{what}: [tls_reports]: key 'report_sender': expected an address"
            ));
        }
    }
    Ok(cfg)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<Value>)| {
            super::configure_once(lua, MODULE)?;
            let sources =
                super::load_sources(lua, MODULE, files).map_err(mlua::Error::RuntimeError)?;
            let cfg =
                load(&sources).map_err(|e| mlua::Error::RuntimeError(format!("{MODULE}: {e}")))?;
            if let Some(ctx) = lua.app_data_ref::<crate::state::StateCtx>() {
                *ctx.shared.posture.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg));
            }
            Ok(())
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<PostureConfig, String> {
        load(&[Source::from_text("posture.toml", text, false).unwrap()])
    }

    const DOC: &str = r#"
[tls_reports]
organization_name = "Example Mail"
contact_info = "mailto:postmaster@example.com"
submitter = "example.com"

[domain."example.com"]
dmarc_rua = ["mailto:dmarc@example.com"]
tls_rpt_rua = ["mailto:tls@example.com", "https://reports.example.com/tlsrpt"]
bimi_logo = "https://example.com/logo.svg"

[domain."example.com".mta_sts]
mode = "enforce"
mx = ["mx1.example.com", "*.mx.example.net"]
tls_certificate = "/etc/ironpost/sts.crt"
tls_private_key = "/etc/ironpost/sts.key"
"#;

    #[test]
    fn the_documented_example_loads() {
        let c = load_toml(DOC).unwrap();
        let t = c.tls_reports.unwrap();
        assert!(t.enable);
        assert_eq!(t.sender(), "noreply-tls-reports@example.com");
        let sts = c.domain["example.com"].mta_sts.clone().unwrap();
        assert_eq!(sts.mode, StsMode::Enforce);
        assert_eq!(sts.max_age, Duration::from_secs(604800));
    }

    #[test]
    fn errors_name_the_table_and_key() {
        let e = load_toml("[domain.\"example.com\"]\ndmarc_rua = [\"dmarc@example.com\"]\n")
            .unwrap_err();
        assert!(
            e.contains("[domain.\"example.com\"]: key 'dmarc_rua'"),
            "{e}"
        );
        let e = load_toml("[domain.\"example.com\"]\nbimi = 1\n").unwrap_err();
        assert!(e.contains("posture.toml") && e.contains("bimi"), "{e}");
        let e = load_toml(
            "[domain.\"example.com\".mta_sts]\nmode = \"enforce\"\nmx = [\"*\"]\ntls_certificate = \"a\"\ntls_private_key = \"b\"\n",
        )
        .unwrap_err();
        assert!(e.contains("key 'mx'"), "{e}");
        let e = load_toml("[dkim]\n").unwrap_err();
        assert!(e.contains("unknown table [dkim]"), "{e}");
    }

    #[test]
    fn mx_patterns_match_one_label() {
        assert!(mx_matches("*.mx.example.net", "a.mx.example.net"));
        assert!(!mx_matches("*.mx.example.net", "a.b.mx.example.net"));
        assert!(!mx_matches("*.mx.example.net", "mx.example.net"));
        assert!(mx_matches("mx1.example.com", "MX1.example.com."));
    }
}
