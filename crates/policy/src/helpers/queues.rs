//! `policy-extras.queue`: tenants, campaigns and per-domain queue settings
//! from TOML/JSON.
//!
//! `queue_helper:apply(msg)` reads the tenant from `tenant_header` (or
//! `default_tenant`), removes the header when `remove_tenant_header` is set
//! (before any signing that follows in the policy), and refuses with
//! `550 5.7.1` naming the tenant: an unknown tenant, a tenant with
//! `require_authz` reached without AUTH, and an `authz_id` not in that
//! list. The helper also answers `get_queue_config` from `[queue.'domain']`
//! tables (over `[queue.'default']`) and the tenant's `egress_pool`, unless
//! the policy registers its own handler.

use super::merge;
use crate::delivery_config::QueueConfig;
use crate::error::Rejection;
use crate::kumo::QueueConfigValue;
use crate::message::MessageHandle;
use mlua::{AnyUserData, Lua, Table, Value};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tenant {
    #[serde(default)]
    egress_pool: Option<String>,
    #[serde(default)]
    require_authz: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesFile {
    #[serde(default)]
    tenant_header: Option<String>,
    #[serde(default)]
    remove_tenant_header: bool,
    #[serde(default)]
    campaign_header: Option<String>,
    #[serde(default)]
    remove_campaign_header: bool,
    #[serde(default)]
    default_tenant: Option<String>,
    #[serde(default)]
    tenant: HashMap<String, Tenant>,
    /// Raw queue tables, validated as `make_queue_config` options.
    #[serde(default)]
    queue: Map<String, Json>,
}

fn load(files: &[String]) -> Result<QueuesFile, String> {
    let merged = super::load_merged(files)?;
    let names = files.join(", ");
    let q: QueuesFile = serde_path_to_error::deserialize(Json::Object(merged))
        .map_err(|e| format!("queues {names}: key '{}': {}", e.path(), e.inner()))?;
    for (name, table) in &q.queue {
        serde_path_to_error::deserialize::<_, QueueConfig>(table.clone()).map_err(|e| {
            format!(
                "queues {names}: table [queue.{name:?}]: key '{}': {}",
                e.path(),
                e.inner()
            )
        })?;
    }
    Ok(q)
}

fn reject(text: String) -> mlua::Error {
    mlua::Error::external(Rejection { code: 550, text })
}

impl QueuesFile {
    fn apply(&self, msg: &MessageHandle) -> mlua::Result<()> {
        let mut m = msg.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut tenant = None;
        if let Some(h) = &self.tenant_header {
            tenant = crate::headers::first_value(&m.data, h);
            if self.remove_tenant_header {
                crate::headers::remove_all(&mut m.data, h);
            }
        }
        if let Some(h) = &self.campaign_header {
            if let Some(c) = crate::headers::first_value(&m.data, h) {
                m.meta.insert("campaign".into(), Json::String(c));
            }
            if self.remove_campaign_header {
                crate::headers::remove_all(&mut m.data, h);
            }
        }
        let Some(name) = tenant.or_else(|| self.default_tenant.clone()) else {
            return Ok(());
        };
        let Some(t) = self.tenant.get(&name) else {
            return Err(reject(format!("5.7.1 unknown tenant '{name}'")));
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
        Ok(())
    }

    fn queue_config(&self, domain: &str, tenant: Option<&str>) -> Result<QueueConfig, String> {
        let mut cfg = Map::new();
        for key in ["default", domain] {
            if let Some(Json::Object(t)) = self.queue.get(key) {
                merge(&mut cfg, t.clone());
            }
        }
        if let Some(pool) = tenant
            .and_then(|t| self.tenant.get(t))
            .and_then(|t| t.egress_pool.clone())
        {
            cfg.entry("egress_pool").or_insert(Json::String(pool));
        }
        serde_json::from_value(Json::Object(cfg)).map_err(|e| format!("queues: {e}"))
    }
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<String>)| {
            let data = Arc::new(load(&files).map_err(mlua::Error::RuntimeError)?);
            let helper = lua.create_table()?;
            let d = data.clone();
            helper.set(
                "apply",
                lua.create_function(move |_, (_this, msg): (Value, AnyUserData)| {
                    let handle = msg.borrow::<MessageHandle>()?.clone();
                    d.apply(&handle)
                })?,
            )?;
            let d = data.clone();
            let get_queue_config = lua.create_function(
                move |_,
                      (domain, tenant, _campaign, _routing): (
                    String,
                    Option<String>,
                    Value,
                    Value,
                )| {
                    let cfg = d
                        .queue_config(&domain, tenant.as_deref())
                        .map_err(mlua::Error::RuntimeError)?;
                    Ok(QueueConfigValue(cfg))
                },
            )?;
            helper.set("get_queue_config", get_queue_config.clone())?;
            crate::kumo::register_helper_handler(lua, "get_queue_config", get_queue_config)?;
            Ok(helper)
        })?,
    )?;
    Ok(m)
}
