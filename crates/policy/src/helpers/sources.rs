//! `require 'policy-extras.sources'`: egress sources and pools from TOML or
//! JSON files in KumoMTA's format, merged in order:
//!
//! ```toml
//! [source."ip-1"]
//! source_address = "10.0.0.1"
//! ehlo_domain = "mta1.example.com"
//!
//! [pool."pool-1"]
//! [pool."pool-1"."ip-1"]
//! weight = 2
//! ```
//!
//! `sources:setup { files }` binds `get_egress_source` and `get_egress_pool`.
//! A later file overrides a source's keys one by one and a pool entry's
//! weight. Unlike KumoMTA, which only prints it, a pool naming a source
//! that no file defines fails the setup: its mail could never leave.

use super::Source;
use crate::egress_source::{EgressPool, EgressSource, PoolEntry};
use crate::kumo::{EgressPoolValue, EgressSourceValue};
use mlua::{Lua, Table, Value};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

const MODULE: &str = "policy-extras.sources";

/// The merged, checked sources and pools.
#[derive(Debug, Default)]
pub struct SourcesData {
    pub sources: BTreeMap<String, EgressSource>,
    pub pools: BTreeMap<String, EgressPool>,
}

/// A table, where an empty Lua table (which reads as an empty array) counts
/// as an empty one.
fn table(v: &Json) -> Option<Map<String, Json>> {
    match v {
        Json::Object(m) => Some(m.clone()),
        Json::Array(a) if a.is_empty() => Some(Map::new()),
        _ => None,
    }
}

