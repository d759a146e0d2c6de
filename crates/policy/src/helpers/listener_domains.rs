//! `policy-extras.listener_domains`: a `get_listener_domain` handler built
//! from TOML/JSON files or inline tables, with the semantics of KumoMTA's
//! `assets/policy-extras/listener_domains.lua`.
//!
//! - `["domain"]` tables apply on every listener; `[listener."addr"."domain"]`
//!   tables only on the listener named `addr` (its address, as
//!   `get_listener_domain` receives it, e.g. `127.0.0.1:25`).
//! - Domain keys may be `*.suffix` wildcards and `*`, matched as KumoMTA's
//!   domain map matches them (see [`super::DomainMap`]): `*.example.com`
//!   does not match `example.com`.
//! - Files merge in order, key by key within each (listener, domain) table.
//! - Lookup: the listener's own table for the domain; else the all-listener
//!   table for the domain; else the all-listener `["*"]` table. The first
//!   table found is the answer as it stands (tables are not merged across
//!   these steps).
//! - `relay_from_authz`: when the connection's `authz_id` is listed, the
//!   answer's `relay_from` becomes the client's address.
//! - `log_oob` / `log_arf` take KumoMTA's values (`false`, `true`,
//!   `"Ignore"`, `"LogThenRelay"`, `"LogThenDrop"`). Ironpost does not
//!   recognise out-of-band (RFC 3464) or feedback (RFC 5965) reports at
//!   reception and has no record to log them in, so only `false` and
//!   `"Ignore"` are accepted; the others are refused at start.

use super::{DomainMap, Source};
use crate::config::{ListenerDomain, ListenerDomainConfig};
use crate::conn_meta::ConnMeta;
use crate::kumo::ListenerDomainValue;
use mlua::{Lua, Table, Value};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;

const MODULE: &str = "policy-extras.listener_domains";

/// (listener, lower-cased domain pattern) → the table's keys.
type Raw = HashMap<String, HashMap<String, Map<String, Json>>>;

pub struct ListenerDomains {
    by_listener: HashMap<String, DomainMap<ListenerDomain>>,
}

fn table_name(listener: &str, domain: &str) -> String {
    if listener == "*" {
        format!("[{domain:?}]")
    } else {
        format!("[listener.{listener:?}.{domain:?}]")
    }
}

/// `log_oob` / `log_arf`: KumoMTA's LogReportDisposition
/// (crates/kumod/src/smtp_server.rs).
fn check_report_option(key: &str, v: &Json) -> Result<(), String> {
    let what = if key == "log_oob" {
        "out-of-band bounce reports (RFC 3464) at reception and has no OOB log record"
    } else {
        "feedback reports (ARF, RFC 5965) at reception and has no Feedback log record"
    };
    let refused = || {
        Err(format!(
            "key '{key}' = {v} is not supported yet: Ironpost does not recognise {what}; \
             set it to false (\"Ignore\") or remove it"
        ))
    };
    match v {
        Json::Bool(false) => Ok(()),
        Json::String(s) if s == "Ignore" => Ok(()),
        Json::Bool(true) => refused(),
        Json::String(s) if s == "LogThenRelay" || s == "LogThenDrop" => refused(),
        _ => Err(format!(
            "key '{key}': expected a boolean value or one of 'Ignore', 'LogThenDrop' or \
             'LogThenRelay', but got {v}"
        )),
    }
}

/// Check one table and build what `make_listener_domain` would.
fn build(table: &Map<String, Json>) -> Result<ListenerDomain, String> {
    let fields = super::struct_fields::<ListenerDomainConfig>();
    let mut rest = Map::new();
    for (k, v) in table {
        match k.as_str() {
            "log_oob" | "log_arf" => check_report_option(k, v)?,
            "ttl" => {
                return Err(
                    "key 'ttl': KumoMTA's deprecated listener domain 'ttl' is not supported \
                     by Ironpost; remove the key"
                        .into(),
                )
            }
            _ if fields.contains(&k.as_str()) => {
                rest.insert(k.clone(), v.clone());
            }
            _ => return Err(format!("unknown key '{k}'")),
        }
    }
    let cfg: ListenerDomainConfig = serde_path_to_error::deserialize(Json::Object(rest))
        .map_err(|e| format!("key '{}': {}", e.path(), e.inner()))?;
    cfg.build()
}

