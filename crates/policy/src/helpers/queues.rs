//! `policy-extras.queue`: tenants, campaigns and per-domain queue settings
//! from TOML/JSON files or inline tables, with the semantics of KumoMTA's
//! `assets/policy-extras/queue.lua`.
//!
//! Data (every key is checked at `setup`; errors name the file, the table
//! and the key):
//! - top level: `tenant_header`, `remove_tenant_header`, `campaign_header`,
//!   `remove_campaign_header`, `default_tenant`; `scheduling_header` is
//!   refused (Ironpost has no scheduled sending).
//! - tenants: `[tenant.'name']` (or `[tenants.'name']`, the only spelling an
//!   inline table may use): `require_authz`, queue options, and
//!   `[tenant.'name'.campaigns.'c']`, where KumoMTA reads only
//!   `overall_max_message_rate` (so every key there is refused).
//! - queues: `[queue.'domain']` (`default`, exact names and `*.suffix`
//!   wildcards), `[queue.'domain'.'tenant']`,
//!   `[queue.'domain'.'tenant'.'campaign']`; the explicit spellings
//!   `tenants.'t'` / `campaigns.'c'` work too, and are the only ones
//!   `[queues.'domain']` accepts. Each level takes queue options and
//!   `routing_domain`.
//!
//! `get_queue_config(domain, tenant, campaign)` merges, later winning key
//! by key: `[queue.default]`, `[queue.'domain']`, `[tenant.'tenant']`,
//! `[queue.'domain'.'tenant']`, `[queue.'domain'.'tenant'.'campaign']`.
//! `routing_domain` is not a queue option: `apply` resolves it the same way
//! for the recipient's domain and sets the message's `routing_domain` meta.
//!
//! `apply(msg)` takes the campaign from `campaign_header`, the tenant from
//! `tenant_header` (or `default_tenant`), removes the headers when asked
//! (before any signing that follows in the policy), and refuses with
//! `550 5.7.1` naming the tenant: a tenant with no `[tenant]` table, a
//! tenant with `require_authz` reached without AUTH, and an `authz_id` not
//! in that list.

use super::{DomainMap, Source};
use crate::delivery_config::QueueConfig;
use crate::error::Rejection;
use crate::kumo::QueueConfigValue;
use crate::message::MessageHandle;
use mlua::{AnyUserData, Lua, LuaSerdeExt, Table, Value};
use serde_json::{Map, Value as Json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

const MODULE: &str = "policy-extras.queue";

/// Every option KumoMTA's `kumo.make_queue_config` takes
/// (crates/kumod/src/queue/config.rs). Those Ironpost's `QueueConfig`
/// lacks are refused by name.
const KUMO_QUEUE_OPTIONS: &[&str] = &[
    "retry_interval",
    "max_retry_interval",
    "max_age",
    "egress_pool",
    "max_message_rate",
    "protocol",
    "reap_interval",
    "refresh_interval",
    "timerwheel_tick_interval",
    "strategy",
    "refresh_strategy",
    "provider_name",
    "shrink_policy",
];

const THROTTLES: &str = "is not supported yet: throttles are not implemented";

/// One level's settings: validated `make_queue_config` options and the
/// `routing_domain`.
#[derive(Debug, Default, Clone)]
struct Level {
    opts: Map<String, Json>,
    routing_domain: Option<String>,
}

impl Level {
    fn merge(&mut self, other: Level) {
        self.opts.extend(other.opts);
        if other.routing_domain.is_some() {
            self.routing_domain = other.routing_domain;
        }
    }
}

#[derive(Debug, Default, Clone)]
struct DomainTenant {
    level: Level,
    campaigns: HashMap<String, Level>,
}

impl DomainTenant {
    fn merge(&mut self, other: DomainTenant) {
        self.level.merge(other.level);
        for (name, c) in other.campaigns {
            self.campaigns.entry(name).or_default().merge(c);
        }
    }
}

#[derive(Debug, Default, Clone)]
struct DomainCfg {
    level: Level,
    tenants: HashMap<String, DomainTenant>,
}

impl DomainCfg {
    fn merge(&mut self, other: DomainCfg) {
        self.level.merge(other.level);
        for (name, t) in other.tenants {
            self.tenants.entry(name).or_default().merge(t);
        }
    }
}

#[derive(Debug, Default, Clone)]
struct TenantCfg {
    opts: Map<String, Json>,
    require_authz: Option<Vec<String>>,
}

impl TenantCfg {
    fn merge(&mut self, other: TenantCfg) {
        self.opts.extend(other.opts);
        if other.require_authz.is_some() {
            self.require_authz = other.require_authz;
        }
    }
}

/// One source, or all of them merged in order.
#[derive(Debug, Default)]
struct Parsed {
    tenant_header: Option<String>,
    remove_tenant_header: Option<bool>,
    campaign_header: Option<String>,
    remove_campaign_header: Option<bool>,
    default_tenant: Option<String>,
    tenants: HashMap<String, TenantCfg>,
    /// Keyed by the lower-cased domain pattern.
    queues: HashMap<String, DomainCfg>,
}

impl Parsed {
    fn merge(&mut self, other: Parsed) {
        macro_rules! take {
            ($($f:ident),*) => {$(
                if other.$f.is_some() {
                    self.$f = other.$f;
                }
            )*};
        }
        take!(
            tenant_header,
            remove_tenant_header,
            campaign_header,
            remove_campaign_header,
            default_tenant
        );
        for (name, t) in other.tenants {
            self.tenants.entry(name).or_default().merge(t);
        }
        for (name, d) in other.queues {
            self.queues.entry(name).or_default().merge(d);
        }
    }
}

/// The loaded helper data.
pub struct QueueData {
    tenant_header: Option<String>,
    remove_tenant_header: bool,
    campaign_header: Option<String>,
    remove_campaign_header: bool,
    default_tenant: Option<String>,
    tenants: HashMap<String, TenantCfg>,
    queues: DomainMap<DomainCfg>,
    /// Every `egress_pool` the data names, with the table naming it, so
    /// that start-up can check each pool is defined.
    pools: Vec<(String, String)>,
}

/// How one source's errors start: the module, the source, the table.
struct Ctx<'a> {
    source: &'a str,
}

