//! Shaping files in KumoMTA's format, merged and matched as KumoMTA does:
//! `["default"]`, tables named by domain (`mx_rollup = true`, the default:
//! for every domain whose MX hosts are that domain's; `false`: for that
//! destination name only), and `[provider."x"]` tables matched by domain
//! suffix or by MX host. Each may have `sources."name"` sub-tables and
//! `automation` rules. Every table is checked when loaded, so a typo stops
//! start-up naming the file, the table and the key.

use super::rules::{parse_rule, Rule};
use crate::delivery_config::EgressPathConfig;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Params = Map<String, Json>;

/// Keys whose tables add to, rather than replace, what came before: they
/// name limits meant to cut across tables.
const MERGEABLE: [&str; 3] = [
    "additional_connection_limits",
    "additional_message_rate_throttles",
    "additional_source_selection_rates",
];

/// Only a provider table (or its sources) may set it; it becomes a selection
/// rate shared by the provider's sites.
const PROVIDER_SELECTION: &str = "provider_source_selection_rate";

#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub params: Params,
    /// `None`: not said (true).
    pub mx_rollup: Option<bool>,
    pub sources: BTreeMap<String, Params>,
    pub automation: Vec<Arc<Rule>>,
}

impl Entry {
    fn rollup(&self) -> bool {
        self.mx_rollup.unwrap_or(true)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderMatch {
    MxSuffix(String),
    DomainSuffix(String),
    HostName(String),
}

#[derive(Clone, Debug, Default)]
pub struct Provider {
    pub name: String,
    pub connection_limit: Option<serde_json::Value>,
    pub max_message_rate: Option<String>,
    pub matches: Vec<ProviderMatch>,
    pub params: Params,
    pub sources: BTreeMap<String, Params>,
    pub automation: Vec<Arc<Rule>>,
}

/// A `SetConfig` in force: `name = value` for the source's path to a site
/// (a rule that rolls up) or to a domain.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub source: String,
    pub site: Option<String>,
    pub domain: Option<String>,
    pub name: String,
    pub value: Json,
}

#[derive(Clone, Debug, Default)]
pub struct ShapingData {
    pub default: Entry,
    /// By lower-case name, without brackets or a trailing dot.
    pub domains: BTreeMap<String, Entry>,
    /// In the order the files define them.
    pub providers: Vec<Provider>,
}

/// A rule that matched, and whether its actions apply to the whole site
/// (rules under `default` and rolled-up domains) or to the domain.
#[derive(Clone, Debug)]
pub struct Matched {
    pub rule: Arc<Rule>,
    pub rollup: bool,
}

/// "Example.COM." → "example.com"; "[192.0.2.1]" → "192.0.2.1".
pub fn normalize(name: &str) -> String {
    let n = name.trim().trim_end_matches('.');
    let n = n
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(n);
    let n = n
        .strip_prefix("IPv6:")
        .or_else(|| n.strip_prefix("ipv6:"))
        .unwrap_or(n);
    n.to_ascii_lowercase()
}

/// "mx.example.com:25" → "mx.example.com"; "[::1]:25" → "::1"; a pinned
/// `name=addr` entry → its name.
pub fn host_part(h: &str) -> &str {
    let h = h.split('=').next().unwrap_or(h).trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => h.trim_end_matches('.'),
    }
}

