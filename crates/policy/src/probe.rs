//! What the policy would do for a domain's mail, asked without sending
//! any: the sources its mail may leave from and the DKIM keys it is signed
//! with. `ironpost dns records|check` derive the records to publish from
//! these answers, so a policy of hand-written handlers is covered as well
//! as one built on the helpers.

use crate::egress_source::{EgressSource, UNSPECIFIED};
use crate::engine::PolicyEngine;
use crate::message::{Message, MessageHandle};
use crate::ConnMeta;
use ironpost_dkim::Signer;
use std::sync::{Arc, Mutex};

/// Present in a Lua state's app data only while a probe runs:
/// `msg:dkim_sign` records its signer here.
#[derive(Default, Clone)]
pub(crate) struct SigningProbe(pub Arc<Mutex<Vec<Arc<Signer>>>>);

/// The sources a domain's mail may leave from.
#[derive(Debug, Default)]
pub struct ProbedSources {
    pub sources: Vec<EgressSource>,
    /// Why some source could not be read (each names the pool or source).
    pub problems: Vec<String>,
}

/// The keys a domain's mail is signed with.
#[derive(Default)]
pub struct ProbedSigners {
    pub signers: Vec<Arc<Signer>>,
    pub problems: Vec<String>,
}

fn probe_message(domain: &str, meta: serde_json::Map<String, serde_json::Value>) -> Message {
    let data = format!(
        "From: <postmaster@{domain}>\r\nTo: <postmaster@{domain}>\r\n\
         Subject: Ironpost DNS records probe\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
         Message-ID: <probe@{domain}>\r\n\r\nprobe\r\n"
    );
    Message {
        id: "probe".into(),
        sender: format!("postmaster@{domain}"),
        recipients: vec![format!("postmaster@{domain}")],
        meta,
        data: data.into_bytes(),
        attempts: 0,
    }
}

impl PolicyEngine {
    /// Every source the sources helper defines, and the sources of the pool
    /// `get_queue_config` picks for mail to `domain`.
    pub async fn probe_sources(&self, domain: &str) -> ProbedSources {
        let mut out = ProbedSources {
            sources: self.defined_sources(),
            problems: Vec::new(),
        };
        let pool_name = match self
            .queue_config(domain.to_string(), None, None, None)
            .await
        {
            Ok(q) => q.egress_pool.unwrap_or_else(|| UNSPECIFIED.to_string()),
            Err(e) => {
                out.problems
                    .push(format!("get_queue_config({domain}): {e}"));
                return out;
            }
        };
        let pool = match self.egress_pool(pool_name.clone()).await {
            Ok(p) => p,
            Err(e) => {
                out.problems.push(format!("egress pool '{pool_name}': {e}"));
                return out;
            }
        };
        for entry in pool.entries {
            if out.sources.iter().any(|s| s.name == entry.name) {
                continue;
            }
            match self.egress_source(entry.name.clone()).await {
                Ok(s) => out.sources.push(s),
                Err(e) => out
                    .problems
                    .push(format!("egress source '{}': {e}", entry.name)),
            }
        }
        out
    }

    /// Runs `smtp_server_message_received` and `http_message_generated` on
    /// a message from `postmaster@domain` and keeps the signers they sign
    /// it with. The handlers run as for real mail (a policy with side
    /// effects in those events has them once more); a refusal is reported,
    /// not fatal.
    pub async fn probe_signers(&self, domain: &str) -> ProbedSigners {
        let mut out = ProbedSigners::default();
        for event in ["smtp_server_message_received", "http_message_generated"] {
            if !self.has_handler(event) {
                continue;
            }
            let probe = SigningProbe::default();
            let seen = probe.0.clone();
            let handle = MessageHandle::new(probe_message(domain, Default::default()));
            let meta = ConnMeta::new(
                [
                    ("received_from".to_string(), "127.0.0.1:0".into()),
                    ("received_via".to_string(), "127.0.0.1:25".into()),
                    (
                        "authn_id".to_string(),
                        format!("postmaster@{domain}").into(),
                    ),
                ]
                .into_iter()
                .collect(),
            );
            let result = self
                .run(move |lua| {
                    lua.set_app_data(probe);
                    let r = (|| {
                        if let Some(f) = crate::engine::handler(lua, event)? {
                            let ud = lua.create_userdata(handle)?;
                            f.call::<()>((ud, meta))?;
                        }
                        Ok(())
                    })();
                    lua.remove_app_data::<SigningProbe>();
                    r
                })
                .await;
            if let Err(e) = result {
                out.problems.push(format!("{event}: {e}"));
            }
            for s in seen.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
                let c = s.config();
                if !out
                    .signers
                    .iter()
                    .any(|o| o.config().domain == c.domain && o.config().selector == c.selector)
                {
                    out.signers.push(s);
                }
            }
        }
        out
    }
}

/// Called by `msg:dkim_sign`: remember the signer when a probe runs.
pub(crate) fn note_signer(lua: &mlua::Lua, signer: &Arc<Signer>) {
    if let Some(p) = lua.app_data_ref::<SigningProbe>() {
        p.0.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(signer.clone());
    }
}
