//! Inbound authentication for the policy, with KumoMTA's names:
//! `kumo.spf.check_host`, `kumo.spf.check_msg`, `kumo.dmarc.check_msg`,
//! and the message methods `dkim_verify`, `arc_verify`, `arc_seal` and
//! `add_authentication_results` (in [`crate::message`]). The checks run on
//! the daemon's resolver ([`ironpost_authn::Authenticator`], set once DNS
//! is configured); tools that load the policy without one get an error
//! naming the function.
//!
//! KumoMTA's optional resolver name (`kumo.dns.define_resolver`) is refused:
//! Ironpost has one resolver, and a name it cannot honour is not ignored.

use crate::message::{Message, MessageHandle};
use crate::ConnMeta;
use ironpost_authn::{AuthResult, Authenticator};
use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde_json::Value as Json;
use std::net::{IpAddr, SocketAddr};

/// The meta key where the results a message was given are kept: the
/// Reception record carries them, and `add_authentication_results` knows
/// which `serv_id`s it has already cleaned of forged headers.
pub const META_KEY: &str = "authentication_results";

fn rt(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

pub(crate) fn authenticator(lua: &Lua, func: &str) -> mlua::Result<Authenticator> {
    lua.app_data_ref::<crate::state::StateCtx>()
        .and_then(|c| c.shared.authn.get().cloned())
        .ok_or_else(|| {
            rt(format!(
                "{func}: no resolver here (the checks run in the daemon's events, after init)"
            ))
        })
}

/// Refuse KumoMTA's named resolvers rather than ignore the name.
pub(crate) fn no_resolver_name(func: &str, v: &Value) -> mlua::Result<()> {
    match v {
        Value::Nil => Ok(()),
        _ => Err(rt(format!(
            "{func}: named resolvers (kumo.dns.define_resolver) are not supported; Ironpost checks with its one resolver"
        ))),
    }
}

/// Run an async check from Lua (policy code runs on blocking threads).
pub(crate) fn block_on<F: std::future::Future>(func: &str, fut: F) -> mlua::Result<F::Output> {
    let rt_handle = tokio::runtime::Handle::try_current()
        .map_err(|_| rt(format!("{func}: no async runtime here")))?;
    Ok(rt_handle.block_on(fut))
}

pub(crate) fn to_lua(lua: &Lua, r: &AuthResult) -> mlua::Result<Value> {
    lua.to_value_with(
        r,
        mlua::SerializeOptions::new().serialize_none_to_null(false),
    )
}

pub(crate) fn results_from_lua(lua: &Lua, func: &str, v: Value) -> mlua::Result<Vec<AuthResult>> {
    let json: Json = lua.from_value(v)?;
    let list = match json {
        Json::Array(a) => a,
        // An empty Lua table reads as an empty object.
        Json::Object(m) if m.is_empty() => Vec::new(),
        Json::Object(m) => vec![Json::Object(m)],
        other => {
            return Err(rt(format!(
                "{func}: expected a list of authentication results, not {other}"
            )))
        }
    };
    list.into_iter()
        .map(|mut v| {
            // An empty Lua table reads as an empty array.
            if let Some(p) = v.get_mut("props") {
                if p.as_array().is_some_and(Vec::is_empty) {
                    *p = Json::Object(Default::default());
                }
            }
            serde_json::from_value::<AuthResult>(v)
                .map_err(|e| rt(format!("{func}: an authentication result: {e}")))
        })
        .collect()
}

fn split_ip(received_from: &str) -> Option<IpAddr> {
    received_from
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .ok()
        .or_else(|| received_from.parse().ok())
}

fn meta_str(meta: &serde_json::Map<String, Json>, key: &str) -> Option<String> {
    meta.get(key).and_then(Json::as_str).map(str::to_string)
}

fn spf_outcome(lua: &Lua, o: ironpost_authn::spf::SpfOutcome) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("disposition", o.disposition)?;
    t.set("result", to_lua(lua, &o.result)?)?;
    Ok(t)
}

