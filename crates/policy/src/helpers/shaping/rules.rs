//! Traffic-shaping automation rules (`[["domain".automation]]`,
//! `[[provider."x".automation]]`): a regex over a destination's reply, a
//! trigger and the actions to take for a while. KumoMTA runs them in a
//! separate daemon; Ironpost parses them here and the delivery crate acts on
//! them in process.

use crate::delivery_config::EgressPathConfig;
use crate::throttle::ThrottleSpec;
use serde_json::Value as Json;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Rule {
    /// Where it was written and its place there ("provider 'yahoo' rule 1"),
    /// naming it in reasons and keying its threshold counts.
    pub id: String,
    pub regex: Vec<fancy_regex::Regex>,
    pub actions: Vec<Action>,
    pub trigger: Trigger,
    pub duration: Duration,
    /// Also test replies Ironpost made up itself (a connection that failed
    /// has no reply from the destination).
    pub match_internal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hold the egress source's mail for the site.
    Suspend,
    /// Hold the message's tenant's mail for the destination domain.
    SuspendTenant,
    /// Hold the message's campaign (of its tenant) for the domain.
    SuspendCampaign,
    /// Override an egress path option for the source and the site (or the
    /// domain, for a rule from a domain or provider table).
    SetConfig {
        name: String,
        value: Json,
    },
    /// As `SetConfig`, always for the domain.
    SetDomainConfig {
        name: String,
        value: Json,
    },
    /// Bounce the domain's queued mail (of the tenant and campaign, where
    /// the message had them).
    Bounce,
    BounceTenant,
    BounceCampaign,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Immediate,
    /// Act when this many replies match within the period.
    Threshold(ThrottleSpec),
}

impl Rule {
    /// Whether `reply` (one line: code, enhanced code, text) matches. A
    /// regex that gives up (fancy-regex's backtracking limit) does not
    /// match: a hostile reply must not stall delivery.
    pub fn matches(&self, reply: &str, internal: bool) -> bool {
        (!internal || self.match_internal)
            && self
                .regex
                .iter()
                .any(|r| r.is_match(reply).unwrap_or(false))
    }

    /// The regexes, for reasons in logs and the admin API.
    pub fn describe(&self) -> String {
        let list: Vec<&str> = self.regex.iter().map(|r| r.as_str()).collect();
        format!("{} /{}/", self.id, list.join("|"))
    }
}

