//! The `kumo` module: registration, `init`-time definitions, constructors of
//! configuration objects, and small utilities.

use crate::config::{
    EsmtpListenerConfig, ListenerDomain, ListenerDomainConfig, LocalLogsConfig, LogHookConfig,
    SpoolDefinition,
};
use crate::delivery_config::{EgressPathConfig, QueueConfig, ResolverSettings};
use crate::error::Rejection;
use crate::state::{StateCtx, HANDLERS_KEY};
use ironpost_keysource::KeySource;
use mlua::{Function, Lua, LuaSerdeExt, Table, UserData, Value};
use serde::de::DeserializeOwned;

/// Returned by `kumo.make_queue_config`.
#[derive(Clone)]
pub struct QueueConfigValue(pub QueueConfig);
impl UserData for QueueConfigValue {}

/// Returned by `kumo.make_egress_source`.
#[derive(Clone)]
pub struct EgressSourceValue(pub crate::egress_source::EgressSource);
impl UserData for EgressSourceValue {}

/// Returned by `kumo.make_egress_pool`.
#[derive(Clone)]
pub struct EgressPoolValue(pub crate::egress_source::EgressPool);
impl UserData for EgressPoolValue {}

/// Returned by `kumo.make_egress_path`.
#[derive(Clone)]
pub struct EgressPathValue(pub EgressPathConfig);
impl UserData for EgressPathValue {}

/// Returned by `kumo.make_listener_domain`.
#[derive(Clone)]
pub struct ListenerDomainValue(pub ListenerDomain);
impl UserData for ListenerDomainValue {}

fn rt(msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(msg)
}

/// Deserialize an options table, naming the function and the key in any
/// error.
pub fn parse_options<T: DeserializeOwned>(_lua: &Lua, func: &str, value: Value) -> mlua::Result<T> {
    let de = mlua::serde::Deserializer::new(value);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = match e.inner() {
            mlua::Error::DeserializeError(m) => m.clone(),
            other => other.to_string(),
        };
        if path == "." || path.is_empty() {
            rt(format!("{func}: {inner}"))
        } else {
            rt(format!("{func}: key '{path}': {inner}"))
        }
    })
}

const HELPER_HANDLERS_KEY: &str = "ironpost.helper_handlers";
/// Every `pre_init` handler, in registration order.
pub const PRE_INIT_KEY: &str = "ironpost.pre_init";

/// Register an event handler on behalf of a helper, unless the policy has
/// its own.
pub fn register_helper_handler(lua: &Lua, event: &str, func: Function) -> mlua::Result<()> {
    let handlers: Table = lua.named_registry_value(HANDLERS_KEY)?;
    if handlers.contains_key(event)? {
        return Ok(());
    }
    let from_helpers: Table = lua.named_registry_value(HELPER_HANDLERS_KEY)?;
    from_helpers.set(event, true)?;
    handlers.set(event, func)
}

/// Pools named by static helper data; checked once `init` has run (when
/// every `get_egress_pool` handler is bound), failing the start.
pub const REQUIRED_POOLS_KEY: &str = "ironpost.required_pools";

pub fn require_egress_pool(lua: &Lua, place: &str, pool: &str) -> mlua::Result<()> {
    let list: Table = match lua.named_registry_value::<Option<Table>>(REQUIRED_POOLS_KEY)? {
        Some(t) => t,
        None => {
            let t = lua.create_table()?;
            lua.set_named_registry_value(REQUIRED_POOLS_KEY, &t)?;
            t
        }
    };
    list.push(vec![place.to_string(), pool.to_string()])
}

/// Warn (once per place) that a secret is written inline in the policy.
pub fn warn_inline_secret(place: &str) {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if seen.insert(place.to_string()) {
        tracing::warn!("{place} is given inline as key_data; keep secrets in a file or in Vault");
    }
}

/// Hook names are unique.
pub fn add_log_hook(
    init: &mut crate::config::InitConfig,
    cfg: LogHookConfig,
) -> Result<(), String> {
    if init.log_hooks.iter().any(|h| h.name == cfg.name) {
        return Err(format!(
            "a log hook named '{}' is already configured",
            cfg.name
        ));
    }
    init.log_hooks.push(cfg);
    Ok(())
}

