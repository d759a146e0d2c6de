//! The MTA-STS policies `policy-extras.posture` asks the HTTP listeners to
//! host, checked before the start: each policy's `mx` lines must cover a
//! host name of the policy's own SMTP listeners (otherwise senders that
//! enforce it could not deliver here), and some listener must serve HTTPS.

use anyhow::{bail, Result};
use ironpost_admin::{HostedPolicy, MtaStsHosting};
use ironpost_policy::helpers::posture::{mx_matches, PostureConfig, StsMode};
use ironpost_policy::InitConfig;

pub fn mta_sts_hosting(
    posture: Option<&PostureConfig>,
    init: &InitConfig,
) -> Result<MtaStsHosting> {
    let Some(posture) = posture else {
        return Ok(MtaStsHosting::default());
    };
    let hostnames: Vec<String> = init
        .listeners
        .iter()
        .map(|l| {
            l.hostname
                .clone()
                .unwrap_or_else(ironpost_server::system_hostname)
        })
        .collect();
    let mut hosted = Vec::new();
    for (domain, d) in &posture.domain {
        let Some(sts) = &d.mta_sts else { continue };
        if sts.mode != StsMode::None
            && !hostnames
                .iter()
                .any(|h| sts.mx.iter().any(|p| mx_matches(p, h)))
        {
            bail!(
                "policy-extras.posture: [domain.\"{domain}\".mta_sts]: key 'mx': none of {:?} matches a host name of the policy's SMTP listeners ({:?}); senders enforcing this policy could not deliver here",
                sts.mx,
                hostnames
            );
        }
        if let ironpost_keysource::KeySource::File(p) = &sts.tls_private_key {
            crate::paths::check_key_file(p).map_err(|e| {
                anyhow::anyhow!(
                    "policy-extras.posture: [domain.\"{domain}\".mta_sts]: tls_private_key: {e:#}"
                )
            })?;
        }
        let policy = ironpost_posture::MtaSts {
            mode: sts.mode.as_str().to_string(),
            mx: sts.mx.clone(),
            max_age: sts.max_age.as_secs(),
        };
        hosted.push(HostedPolicy {
            domain: domain.clone(),
            body: policy.policy_text(),
            tls_certificate: sts.tls_certificate.clone(),
            tls_private_key: sts.tls_private_key.clone(),
        });
    }
    if hosted.is_empty() {
        return Ok(MtaStsHosting::default());
    }
    let https = init
        .http_listeners
        .iter()
        .any(|v| v.get("use_tls").and_then(|t| t.as_bool()) == Some(true));
    if !https {
        bail!(
            "policy-extras.posture: MTA-STS policies are configured for {}, but no kumo.start_http_listener has use_tls = true to serve them",
            hosted
                .iter()
                .map(|h| h.domain.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    MtaStsHosting::new(hosted).map_err(|e| anyhow::anyhow!("policy-extras.posture: {e}"))
}