impl Ctx<'_> {
    fn err(&self, table: &str, msg: impl std::fmt::Display) -> String {
        if table.is_empty() {
            format!("{MODULE}: {}: {msg}", self.source)
        } else {
            format!("{MODULE}: {}: table [{table}]: {msg}", self.source)
        }
    }
}

fn quoted(name: &str) -> String {
    format!("'{name}'")
}

fn as_table<'a>(
    ctx: &Ctx,
    table: &str,
    key: &str,
    v: &'a Json,
) -> Result<&'a Map<String, Json>, String> {
    v.as_object()
        .ok_or_else(|| ctx.err(table, format!("key '{key}': expected a table")))
}

fn as_string(ctx: &Ctx, table: &str, key: &str, v: &Json) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ctx.err(table, format!("key '{key}': expected a string")))
}

/// Is `key` a queue option name (Ironpost's or KumoMTA's)?
fn is_queue_option(key: &str) -> bool {
    KUMO_QUEUE_OPTIONS.contains(&key) || super::struct_fields::<QueueConfig>().contains(&key)
}

/// Validate one queue option; `Ok` only for options Ironpost honours.
fn check_queue_option(key: &str, value: &Json) -> Result<(), String> {
    if super::struct_fields::<QueueConfig>().contains(&key) {
        let mut one = Map::new();
        one.insert(key.to_string(), value.clone());
        let cfg: QueueConfig = serde_path_to_error::deserialize(Json::Object(one))
            .map_err(|e| format!("key '{}': {}", e.path(), e.inner()))?;
        return cfg.check_supported();
    }
    if key == "max_message_rate" {
        return Err(format!("key '{key}' {THROTTLES}"));
    }
    if KUMO_QUEUE_OPTIONS.contains(&key) {
        return Err(format!(
            "key '{key}': this KumoMTA queue option is not supported by Ironpost; remove the key"
        ));
    }
    Err(format!("unknown key '{key}'"))
}