/// Run `f` on the init collector, or fail when called outside `init`.
pub(crate) fn with_init<R>(
    lua: &Lua,
    func: &str,
    f: impl FnOnce(&mut crate::config::InitConfig) -> R,
) -> mlua::Result<R> {
    let ctx = lua
        .app_data_ref::<StateCtx>()
        .ok_or_else(|| rt("policy state missing".into()))?;
    let mut guard = ctx.shared.init.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        Some(init) => Ok(f(init)),
        None => Err(rt(format!(
            "{func} may only be called from the 'init' event"
        ))),
    }
}

pub fn install(lua: &Lua) -> mlua::Result<Table> {
    let kumo = lua.create_table()?;
    lua.set_named_registry_value(HANDLERS_KEY, lua.create_table()?)?;
    lua.set_named_registry_value(HELPER_HANDLERS_KEY, lua.create_table()?)?;
    lua.set_named_registry_value(PRE_INIT_KEY, lua.create_table()?)?;

    kumo.set(
        "on",
        lua.create_function(|lua, (name, func): (String, Function)| {
            crate::events::check_binding(&name).map_err(|e| rt(format!("kumo.on: {e}")))?;
            if name == "pre_init" {
                // KumoMTA runs every pre_init handler, in order (helpers
                // build on it).
                let list: Table = lua.named_registry_value(PRE_INIT_KEY)?;
                return list.push(func);
            }
            let handlers: Table = lua.named_registry_value(HANDLERS_KEY)?;
            let from_helpers: Table = lua.named_registry_value(HELPER_HANDLERS_KEY)?;
            // A handler a helper registered on the policy's behalf may be
            // replaced by the policy's own; two explicit ones are an error.
            if handlers.contains_key(name.as_str())? && !from_helpers.contains_key(name.as_str())? {
                return Err(rt(format!(
                    "kumo.on: a handler for '{name}' is already registered"
                )));
            }
            from_helpers.set(name.as_str(), Value::Nil)?;
            handlers.set(name, func)
        })?,
    )?;

    kumo.set(
        "start_esmtp_listener",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.start_esmtp_listener";
            let cfg: EsmtpListenerConfig = parse_options(lua, F, opts)?;
            cfg.validate().map_err(|e| rt(format!("{F}: {e}")))?;
            with_init(lua, F, |init| {
                if cfg
                    .tls_private_key
                    .as_ref()
                    .is_some_and(KeySource::is_inline)
                {
                    init.inline_secrets
                        .push(format!("{F}{{listen={}}}: tls_private_key", cfg.listen));
                }
                init.listeners.push(cfg);
            })
        })?,
    )?;

    kumo.set(
        "start_http_listener",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.start_http_listener";
            let v: serde_json::Value = lua.from_value(opts).map_err(|e| rt(format!("{F}: {e}")))?;
            if !v.is_object() {
                return Err(rt(format!("{F}: expected a table of options")));
            }
            if v.get("tls_private_key")
                .and_then(|k| k.get("key_data"))
                .is_some()
            {
                warn_inline_secret(&format!("{F}: tls_private_key"));
            }
            with_init(lua, F, |init| init.http_listeners.push(v))
        })?,
    )?;

    kumo.set(
        "define_spool",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.define_spool";
            let def: SpoolDefinition = parse_options(lua, F, opts)?;
            if def.kind != "LocalDisk" && def.kind != "RocksDB" {
                return Err(rt(format!(
                    "{F}: kind: expected \"LocalDisk\" or \"RocksDB\", got {:?}",
                    def.kind
                )));
            }
            if def.rocks_params.is_some() && def.kind != "RocksDB" {
                return Err(rt(format!(
                    "{F}: rocks_params: only valid with kind = \"RocksDB\""
                )));
            }
            if def.name != "data" && def.name != "meta" {
                return Err(rt(format!(
                    "{F}: name: expected \"data\" or \"meta\", got {:?}",
                    def.name
                )));
            }
            with_init(lua, F, |init| {
                init.spools.retain(|s| s.name != def.name);
                init.spools.push(def);
            })
        })?,
    )?;

    kumo.set(
        "configure_local_logs",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.configure_local_logs";
            let cfg: LocalLogsConfig = parse_options(lua, F, opts)?;
            cfg.validate().map_err(|e| rt(format!("{F}: {e}")))?;
            with_init(lua, F, |init| init.logs.push(cfg))
        })?,
    )?;

    kumo.set(
        "configure_log_hook",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.configure_log_hook";
            let cfg: LogHookConfig = parse_options(lua, F, opts)?;
            cfg.validate().map_err(|e| rt(format!("{F}: {e}")))?;
            with_init(lua, F, |init| add_log_hook(init, cfg))?.map_err(|e| rt(format!("{F}: {e}")))
        })?,
    )?;

    kumo.set(
        "make_listener_domain",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.make_listener_domain";
            let cfg: ListenerDomainConfig = parse_options(lua, F, opts)?;
            let built = cfg.build().map_err(|e| rt(format!("{F}: {e}")))?;
            Ok(ListenerDomainValue(built))
        })?,
    )?;

    kumo.set(
        "make_queue_config",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.make_queue_config";
            let cfg: QueueConfig = parse_options(lua, F, opts)?;
            cfg.check_supported().map_err(|e| rt(format!("{F}: {e}")))?;
            Ok(QueueConfigValue(cfg))
        })?,
    )?;

    kumo.set(
        "make_egress_path",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.make_egress_path";
            let cfg: EgressPathConfig = parse_options(lua, F, opts)?;
            cfg.validate().map_err(|e| rt(format!("{F}: {e}")))?;
            for (name, ks) in [
                ("smtp_auth_plain_password", &cfg.smtp_auth_plain_password),
                ("tls_private_key", &cfg.tls_private_key),
            ] {
                if ks.as_ref().is_some_and(KeySource::is_inline) {
                    warn_inline_secret(&format!("{F}: {name}"));
                }
            }
            Ok(EgressPathValue(cfg))
        })?,
    )?;

    kumo.set(
        "configure_bounce_classifier",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.configure_bounce_classifier";
            let o: crate::config::BounceClassifierOptions = parse_options(lua, F, opts)?;
            if o.files.is_empty() {
                return Err(rt(format!(
                    "{F}: key 'files': list at least one rules file"
                )));
            }
            for (name, set) in [
                ("back_pressure", o.back_pressure.is_some()),
                ("pool_size", o.pool_size.is_some()),
                ("cache_size", o.cache_size.is_some()),
                (
                    "uncategorized_cache_size",
                    o.uncategorized_cache_size.is_some(),
                ),
            ] {
                if set {
                    tracing::info!(
                        "{F}: {name} has no effect: Ironpost classifies each record as it is logged"
                    );
                }
            }
            with_init(lua, F, |init| {
                if init.bounce_classifier_files.is_some() {
                    return Err(rt(format!("{F} may be called once")));
                }
                init.bounce_classifier_files = Some(o.files);
                Ok(())
            })?
        })?,
    )?;

    kumo.set(
        "make_egress_source",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.make_egress_source";
            let s: crate::egress_source::EgressSource = parse_options(lua, F, opts)?;
            s.check_supported().map_err(|e| rt(format!("{F}: {e}")))?;
            Ok(EgressSourceValue(s))
        })?,
    )?;

    kumo.set(
        "make_egress_pool",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.make_egress_pool";
            let p: crate::egress_source::EgressPool = parse_options(lua, F, opts)?;
            p.check_supported().map_err(|e| rt(format!("{F}: {e}")))?;
            Ok(EgressPoolValue(p))
        })?,
    )?;

    kumo.set(
        "configure_redis_throttles",
        lua.create_function(|lua, opts: Value| {
            const F: &str = "kumo.configure_redis_throttles";
            let r: crate::delivery_config::RedisThrottles = parse_options(lua, F, opts)?;
            r.node_url().map_err(|e| rt(format!("{F}: {e}")))?;
            with_init(lua, F, |init| init.redis_throttles = Some(r))
        })?,
    )?;

    let dns = lua.create_table()?;
    for name in ["configure_resolver", "configure_unbound_resolver"] {
        dns.set(
            name,
            lua.create_function(move |lua, opts: Value| {
                let func = format!("kumo.dns.{name}");
                let settings: ResolverSettings = parse_options(lua, &func, opts)?;
                for ns in &settings.name_servers {
                    crate::delivery_config::parse_name_server(ns)
                        .map_err(|e| rt(format!("{func}: name_servers: {e}")))?;
                }
                with_init(lua, &func, |init| init.resolver = Some(settings))
            })?,
        )?;
    }
    kumo.set("dns", dns)?;
    crate::authn::install(lua, &kumo)?;

    kumo.set(
        "reject",
        lua.create_function(|_, (code, text): (u16, String)| -> mlua::Result<()> {
            Err(mlua::Error::external(Rejection { code, text }))
        })?,
    )?;

    crate::serde_fns::install(lua, &kumo)?;
    crate::throttle_object::install(lua, &kumo)?;
    crate::regex_set_map::install(lua, &kumo)?;
    kumo.set(
        "set_diagnostic_log_filter",
        lua.create_function(|_, filter: String| {
            crate::diagnostics::set_filter(&filter)
                .map_err(|e| rt(format!("kumo.set_diagnostic_log_filter: {e}")))
        })?,
    )?;

    let secrets = lua.create_table()?;
    secrets.set(
        "load",
        lua.create_function(|lua, ks: Value| {
            let ks: KeySource = parse_options(lua, "kumo.secrets.load", ks)?;
            let secret = ks
                .load()
                .map_err(|e| rt(format!("kumo.secrets.load: {e}")))?;
            lua.create_string(secret.expose())
        })?,
    )?;
    kumo.set("secrets", secrets)?;
    crate::http::install(lua, &kumo)?;
    crate::dkim::install(lua, &kumo)?;
    crate::memoize::install(lua, &kumo)?;
    crate::unsupported::install(lua, &kumo)?;

    Ok(kumo)
}