/// One source's tables, by listener (`*`: every listener) and domain.
fn collect(src: &Source) -> Result<Raw, String> {
    let err = |table: &str, m: String| format!("{MODULE}: {}: table {table}: {m}", src.name);
    let mut out: Raw = HashMap::new();
    let mut add = |listener: &str, domain: &str, v: &Json| -> Result<(), String> {
        let table = table_name(listener, domain);
        let Json::Object(t) = v else {
            return Err(err(&table, "expected a table".into()));
        };
        build(t).map_err(|e| err(&table, e))?;
        let entry = out
            .entry(listener.to_string())
            .or_default()
            .entry(domain.trim_end_matches('.').to_ascii_lowercase())
            .or_default();
        entry.extend(t.clone());
        Ok(())
    };
    for (k, v) in &src.data {
        if k == "listener" {
            let Json::Object(listeners) = v else {
                return Err(err("[listener]", "expected a table of listeners".into()));
            };
            for (listener, domains) in listeners {
                let Json::Object(domains) = domains else {
                    return Err(err(
                        &format!("[listener.{listener:?}]"),
                        "expected a table of domains".into(),
                    ));
                };
                for (domain, t) in domains {
                    add(listener, domain, t)?;
                }
            }
        } else {
            add("*", k, v)?;
        }
    }
    Ok(out)
}

/// Check and load one data file's text (TOML, or JSON when `json`), as
/// `setup` does with a file name: no file, no Lua.
pub fn parse(text: &str, json: bool) -> Result<ListenerDomains, String> {
    load(&[Source::from_text("(text)", text, json)?])
}

pub fn load(sources: &[Source]) -> Result<ListenerDomains, String> {
    let mut merged: Raw = HashMap::new();
    for src in sources {
        for (listener, domains) in collect(src)? {
            let into = merged.entry(listener).or_default();
            for (domain, t) in domains {
                into.entry(domain).or_default().extend(t);
            }
        }
    }
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let mut by_listener = HashMap::new();
    for (listener, domains) in merged {
        let mut map = DomainMap::default();
        for (domain, t) in domains {
            let built = build(&t).map_err(|e| {
                format!(
                    "{MODULE}: {}: table {}: {e}",
                    names.join(", "),
                    table_name(&listener, &domain)
                )
            })?;
            map.insert(&domain, built);
        }
        by_listener.insert(listener, map);
    }
    Ok(ListenerDomains { by_listener })
}

impl ListenerDomains {
    fn find(&self, listener: &str, domain: &str) -> Option<&ListenerDomain> {
        let at = |l: &str, d: &str| self.by_listener.get(l).and_then(|m| m.get(d));
        at(listener, domain)
            .or_else(|| at("*", domain))
            .or_else(|| at("*", "*"))
    }

