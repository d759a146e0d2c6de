//! `policy-extras.shaping`: a `get_egress_path_config` handler built from
//! TOML/JSON files with a `["default"]` table and tables named by domain, or
//! by host or IP with `mx_rollup = false`. Files merge in order; every table
//! is checked at setup so a typo fails start-up naming file, table and key.

use crate::delivery_config::EgressPathConfig;
use crate::kumo::EgressPathValue;
use mlua::{Lua, Table, Value};
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// The checked shaping data.
pub struct Shaping {
    default: Map<String, Json>,
    /// Tables that apply by destination domain.
    domains: Map<String, Json>,
    /// `mx_rollup = false` tables: apply when the site's hosts include them.
    hosts: Map<String, Json>,
}

fn check_table(files: &str, name: &str, table: &Map<String, Json>) -> Result<(), String> {
    let mut t = table.clone();
    if let Some(v) = t.remove("mx_rollup") {
        if !v.is_boolean() {
            return Err(format!(
                "shaping {files}: table [{name:?}]: key 'mx_rollup': expected true or false"
            ));
        }
    }
    let cfg: EgressPathConfig = serde_path_to_error::deserialize(Json::Object(t)).map_err(|e| {
        format!(
            "shaping {files}: table [{name:?}]: key '{}': {}",
            e.path(),
            e.inner()
        )
    })?;
    cfg.validate()
        .map_err(|e| format!("shaping {files}: table [{name:?}]: {e}"))?;
    Ok(())
}

fn load(files: &[String]) -> Result<Shaping, String> {
    from_tables(super::load_merged(files)?, &files.join(", "))
}

/// Check and load one data file's text (TOML, or JSON when `json`), as
/// `setup_with_automation` does with a file name: no file, no Lua.
pub fn parse(text: &str, json: bool) -> Result<Shaping, String> {
    match super::parse_data(text, json)? {
        Json::Object(tables) => from_tables(tables, "(text)"),
        _ => Err("shaping (text): expected a file of tables".into()),
    }
}

/// `names`: the files the merged `tables` came from, for errors.
fn from_tables(tables: Map<String, Json>, names: &str) -> Result<Shaping, String> {
    let mut s = Shaping {
        default: Map::new(),
        domains: Map::new(),
        hosts: Map::new(),
    };
    for (name, v) in tables {
        let Json::Object(table) = v else {
            return Err(format!("shaping {names}: [{name:?}] must be a table"));
        };
        check_table(names, &name, &table)?;
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if key == "default" {
            s.default = table;
        } else if table.get("mx_rollup") == Some(&Json::Bool(false)) {
            s.hosts.insert(key, Json::Object(table));
        } else {
            s.domains.insert(key, Json::Object(table));
        }
    }
    Ok(s)
}

impl Shaping {
    /// What `get_egress_path_config(domain, source, site)` returns.
    pub fn resolve(&self, domain: &str, site: &str) -> Result<EgressPathConfig, String> {
        // Key by key, as KumoMTA merges them: a table's value replaces the
        // one before it whole. (Merged deeper, a keysource given as
        // `key_data` by default and as a Vault path for a domain would be
        // neither, and every delivery to that domain would fail.)
        let mut cfg = self.default.clone();
        if let Some(Json::Object(t)) = self.domains.get(&domain.to_ascii_lowercase()) {
            cfg.extend(t.clone());
        }
        for host in site.split(',').map(|h| host_part(h.trim())) {
            if let Some(Json::Object(t)) = self.hosts.get(&host.to_ascii_lowercase()) {
                cfg.extend(t.clone());
            }
        }
        cfg.remove("mx_rollup");
        serde_json::from_value(Json::Object(cfg)).map_err(|e| format!("shaping: {e}"))
    }
}

/// "mx.example.com:25" → "mx.example.com"; "[::1]:25" → "::1".
fn host_part(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => h,
    }
}

