//! Traffic-shaping automation, in process (KumoMTA needs its separate TSA
//! daemon for this). Every attempt record is matched against the automation
//! rules of the shaping files; a rule that fires (at once, or when its
//! threshold of matches is reached) suspends, overrides or bounces for its
//! duration. What it does is kept in [`crate::suspensions`], so it
//! survives a restart and the admin API can list and cancel it.

use crate::model::QueuedPart;
use crate::queue_manager::{lock, QueueManager};
use crate::suspensions::{AutoHold, BounceHold, ConfigOverride, Scope, Suspensions};
use ironpost_logs::{AttemptRecord, Response};
use ironpost_policy::helpers::shaping::data::{Matched, Override};
use ironpost_policy::helpers::shaping::rules::{Action, Trigger};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the overrides in force are compared with what the shaping
/// helper applies (they end, or an operator cancels one).
const OVERRIDE_RECHECK: Duration = Duration::from_secs(2);

/// How the bounces automation makes describe themselves.
const AUTOMATION_BOUNCE: &str = "bounced by traffic shaping automation";

/// Recent matches of each threshold rule, by rule, source and site.
#[derive(Default)]
pub struct Counts {
    seen: Mutex<HashMap<(String, String, String), VecDeque<Instant>>>,
    /// Wakes the task that bounces what a new bounce holds.
    bounce: tokio::sync::Notify,
}

impl Counts {
    /// Have the bouncer look at the bounces in force now.
    pub(crate) fn bounce_now(&self) {
        self.bounce.notify_one();
    }

    /// Count a match; whether the rule fires.
    fn fire(&self, m: &Matched, source: &str, site: &str) -> bool {
        let Trigger::Threshold(spec) = &m.rule.trigger else {
            return true;
        };
        let now = Instant::now();
        let mut counts = lock(&self.seen);
        let seen = counts
            .entry((m.rule.id.clone(), source.to_string(), site.to_string()))
            .or_default();
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= spec.period)
        {
            seen.pop_front();
        }
        seen.push_back(now);
        seen.len() as u64 >= spec.limit
    }
}

impl QueueManager {
    /// Count a match; whether the rule fires. With Redis, a threshold
    /// counts the matches of every node (in a window that starts at the
    /// first); when Redis cannot answer, this node's own count decides.
    async fn fire(&self, m: &Matched, source: &str, site: &str) -> bool {
        let local = self.0.automation.fire(m, source, site);
        let (Trigger::Threshold(spec), Some(redis)) = (&m.rule.trigger, self.0.throttles.shared())
        else {
            return local;
        };
        let key = format!("automation:{}:{source}:{site}", m.rule.id);
        match redis.count(&key, spec.period).await {
            Ok(n) => n >= spec.limit,
            Err(e) => {
                tracing::warn!(
                    "automation threshold {}: {e}; counting this node's matches",
                    m.rule.id
                );
                local
            }
        }
    }
}

/// The reply as one line, as the rules see it (and KumoMTA writes it):
/// code, enhanced code, text. The recorded text may already start with the
/// enhanced code; it is not repeated.
fn one_line(r: &Response) -> String {
    let text = r.content.replace(['\r', '\n'], " ");
    match (r.code, &r.enhanced_code) {
        (Some(c), Some(e)) if !text.starts_with(e.as_str()) => format!("{c} {e} {text}"),
        (Some(c), _) => format!("{c} {text}"),
        _ => text,
    }
}

