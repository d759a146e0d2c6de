//! `kumo.memoize(fn, { name, ttl, capacity })`: cache a function's results.
//!
//! **Ironpost:** cache keys are SHA-256 digests of the arguments, so a
//! memoized credential check does not keep passwords in memory as keys. The
//! cache is shared by every Lua state of the process (per `name`), holds
//! only serialisable results, and evicts the oldest entry beyond `capacity`.
//!
//! KumoMTA's `invalidate_with_epoch = true` drops the cache whenever the
//! configuration epoch changes. Ironpost has no configuration epoch, so
//! that option is refused (naming it) unless it is `false`; the other
//! KumoMTA options Ironpost lacks (`populate_timeout`,
//! `retry_on_populate_timeout`, `allow_stale_reads`) are unknown keys,
//! which are errors too.

use crate::duration;
use crate::kumo::parse_options;
use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Value};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    name: String,
    #[serde(deserialize_with = "duration::deserialize")]
    ttl: Duration,
    #[serde(default = "default_capacity")]
    capacity: usize,
    /// Only `false` (KumoMTA's default) is accepted: see the module doc.
    #[serde(default)]
    invalidate_with_epoch: Option<bool>,
}

fn default_capacity() -> usize {
    1024
}

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], (serde_json::Value, Instant)>,
    order: VecDeque<[u8; 32]>,
}

fn caches() -> &'static Mutex<HashMap<String, Arc<Mutex<Cache>>>> {
    static C: OnceLock<Mutex<HashMap<String, Arc<Mutex<Cache>>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn key_of(lua: &Lua, args: &MultiValue) -> mlua::Result<[u8; 32]> {
    let mut h = Sha256::new();
    for a in args.iter() {
        let j: serde_json::Value = lua.from_value(a.clone())?;
        h.update(j.to_string().as_bytes());
        h.update([0u8]);
    }
    Ok(h.finalize().into())
}

pub fn install(lua: &Lua, kumo: &mlua::Table) -> mlua::Result<()> {
    kumo.set(
        "memoize",
        lua.create_function(|lua, (func, opts): (Function, Value)| {
            let o: Options = parse_options(lua, "kumo.memoize", opts)?;
            if o.invalidate_with_epoch == Some(true) {
                return Err(mlua::Error::RuntimeError(format!(
                    "kumo.memoize{{name={:?}}}: key 'invalidate_with_epoch' = true: Ironpost does \
                     not support invalidate_with_epoch (it has no configuration epoch to \
                     invalidate the cache on); leave it out or set it to false",
                    o.name
                )));
            }
            let cache = caches()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(o.name.clone())
                .or_default()
                .clone();
            let (ttl, capacity) = (o.ttl, o.capacity.max(1));
            lua.create_function(move |lua, args: MultiValue| {
                let key = key_of(lua, &args)?;
                {
                    let c = cache.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((v, at)) = c.entries.get(&key) {
                        if at.elapsed() < ttl {
                            return lua.to_value(v);
                        }
                    }
                }
                let result: Value = func.call(args)?;
                let json: serde_json::Value = lua.from_value(result.clone())?;
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                if c.entries.insert(key, (json, Instant::now())).is_none() {
                    c.order.push_back(key);
                }
                while c.entries.len() > capacity {
                    match c.order.pop_front() {
                        Some(old) => {
                            c.entries.remove(&old);
                        }
                        None => break,
                    }
                }
                Ok(result)
            })
        })?,
    )
}