/// Checks and merges the data sources in order.
pub fn load(sources: &[Source]) -> Result<SourcesData, String> {
    let mut source_params: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut out = SourcesData::default();
    for src in sources {
        let file = &src.name;
        for (name_of_table, value) in &src.data {
            let Some(items) = table(value) else {
                return Err(format!("{file}: [{name_of_table}] must be a table"));
            };
            match name_of_table.as_str() {
                "source" => {
                    for (name, params) in &items {
                        let at = format!("{file}: [source.\"{name}\"]");
                        let Some(params) = table(params) else {
                            return Err(format!("{at} must be a table"));
                        };
                        let merged = source_params.entry(name.clone()).or_default();
                        super::merge(merged, params);
                        let mut full = merged.clone();
                        full.insert("name".into(), Json::String(name.clone()));
                        let s: EgressSource = serde_path_to_error::deserialize(Json::Object(full))
                            .map_err(|e| format!("{at}: key '{}': {}", e.path(), e.inner()))?;
                        s.check_supported().map_err(|e| format!("{at}: {e}"))?;
                        out.sources.insert(name.clone(), s);
                    }
                }
                "pool" => {
                    for (pool, entries) in &items {
                        let at = format!("{file}: [pool.\"{pool}\"]");
                        let Some(entries) = table(entries) else {
                            return Err(format!("{at} must be a table"));
                        };
                        let p = out.pools.entry(pool.clone()).or_insert_with(|| EgressPool {
                            name: pool.clone(),
                            entries: Vec::new(),
                            ttl: None,
                        });
                        for (source, params) in &entries {
                            let at = format!("{file}: [pool.\"{pool}\".\"{source}\"]");
                            let Some(mut full) = table(params) else {
                                return Err(format!("{at} must be a table"));
                            };
                            full.insert("name".into(), Json::String(source.clone()));
                            let entry: PoolEntry =
                                serde_path_to_error::deserialize(Json::Object(full)).map_err(
                                    |e| format!("{at}: key '{}': {}", e.path(), e.inner()),
                                )?;
                            match p.entries.iter_mut().find(|e| e.name == entry.name) {
                                Some(e) => *e = entry,
                                None => p.entries.push(entry),
                            }
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "{file}: unknown table [{other}] (expected [source.\"name\"] or [pool.\"name\"])"
                    ))
                }
            }
        }
    }
    for (name, pool) in &out.pools {
        if let Some(e) = pool
            .entries
            .iter()
            .find(|e| !out.sources.contains_key(&e.name))
        {
            return Err(format!(
                "pool '{name}' references source '{}', which no sources file defines",
                e.name
            ));
        }
    }
    Ok(out)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<Value>)| {
            super::configure_once(lua, MODULE)?;
            let sources =
                super::load_sources(lua, MODULE, files).map_err(mlua::Error::RuntimeError)?;
            let data = Arc::new(
                load(&sources).map_err(|e| mlua::Error::RuntimeError(format!("{MODULE}: {e}")))?,
            );
            if let Some(ctx) = lua.app_data_ref::<crate::state::StateCtx>() {
                *ctx.shared
                    .defined_sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = data.sources.values().cloned().collect();
            }
            let d = data.clone();
            let get_source = lua.create_function(move |_, name: String| {
                Ok(d.sources.get(&name).cloned().map(EgressSourceValue))
            })?;
            let d = data.clone();
            let get_pool = lua.create_function(move |_, name: String| {
                Ok(d.pools.get(&name).cloned().map(EgressPoolValue))
            })?;
            crate::kumo::register_helper_handler(lua, "get_egress_source", get_source)?;
            crate::kumo::register_helper_handler(lua, "get_egress_pool", get_pool)?;
            Ok(())
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(files: &[(&str, &str)]) -> Result<SourcesData, String> {
        let sources: Vec<Source> = files
            .iter()
            .map(|(name, text)| Source::from_text(name, text, false).unwrap())
            .collect();
        load(&sources)
    }

    /// KumoMTA's documented example (docs/userguide/configuration/
    /// sendingips.md), as published.
    const DOCS: &str = r#"
[source."ip-1"]
source_address = "10.0.0.1"
ehlo_domain = 'mta1.examplecorp.com'

[source."ip-2"]
source_address = "10.0.0.2"
ehlo_domain = 'mta2.examplecorp.com'

[source."ip-3"]
source_address = "10.0.0.3"
ehlo_domain = 'mta3.examplecorp.com'

# Pool containing just ip-1, which has weight=1
[pool."pool-1"]
[pool."pool-1"."ip-1"]

# Pool with multiple ips
[pool."pool-2"]

[pool."pool-2"."ip-2"]
weight = 2

# We're warming up ip-3, so use it less frequently than ip-2
[pool."pool-2"."ip-3"]
weight = 1

# This pool has nothing in it (KumoMTA's own test data)
[pool."AlwaysSuspended"]
"#;

    #[test]
    fn the_documented_example_loads() {
        let d = load_toml(&[("sources.toml", DOCS)]).unwrap();
        assert_eq!(
            d.sources["ip-2"].source_address,
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(d.pools["pool-1"].entries[0].weight, 1);
        let w: Vec<_> = d.pools["pool-2"]
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.weight))
            .collect();
        assert_eq!(w, vec![("ip-2", 2), ("ip-3", 1)]);
        assert!(d.pools["AlwaysSuspended"].entries.is_empty());
    }

    #[test]
    fn later_files_override_and_errors_name_file_table_and_key() {
        let d = load_toml(&[
            ("a.toml", DOCS),
            (
                "b.toml",
                "[source.\"ip-1\"]\nehlo_domain = 'other.test'\n[pool.\"pool-2\".\"ip-3\"]\nweight = 5\n",
            ),
        ])
        .unwrap();
        assert_eq!(d.sources["ip-1"].ehlo_domain.as_deref(), Some("other.test"));
        assert_eq!(
            d.sources["ip-1"].source_address,
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(d.pools["pool-2"].entries[1].weight, 5);

        for (text, needles) in [
            (
                "[source.\"ip\"]\nsource_adress = '10.0.0.1'\n",
                &["b.toml", "[source.\"ip\"]", "source_adress"][..],
            ),
            (
                "[source.\"ip\"]\nsocks5_proxy_server = '10.0.0.9:1080'\n",
                &["b.toml", "socks5_proxy_server", "proxies"][..],
            ),
            (
                "[pool.\"p\".\"ip-1\"]\nweight = 'heavy'\n",
                &["b.toml", "[pool.\"p\".\"ip-1\"]", "weight"][..],
            ),
            ("[pool.\"p\".\"nowhere\"]\n", &["pool 'p'", "'nowhere'"][..]),
            ("[sauce.\"x\"]\n", &["b.toml", "[sauce]"][..]),
        ] {
            let e = load_toml(&[("a.toml", DOCS), ("b.toml", text)]).unwrap_err();
            for n in needles {
                assert!(e.contains(n), "{text}: {e} lacks {n}");
            }
        }
    }
}