impl QueueManager {
    /// Match one attempt record of type `kind` against the rules, and
    /// act on those that fire.
    pub(crate) async fn automate(&self, kind: &str, rec: &AttemptRecord, part: &QueuedPart) {
        let reg = self.0.policy.shaping();
        if !reg.is_active() || reg.skipped_record_types().contains(kind) {
            return;
        }
        // A bounce automation made is not a destination's answer; matched
        // again, a rule could renew its own bounce for ever.
        if rec.response.content.contains(AUTOMATION_BOUNCE) {
            return;
        }
        let site = rec.site.clone().unwrap_or_default();
        let source = rec.egress_source.as_str();
        let reply = one_line(&rec.response);
        // No code: Ironpost's own account of a failure, not the
        // destination's reply.
        let internal = rec.response.code.is_none();
        let destination = part.queue().destination().to_string();
        for m in reg.match_rules(&destination, &site, &reply, internal) {
            if !self.fire(&m, source, &site).await {
                continue;
            }
            let until = Suspensions::until(m.rule.duration);
            let reason = format!("automation rule {}: {reply}", m.rule.describe());
            for action in &m.rule.actions {
                let done = self
                    .enact(
                        action,
                        &m,
                        part,
                        source,
                        &site,
                        &destination,
                        &reason,
                        until,
                    )
                    .await;
                match done {
                    Ok(()) => tracing::warn!(
                        id = %part.msg.id,
                        "traffic shaping automation: {action:?} for {} minutes: {reason}",
                        m.rule.duration.as_secs() / 60
                    ),
                    Err(e) => tracing::error!(
                        id = %part.msg.id,
                        "traffic shaping automation: {action:?} not applied: {e}: {reason}"
                    ),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn enact(
        &self,
        action: &Action,
        m: &Matched,
        part: &QueuedPart,
        source: &str,
        site: &str,
        destination: &str,
        reason: &str,
        until: u64,
    ) -> Result<(), String> {
        let rule = m.rule.id.clone();
        let tenant = part.msg.tenant();
        let campaign = part.msg.campaign();
        let hold = match action {
            Action::Suspend => {
                if site.is_empty() {
                    return Err("the attempt reached no site".into());
                }
                AutoHold::Suspend {
                    scope: Scope {
                        source: Some(source.to_string()),
                        site: Some(site.to_string()),
                        ..Default::default()
                    },
                    reason: reason.to_string(),
                    rule,
                }
            }
            Action::SuspendTenant | Action::SuspendCampaign => {
                let Some(tenant) = tenant else {
                    return Err("the message has no tenant".into());
                };
                AutoHold::Suspend {
                    scope: Scope {
                        domain: Some(part.domain.to_string()),
                        tenant: Some(tenant),
                        campaign: campaign.filter(|_| *action == Action::SuspendCampaign),
                        ..Default::default()
                    },
                    reason: reason.to_string(),
                    rule,
                }
            }
            Action::SetConfig { name, value } | Action::SetDomainConfig { name, value } => {
                let by_site = m.rollup && matches!(action, Action::SetConfig { .. });
                AutoHold::Override(ConfigOverride {
                    id: 0,
                    source: source.to_string(),
                    site: by_site.then(|| site.to_string()),
                    domain: (!by_site).then(|| destination.to_string()),
                    name: name.clone(),
                    value: value.clone(),
                    until,
                    reason: reason.to_string(),
                    rule,
                    shared_key: None,
                })
            }
            Action::Bounce | Action::BounceTenant | Action::BounceCampaign => {
                if *action != Action::Bounce && tenant.is_none() {
                    return Err("the message has no tenant".into());
                }
                AutoHold::Bounce(BounceHold {
                    id: 0,
                    scope: Scope {
                        domain: Some(part.domain.to_string()),
                        tenant,
                        campaign: campaign.filter(|_| *action == Action::BounceCampaign),
                        ..Default::default()
                    },
                    until,
                    reason: reason.to_string(),
                    rule,
                    shared_key: None,
                })
            }
        };
        self.0.suspensions.automation(hold, until)?;
        match action {
            // Parts already waiting for this path go back through routing,
            // where the suspension or the new settings apply to them.
            Action::Suspend | Action::SetConfig { .. } | Action::SetDomainConfig { .. } => {
                if !matches!(action, Action::Suspend) {
                    self.push_overrides();
                }
                for p in self.0.ready.take_path(source, site) {
                    self.schedule(p, Duration::ZERO);
                }
            }
            Action::SuspendTenant | Action::SuspendCampaign => {
                let s = &self.0.suspensions;
                for p in self
                    .0
                    .ready
                    .take_matching(|p| s.part_remaining(p).is_some())
                {
                    self.schedule(p, Duration::ZERO);
                }
            }
            // By the bouncer task: a bounce is logged, and logging is
            // where automation runs.
            Action::Bounce | Action::BounceTenant | Action::BounceCampaign => {
                self.0.automation.bounce.notify_one()
            }
        }
        Ok(())
    }

    /// Bounce what each new automation bounce holds.
    pub(crate) async fn bouncer(self) {
        loop {
            self.0.automation.bounce.notified().await;
            self.bounce_held().await;
        }
    }

    /// Bounce the queued parts an automation bounce holds.
    async fn bounce_held(&self) {
        let s = &self.0.suspensions;
        let pick = |p: &QueuedPart| s.bounce_reason(p).is_some();
        let mut parts = self.0.schedule.take_matching(pick);
        parts.extend(self.0.ready.take_matching(pick));
        for p in parts {
            let reason = s.bounce_reason(&p).unwrap_or_default();
            self.bounce_now(p, &reason).await;
        }
    }

    /// Bounce a part for an automation bounce (a DSN to the sender).
    pub(crate) async fn bounce_now(&self, p: QueuedPart, reason: &str) {
        let failed = p
            .recipients
            .iter()
            .map(|r| crate::bounce::FailedRecipient {
                recipient: r.clone(),
                status: "5.0.0".into(),
                diagnostic: format!("local; {AUTOMATION_BOUNCE}: {reason}"),
                remote_mta: None,
            })
            .collect();
        self.bounce(p, failed, None).await;
    }

    /// Give the shaping helper the overrides in force, and drop the
    /// egress paths built without them.
    pub(crate) fn push_overrides(&self) {
        let list: Vec<Override> = self
            .0
            .suspensions
            .overrides()
            .into_iter()
            .map(|o| Override {
                source: o.source,
                site: o.site,
                domain: o.domain,
                name: o.name,
                value: o.value,
            })
            .collect();
        self.0.policy.shaping().set_overrides(list);
        self.forget_paths();
    }

    /// Keep the shaping helper's overrides in step as they end or are
    /// cancelled.
    pub(crate) async fn watch_overrides(self) {
        let mut last: Vec<u64> = Vec::new();
        loop {
            let ids: Vec<u64> = self
                .0
                .suspensions
                .overrides()
                .iter()
                .map(|o| o.id)
                .collect();
            if ids != last {
                self.push_overrides();
                last = ids;
            }
            tokio::time::sleep(OVERRIDE_RECHECK).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_policy::helpers::shaping::rules::parse_rule;
    use std::sync::Arc;

    fn matched(trigger: &str) -> Matched {
        let v: toml::Value = toml::from_str(&format!(
            "regex = 'x'\naction = 'Suspend'\nduration = '1h'\n{trigger}"
        ))
        .unwrap();
        Matched {
            rule: Arc::new(parse_rule("r".into(), &serde_json::to_value(v).unwrap()).unwrap()),
            rollup: true,
        }
    }

    #[test]
    fn thresholds_count_per_source_and_site() {
        let c = Counts::default();
        assert!(c.fire(&matched(""), "s", "site"), "Immediate fires at once");
        let m = matched("trigger = { Threshold = '3/h' }");
        assert!(!c.fire(&m, "s", "site"));
        assert!(!c.fire(&m, "s", "site"));
        assert!(!c.fire(&m, "other", "site"), "another source counts apart");
        assert!(c.fire(&m, "s", "site"), "the third within the hour fires");
    }

    #[test]
    fn replies_are_one_line() {
        let r = Response {
            code: Some(421),
            enhanced_code: Some("4.7.0".into()),
            content: "[TS04] deferred\r\nsee url".into(),
        };
        assert_eq!(one_line(&r), "421 4.7.0 [TS04] deferred  see url");
        let recorded = Response {
            content: "4.7.0 [TSS05] deferred".into(),
            ..r
        };
        assert_eq!(one_line(&recorded), "421 4.7.0 [TSS05] deferred");
    }
}
