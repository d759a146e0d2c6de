//! `policy-extras.log_hooks`: log records delivered to the operator's own
//! systems (a webhook, usually) through a durable queue of their own, so an
//! outage of the endpoint loses no events.
//!
//! `log_hooks:new{ name, constructor, ... }` and `log_hooks:new_json{ name,
//! url, ... }` configure a log hook whose records are queued to
//! `<name>.log_hook`. Ironpost answers for that queue itself (retry every
//! `1m`, backing off to `20m`, unless `queue_config` says otherwise), so the
//! policy's own `get_queue_config` never sees it. `new`'s `constructor(domain,
//! tenant, campaign)` returns a connection whose `send(message)` delivers one
//! record (`kumo.reject(5xx)` drops it, `kumo.reject(4xx)` or an error
//! retries it); `new_json` POSTs each record as JSON (2xx delivers; another
//! status drops the record, as in KumoMTA; no answer retries).

use crate::config::{HelperLogHook, LogHookConfig, PerRecordLog};
use crate::delivery_config::QueueConfig;
use crate::state::HANDLERS_KEY;
use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde::Deserialize;
use std::collections::HashMap;

/// `log_parameters`: what `kumo.configure_log_hook` takes besides `name`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParameters {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    meta: Vec<String>,
    #[serde(default)]
    per_record: HashMap<String, PerRecordLog>,
}

fn err(msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(format!("policy-extras.log_hooks: {msg}"))
}

/// The event a hook's constructor is bound to.
pub fn constructor_event(name: &str) -> String {
    format!("make.{name}.log_hook")
}

/// The event a hook's `filter` is bound to.
pub fn filter_event(name: &str) -> String {
    format!("log_hook_filter.{name}")
}

fn configure(lua: &Lua, options: Table, json: bool) -> mlua::Result<()> {
    let mut name = None;
    let mut params = LogParameters::default();
    let mut queue: Option<Value> = None;
    let mut constructor = None;
    let mut url = None;
    let mut filter = None;
    for pair in options.pairs::<String, Value>() {
        let (k, v) = pair?;
        match (k.as_str(), v) {
            ("name", Value::String(s)) => name = Some(s.to_str()?.to_string()),
            ("log_parameters", v) => {
                params =
                    crate::kumo::parse_options(lua, "policy-extras.log_hooks: log_parameters", v)?
            }
            ("queue_config", v) => queue = Some(v),
            ("constructor", Value::Function(f)) if !json => constructor = Some(f),
            ("url", Value::String(s)) if json => url = Some(s.to_str()?.to_string()),
            ("filter", Value::Function(f)) => filter = Some(f),
            ("batch_size", Value::Integer(1)) => {}
            ("batch_size" | "min_batch_size" | "max_batch_latency", _) => {
                return Err(err(format!(
                    "{k}: Ironpost does not support batched log hook delivery yet"
                )))
            }
            (k, v) => {
                return Err(err(format!(
                    "unexpected key '{k}' (a {}) in the {} options",
                    v.type_name(),
                    if json { "new_json" } else { "new" }
                )))
            }
        }
    }
    let name = name.ok_or_else(|| err("'name' (a string) is required".into()))?;
    if json && url.is_none() {
        return Err(err("new_json: 'url' (a string) is required".into()));
    }
    if let Some(u) = &url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(err(format!("url {u:?} is not an http:// or https:// URL")));
        }
    }
    if !json && constructor.is_none() {
        return Err(err("new: 'constructor' (a function) is required".into()));
    }
    let queue_config = queue_config(lua, queue)?;

    // Each hook once per interpreter, as in KumoMTA.
    let key = format!("ironpost.log_hook.{name}");
    if lua.named_registry_value::<bool>(&key).unwrap_or(false) {
        return Err(err(format!(
            "log_hook with name '{name}' has already been configured"
        )));
    }
    lua.set_named_registry_value(&key, true)?;
    let handlers: Table = lua.named_registry_value(HANDLERS_KEY)?;
    if let Some(f) = constructor {
        handlers.set(constructor_event(&name), f)?;
    }
    let has_filter = filter.is_some();
    if let Some(f) = filter {
        handlers.set(filter_event(&name), f)?;
    }
    let hook = LogHookConfig {
        name,
        headers: params.headers,
        meta: params.meta,
        per_record: params.per_record,
        deferred_spool: false,
        helper: Some(HelperLogHook {
            queue_config,
            url,
            has_filter,
        }),
    };
    hook.validate().map_err(err)?;
    // Declared from pre_init, so it lands in the init configuration.
    let declare = lua.create_function(move |lua, ()| {
        let hook = hook.clone();
        crate::kumo::with_init(lua, "policy-extras.log_hooks", |init| {
            crate::kumo::add_log_hook(init, hook)
        })?
        .map_err(err)
    })?;
    let pre: Table = lua.named_registry_value(crate::kumo::PRE_INIT_KEY)?;
    pre.push(declare)
}

/// KumoMTA's defaults for the hook's queue, overridden by `queue_config`.
fn queue_config(lua: &Lua, overrides: Option<Value>) -> mlua::Result<QueueConfig> {
    let mut opts = serde_json::Map::new();
    opts.insert("retry_interval".into(), "1m".into());
    opts.insert("max_retry_interval".into(), "20m".into());
    if let Some(v) = overrides {
        let json: serde_json::Value = lua.from_value(v)?;
        match json {
            serde_json::Value::Object(m) => opts.extend(m),
            other => return Err(err(format!("queue_config must be a table, not {other}"))),
        }
    }
    let cfg: QueueConfig = crate::kumo::parse_options(
        lua,
        "policy-extras.log_hooks: queue_config",
        lua.to_value(&serde_json::Value::Object(opts))?,
    )?;
    cfg.check_supported().map_err(err)?;
    if cfg.protocol.is_some() {
        return Err(err(
            "queue_config.protocol: the hook's queue is delivered by the hook".into(),
        ));
    }
    Ok(cfg)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "new",
        lua.create_function(|lua, (_this, options): (Value, Table)| {
            configure(lua, options, false)
        })?,
    )?;
    m.set(
        "new_json",
        lua.create_function(|lua, (_this, options): (Value, Table)| configure(lua, options, true))?,
    )?;
    m.set(
        "new_disposition_hook",
        lua.create_function(|_, _: mlua::MultiValue| -> mlua::Result<()> {
            Err(err(
                "new_disposition_hook: Ironpost does not support disposition hooks yet".into(),
            ))
        })?,
    )?;
    Ok(m)
}