/// KumoMTA's `setup` (and `setup_with_automation` without
/// `no_default_files`) also applies its shipped shaping.toml, whose provider
/// rules are mostly rates that need throttles Ironpost does not have yet.
/// Applying only the policy's files would do less than the policy says, so
/// that is refused, naming the way to say "only my files".
fn default_file_refused(call: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!(
        "policy-extras.shaping: {call} also applies KumoMTA's shipped shaping.toml (provider \
         connection limits, rates, TLS rules); Ironpost does not support it yet (its rates need \
         throttles). Use shaping:setup_with_automation{{ no_default_files = true, extra_files = \
         {{...}} }} to apply only your own files"
    ))
}

fn handler(lua: &Lua, files: &[String]) -> mlua::Result<mlua::Function> {
    let shaping = Arc::new(load(files).map_err(mlua::Error::RuntimeError)?);
    lua.create_function(
        move |_, (domain, _source, site): (String, Value, Option<String>)| {
            let cfg = shaping
                .resolve(&domain, site.as_deref().unwrap_or(""))
                .map_err(mlua::Error::RuntimeError)?;
            Ok(EgressPathValue(cfg))
        },
    )
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|_, (_this, _files): (Value, Value)| -> mlua::Result<()> {
            Err(default_file_refused("setup"))
        })?,
    )?;
    // Returns `{ get_egress_path_config = ... }`, as KumoMTA does; the
    // automation parts (publish, subscribe: the TSA daemon) are refused.
    m.set(
        "setup_with_automation",
        lua.create_function(|lua, (_this, options): (Value, Table)| {
            let mut files = Vec::new();
            let mut no_default = false;
            for pair in options.pairs::<String, Value>() {
                let (k, v) = pair?;
                match (k.as_str(), v) {
                    ("extra_files", Value::Table(t)) => {
                        for f in t.sequence_values::<String>() {
                            files.push(f?);
                        }
                    }
                    ("no_default_files", Value::Boolean(b)) => no_default = b,
                    ("publish" | "subscribe", Value::Table(t)) if t.raw_len() == 0 => {}
                    ("publish" | "subscribe", _) => {
                        return Err(mlua::Error::RuntimeError(format!(
                            "policy-extras.shaping: {k}: Ironpost does not support traffic shaping automation (TSA) yet"
                        )))
                    }
                    (k, _) => {
                        return Err(mlua::Error::RuntimeError(format!(
                            "policy-extras.shaping: setup_with_automation: Ironpost does not support the option '{k}'"
                        )))
                    }
                }
            }
            if !no_default {
                return Err(default_file_refused("setup_with_automation without no_default_files = true"));
            }
            let t = lua.create_table()?;
            t.set("get_egress_path_config", handler(lua, &files)?)?;
            Ok(t)
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every table accepted at setup merges into must be usable:
    /// a domain's keysource replaces the default's rather than mixing with
    /// it (found by the policy_helpers fuzz target).
    #[test]
    fn tables_replace_whole_values() {
        let s = parse(
            "[default]\nsmtp_auth_plain_username = 'u'\n\
             smtp_auth_plain_password = { key_data = 'secret' }\n\
             ['example.com']\nsmtp_auth_plain_username = 'v'\n\
             smtp_auth_plain_password = { vault_mount = 'kv', vault_path = 'smtp/x' }\n\
             ['mx.example.com']\nmx_rollup = false\n\
             tls_certificate = '/cert.pem'\ntls_private_key = '/key.pem'\n",
            false,
        )
        .unwrap();
        let cfg = s.resolve("example.com", "mx.example.com:25").unwrap();
        assert!(matches!(
            cfg.smtp_auth_plain_password,
            Some(ironpost_keysource::KeySource::Vault(_))
        ));
        assert_eq!(cfg.smtp_auth_plain_username.as_deref(), Some("v"));
        assert!(cfg.tls_certificate.is_some());
        let other = s.resolve("other.test", "").unwrap();
        assert!(matches!(
            other.smtp_auth_plain_password,
            Some(ironpost_keysource::KeySource::Data(_))
        ));
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_part("mx.test:25"), "mx.test");
        assert_eq!(host_part("[::1]:25"), "::1");
        assert_eq!(host_part("192.168.1.10"), "192.168.1.10");
    }
}