fn site_hosts(site: &str) -> Vec<String> {
    site.split(',')
        .map(|h| host_part(h).to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

fn is_domain_name(d: &str) -> bool {
    !d.is_empty()
        && d.parse::<std::net::IpAddr>().is_err()
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `into` takes `from`'s keys; the [`MERGEABLE`] tables add entries.
fn merge_params(into: &mut Params, from: &Params) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Json::Object(a)), Json::Object(b)) if MERGEABLE.contains(&k.as_str()) => {
                a.extend(b.clone());
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_sources(into: &mut BTreeMap<String, Params>, from: BTreeMap<String, Params>) {
    for (name, p) in from {
        merge_params(into.entry(name).or_default(), &p);
    }
}

/// Whether `params` make a valid egress path on their own.
fn check_params(params: &Params) -> Result<(), String> {
    let cfg: EgressPathConfig = serde_path_to_error::deserialize(Json::Object(params.clone()))
        .map_err(|e| format!("key '{}': {}", e.path(), e.inner()))?;
    cfg.validate().map(|_| ())
}

struct Parsed {
    entry: Entry,
    replace_base: bool,
}

fn take_bool(t: &mut Params, key: &str) -> Result<Option<bool>, String> {
    match t.remove(key) {
        None => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(format!("key '{key}': expected true or false")),
    }
}

fn take_sources(t: &mut Params, provider: bool) -> Result<BTreeMap<String, Params>, String> {
    let mut out = BTreeMap::new();
    match t.remove("sources") {
        None => {}
        Some(Json::Object(m)) => {
            for (name, v) in m {
                let Json::Object(mut p) = v else {
                    return Err(format!("sources.{name:?}: expected a table"));
                };
                let selection = if provider {
                    p.remove(PROVIDER_SELECTION)
                } else {
                    None
                };
                check_params(&p).map_err(|e| format!("sources.{name:?}: {e}"))?;
                if let Some(sel) = selection {
                    check_selection(&sel).map_err(|e| format!("sources.{name:?}: {e}"))?;
                    p.insert(PROVIDER_SELECTION.into(), sel);
                }
                out.insert(name, p);
            }
        }
        Some(_) => return Err("key 'sources': expected a table of source tables".into()),
    }
    Ok(out)
}

fn check_selection(v: &Json) -> Result<(), String> {
    match v {
        Json::String(s) => crate::throttle::ThrottleSpec::parse(s)
            .map(|_| ())
            .map_err(|e| format!("key '{PROVIDER_SELECTION}': {e}")),
        _ => Err(format!(
            "key '{PROVIDER_SELECTION}': expected a rate such as \"10/h\""
        )),
    }
}

fn take_rules(t: &mut Params, place: &str) -> Result<Vec<Arc<Rule>>, String> {
    match t.remove("automation") {
        None => Ok(Vec::new()),
        Some(Json::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_rule(format!("{place} rule {}", i + 1), v)
                    .map(Arc::new)
                    .map_err(|e| format!("automation rule {}: {e}", i + 1))
            })
            .collect(),
        Some(_) => Err("key 'automation': expected a list of rule tables".into()),
    }
}

fn parse_entry(name: &str, v: Json) -> Result<Parsed, String> {
    let Json::Object(mut t) = v else {
        return Err("expected a table".into());
    };
    let mx_rollup = take_bool(&mut t, "mx_rollup")?;
    let replace_base = take_bool(&mut t, "replace_base")?.unwrap_or(false);
    let place = if name == "default" {
        "default".to_string()
    } else {
        format!("domain '{name}'")
    };
    let automation = take_rules(&mut t, &place)?;
    let sources = take_sources(&mut t, false)?;
    if t.contains_key(PROVIDER_SELECTION) {
        return Err(format!(
            "key '{PROVIDER_SELECTION}': only a [provider.\"x\"] table may set it"
        ));
    }
    check_params(&t)?;
    Ok(Parsed {
        entry: Entry {
            params: t,
            mx_rollup,
            sources,
            automation,
        },
        replace_base,
    })
}

fn parse_provider(name: &str, v: Json) -> Result<(Provider, bool), String> {
    let Json::Object(mut t) = v else {
        return Err("expected a table".into());
    };
    let replace_base = take_bool(&mut t, "replace_base")?.unwrap_or(false);
    let automation = take_rules(&mut t, &format!("provider '{name}'"))?;
    let sources = take_sources(&mut t, true)?;
    let connection_limit = match t.remove("provider_connection_limit") {
        None => None,
        Some(v) => {
            crate::throttle::Count::parse_json(v.clone())
                .map_err(|e| format!("key 'provider_connection_limit': {e}"))?;
            Some(v)
        }
    };
    let max_message_rate = match t.remove("provider_max_message_rate") {
        None => None,
        Some(Json::String(s)) => {
            crate::throttle::ThrottleSpec::parse(&s)
                .map_err(|e| format!("key 'provider_max_message_rate': {e}"))?;
            Some(s)
        }
        Some(_) => {
            return Err("key 'provider_max_message_rate': expected a rate such as \"100/s\"".into())
        }
    };
    let mut matches = Vec::new();
    match t.remove("match") {
        None => {}
        Some(Json::Array(list)) => {
            for m in list {
                let one = match &m {
                    Json::Object(o) if o.len() == 1 => o.iter().next(),
                    _ => None,
                };
                matches.push(match one {
                    Some((k, Json::String(v))) if k == "MXSuffix" => {
                        ProviderMatch::MxSuffix(v.to_ascii_lowercase())
                    }
                    Some((k, Json::String(v))) if k == "DomainSuffix" => {
                        ProviderMatch::DomainSuffix(v.to_ascii_lowercase())
                    }
                    Some((k, Json::String(v))) if k == "HostName" => {
                        ProviderMatch::HostName(normalize(v))
                    }
                    _ => {
                        return Err(format!(
                            "key 'match': {m}: expected {{MXSuffix=\"...\"}}, \
                             {{DomainSuffix=\"...\"}} or {{HostName=\"...\"}}"
                        ))
                    }
                });
            }
        }
        Some(_) => return Err("key 'match': expected a list".into()),
    }
    let selection = t.remove(PROVIDER_SELECTION);
    check_params(&t)?;
    if let Some(sel) = selection {
        check_selection(&sel)?;
        t.insert(PROVIDER_SELECTION.into(), sel);
    }
    Ok((
        Provider {
            name: name.to_string(),
            connection_limit,
            max_message_rate,
            matches,
            params: t,
            sources,
            automation,
        },
        replace_base,
    ))
}

impl ShapingData {
    /// Add one file's tables (`file` names it in errors).
    pub fn add_file(&mut self, file: &str, tables: Map<String, Json>) -> Result<(), String> {
        for (name, v) in tables {
            if name == "provider" {
                let Json::Object(provs) = v else {
                    return Err(format!(
                        "shaping {file}: [provider]: expected [provider.\"name\"] tables"
                    ));
                };
                for (pname, pv) in provs {
                    let (p, replace) = parse_provider(&pname, pv)
                        .map_err(|e| format!("shaping {file}: table [provider.{pname:?}]: {e}"))?;
                    self.add_provider(p, replace);
                }
                continue;
            }
            let parsed = parse_entry(&name, v)
                .map_err(|e| format!("shaping {file}: table [{name:?}]: {e}"))?;
            let key = normalize(&name);
            let slot = if key == "default" {
                &mut self.default
            } else {
                self.domains.entry(key).or_default()
            };
            merge_entry(slot, parsed);
        }
        Ok(())
    }

    fn add_provider(&mut self, p: Provider, replace_base: bool) {
        let Some(existing) = self.providers.iter_mut().find(|e| e.name == p.name) else {
            self.providers.push(p);
            return;
        };
        if replace_base {
            *existing = p;
            return;
        }
        existing.connection_limit = p.connection_limit.or(existing.connection_limit.take());
        existing.max_message_rate = p.max_message_rate.or(existing.max_message_rate.take());
        existing.matches.extend(p.matches);
        merge_params(&mut existing.params, &p.params);
        merge_sources(&mut existing.sources, p.sources);
        existing.automation.extend(p.automation);
    }

    /// Domains whose tables roll up to their MX site: their sites must be
    /// known to apply them to other domains.
    pub fn rollup_domains(&self) -> impl Iterator<Item = &str> {
        self.domains
            .iter()
            .filter(|(_, e)| e.rollup())
            .map(|(d, _)| d.as_str())
    }

    fn provider_matches(p: &Provider, domain: &str, hosts: &[String]) -> bool {
        if p.matches
            .iter()
            .any(|m| matches!(m, ProviderMatch::DomainSuffix(s) if domain.ends_with(s.as_str())))
        {
            return true;
        }
        let by_host = p
            .matches
            .iter()
            .any(|m| !matches!(m, ProviderMatch::DomainSuffix(_)));
        // Every host must match, so a domain whose MX mixes providers is
        // not taken for one of them.
        by_host
            && !hosts.is_empty()
            && hosts.iter().all(|h| {
                p.matches.iter().any(|m| match m {
                    ProviderMatch::MxSuffix(s) => h.ends_with(s.as_str()),
                    ProviderMatch::HostName(n) => h == n,
                    ProviderMatch::DomainSuffix(_) => false,
                })
            })
    }

    /// The providers whose `match` takes mail for `domain` at `site`.
    fn providers_for<'a>(&'a self, domain: &str, site: &str) -> Vec<&'a Provider> {
        if !is_domain_name(domain) {
            return Vec::new();
        }
        let hosts = site_hosts(site);
        self.providers
            .iter()
            .filter(|p| Self::provider_matches(p, domain, &hosts))
            .collect()
    }

    /// The rolled-up tables for mail to `domain` at `site`: the domain's
    /// own, and every other whose MX site (from `site_of`) is `site`.
    fn rollups_for<'a>(
        &'a self,
        domain: &str,
        site: &str,
        site_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<&'a Entry> {
        self.domains
            .iter()
            .filter(|(d, e)| {
                e.rollup()
                    && (d.as_str() == domain
                        || (!site.is_empty() && site_of(d).is_some_and(|s| s == site)))
            })
            .map(|(_, e)| e)
            .collect()
    }

    /// The `mx_rollup = false` tables for `domain`: the one named by it, and
    /// one named by an IP address the site goes to (a routing target).
    fn exact_for<'a>(&'a self, domain: &str, site: &str) -> Vec<&'a Entry> {
        let mut out: Vec<&Entry> = Vec::new();
        for host in site_hosts(site) {
            if host.parse::<std::net::IpAddr>().is_ok() && host != domain {
                if let Some(e) = self.domains.get(&host).filter(|e| !e.rollup()) {
                    out.push(e);
                }
            }
        }
        if let Some(e) = self.domains.get(domain).filter(|e| !e.rollup()) {
            out.push(e);
        }
        out
    }

    /// The merged options for `domain` from `source` to `site`, in
    /// KumoMTA's order: default, providers, their sources, rolled-up
    /// tables, the domain's own, then the sources of those two, and last
    /// the automation overrides in force.
    pub fn resolve(
        &self,
        domain: &str,
        source: &str,
        site: &str,
        site_of: &dyn Fn(&str) -> Option<String>,
        overrides: &[Override],
    ) -> Params {
        let domain = normalize(domain);
        let mut p = self.default.params.clone();
        let providers = self.providers_for(&domain, site);
        for prov in &providers {
            merge_params(&mut p, &prov.params);
            apply_provider(prov, source, &mut p);
        }
        for prov in &providers {
            if let Some(s) = prov.sources.get(source) {
                merge_params(&mut p, s);
                apply_provider(prov, source, &mut p);
            }
        }
        let rollups = self.rollups_for(&domain, site, site_of);
        let exact = self.exact_for(&domain, site);
        for e in rollups.iter().chain(&exact) {
            merge_params(&mut p, &e.params);
        }
        for e in rollups.iter().chain(&exact) {
            if let Some(s) = e.sources.get(source) {
                merge_params(&mut p, s);
            }
        }
        for o in overrides.iter().filter(|o| o.source == source) {
            let applies = o.site.as_deref().is_some_and(|s| s == site)
                || o.domain.as_deref().is_some_and(|d| d == domain);
            if applies {
                merge_params(
                    &mut p,
                    &Params::from_iter([(o.name.clone(), o.value.clone())]),
                );
            }
        }
        p.remove(PROVIDER_SELECTION);
        p
    }

    /// The automation rules a reply from `site` for `domain` matches.
    pub fn match_rules(
        &self,
        domain: &str,
        site: &str,
        reply: &str,
        internal: bool,
        site_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Matched> {
        let domain = normalize(domain);
        let mut out = Vec::new();
        let mut add = |rules: &[Arc<Rule>], rollup: bool| {
            for r in rules.iter().filter(|r| r.matches(reply, internal)) {
                out.push(Matched {
                    rule: r.clone(),
                    rollup,
                });
            }
        };
        add(&self.default.automation, true);
        for prov in self.providers_for(&domain, site) {
            add(&prov.automation, false);
        }
        for e in self.rollups_for(&domain, site, site_of) {
            add(&e.automation, true);
        }
        for e in self.exact_for(&domain, site) {
            add(&e.automation, false);
        }
        out
    }
}