/// A queue option or `routing_domain` in a queue, queue-tenant or
/// queue-campaign table. `Ok(false)`: not such a key.
fn level_key(ctx: &Ctx, table: &str, level: &mut Level, k: &str, v: &Json) -> Result<bool, String> {
    match k {
        "routing_domain" => {
            level.routing_domain = Some(as_string(ctx, table, k, v)?);
            Ok(true)
        }
        "overall_max_message_rate" => Err(ctx.err(table, format!("key '{k}' {THROTTLES}"))),
        _ if is_queue_option(k) => {
            check_queue_option(k, v).map_err(|e| ctx.err(table, e))?;
            level.opts.insert(k.to_string(), v.clone());
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn parse_campaign(ctx: &Ctx, table: &str, data: &Map<String, Json>) -> Result<Level, String> {
    let mut level = Level::default();
    for (k, v) in data {
        if !level_key(ctx, table, &mut level, k, v)? {
            return Err(ctx.err(table, format!("unknown key '{k}'")));
        }
    }
    Ok(level)
}

/// `[queue.'d'.'t']` (`implicit`: other sub-tables are campaigns) or
/// `[...tenants.'t']` (campaigns only under `campaigns`).
fn parse_domain_tenant(
    ctx: &Ctx,
    table: &str,
    data: &Map<String, Json>,
    implicit: bool,
) -> Result<DomainTenant, String> {
    let mut out = DomainTenant::default();
    for (k, v) in data {
        if level_key(ctx, table, &mut out.level, k, v)? {
            continue;
        }
        if k == "campaigns" {
            for (name, c) in as_table(ctx, table, k, v)? {
                let t = format!("{table}.campaigns.{}", quoted(name));
                let level = parse_campaign(ctx, &t, as_table(ctx, &t, name, c)?)?;
                out.campaigns.entry(name.clone()).or_default().merge(level);
            }
        } else if let (true, Some(c)) = (implicit, v.as_object()) {
            let t = format!("{table}.{}", quoted(k));
            let level = parse_campaign(ctx, &t, c)?;
            out.campaigns.entry(k.clone()).or_default().merge(level);
        } else {
            return Err(ctx.err(table, format!("unknown key '{k}'")));
        }
    }
    Ok(out)
}

/// `[queue.'d']` (`implicit`: other sub-tables are tenants) or
/// `[queues.'d']` (tenants only under `tenants`).
fn parse_domain(
    ctx: &Ctx,
    table: &str,
    name: &str,
    data: &Map<String, Json>,
    implicit: bool,
) -> Result<DomainCfg, String> {
    let mut out = DomainCfg::default();
    for (k, v) in data {
        if level_key(ctx, table, &mut out.level, k, v)? {
            continue;
        }
        let tenant = if k == "tenants" {
            let mut tenants = Vec::new();
            for (tname, t) in as_table(ctx, table, k, v)? {
                let tt = format!("{table}.tenants.{}", quoted(tname));
                let parsed = parse_domain_tenant(ctx, &tt, as_table(ctx, &tt, tname, t)?, false)?;
                tenants.push((tname.clone(), parsed, tt));
            }
            tenants
        } else if let (true, Some(t)) = (implicit, v.as_object()) {
            let tt = format!("{table}.{}", quoted(k));
            vec![(k.clone(), parse_domain_tenant(ctx, &tt, t, true)?, tt)]
        } else {
            return Err(ctx.err(table, format!("unknown key '{k}'")));
        };
        for (tname, parsed, tt) in tenant {
            // KumoMTA reads only the options of [queue.default] itself.
            if name.eq_ignore_ascii_case("default") {
                return Err(ctx.err(
                    &tt,
                    "tenant tables under the default queue are never applied by KumoMTA's \
                     queue helper, so Ironpost refuses them; use [queue.'domain'.'tenant'] \
                     or [tenant.'tenant']",
                ));
            }
            out.tenants.entry(tname).or_default().merge(parsed);
        }
    }
    Ok(out)
}

/// `[tenant.'x'.campaigns.'c']`: KumoMTA accepts queue options and
/// `routing_domain` here but reads only `overall_max_message_rate`.
fn check_tenant_campaign(ctx: &Ctx, table: &str, data: &Map<String, Json>) -> Result<(), String> {
    let Some((k, v)) = data.iter().next() else {
        return Ok(());
    };
    if k == "overall_max_message_rate" {
        return Err(ctx.err(table, format!("key '{k}' {THROTTLES}")));
    }
    if k != "routing_domain" {
        // Unknown keys, refused options and bad values are reported as such.
        check_queue_option(k, v).map_err(|e| ctx.err(table, e))?;
    }
    Err(ctx.err(
        table,
        format!(
            "key '{k}': KumoMTA's queue helper accepts this key in a tenant's campaigns \
             but never applies it, so Ironpost refuses it; set it in \
             [queue.'domain'.'tenant'.'campaign']"
        ),
    ))
}

fn parse_tenant(ctx: &Ctx, table: &str, data: &Map<String, Json>) -> Result<TenantCfg, String> {
    let mut out = TenantCfg::default();
    for (k, v) in data {
        match k.as_str() {
            "require_authz" => {
                let list: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| {
                    ctx.err(table, format!("key '{k}': expected a list of strings"))
                })?;
                out.require_authz = Some(list);
            }
            "campaigns" => {
                for (name, c) in as_table(ctx, table, k, v)? {
                    let t = format!("{table}.campaigns.{}", quoted(name));
                    check_tenant_campaign(ctx, &t, as_table(ctx, &t, name, c)?)?;
                }
            }
            "overall_max_message_rate" => {
                return Err(ctx.err(table, format!("key '{k}' {THROTTLES}")))
            }
            "routing_domain" => {
                return Err(ctx.err(
                    table,
                    format!(
                        "key '{k}' is not accepted in a tenant table (KumoMTA's queue helper \
                         reads it only from [queue] tables); use [queue.'domain'.'tenant']"
                    ),
                ))
            }
            _ => {
                check_queue_option(k, v).map_err(|e| ctx.err(table, e))?;
                out.opts.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

fn parse_source(src: &Source, inline: bool) -> Result<Parsed, String> {
    let ctx = Ctx { source: &src.name };
    let mut out = Parsed::default();
    for (k, v) in &src.data {
        let flag = |v: &Json| {
            v.as_bool()
                .ok_or_else(|| ctx.err("", format!("key '{k}': expected true or false")))
        };
        match k.as_str() {
            "scheduling_header" => {
                return Err(ctx.err(
                    "",
                    format!(
                        "key '{k}' is not supported yet: Ironpost has no scheduled sending \
                         (KumoMTA's msg:import_scheduling_header); remove the key"
                    ),
                ))
            }
            "tenant_header" => out.tenant_header = Some(as_string(&ctx, "", k, v)?),
            "campaign_header" => out.campaign_header = Some(as_string(&ctx, "", k, v)?),
            "default_tenant" => out.default_tenant = Some(as_string(&ctx, "", k, v)?),
            "remove_tenant_header" => out.remove_tenant_header = Some(flag(v)?),
            "remove_campaign_header" => out.remove_campaign_header = Some(flag(v)?),
            "tenant" | "tenants" if k == "tenants" || !inline => {
                for (name, t) in as_table(&ctx, "", k, v)? {
                    let table = format!("{k}.{}", quoted(name));
                    let parsed = parse_tenant(&ctx, &table, as_table(&ctx, &table, name, t)?)?;
                    out.tenants.entry(name.clone()).or_default().merge(parsed);
                }
            }
            "queue" | "queues" if k == "queues" || !inline => {
                for (name, d) in as_table(&ctx, "", k, v)? {
                    let table = format!("{k}.{}", quoted(name));
                    let parsed = parse_domain(
                        &ctx,
                        &table,
                        name,
                        as_table(&ctx, &table, name, d)?,
                        k == "queue",
                    )?;
                    out.queues
                        .entry(name.trim_end_matches('.').to_ascii_lowercase())
                        .or_default()
                        .merge(parsed);
                }
            }
            "tenant" | "queue" => {
                return Err(ctx.err(
                    "",
                    format!(
                        "key '{k}': an inline table is typed as in KumoMTA and spells it \
                         '{k}s' (with explicit 'tenants' and 'campaigns' sub-tables)"
                    ),
                ))
            }
            _ => return Err(ctx.err("", format!("unknown key '{k}'"))),
        }
    }
    Ok(out)
}

/// Check and load one data file's text (TOML, or JSON when `json`), as
/// `setup` does with a file name: no file, no Lua.
pub fn parse(text: &str, json: bool) -> Result<QueueData, String> {
    load(&[Source::from_text("(text)", text, json)?], &[false])
}

fn load(sources: &[Source], inline: &[bool]) -> Result<QueueData, String> {
    let mut all = Parsed::default();
    for (src, inline) in sources.iter().zip(inline) {
        all.merge(parse_source(src, *inline)?);
    }
    let pool_of = |opts: &Map<String, Json>| {
        opts.get("egress_pool")
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let mut pools = Vec::new();
    for (t, cfg) in &all.tenants {
        pools.extend(pool_of(&cfg.opts).map(|p| (format!("[tenant.'{t}']"), p)));
    }
    for (d, cfg) in &all.queues {
        pools.extend(pool_of(&cfg.level.opts).map(|p| (format!("[queue.'{d}']"), p)));
        for (t, dt) in &cfg.tenants {
            pools.extend(pool_of(&dt.level.opts).map(|p| (format!("[queue.'{d}'.'{t}']"), p)));
            for (c, level) in &dt.campaigns {
                pools.extend(
                    pool_of(&level.opts).map(|p| (format!("[queue.'{d}'.'{t}'.'{c}']"), p)),
                );
            }
        }
    }
    pools.sort();
    let mut queues = DomainMap::default();
    for (name, d) in all.queues {
        queues.insert(&name, d);
    }
    let data = QueueData {
        pools,
        tenant_header: all.tenant_header,
        remove_tenant_header: all.remove_tenant_header.unwrap_or(false),
        campaign_header: all.campaign_header,
        remove_campaign_header: all.remove_campaign_header.unwrap_or(false),
        default_tenant: all.default_tenant,
        tenants: all.tenants,
        queues,
    };
    Ok(data)
}

fn reject(text: String) -> mlua::Error {
    mlua::Error::external(Rejection { code: 550, text })
}

fn recipient_domain(rcpt: &str) -> String {
    rcpt.rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl QueueData {
    /// KumoMTA's `resolve_config`: the options of each matching level, later
    /// levels winning key by key, and the last `routing_domain` set.
    fn resolve(
        &self,
        domain: &str,
        tenant: Option<&str>,
        campaign: Option<&str>,
    ) -> (Map<String, Json>, Option<String>) {
        let mut opts = Map::new();
        let mut routing_domain = None;
        let mut take = |level: &Level| {
            opts.extend(level.opts.clone());
            if level.routing_domain.is_some() {
                routing_domain.clone_from(&level.routing_domain);
            }
        };
        if let Some(d) = self.queues.get("default") {
            take(&d.level);
        }
        let domain_cfg = self.queues.get(domain);
        if let Some(d) = domain_cfg {
            take(&d.level);
        }
        if let Some(t) = tenant.and_then(|t| self.tenants.get(t)) {
            take(&Level {
                opts: t.opts.clone(),
                routing_domain: None,
            });
        }
        if let Some(dt) = domain_cfg.zip(tenant).and_then(|(d, t)| d.tenants.get(t)) {
            take(&dt.level);
            if let Some(c) = campaign.and_then(|c| dt.campaigns.get(c)) {
                take(c);
            }
        }
        (opts, routing_domain)
    }

    /// What `get_queue_config(domain, tenant, campaign)` returns.
    pub fn queue_config(
        &self,
        domain: &str,
        tenant: Option<&str>,
        campaign: Option<&str>,
    ) -> Result<QueueConfig, String> {
        let (opts, _) = self.resolve(domain, tenant, campaign);
        let cfg: QueueConfig = serde_path_to_error::deserialize(Json::Object(opts))
            .map_err(|e| format!("{MODULE}: key '{}': {}", e.path(), e.inner()))?;
        cfg.check_supported()
            .map_err(|e| format!("{MODULE}: {e}"))?;
        Ok(cfg)
    }

    fn apply(&self, msg: &MessageHandle) -> mlua::Result<()> {
        let mut m = msg.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = &self.campaign_header {
            if let Some(c) = crate::headers::first_value(&m.data, h) {
                m.meta.insert("campaign".into(), Json::String(c));
                if self.remove_campaign_header {
                    crate::headers::remove_all(&mut m.data, h);
                }
            }
        }
        let mut tenant = None;
        if let Some(h) = &self.tenant_header {
            if let Some(t) = crate::headers::first_value(&m.data, h) {
                tenant = Some((t, format!("the '{h}' header")));
                if self.remove_tenant_header {
                    crate::headers::remove_all(&mut m.data, h);
                }
            }
        }
        if tenant.is_none() {
            tenant = self
                .default_tenant
                .clone()
                .map(|t| (t, "the default_tenant option".to_string()));
        }
        if let Some((name, source)) = tenant {
            let Some(t) = self.tenants.get(&name) else {
                return Err(reject(format!(
                    "5.7.1 tenant '{name}' specified by {source} is not defined in the queue config"
                )));
            };
            if let Some(allowed) = &t.require_authz {
                match m.meta.get("authz_id").and_then(Json::as_str) {
                    None => {
                        return Err(reject(format!(
                            "5.7.1 tenant '{name}' requires an authenticated sender"
                        )))
                    }
                    Some(authz) if !allowed.iter().any(|a| a == authz) => {
                        return Err(reject(format!(
                            "5.7.1 '{authz}' is not authorized to send for tenant '{name}'"
                        )))
                    }
                    Some(_) => {}
                }
            }
            m.meta.insert("tenant".into(), Json::String(name));
        }

        // KumoMTA sets routing_domain from its first (and, there, only)
        // recipient domain. An Ironpost message may hold several domains and
        // the meta applies to all of them, so they must agree.
        let text = |k: &str| m.meta.get(k).and_then(Json::as_str).map(str::to_string);
        let (tenant, campaign) = (text("tenant"), text("campaign"));
        let (tenant, campaign) = (tenant.as_deref(), campaign.as_deref());
        let domains: BTreeSet<String> = m.recipients.iter().map(|r| recipient_domain(r)).collect();
        let mut routes: Vec<(&String, Option<String>)> = domains
            .iter()
            .map(|d| (d, self.resolve(d, tenant, campaign).1))
            .collect();
        routes.dedup_by(|a, b| a.1 == b.1);
        match routes.as_slice() {
            [] | [(_, None)] => {}
            [(_, Some(rd))] => {
                let rd = Json::String(rd.clone());
                m.meta.insert("routing_domain".into(), rd);
            }
            _ => {
                let list: Vec<String> = domains
                    .iter()
                    .map(|d| match self.resolve(d, tenant, campaign).1 {
                        Some(rd) => format!("{d} -> {rd}"),
                        None => format!("{d} -> (its own MX)"),
                    })
                    .collect();
                return Err(mlua::Error::RuntimeError(format!(
                    "{MODULE}: the recipients' domains have different routing_domain \
                     settings ({}), and a message has one routing_domain; send one \
                     message per routing domain",
                    list.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// `setup_with_options { file_names = {...}, skip_queue_config_hook,
/// invalidate_with_epoch }`.
struct SetupOptions {
    file_names: Vec<Value>,
    skip_queue_config_hook: bool,
}

fn setup_options(opts: Table) -> mlua::Result<SetupOptions> {
    let rt = |m: String| mlua::Error::RuntimeError(format!("{MODULE}: setup_with_options: {m}"));
    let mut out = SetupOptions {
        file_names: Vec::new(),
        skip_queue_config_hook: false,
    };
    let mut have_files = false;
    for pair in opts.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let key = match &k {
            Value::String(s) => s.to_str()?.to_string(),
            other => return Err(rt(format!("unexpected key {other:?}"))),
        };
        match key.as_str() {
            "file_names" => {
                let Value::Table(t) = v else {
                    return Err(rt("key 'file_names': expected a list".into()));
                };
                out.file_names = t.sequence_values::<Value>().collect::<mlua::Result<_>>()?;
                have_files = true;
            }
            "skip_queue_config_hook" => match v {
                Value::Boolean(b) => out.skip_queue_config_hook = b,
                Value::Nil => {}
                _ => {
                    return Err(rt(
                        "key 'skip_queue_config_hook': expected true or false".into()
                    ))
                }
            },
            "invalidate_with_epoch" => match v {
                Value::Boolean(false) | Value::Nil => {}
                Value::Boolean(true) => {
                    return Err(rt(
                        "key 'invalidate_with_epoch' = true is not supported: Ironpost reads \
                         the queue data once at start and has no configuration epoch"
                            .into(),
                    ))
                }
                _ => {
                    return Err(rt(
                        "key 'invalidate_with_epoch': expected true or false".into()
                    ))
                }
            },
            _ => return Err(rt(format!("unknown key '{key}'"))),
        }
    }
    if !have_files {
        return Err(rt("key 'file_names' is required".into()));
    }
    Ok(out)
}

fn setup(lua: &Lua, opts: SetupOptions) -> mlua::Result<Table> {
    super::configure_once(lua, MODULE)?;
    let inline: Vec<bool> = opts
        .file_names
        .iter()
        .map(|v| matches!(v, Value::Table(_)))
        .collect();
    let file_names = opts.file_names.clone();
    let sources =
        super::load_sources(lua, MODULE, opts.file_names).map_err(mlua::Error::RuntimeError)?;
    let data = Arc::new(load(&sources, &inline).map_err(mlua::Error::RuntimeError)?);
    for (table, pool) in &data.pools {
        crate::kumo::require_egress_pool(lua, &format!("{MODULE}: {table}"), pool)?;
    }

    let helper = lua.create_table()?;
    helper.set("file_names", lua.create_sequence_from(file_names)?)?;
    let d = data.clone();
    helper.set(
        "apply",
        lua.create_function(move |_, (_this, msg): (Value, AnyUserData)| {
            let handle = msg.borrow::<MessageHandle>()?.clone();
            d.apply(&handle)
        })?,
    )?;
    let d = data.clone();
    helper.set(
        "resolve_config",
        lua.create_function(
            move |lua,
                  (_this, domain, tenant, campaign): (
                Value,
                String,
                Option<String>,
                Option<String>,
            )| {
                let (opts, _) = d.resolve(&domain, tenant.as_deref(), campaign.as_deref());
                lua.to_value(&Json::Object(opts))
            },
        )?,
    )?;
    let d = data.clone();
    let get_queue_config = lua.create_function(
        move |_,
              (domain, tenant, campaign, _routing): (
            String,
            Option<String>,
            Option<String>,
            Value,
        )| {
            let cfg = d
                .queue_config(&domain, tenant.as_deref(), campaign.as_deref())
                .map_err(mlua::Error::RuntimeError)?;
            Ok(QueueConfigValue(cfg))
        },
    )?;
    helper.set("get_queue_config", get_queue_config.clone())?;
    if !opts.skip_queue_config_hook {
        crate::kumo::register_helper_handler(lua, "get_queue_config", get_queue_config)?;
    }
    Ok(helper)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<Value>)| {
            setup(
                lua,
                SetupOptions {
                    file_names: files,
                    skip_queue_config_hook: false,
                },
            )
        })?,
    )?;
    m.set(
        "setup_with_options",
        lua.create_function(|lua, (_this, opts): (Value, Table)| setup(lua, setup_options(opts)?))?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(toml_text: &str) -> Result<QueueData, String> {
        let t: toml::Value = toml::from_str(toml_text).unwrap();
        let Json::Object(data) = serde_json::to_value(t).unwrap() else {
            unreachable!()
        };
        load(
            &[Source {
                name: "q.toml".into(),
                data,
            }],
            &[false],
        )
    }

    fn max_age(d: &QueueData, domain: &str, t: Option<&str>, c: Option<&str>) -> u64 {
        d.queue_config(domain, t, c).unwrap().max_age.as_secs() / 3600
    }

    /// The precedence of KumoMTA's resolve_config (queue.lua): default,
    /// domain, tenant, domain+tenant, domain+tenant+campaign.
    #[test]
    fn precedence() {
        let d = data(
            "[queue.default]\nmax_age = '24h'\n[queue.'gmail.com']\nmax_age = '22h'\n\
             [tenant.'t']\nmax_age = '10h'\n[queue.'gmail.com'.'t']\nmax_age = '5h'\n\
             [queue.'gmail.com'.'t'.'c']\nmax_age = '2h'\n",
        )
        .unwrap();
        assert_eq!(max_age(&d, "other.com", None, None), 24);
        assert_eq!(max_age(&d, "gmail.com", None, None), 22);
        assert_eq!(max_age(&d, "other.com", Some("t"), None), 10);
        assert_eq!(max_age(&d, "gmail.com", Some("t"), None), 5);
        assert_eq!(max_age(&d, "gmail.com", Some("t"), Some("c")), 2);
        assert_eq!(max_age(&d, "gmail.com", Some("t"), Some("x")), 5);
        assert_eq!(max_age(&d, "gmail.com", Some("u"), Some("c")), 22);
    }

    #[test]
    fn explicit_and_implicit_spellings_merge() {
        let d = data(
            "[queue.'a.test'.tenants.'t']\nmax_age = '3h'\n[queue.'a.test'.tenants.'t'.campaigns.'c']\n\
             max_age = '4h'\n[queues.'b.test'.tenants.'t'.campaigns.'c']\nmax_age = '6h'\n",
        )
        .unwrap();
        assert_eq!(max_age(&d, "a.test", Some("t"), None), 3);
        assert_eq!(max_age(&d, "a.test", Some("t"), Some("c")), 4);
        assert_eq!(max_age(&d, "b.test", Some("t"), Some("c")), 6);
        let err = data("[queues.'b.test'.'t']\nmax_age = '6h'\n")
            .err()
            .unwrap();
        assert!(
            err.contains("[queues.'b.test']") && err.contains("'t'"),
            "{err}"
        );
    }

    #[test]
    fn refusals_name_table_and_key() {
        for (text, table, key) in [
            (
                "scheduling_header = 'X-Schedule'\n",
                "",
                "scheduling_header",
            ),
            (
                "[queue.'a.test']\nmax_message_rate = '10/s'\n",
                "[queue.'a.test']",
                "max_message_rate",
            ),
            (
                "[tenant.'t']\noverall_max_message_rate = '10/s'\n",
                "[tenant.'t']",
                "overall_max_message_rate",
            ),
            (
                "[tenant.'t'.campaigns.'c']\noverall_max_message_rate = '1/s'\n",
                "[tenant.'t'.campaigns.'c']",
                "overall_max_message_rate",
            ),
            (
                "[tenant.'t'.campaigns.'c']\nmax_age = '1h'\n",
                "[tenant.'t'.campaigns.'c']",
                "max_age",
            ),
            (
                "[tenant.'t']\nrouting_domain = 'x'\n",
                "[tenant.'t']",
                "routing_domain",
            ),
            (
                "[queue.'a.test']\nshrink_policy = []\n",
                "[queue.'a.test']",
                "shrink_policy",
            ),
            (
                "[queue.'a.test'.'t']\nmax_agee = '1h'\n",
                "[queue.'a.test'.'t']",
                "max_agee",
            ),
            (
                "[queue.'a.test']\nmax_age = true\n",
                "[queue.'a.test']",
                "max_age",
            ),
            (
                "[queue.default.'t']\nmax_age = '1h'\n",
                "[queue.'default'.'t']",
                "never applied",
            ),
            ("[tenant.'t']\nbogus = 1\n", "[tenant.'t']", "bogus"),
        ] {
            let err = data(text)
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"));
            assert!(err.contains("q.toml"), "{err}");
            assert!(err.contains(table) && err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn routing_domain_resolves_like_options() {
        let d = data(
            "[queue.default]\nrouting_domain = 'hub.test'\n[queue.'a.test']\nrouting_domain = 'a-mx.test'\n\
             [queue.'a.test'.'t'.'c']\nrouting_domain = 'c-mx.test'\n",
        )
        .unwrap();
        assert_eq!(
            d.resolve("z.test", None, None).1.as_deref(),
            Some("hub.test")
        );
        assert_eq!(
            d.resolve("a.test", Some("t"), None).1.as_deref(),
            Some("a-mx.test")
        );
        assert_eq!(
            d.resolve("a.test", Some("t"), Some("c")).1.as_deref(),
            Some("c-mx.test")
        );
        // Not a make_queue_config option: never part of the queue config.
        assert!(!d
            .resolve("a.test", None, None)
            .0
            .contains_key("routing_domain"));
    }
}