    /// The answer for `domain` on `listener`, for a connection whose
    /// `authz_id` and peer address are given.
    pub fn lookup(
        &self,
        domain: &str,
        listener: &str,
        authz_id: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> Option<ListenerDomain> {
        let mut found = self.find(listener, domain)?.clone();
        if let (Some(authz), Some(ip)) = (authz_id, peer) {
            if found.relay_from_authz.iter().any(|a| a == authz) {
                if let Ok(set) = crate::cidr::CidrSet::parse(&[ip.to_string()]) {
                    found.relay_from = set;
                }
            }
        }
        Some(found)
    }
}

fn peer_ip(received_from: &str) -> Option<std::net::IpAddr> {
    received_from
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| received_from.parse())
        .ok()
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<Value>)| {
            super::configure_once(lua, MODULE)?;
            let sources =
                super::load_sources(lua, MODULE, files).map_err(mlua::Error::RuntimeError)?;
            let map = Arc::new(load(&sources).map_err(mlua::Error::RuntimeError)?);
            lua.create_function(
                move |_, (domain, listener, meta): (String, Option<String>, Value)| {
                    let (mut authz, mut peer) = (None, None);
                    if let Value::UserData(ud) = &meta {
                        if let Ok(c) = ud.borrow::<ConnMeta>() {
                            let snap = c.snapshot();
                            let text =
                                |k: &str| snap.get(k).and_then(Json::as_str).map(str::to_string);
                            authz = text("authz_id");
                            peer = text("received_from").as_deref().and_then(peer_ip);
                        }
                    }
                    Ok(map
                        .lookup(
                            &domain,
                            listener.as_deref().unwrap_or("*"),
                            authz.as_deref(),
                            peer,
                        )
                        .map(ListenerDomainValue))
                },
            )
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<ListenerDomains, String> {
        let t: toml::Value = toml::from_str(text).unwrap();
        let Json::Object(data) = serde_json::to_value(t).unwrap() else {
            unreachable!()
        };
        load(&[Source {
            name: "ld.toml".into(),
            data,
        }])
    }

    /// The data of KumoMTA's own test (listener_domains.lua, `mod:test`).
    const OPEN_RELAY: &str = r#"
['*']
relay_to = true

['somewhere.com']
relay_to = false
relay_from = ['10.0.0.0/24']

# Define a per-listener configuration
[listener."127.0.0.1:25"."*.example.com"]
log_oob = false

['elsewhere.com']
relay_to = false
relay_from_authz = ["john"]
"#;

    #[test]
    fn kumomta_lookup_order() {
        let d = load_toml(OPEN_RELAY).unwrap();
        let get = |dom: &str, l: &str| d.lookup(dom, l, None, None).unwrap();
        // No listener table matches example.com: the `*` table answers.
        assert!(get("example.com", "127.0.0.1:25").relay_to);
        // The listener's wildcard table answers as it stands.
        assert!(!get("woof.example.com", "127.0.0.1:25").relay_to);
        assert!(get("woof.example.com", "10.0.0.1:25").relay_to);
        let s = get("somewhere.com", "127.0.0.1:25");
        assert!(!s.relay_to && s.relay_from.contains("10.0.0.9".parse().unwrap()));
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let e = d
            .lookup("elsewhere.com", "10.0.0.1:25", Some("john"), Some(ip))
            .unwrap();
        assert!(e.relay_from.contains(ip));
        let e = d
            .lookup("elsewhere.com", "10.0.0.1:25", Some("jane"), Some(ip))
            .unwrap();
        assert!(!e.relay_from.contains(ip));
    }

    #[test]
    fn report_options() {
        for ok in ["false", "'Ignore'"] {
            load_toml(&format!("['a.test']\nlog_oob = {ok}\nlog_arf = {ok}\n")).unwrap();
        }
        for (key, v) in [
            ("log_oob", "true"),
            ("log_oob", "'LogThenDrop'"),
            ("log_arf", "'LogThenRelay'"),
            ("log_arf", "true"),
        ] {
            let err = load_toml(&format!("[listener.'l'.'a.test']\n{key} = {v}\n"))
                .err()
                .unwrap();
            assert!(
                err.contains("ld.toml")
                    && err.contains("[listener.\"l\".\"a.test\"]")
                    && err.contains(key)
                    && err.contains("not supported"),
                "{err}"
            );
        }
        // KumoMTA's own negative case.
        let err = load_toml("[listener.\"127.0.0.1:25\".\"*.example.com\"]\nlog_arf = \"yes\"\n")
            .err()
            .unwrap();
        assert!(
            err.contains("log_arf") && err.contains("'LogThenDrop'"),
            "{err}"
        );
    }
}