/// Merged options as an egress path.
pub fn to_config(p: Params) -> Result<EgressPathConfig, String> {
    serde_json::from_value(Json::Object(p)).map_err(|e| format!("shaping: {e}"))
}

fn merge_entry(slot: &mut Entry, parsed: Parsed) {
    let Parsed {
        entry,
        replace_base,
    } = parsed;
    if replace_base {
        *slot = entry;
        return;
    }
    merge_params(&mut slot.params, &entry.params);
    merge_sources(&mut slot.sources, entry.sources);
    slot.automation.extend(entry.automation);
    if entry.mx_rollup.is_some() {
        slot.mx_rollup = entry.mx_rollup;
    }
}

/// A provider's limits become limits shared by name across its sites, for
/// this source: `provider_connection_limit`, `provider_max_message_rate`
/// and `provider_source_selection_rate`.
fn apply_provider(prov: &Provider, source: &str, p: &mut Params) {
    let name = &prov.name;
    let mut implied = Params::new();
    implied.insert("provider_name".into(), Json::String(name.clone()));
    if let Some(limit) = &prov.connection_limit {
        implied.insert(
            "additional_connection_limits".into(),
            Json::Object(Params::from_iter([(
                format!("shaping-provider-{name}-{source}-limit"),
                limit.clone(),
            )])),
        );
    }
    if let Some(rate) = &prov.max_message_rate {
        implied.insert(
            "additional_message_rate_throttles".into(),
            Json::Object(Params::from_iter([(
                format!("shaping-provider-{name}-{source}-rate"),
                Json::String(rate.clone()),
            )])),
        );
    }
    if let Some(rate) = p.remove(PROVIDER_SELECTION) {
        implied.insert(
            "additional_source_selection_rates".into(),
            Json::Object(Params::from_iter([(
                format!("shaping-provider-{name}-{source}-selection-rate"),
                rate,
            )])),
        );
    }
    merge_params(p, &implied);
}