/// One `automation` array entry.
pub fn parse_rule(id: String, v: &Json) -> Result<Rule, String> {
    let Json::Object(t) = v else {
        return Err("an automation rule must be a table".into());
    };
    let mut regex = Vec::new();
    let mut actions = Vec::new();
    let mut trigger = Trigger::Immediate;
    let mut duration = None;
    let mut match_internal = false;
    for (k, v) in t {
        match k.as_str() {
            "regex" => {
                let list = match v {
                    Json::String(s) => vec![s.as_str()],
                    Json::Array(a) => a
                        .iter()
                        .map(|s| s.as_str().ok_or("key 'regex': expected strings"))
                        .collect::<Result<_, _>>()?,
                    _ => return Err("key 'regex': expected a string or a list of strings".into()),
                };
                for r in list {
                    regex.push(
                        fancy_regex::Regex::new(r)
                            .map_err(|e| format!("key 'regex': {r:?}: {e}"))?,
                    );
                }
            }
            "action" => {
                let list = match v {
                    Json::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for a in list {
                    actions.push(parse_action(a).map_err(|e| format!("key 'action': {e}"))?);
                }
            }
            "trigger" => trigger = parse_trigger(v).map_err(|e| format!("key 'trigger': {e}"))?,
            "duration" => {
                duration = Some(
                    crate::duration::deserialize(v.clone())
                        .map_err(|e| format!("key 'duration': {e}"))?,
                )
            }
            "match_internal" => {
                match_internal = v
                    .as_bool()
                    .ok_or("key 'match_internal': expected true or false")?
            }
            other => return Err(format!("unknown key '{other}' in an automation rule")),
        }
    }
    if regex.is_empty() {
        return Err("an automation rule needs a 'regex'".into());
    }
    if actions.is_empty() {
        return Err("an automation rule needs an 'action'".into());
    }
    let duration = duration.ok_or("an automation rule needs a 'duration'")?;
    if duration.is_zero() {
        return Err("key 'duration': must be above zero".into());
    }
    Ok(Rule {
        id,
        regex,
        actions,
        trigger,
        duration,
        match_internal,
    })
}

fn parse_trigger(v: &Json) -> Result<Trigger, String> {
    match v {
        Json::String(s) if s == "Immediate" => Ok(Trigger::Immediate),
        Json::Object(m) if m.len() == 1 => match m.get("Threshold") {
            Some(Json::String(spec)) => Ok(Trigger::Threshold(ThrottleSpec::parse(spec)?)),
            _ => Err("expected \"Immediate\" or { Threshold = \"N/period\" }".into()),
        },
        _ => Err("expected \"Immediate\" or { Threshold = \"N/period\" }".into()),
    }
}

fn parse_action(v: &Json) -> Result<Action, String> {
    match v {
        Json::String(s) => match s.as_str() {
            "Suspend" => Ok(Action::Suspend),
            "SuspendTenant" => Ok(Action::SuspendTenant),
            "SuspendCampaign" => Ok(Action::SuspendCampaign),
            "Bounce" => Ok(Action::Bounce),
            "BounceTenant" => Ok(Action::BounceTenant),
            "BounceCampaign" => Ok(Action::BounceCampaign),
            other => Err(format!("unknown action {other:?}")),
        },
        Json::Object(m) if m.len() == 1 => {
            let (kind, body) = m.iter().next().expect("one entry");
            let (name, value) = match body {
                Json::Object(b) => match (b.get("name"), b.get("value"), b.len()) {
                    (Some(Json::String(n)), Some(v), 2) => (n.clone(), v.clone()),
                    _ => {
                        return Err(format!(
                            "{kind}: expected {{ name = \"option\", value = ... }}"
                        ))
                    }
                },
                _ => {
                    return Err(format!(
                        "{kind}: expected {{ name = \"option\", value = ... }}"
                    ))
                }
            };
            check_config_value(&name, &value).map_err(|e| format!("{kind}: {e}"))?;
            match kind.as_str() {
                "SetConfig" => Ok(Action::SetConfig { name, value }),
                "SetDomainConfig" => Ok(Action::SetDomainConfig { name, value }),
                other => Err(format!("unknown action {other:?}")),
            }
        }
        _ => Err("expected an action name or { SetConfig = { name, value } }".into()),
    }
}

/// A `SetConfig` must name an egress path option and give it a value that
/// option accepts, as KumoMTA checks it.
fn check_config_value(name: &str, value: &Json) -> Result<(), String> {
    let mut m = serde_json::Map::new();
    m.insert(name.to_string(), value.clone());
    let cfg: EgressPathConfig =
        serde_json::from_value(Json::Object(m)).map_err(|e| format!("option '{name}': {e}"))?;
    cfg.validate()
        .map(|_| ())
        .map_err(|e| format!("option '{name}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> Result<Rule, String> {
        let v: toml::Value = toml::from_str(toml).unwrap();
        parse_rule("t".into(), &serde_json::to_value(v).unwrap())
    }

    #[test]
    fn stock_forms() {
        let r = rule(
            "regex = \"^(?!.*KumoMTA internal).*RL000010\"\ntrigger = \"Immediate\"\n\
             action = \"SuspendTenant\"\nduration = \"5 minutes\"",
        )
        .unwrap();
        assert!(r.matches("421 4.7.0 RL000010 throttled", false));
        assert!(!r.matches("KumoMTA internal: RL000010", false));
        assert!(
            !r.matches("421 RL000010", true),
            "internal replies are skipped"
        );
        let r = rule(
            "regex = ['a', 'b']\naction = [{SetConfig={name=\"max_message_rate\", value=\"1/minute\"}},\
             {SetConfig={name=\"connection_limit\", value=1}}]\ntrigger = {Threshold=\"2/hr\"}\n\
             duration = \"90m\"",
        )
        .unwrap();
        assert_eq!(r.actions.len(), 2);
        assert_eq!(r.duration, Duration::from_secs(5400));
        assert!(matches!(r.trigger, Trigger::Threshold(ref t) if t.limit == 2));
    }

    #[test]
    fn mistakes_are_named() {
        let e = rule("regex = 'x'\naction = 'Pause'\nduration = '1h'").unwrap_err();
        assert!(e.contains("Pause"), "{e}");
        let e = rule("regex = 'x'\naction = {SetConfig={name='max_mesage_rate', value='1/s'}}\nduration = '1h'")
            .unwrap_err();
        assert!(e.contains("max_mesage_rate"), "{e}");
        let e = rule("regex = 'x'\naction = 'Suspend'").unwrap_err();
        assert!(e.contains("duration"), "{e}");
        let e = rule("regex = '('\naction = 'Suspend'\nduration = '1h'").unwrap_err();
        assert!(e.contains("regex"), "{e}");
    }
}