/// `kumo.spf.check_msg`: the client's address and EHLO name from the
/// message's metadata, the envelope sender (or `postmaster@<helo>` for the
/// null sender, RFC 7208 §2.4).
pub(crate) fn spf_for_message(
    func: &str,
    auth: &Authenticator,
    msg: &Message,
) -> mlua::Result<ironpost_authn::spf::SpfOutcome> {
    let ip = meta_str(&msg.meta, "received_from").and_then(|r| split_ip(&r));
    let helo = meta_str(&msg.meta, "ehlo_domain").unwrap_or_default();
    let (domain, sender) = match msg.sender.rsplit_once('@') {
        Some((_, d)) => (d.to_string(), Some(msg.sender.clone())),
        None => (helo.clone(), None),
    };
    match ip {
        Some(ip) => block_on(
            func,
            auth.spf_check_host(ip, &helo, &domain, sender.as_deref()),
        ),
        None => Ok(ironpost_authn::spf::SpfOutcome {
            disposition: "none".into(),
            result: AuthResult {
                method: "spf".into(),
                result: "none".into(),
                reason: Some("the client's address is unknown".into()),
                ..Default::default()
            },
        }),
    }
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let spf = lua.create_table()?;
    spf.set(
        "check_host",
        lua.create_function(
            |lua,
             (domain, conn_meta, sender, resolver): (
                String,
                mlua::AnyUserData,
                Option<String>,
                Value,
            )| {
                const F: &str = "kumo.spf.check_host";
                no_resolver_name(F, &resolver)?;
                let auth = authenticator(lua, F)?;
                let meta = conn_meta.borrow::<ConnMeta>()?.snapshot();
                let ip = meta_str(&meta, "received_from")
                    .and_then(|r| split_ip(&r))
                    .ok_or_else(|| rt(format!("{F}: the connection has no client address")))?;
                let helo = meta_str(&meta, "ehlo_domain").unwrap_or_else(|| domain.clone());
                let o = block_on(
                    F,
                    auth.spf_check_host(ip, &helo, &domain, sender.as_deref()),
                )?;
                spf_outcome(lua, o)
            },
        )?,
    )?;
    spf.set(
        "check_msg",
        lua.create_function(|lua, (msg, resolver): (mlua::AnyUserData, Value)| {
            const F: &str = "kumo.spf.check_msg";
            no_resolver_name(F, &resolver)?;
            let auth = authenticator(lua, F)?;
            let handle = msg.borrow::<MessageHandle>()?.clone();
            let snapshot = handle.snapshot();
            spf_outcome(lua, spf_for_message(F, &auth, &snapshot)?)
        })?,
    )?;
    kumo.set("spf", spf)?;

    let dmarc = lua.create_table()?;
    dmarc.set(
        "check_msg",
        lua.create_function(
            |lua,
             (msg, dkim, resolver, spf, _use_reporting): (
                mlua::AnyUserData,
                Value,
                Value,
                Value,
                Value,
            )| {
                const F: &str = "kumo.dmarc.check_msg";
                no_resolver_name(F, &resolver)?;
                let auth = authenticator(lua, F)?;
                let handle = msg.borrow::<MessageHandle>()?.clone();
                let m = handle.snapshot();
                let dkim = results_from_lua(lua, F, dkim)?;
                let spf = match spf {
                    Value::Nil => spf_for_message(F, &auth, &m)?.result,
                    v => results_from_lua(lua, F, v)?
                        .into_iter()
                        .next()
                        .ok_or_else(|| rt(format!("{F}: the SPF result is empty")))?,
                };
                let mail_from_domain = m
                    .sender
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_string())
                    .or_else(|| meta_str(&m.meta, "ehlo_domain"))
                    .unwrap_or_default();
                let o = block_on(F, auth.dmarc_check(&m.data, &mail_from_domain, &spf, &dkim))?;
                let t = lua.create_table()?;
                t.set("disposition", o.disposition)?;
                t.set("result", to_lua(lua, &o.result)?)?;
                Ok(t)
            },
        )?,
    )?;
    kumo.set("dmarc", dmarc)?;
    Ok(())
}

/// `msg:add_authentication_results(serv_id, results)`: prepends the
/// header. The first time a message gets results for `serv_id`, every
/// header already claiming that `serv_id` is removed first (RFC 8601 §5):
/// those came from outside, and would pass as our verdict.
pub(crate) fn add_results(
    m: &mut Message,
    serv_id: &str,
    results: &[AuthResult],
) -> Result<usize, String> {
    if serv_id.is_empty() || serv_id.contains(|c: char| c.is_whitespace() || c == ';') {
        return Err(format!(
            "add_authentication_results: '{serv_id}' is not a valid serv_id"
        ));
    }
    let mut record = match m.meta.remove(META_KEY) {
        Some(Json::Array(a)) => a,
        _ => Vec::new(),
    };
    let seen = record
        .iter()
        .any(|e| e.get("serv_id").and_then(Json::as_str) == Some(serv_id));
    let stripped = if seen {
        0
    } else {
        ironpost_authn::header::strip_claiming(&mut m.data, serv_id)
    };
    let header = ironpost_authn::header::authentication_results(serv_id, results);
    m.data.splice(0..0, header.into_bytes());
    record.push(serde_json::json!({ "serv_id": serv_id, "results": results }));
    m.meta.insert(META_KEY.into(), Json::Array(record));
    Ok(stripped)
}

/// `require 'policy-extras.mail_auth'`: `iprev` here (cached, bounded),
/// `check` and `iprev_msg` in Lua as KumoMTA writes them.
pub(crate) fn mail_auth_module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "iprev",
        lua.create_function(|lua, (ip, resolver): (String, Value)| {
            const F: &str = "mail_auth.iprev";
            no_resolver_name(F, &resolver)?;
            let auth = authenticator(lua, F)?;
            let ip: IpAddr = ip
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| rt(format!("{F}: '{ip}' is not an IP address")))?;
            let r = block_on(F, auth.iprev(ip))?;
            to_lua(lua, &r)
        })?,
    )?;
    lua.load(include_str!("mail_auth.lua"))
        .set_name("@policy-extras.mail_auth")
        .call::<Table>(m)
}
