//! `policy-extras.shaping`: a `get_egress_path_config` handler built from
//! KumoMTA-format shaping files (see [`data`]), reloaded when they change,
//! with the automation rules they hold made available to delivery through
//! the engine's [`Registry`].
//!
//! KumoMTA's own stock files ship inside the binary: `setup` applies the
//! stock `shaping.toml` first, as KumoMTA does, and the paths KumoMTA
//! installs them at name the built-in copies when no such file exists.

pub mod data;
pub mod rules;

use crate::kumo::EgressPathValue;
use data::{Matched, Override, ShapingData};
use mlua::{Lua, LuaSerdeExt, Table, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Where KumoMTA installs its stock files; the names of the built-in copies.
pub const STOCK_FILE: &str = "/opt/kumomta/share/policy-extras/shaping.toml";
pub const COMMUNITY_FILE: &str = "/opt/kumomta/share/community/shaping.toml";
const STOCK_TEXT: &str = include_str!("kumomta/shaping.toml");
const COMMUNITY_TEXT: &str = include_str!("kumomta/community_shaping.toml");

/// How often the files are checked for changes (KumoMTA's `cache_ttl`).
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// How long a rolled-up domain's MX site is trusted before delivery looks
/// it up again.
pub const SITE_TTL: Duration = Duration::from_secs(300);

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A built-in copy's text when `path` names a stock file that is not on
/// this machine.
fn builtin(path: &str) -> Option<&'static str> {
    let text = match path {
        STOCK_FILE => STOCK_TEXT,
        COMMUNITY_FILE => COMMUNITY_TEXT,
        _ => return None,
    };
    (!std::path::Path::new(path).exists()).then_some(text)
}

/// Parse and merge `files` in order.
pub fn load_files(files: &[String]) -> Result<ShapingData, String> {
    let mut data = ShapingData::default();
    for f in files {
        let tables = match builtin(f) {
            Some(text) => {
                tracing::info!(
                    "policy-extras.shaping: {f} is not on this machine; using the copy built into Ironpost"
                );
                super::parse_data(text, false)
                    .map_err(|e| format!("shaping {f} (built in): {e}"))?
            }
            None => super::load_data_file(std::path::Path::new(f))
                .map_err(|e| format!("shaping {e}"))?,
        };
        let serde_json::Value::Object(tables) = tables else {
            return Err(format!("shaping {f}: expected a file of tables"));
        };
        data.add_file(f, tables)?;
    }
    Ok(data)
}

/// One text, as `load_files` reads a file (for tests and fuzzing).
pub fn parse(text: &str, json: bool) -> Result<ShapingData, String> {
    let serde_json::Value::Object(tables) = super::parse_data(text, json)? else {
        return Err("shaping (text): expected a file of tables".into());
    };
    let mut data = ShapingData::default();
    data.add_file("(text)", tables)?;
    Ok(data)
}