/// Modules `require` resolves without touching the filesystem.
pub fn builtin_module(lua: &Lua, name: &str) -> mlua::Result<Option<Value>> {
    Ok(match name {
        "kumo" => Some(lua.globals().get("kumo")?),
        "policy-extras.policy_utils" => Some(
            lua.load(include_str!("policy_utils.lua"))
                .set_name("@policy-extras.policy_utils")
                .call(())?,
        ),
        "policy-extras.listener_domains" => {
            Some(Value::Table(crate::helpers::listener_domains::module(lua)?))
        }
        "policy-extras.shaping" => Some(Value::Table(crate::helpers::shaping::module(lua)?)),
        "policy-extras.queue" => Some(Value::Table(crate::helpers::queues::module(lua)?)),
        "policy-extras.sources" => Some(Value::Table(crate::helpers::sources::module(lua)?)),
        "policy-extras.log_hooks" => Some(Value::Table(crate::helpers::log_hooks::module(lua)?)),
        "sqlite" => Some(Value::Table(crate::sqlite::module(lua)?)),
        "policy-extras.passwords" => Some(Value::Table(crate::helpers::passwords::module(lua)?)),
        "policy-extras.dkim_sign" => Some(Value::Table(crate::helpers::dkim_sign::module(lua)?)),
        "policy-extras.posture" => Some(Value::Table(crate::helpers::posture::module(lua)?)),
        "policy-extras.mail_auth" => Some(Value::Table(crate::authn::mail_auth_module(lua)?)),
        other => {
            if let Some((_, why)) = UNSUPPORTED_HELPERS.iter().find(|(n, _)| *n == other) {
                return Err(rt(format!(
                    "require '{other}': Ironpost does not support this KumoMTA helper yet ({why})"
                )));
            }
            None
        }
    })
}

/// KumoMTA's shipped helpers that Ironpost does not provide yet: refused by
/// name rather than reported as an unknown module.
const UNSUPPORTED_HELPERS: &[(&str, &str)] = &[
    (
        "policy-extras.rollup",
        "MX rollup configuration is not implemented",
    ),
    (
        "policy-extras.docker_utils",
        "the Docker helpers are not part of Ironpost",
    ),
    (
        "policy-extras.typing",
        "the typing helper is not part of Ironpost",
    ),
];
