//! `kumo.make_throttle(name, spec)`: a named GCRA throttle for policy code
//! (a per-tenant reception rate, say). Throttles of the same name are one
//! throttle; with Redis configured (`kumo.configure_redis_throttles`) every
//! node shares it, unless the spec says `local:`.

use crate::throttle::ThrottleSpec;
use ironpost_cluster::{Decision, Gcra, Redis};
use mlua::{Lua, UserData, UserDataMethods, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The wait a shared throttle reports while Redis cannot answer.
const REDIS_RETRY: Duration = Duration::from_millis(500);

/// The engine's throttles, shared by its Lua states.
#[derive(Default)]
pub struct Throttles {
    local: Mutex<HashMap<(String, ThrottleSpec), Arc<Gcra>>>,
    redis: OnceLock<Redis>,
}

impl Throttles {
    pub fn share(&self, redis: Redis) {
        let _ = self.redis.set(redis);
    }

    /// One decision; `Err` when a shared throttle cannot be asked.
    fn decide(&self, name: &str, spec: &ThrottleSpec) -> Result<Decision, String> {
        let shared = self.redis.get().filter(|_| !spec.local);
        match (shared, tokio::runtime::Handle::try_current()) {
            (Some(redis), Ok(rt)) => rt
                .block_on(redis.decide(&format!("policy:{name}"), spec.interval(), spec.max_burst))
                .map_err(|e| e.to_string()),
            (Some(_), Err(_)) => Err("no runtime to reach Redis from here".into()),
            (None, _) => {
                let g = self
                    .local
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry((name.to_string(), spec.clone()))
                    .or_insert_with(|| Arc::new(Gcra::new(spec.interval(), spec.max_burst)))
                    .clone();
                Ok(g.decide(Instant::now()))
            }
        }
    }
}

pub struct Throttle {
    name: String,
    spec: ThrottleSpec,
    store: Arc<Throttles>,
}

impl UserData for Throttle {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // `{ throttled, limit, remaining, reset_after, retry_after }`,
        // durations in seconds. Redis unavailable: throttled.
        m.add_method("throttle", |lua, t, ()| {
            let out = lua.create_table()?;
            out.set("limit", t.spec.limit)?;
            match t.store.decide(&t.name, &t.spec) {
                Ok(d) => {
                    out.set("throttled", d.retry_after.is_some())?;
                    out.set("remaining", d.remaining)?;
                    out.set("reset_after", d.reset_after.as_secs_f64())?;
                    out.set("retry_after", d.retry_after.map(|r| r.as_secs_f64()))?;
                }
                Err(e) => {
                    tracing::warn!("throttle {}: {e}; reporting it throttled", t.name);
                    out.set("throttled", true)?;
                    out.set("remaining", 0)?;
                    out.set("reset_after", REDIS_RETRY.as_secs_f64())?;
                    out.set("retry_after", REDIS_RETRY.as_secs_f64())?;
                }
            }
            Ok(out)
        });
        // Waits (this policy call only) until the throttle allows; true
        // when it had to.
        // Redis unavailable: an error at once (the event fails closed,
        // e.g. a 451 at reception) rather than a Lua state held waiting.
        m.add_method("sleep_if_throttled", |_, t, ()| {
            let mut waited = false;
            loop {
                let wait = match t.store.decide(&t.name, &t.spec) {
                    Ok(d) => match d.retry_after {
                        None => return Ok(waited),
                        Some(w) => w,
                    },
                    Err(e) => {
                        return Err(mlua::Error::RuntimeError(format!(
                            "throttle {}: {e}",
                            t.name
                        )))
                    }
                };
                waited = true;
                std::thread::sleep(wait);
            }
        });
        m.add_method(
            "delay_message_if_throttled",
            |_, t, _msg: Value| -> mlua::Result<bool> {
                Err(mlua::Error::RuntimeError(format!(
                "throttle {}: delay_message_if_throttled is for the throttle_insert_ready_queue \
                 event, which Ironpost does not have; use shaping's rates instead",
                t.name
            )))
            },
        );
    }
}

pub fn install(lua: &Lua, kumo: &mlua::Table) -> mlua::Result<()> {
    kumo.set(
        "make_throttle",
        lua.create_function(|lua, (name, spec): (String, String)| {
            let spec = ThrottleSpec::parse(&spec)
                .map_err(|e| mlua::Error::RuntimeError(format!("kumo.make_throttle: {e}")))?;
            let store = lua
                .app_data_ref::<crate::state::StateCtx>()
                .map(|c| c.shared.throttles.clone())
                .ok_or_else(|| mlua::Error::RuntimeError("policy state missing".into()))?;
            Ok(Throttle { name, spec, store })
        })?,
    )
}