fn stamps(files: &[String]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// One set of files, shared by every Lua state that set it up.
struct Loaded {
    files: Vec<String>,
    ttl: Duration,
    data: RwLock<Arc<ShapingData>>,
    /// When to look at the files again, and what they looked like.
    check: Mutex<(Instant, Vec<Option<SystemTime>>)>,
}

impl Loaded {
    /// The data, reloaded first when a file changed since the last look.
    /// A file that no longer loads keeps the last good data (logged): a
    /// half-edited file must not lift its limits.
    fn current(&self) -> Arc<ShapingData> {
        let mut check = self.check.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= check.0 {
            check.0 = Instant::now() + self.ttl;
            let now = stamps(&self.files);
            if now != check.1 {
                match load_files(&self.files) {
                    Ok(d) => {
                        check.1 = now;
                        *write_lock(&self.data) = Arc::new(d);
                        tracing::info!("shaping: reloaded {}", self.files.join(", "));
                    }
                    Err(e) => tracing::error!("shaping: keeping the previous rules: {e}"),
                }
            }
        }
        read_lock(&self.data).clone()
    }
}

/// What delivery shares with the shaping helper: the rules in force, the
/// MX sites of rolled-up domains, and the automation overrides.
#[derive(Default)]
pub struct Registry {
    loaded: Mutex<HashMap<Vec<String>, Arc<Loaded>>>,
    /// The set the policy's handler uses (the last set up).
    active: RwLock<Option<Arc<Loaded>>>,
    sites: RwLock<HashMap<String, (Option<String>, Instant)>>,
    overrides: RwLock<Arc<Vec<Override>>>,
    skip: RwLock<Option<std::collections::BTreeSet<String>>>,
}

impl Registry {
    fn setup(&self, files: Vec<String>, ttl: Duration) -> Result<Arc<Loaded>, String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let l = match loaded.get(&files) {
            Some(l) => l.clone(),
            None => {
                let before = stamps(&files);
                let data = load_files(&files)?;
                let l = Arc::new(Loaded {
                    check: Mutex::new((Instant::now() + ttl, before)),
                    files: files.clone(),
                    ttl,
                    data: RwLock::new(Arc::new(data)),
                });
                loaded.insert(files, l.clone());
                l
            }
        };
        *write_lock(&self.active) = Some(l.clone());
        Ok(l)
    }

    fn data(&self) -> Option<Arc<ShapingData>> {
        read_lock(&self.active).as_ref().map(|l| l.current())
    }

    /// Whether the policy set the helper up.
    pub fn is_active(&self) -> bool {
        read_lock(&self.active).is_some()
    }

    /// Rolled-up domains whose MX site is unknown or older than `max_age`.
    pub fn sites_due(&self, max_age: Duration) -> Vec<String> {
        let Some(data) = self.data() else {
            return Vec::new();
        };
        let sites = read_lock(&self.sites);
        data.rollup_domains()
            .filter(|d| sites.get(*d).is_none_or(|(_, at)| at.elapsed() >= max_age))
            .map(str::to_string)
            .collect()
    }

    /// `domain`'s MX site (None: it has none: no such domain, null MX).
    pub fn set_site(&self, domain: &str, site: Option<String>) {
        write_lock(&self.sites).insert(domain.to_string(), (site, Instant::now()));
    }

    /// The lookup of `domain`'s site failed for now: keep what is known,
    /// and ask again after `retry` rather than after [`SITE_TTL`].
    pub fn site_lookup_failed(&self, domain: &str, retry: Duration) {
        let mut sites = write_lock(&self.sites);
        let at = Instant::now()
            .checked_sub(SITE_TTL.saturating_sub(retry))
            .unwrap_or_else(Instant::now);
        let known = sites.get(domain).and_then(|(s, _)| s.clone());
        sites.insert(domain.to_string(), (known, at));
    }

    fn site_of(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |d| read_lock(&self.sites).get(d).and_then(|(s, _)| s.clone())
    }

    /// Replace the automation overrides in force.
    pub fn set_overrides(&self, list: Vec<Override>) {
        *write_lock(&self.overrides) = Arc::new(list);
    }

    /// The automation rules that `reply` matches.
    pub fn match_rules(
        &self,
        domain: &str,
        site: &str,
        reply: &str,
        internal: bool,
    ) -> Vec<Matched> {
        match self.data() {
            Some(d) => d.match_rules(domain, site, reply, internal, &self.site_of()),
            None => Vec::new(),
        }
    }

    fn resolve(&self, loaded: &Loaded, domain: &str, source: &str, site: &str) -> data::Params {
        let overrides = read_lock(&self.overrides).clone();
        loaded
            .current()
            .resolve(domain, source, site, &self.site_of(), &overrides)
    }

    /// The record types automation passes over.
    pub fn skipped_record_types(&self) -> std::collections::BTreeSet<String> {
        read_lock(&self.skip).clone().unwrap_or_else(default_skip)
    }
}

fn registry(lua: &Lua) -> mlua::Result<Arc<Registry>> {
    lua.app_data_ref::<crate::state::StateCtx>()
        .map(|c| c.shared.shaping.clone())
        .ok_or_else(|| mlua::Error::RuntimeError("policy state missing".into()))
}

fn rt(msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(format!("policy-extras.shaping: {msg}"))
}

/// The handler: `(domain, egress_source, site_name [, skip_make])` →
/// `kumo.make_egress_path{...}`, or the merged options as a table when
/// `skip_make` is true (as KumoMTA's helper returns them).
fn handler(lua: &Lua, files: Vec<String>, ttl: Duration) -> mlua::Result<mlua::Function> {
    let reg = registry(lua)?;
    let loaded = reg.setup(files, ttl).map_err(rt)?;
    lua.create_function(
        move |lua,
              (domain, source, site, skip_make): (
            String,
            Option<String>,
            Option<String>,
            Option<bool>,
        )| {
            let source = source.unwrap_or_else(|| crate::egress_source::UNSPECIFIED.to_string());
            let params = reg.resolve(&loaded, &domain, &source, site.as_deref().unwrap_or(""));
            let cfg = data::to_config(params.clone()).map_err(rt)?;
            if skip_make == Some(true) {
                return lua.to_value(&serde_json::Value::Object(params));
            }
            lua.create_userdata(EgressPathValue(cfg))
                .map(Value::UserData)
        },
    )
}

