//! `policy-extras.listener_domains`: a `get_listener_domain` handler built
//! from `["domain"]` tables, with `["*"]` as the fallback.

use crate::config::{ListenerDomain, ListenerDomainConfig};
use crate::kumo::ListenerDomainValue;
use mlua::{Lua, Table, Value};
use std::collections::HashMap;

use std::sync::Arc;

pub fn load(files: &[String]) -> Result<HashMap<String, ListenerDomain>, String> {
    let merged = super::load_merged(files)?;
    let mut out = HashMap::new();
    for (domain, v) in merged {
        let cfg: ListenerDomainConfig = serde_json::from_value(v).map_err(|e| {
            format!(
                "listener_domains {}: table [{domain:?}]: {e}",
                files.join(", ")
            )
        })?;
        let built = cfg.build().map_err(|e| {
            format!(
                "listener_domains {}: table [{domain:?}]: {e}",
                files.join(", ")
            )
        })?;
        out.insert(domain.trim_end_matches('.').to_ascii_lowercase(), built);
    }
    Ok(out)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<String>)| {
            let map = Arc::new(load(&files).map_err(mlua::Error::RuntimeError)?);
            lua.create_function(
                move |_, (domain, _listener, _meta): (String, Value, Value)| {
                    let d = domain.to_ascii_lowercase();
                    Ok(map
                        .get(&d)
                        .or_else(|| map.get("*"))
                        .cloned()
                        .map(ListenerDomainValue))
                },
            )
        })?,
    )?;
    Ok(m)
}