/// KumoMTA's `load_validation_options`: levels for problems found while
/// loading. Ironpost fails on a file it cannot read (`local_load =
/// 'Error'`) and reports nothing else at load time, so only those values
/// are accepted.
fn check_validation_options(t: &Table, live: bool) -> mlua::Result<()> {
    for pair in t.pairs::<String, Value>() {
        let (k, v) = pair?;
        let level = match &v {
            Value::String(s) => Some(s.to_str()?.to_string()),
            _ => None,
        };
        let ok = match (k.as_str(), level.as_deref()) {
            ("skip_remote", None) => matches!(v, Value::Boolean(_)),
            ("http_timeout", Some(_)) => true,
            (_, None) => false,
            ("local_load", Some(l)) => !live || l.eq_ignore_ascii_case("error"),
            (
                "dns_fail" | "null_mx" | "aliased_site" | "provider_overlap" | "remote_load",
                Some(l),
            ) => {
                ["ignore", "warn", "error"].contains(&l.to_ascii_lowercase().as_str())
                    && (!live || l.eq_ignore_ascii_case("ignore") || k == "remote_load")
            }
            _ => false,
        };
        if !ok {
            return Err(rt(format!(
                "load_validation_options: Ironpost does not support {k} = {}",
                level.unwrap_or_else(|| v.type_name().to_string())
            )));
        }
    }
    Ok(())
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    // `shaping:setup(files)`: the stock file, then `files`.
    m.set(
        "setup",
        lua.create_function(|lua, (_this, extra): (Value, Option<Vec<String>>)| {
            super::configure_once(lua, "policy-extras.shaping")?;
            let mut files = vec![STOCK_FILE.to_string()];
            files.extend(extra.unwrap_or_default());
            handler(lua, files, DEFAULT_CACHE_TTL)
        })?,
    )?;
    m.set(
        "setup_with_automation",
        lua.create_function(|lua, (_this, options): (Value, Table)| {
            super::configure_once(lua, "policy-extras.shaping")?;
            let mut files = Vec::new();
            let mut no_default = false;
            let mut ttl = DEFAULT_CACHE_TTL;
            for pair in options.pairs::<String, Value>() {
                let (k, v) = pair?;
                match (k.as_str(), v) {
                    ("extra_files", Value::Table(t)) => {
                        for f in t.sequence_values::<String>() {
                            files.push(f?);
                        }
                    }
                    ("no_default_files", Value::Boolean(b)) => no_default = b,
                    ("cache_ttl", v) => {
                        let v: serde_json::Value = lua.from_value(v)?;
                        ttl = crate::duration::deserialize(v)
                            .map_err(|e| rt(format!("cache_ttl: {e}")))?;
                    }
                    // Where KumoMTA's separate automation daemon is and how
                    // logs reach it: Ironpost runs the automation in
                    // process, so there is nothing to send or fetch.
                    ("publish" | "subscribe", Value::Table(t)) => {
                        for u in t.sequence_values::<String>() {
                            u?;
                        }
                    }
                    ("tsa_queue_config", Value::Table(_))
                    | ("back_pressure", Value::Integer(_))
                    | ("pre_filter", Value::Boolean(_)) => {}
                    ("load_validation_options", Value::Table(t)) => {
                        check_validation_options(&t, true)?
                    }
                    // Used by KumoMTA's `--validate` mode only.
                    ("validation_options", Value::Table(t)) => check_validation_options(&t, false)?,
                    ("skip_log_record_types" | "additional_skip_log_record_types", Value::Table(t)) => {
                        let list: Vec<String> = t.sequence_values::<String>().collect::<Result<_, _>>()?;
                        with_skip(lua, &k, list)?;
                    }
                    (k, _) => {
                        return Err(rt(format!(
                            "setup_with_automation: Ironpost does not support the option '{k}' (or not that value)"
                        )))
                    }
                }
            }
            if !no_default {
                files.insert(0, STOCK_FILE.to_string());
            }
            let t = lua.create_table()?;
            t.set("get_egress_path_config", handler(lua, files, ttl)?)?;
            // KumoMTA starts log publishing to its automation daemon here;
            // Ironpost's automation needs no start.
            t.set("setup_publish", lua.create_function(|_, ()| Ok(()))?)?;
            Ok(t)
        })?,
    )?;
    Ok(m)
}

/// The record types automation skips (`skip_log_record_types` replaces
/// the default set, `additional_skip_log_record_types` adds to it).
fn with_skip(lua: &Lua, key: &str, list: Vec<String>) -> mlua::Result<()> {
    let reg = registry(lua)?;
    let mut skip = write_lock(&reg.skip);
    if key == "skip_log_record_types" {
        skip.replace(list.into_iter().collect());
    } else {
        skip.get_or_insert_with(default_skip).extend(list);
    }
    Ok(())
}

/// KumoMTA's default: records that are not a destination's answer.
pub fn default_skip() -> std::collections::BTreeSet<String> {
    [
        "AdminRebind",
        "DeferredInjectionRebind",
        "Delayed",
        "Reception",
        "Rejection",
        "XferIn",
        "XferOut",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

#[cfg(test)]
mod tests;
