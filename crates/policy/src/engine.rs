//! A pool of independent Lua states running the same policy, so policy
//! calls from concurrent sessions run in parallel instead of queueing on one
//! interpreter. Calls run on tokio's blocking pool: a handler may do slow
//! things (a SQLite query, a Vault fetch) without stalling the async threads.

use crate::config::{InitConfig, ListenerDomain};
use crate::conn_meta::ConnMeta;
use crate::delivery_config::{EgressPathConfig, QueueConfig};
use crate::egress_source::{EgressPool, EgressSource, UNSPECIFIED};
use crate::error::{describe_lua_error, EventError, PolicyError};
use crate::kumo::{
    EgressPathValue, EgressPoolValue, EgressSourceValue, ListenerDomainValue, QueueConfigValue,
};
use crate::message::{Message, MessageHandle};
use crate::sandbox;
use crate::state::{Shared, StateCtx, HANDLERS_KEY};
use mlua::{AnyUserData, Function, Lua, Table, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

pub const DEFAULT_POLICY: &str = include_str!("default_policy.lua");

#[derive(Clone, Debug)]
pub enum PolicySource {
    File(PathBuf),
    Builtin,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Load the full safe standard library (io, os, package) instead of the
    /// sandbox. Off unless the operator asks for it.
    pub unrestricted_stdlib: bool,
    pub pool_size: usize,
    /// Directories, besides the policy's own, where `sqlite.open` may open
    /// databases (canonical paths).
    pub sqlite_dirs: Vec<std::path::PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        EngineOptions {
            unrestricted_stdlib: false,
            pool_size: (cores * 2).max(4),
            sqlite_dirs: Vec::new(),
        }
    }
}

struct Inner {
    idle: Mutex<Vec<Lua>>,
    returned: Condvar,
    handlers: std::sync::RwLock<HashSet<String>>,
    /// Bumped by each reload; a state of an older one is dropped when it
    /// comes back instead of rejoining the pool.
    generation: std::sync::atomic::AtomicU64,
    source: PolicySource,
    opts: EngineOptions,
    shared: Arc<Shared>,
    shaping: Arc<crate::helpers::shaping::Registry>,
    throttles: Arc<crate::throttle_object::Throttles>,
    key_files: Vec<(String, PathBuf)>,
}

#[derive(Clone)]
pub struct PolicyEngine(Arc<Inner>);

/// The reload a Lua state was made for (0: the start).
struct Generation(u64);

fn new_state(
    source: &PolicySource,
    code: &str,
    shared: &Arc<Shared>,
    opts: &EngineOptions,
) -> Result<Lua, PolicyError> {
    let lua_err = |e: mlua::Error| PolicyError::Lua(describe_lua_error(&e));
    let lua = sandbox::new_lua(opts.unrestricted_stdlib).map_err(lua_err)?;
    let (chunk_name, policy_dir) = match source {
        PolicySource::File(p) => {
            let dir = p.parent().and_then(|d| d.canonicalize().ok());
            (format!("@{}", p.display()), dir)
        }
        PolicySource::Builtin => ("@<built-in default policy>".to_string(), None),
    };
    let sqlite_dirs = policy_dir
        .iter()
        .chain(&opts.sqlite_dirs)
        .cloned()
        .collect();
    lua.set_app_data(crate::sqlite::SqliteDirs(sqlite_dirs));
    lua.set_app_data(StateCtx {
        shared: shared.clone(),
        policy_dir,
    });
    let kumo = crate::kumo::install(&lua).map_err(lua_err)?;
    lua.globals().set("kumo", kumo).map_err(lua_err)?;
    sandbox::install_require(&lua).map_err(lua_err)?;
    sandbox::install_print(&lua).map_err(lua_err)?;
    lua.load(code)
        .set_name(chunk_name)
        .exec()
        .map_err(lua_err)?;
    Ok(lua)
}

/// `pre_init` (every handler, in order), then `init`.
fn run_init(lua: &Lua) -> mlua::Result<()> {
    let pre: Table = lua.named_registry_value(crate::kumo::PRE_INIT_KEY)?;
    for f in pre.sequence_values::<Function>() {
        f?.call::<()>(())?;
    }
    if let Some(f) = handler(lua, "init")? {
        f.call::<()>(())?;
    }
    check_required_pools(lua)
}

/// Every pool that static helper data names (a tenant's `egress_pool`) must
/// be defined, with every source in it, once `init` has bound the
/// handlers: otherwise that mail could never leave, and the start fails
/// naming the table and the pool.
fn check_required_pools(lua: &Lua) -> mlua::Result<()> {
    let Some(list) = lua.named_registry_value::<Option<Table>>(crate::kumo::REQUIRED_POOLS_KEY)?
    else {
        return Ok(());
    };
    for pair in list.sequence_values::<Vec<String>>() {
        let [place, pool]: [String; 2] = pair?
            .try_into()
            .map_err(|_| mlua::Error::RuntimeError("malformed required pool".into()))?;
        let fail = |why: String| {
            mlua::Error::RuntimeError(format!(
                "{place}: egress_pool '{pool}' is not defined: {why}"
            ))
        };
        if pool == UNSPECIFIED {
            continue;
        }
        let Some(get_pool) = handler(lua, "get_egress_pool")? else {
            return Err(fail(
                "there is no get_egress_pool handler (require 'policy-extras.sources')".into(),
            ));
        };
        let def = match get_pool
            .call::<Value>(pool.clone())
            .map_err(|e| fail(e.to_string()))?
        {
            Value::UserData(ud) => ud.borrow::<EgressPoolValue>()?.0.clone(),
            other => {
                return Err(fail(format!(
                    "get_egress_pool returned {}",
                    other.type_name()
                )))
            }
        };
        for entry in def.entries.iter().filter(|e| e.name != UNSPECIFIED) {
            let source = match handler(lua, "get_egress_source")? {
                Some(f) => f
                    .call::<Value>(entry.name.clone())
                    .map_err(|e| fail(e.to_string()))?,
                None => Value::Nil,
            };
            if !matches!(&source, Value::UserData(ud) if ud.is::<EgressSourceValue>()) {
                return Err(fail(format!(
                    "its source '{}' is not defined by get_egress_source",
                    entry.name
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn handler(lua: &Lua, event: &str) -> mlua::Result<Option<Function>> {
    let handlers: Table = lua.named_registry_value(HANDLERS_KEY)?;
    handlers.get(event)
}

impl PolicyEngine {
    /// Load the policy into the first state, run `init` there, then fill the
    /// rest of the pool.
    pub fn start(
        source: PolicySource,
        opts: EngineOptions,
    ) -> Result<(PolicyEngine, InitConfig), PolicyError> {
        let code = match &source {
            PolicySource::File(p) => std::fs::read_to_string(p).map_err(|e| PolicyError::Read {
                path: p.clone(),
                source: e,
            })?,
            PolicySource::Builtin => DEFAULT_POLICY.to_string(),
        };
        let shared = Arc::new(Shared::default());
        let first = new_state(&source, &code, &shared, &opts)?;

        *shared.init.lock().unwrap_or_else(|p| p.into_inner()) = Some(InitConfig::default());
        let init_result = run_init(&first);
        let init = shared
            .init
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        init_result
            .map_err(|e| PolicyError::Lua(format!("in 'init': {}", describe_lua_error(&e))))?;

        let handlers: HashSet<String> = {
            let t: Table = first
                .named_registry_value(HANDLERS_KEY)
                .map_err(|e| PolicyError::Lua(describe_lua_error(&e)))?;
            t.pairs::<String, Value>()
                .filter_map(|kv| kv.ok().map(|(k, _)| k))
                .collect()
        };
        let mut idle = vec![first];
        for _ in 1..opts.pool_size.max(1) {
            idle.push(new_state(&source, &code, &shared, &opts)?);
        }
        let engine = PolicyEngine(Arc::new(Inner {
            idle: Mutex::new(idle),
            returned: Condvar::new(),
            handlers: std::sync::RwLock::new(handlers),
            generation: Default::default(),
            source: source.clone(),
            opts: opts.clone(),
            shared: shared.clone(),
            shaping: shared.shaping.clone(),
            throttles: shared.throttles.clone(),
            key_files: shared
                .key_files
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }));
        Ok((engine, init))
    }

    /// Key files and key directories the policy's helpers named (DKIM
    /// keys), with the helper that named each.
    pub fn key_files(&self) -> &[(String, PathBuf)] {
        &self.0.key_files
    }

    /// Share `kumo.make_throttle`'s throttles through Redis.
    pub fn share_throttles(&self, redis: ironpost_cluster::Redis) {
        self.0.throttles.share(redis);
    }

    /// The shaping helper's rules and state, for delivery's automation.
    pub fn shaping(&self) -> Arc<crate::helpers::shaping::Registry> {
        self.0.shaping.clone()
    }

    /// `policy-extras.posture`'s data, when the policy set it up.
    pub fn posture_config(&self) -> Option<Arc<crate::helpers::posture::PostureConfig>> {
        self.0
            .shared
            .posture
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Give the policy's inbound checks (`kumo.spf`, `msg:dkim_verify`,
    /// ...) their resolver; set once.
    pub fn set_authenticator(&self, a: ironpost_authn::Authenticator) {
        let _ = self.0.shared.authn.set(a);
    }

    /// Every source `policy-extras.sources` defines.
    pub fn defined_sources(&self) -> Vec<EgressSource> {
        self.0
            .shared
            .defined_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn has_handler(&self, event: &str) -> bool {
        self.0
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(event)
    }

    /// Load the policy file again (SIGHUP) and use it for every event from
    /// now on; calls in progress finish under the old one. `init` is not
    /// run again: listeners, spool and logs need a restart. When the new
    /// policy does not load, the old one stays, and the error is returned.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let inner = &self.0;
        let code = match &inner.source {
            PolicySource::File(p) => std::fs::read_to_string(p).map_err(|e| PolicyError::Read {
                path: p.clone(),
                source: e,
            })?,
            PolicySource::Builtin => DEFAULT_POLICY.to_string(),
        };
        let generation = inner.generation.load(std::sync::atomic::Ordering::SeqCst) + 1;
        let mut states = Vec::new();
        for _ in 0..inner.opts.pool_size.max(1) {
            let lua = new_state(&inner.source, &code, &inner.shared, &inner.opts)?;
            lua.set_app_data(Generation(generation));
            states.push(lua);
        }
        check_required_pools(&states[0]).map_err(|e| PolicyError::Lua(describe_lua_error(&e)))?;
        let handlers: HashSet<String> = {
            let t: Table = states[0]
                .named_registry_value(HANDLERS_KEY)
                .map_err(|e| PolicyError::Lua(describe_lua_error(&e)))?;
            t.pairs::<String, Value>()
                .filter_map(|kv| kv.ok().map(|(k, _)| k))
                .collect()
        };
        let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .generation
            .store(generation, std::sync::atomic::Ordering::SeqCst);
        *inner.handlers.write().unwrap_or_else(|p| p.into_inner()) = handlers;
        *idle = states;
        inner.returned.notify_all();
        Ok(())
    }

    fn checkout(&self) -> Lua {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(lua) = idle.pop() {
                return lua;
            }
            idle = self
                .0
                .returned
                .wait(idle)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn checkin(&self, lua: Lua) {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.0.generation.load(std::sync::atomic::Ordering::SeqCst);
        let of = lua.app_data_ref::<Generation>().map_or(0, |g| g.0);
        if of == current {
            idle.push(lua);
            self.0.returned.notify_one();
        }
    }

    /// Run `f` with a pooled Lua state on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, EventError>
    where
        R: Send + 'static,
        F: FnOnce(&Lua) -> mlua::Result<R> + Send + 'static,
    {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            // Checked back in even if `f` panics, so a panic in a Lua
            // callback cannot shrink the pool until every call hangs.
            struct Lease(PolicyEngine, Option<Lua>);
            impl Drop for Lease {
                fn drop(&mut self) {
                    if let Some(lua) = self.1.take() {
                        self.0.checkin(lua);
                    }
                }
            }
            let lease = Lease(engine.clone(), Some(engine.checkout()));
            f(lease.1.as_ref().expect("leased state"))
        })
        .await
        .map_err(|e| EventError::Failed(format!("policy task failed: {e}")))?
        .map_err(EventError::from)
    }

    /// Call a handler that takes the message (and the connection's
    /// metadata), returning the edited message.
    pub async fn message_event(
        &self,
        event: &'static str,
        msg: Message,
        conn_meta: Option<ConnMeta>,
    ) -> Result<Message, EventError> {
        if !self.has_handler(event) {
            return Ok(msg);
        }
        let handle = MessageHandle::new(msg);
        let for_lua = handle.clone();
        self.run(move |lua| {
            if let Some(f) = handler(lua, event)? {
                let ud = lua.create_userdata(for_lua)?;
                f.call::<()>((ud, conn_meta))?;
            }
            Ok(())
        })
        .await?;
        Ok(handle.into_message())
    }

    /// `smtp_server_connection_accepted(conn_meta)`: `kumo.reject` refuses
    /// the connection.
    pub async fn connection_accepted(&self, conn_meta: ConnMeta) -> Result<(), EventError> {
        self.notify("smtp_server_connection_accepted", conn_meta)
            .await
    }

    /// `smtp_server_mail_from(sender, conn_meta)`.
    pub async fn mail_from(&self, sender: String, conn_meta: ConnMeta) -> Result<(), EventError> {
        let sender = crate::message::AddressValue::parse(&sender);
        self.notify("smtp_server_mail_from", (sender, conn_meta))
            .await
    }

    /// `smtp_server_rcpt_to(recipient, conn_meta)`.
    pub async fn rcpt_to(&self, recipient: String, conn_meta: ConnMeta) -> Result<(), EventError> {
        let recipient = crate::message::AddressValue::parse(&recipient);
        self.notify("smtp_server_rcpt_to", (recipient, conn_meta))
            .await
    }

    /// `smtp_server_ehlo(domain, conn_meta, extensions)`: the extensions to
    /// advertise when the handler returns a list, `None` for the standard
    /// set.
    pub async fn ehlo(
        &self,
        domain: String,
        conn_meta: ConnMeta,
        extensions: Vec<String>,
    ) -> Result<Option<Vec<String>>, EventError> {
        const EVENT: &str = "smtp_server_ehlo";
        if !self.has_handler(EVENT) {
            return Ok(None);
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Ok(None);
            };
            let v: Value = f.call((domain, conn_meta, extensions))?;
            match v {
                Value::Nil => Ok(None),
                Value::Table(t) => Ok(Some(
                    t.sequence_values::<String>().collect::<mlua::Result<_>>()?,
                )),
                other => Err(mlua::Error::RuntimeError(format!(
                    "smtp_server_ehlo must return a list of extensions or nil, not a {}",
                    other.type_name()
                ))),
            }
        })
        .await
    }

    /// An event whose only outcomes are carrying on, `kumo.reject`, or an
    /// error (its return value is ignored, as in KumoMTA).
    async fn notify<A>(&self, event: &'static str, args: A) -> Result<(), EventError>
    where
        A: mlua::IntoLuaMulti + Send + 'static,
    {
        if !self.has_handler(event) {
            return Ok(());
        }
        self.run(move |lua| match handler(lua, event)? {
            Some(f) => f.call::<()>(args),
            None => Ok(()),
        })
        .await
    }

    /// `get_listener_domain(domain, listener, conn_meta)`.
    pub async fn listener_domain(
        &self,
        domain: String,
        listener: String,
        conn_meta: ConnMeta,
    ) -> Result<Option<ListenerDomain>, EventError> {
        const EVENT: &str = "get_listener_domain";
        if !self.has_handler(EVENT) {
            return Ok(None);
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else { return Ok(None) };
            let v: Value = f.call((domain, listener, conn_meta))?;
            match v {
                Value::Nil => Ok(None),
                Value::UserData(ud) => Ok(Some(borrow_listener_domain(&ud)?)),
                other => Err(mlua::Error::RuntimeError(format!(
                    "get_listener_domain must return kumo.make_listener_domain{{...}} or nil, not a {}",
                    other.type_name()
                ))),
            }
        })
        .await
    }
}

impl PolicyEngine {
    /// `get_queue_config(domain, tenant, campaign, routing_domain)`.
    pub async fn queue_config(
        &self,
        domain: String,
        tenant: Option<String>,
        campaign: Option<String>,
        routing_domain: Option<String>,
    ) -> Result<QueueConfig, EventError> {
        const EVENT: &str = "get_queue_config";
        if !self.has_handler(EVENT) {
            return Ok(QueueConfig::default());
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Ok(QueueConfig::default());
            };
            let v: Value = f.call((domain, tenant, campaign, routing_domain))?;
            match v {
                Value::Nil => Ok(QueueConfig::default()),
                Value::UserData(ud) => Ok(ud.borrow::<QueueConfigValue>()?.0.clone()),
                other => Err(mlua::Error::RuntimeError(format!(
                    "get_queue_config must return kumo.make_queue_config{{...}}, not a {}",
                    other.type_name()
                ))),
            }
        })
        .await
    }

    /// `get_egress_source(name)`. `unspecified` is built in; any other name
    /// must be defined by the policy, or the mail for it waits.
    pub async fn egress_source(&self, name: String) -> Result<EgressSource, EventError> {
        const EVENT: &str = "get_egress_source";
        if name == UNSPECIFIED {
            return Ok(EgressSource::unspecified());
        }
        if !self.has_handler(EVENT) {
            return Err(EventError::Failed(format!(
                "egress source '{name}' is not defined (the policy has no {EVENT} handler)"
            )));
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Err(mlua::Error::RuntimeError(format!("no {EVENT} handler")));
            };
            match f.call::<Value>(name.clone())? {
                Value::UserData(ud) => Ok(ud.borrow::<EgressSourceValue>()?.0.clone()),
                Value::Nil => Err(mlua::Error::RuntimeError(format!(
                    "egress source '{name}' is not defined ({EVENT} returned nil)"
                ))),
                other => Err(mlua::Error::RuntimeError(format!(
                    "{EVENT} must return kumo.make_egress_source{{...}}, not a {}",
                    other.type_name()
                ))),
            }
        })
        .await
    }

    /// `get_egress_pool(name)`. `unspecified` is built in (one source,
    /// `unspecified`); any other name must be defined by the policy.
    pub async fn egress_pool(&self, name: String) -> Result<EgressPool, EventError> {
        const EVENT: &str = "get_egress_pool";
        if name == UNSPECIFIED {
            return Ok(EgressPool::unspecified());
        }
        if !self.has_handler(EVENT) {
            return Err(EventError::Failed(format!(
                "egress pool '{name}' is not defined (the policy has no {EVENT} handler)"
            )));
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Err(mlua::Error::RuntimeError(format!("no {EVENT} handler")));
            };
            match f.call::<Value>(name.clone())? {
                Value::UserData(ud) => Ok(ud.borrow::<EgressPoolValue>()?.0.clone()),
                Value::Nil => Err(mlua::Error::RuntimeError(format!(
                    "egress pool '{name}' is not defined ({EVENT} returned nil)"
                ))),
                other => Err(mlua::Error::RuntimeError(format!(
                    "{EVENT} must return kumo.make_egress_pool{{...}}, not a {}",
                    other.type_name()
                ))),
            }
        })
        .await
    }

    /// `get_egress_path_config(domain, egress_source, site_name)`.
    pub async fn egress_path(
        &self,
        domain: String,
        source: String,
        site: String,
    ) -> Result<EgressPathConfig, EventError> {
        const EVENT: &str = "get_egress_path_config";
        if !self.has_handler(EVENT) {
            return Ok(EgressPathConfig::default());
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Ok(EgressPathConfig::default());
            };
            let v: Value = f.call((domain, source, site))?;
            match v {
                Value::Nil => Ok(EgressPathConfig::default()),
                Value::UserData(ud) => Ok(ud.borrow::<EgressPathValue>()?.0.clone()),
                other => Err(mlua::Error::RuntimeError(format!(
                    "get_egress_path_config must return kumo.make_egress_path{{...}}, not a {}",
                    other.type_name()
                ))),
            }
        })
        .await
    }
}

/// What `smtp_server_auth_plain` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Denied,
    /// Credentials are valid. `identities` lists the authorization
    /// identities the user may act as besides its own (returned as
    /// `{ identities = {...} }`); a plain `true` grants none.
    Allowed {
        identities: Vec<String>,
    },
}

impl PolicyEngine {
    /// `smtp_server_auth_plain(authz, authc, password, conn_meta)`.
    pub async fn auth_plain(
        &self,
        authz: String,
        authc: String,
        password: String,
        conn_meta: ConnMeta,
    ) -> Result<AuthDecision, EventError> {
        const EVENT: &str = "smtp_server_auth_plain";
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Ok(AuthDecision::Denied);
            };
            let v: Value = f.call((authz, authc, password, conn_meta))?;
            Ok(match v {
                Value::Boolean(true) => AuthDecision::Allowed { identities: vec![] },
                Value::Table(t) => AuthDecision::Allowed {
                    identities: auth_info_identities(EVENT, &t)?,
                },
                _ => AuthDecision::Denied,
            })
        })
        .await
    }
}

impl PolicyEngine {
    /// `http_server_validate_auth_basic(user, password)`; no handler means
    /// no Basic credentials are ever accepted.
    pub async fn validate_http_basic(
        &self,
        user: String,
        password: String,
    ) -> Result<bool, EventError> {
        const EVENT: &str = "http_server_validate_auth_basic";
        if !self.has_handler(EVENT) {
            return Ok(false);
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Ok(false);
            };
            let v: Value = f.call((user, password))?;
            match v {
                Value::Table(t) => auth_info_identities(EVENT, &t).map(|_| true),
                v => Ok(matches!(v, Value::Boolean(true))),
            }
        })
        .await
    }
}

/// The identities of an AuthInfo table (KumoMTA's `kumo.aaa` AuthInfo):
/// `identities` entries are strings or `{ identity = ..., context = ... }`
/// tables; `groups` is accepted (only access-control lists, which Ironpost
/// refuses, would read it). Any other key is an error, not a guess.
fn auth_info_identities(event: &str, t: &Table) -> mlua::Result<Vec<String>> {
    let mut out = Vec::new();
    for pair in t.pairs::<String, Value>() {
        let (k, v) = pair?;
        match (k.as_str(), v) {
            ("identities", Value::Table(list)) => {
                for entry in list.sequence_values::<Value>() {
                    match entry? {
                        Value::String(s) => out.push(s.to_str()?.to_string()),
                        Value::Table(e) => out.push(e.get::<String>("identity")?),
                        other => {
                            return Err(mlua::Error::RuntimeError(format!(
                                "{event}: AuthInfo identities entries are strings or {{ identity = ..., context = ... }}, not a {}",
                                other.type_name()
                            )))
                        }
                    }
                }
            }
            ("groups", Value::Table(_)) => {}
            (k, _) => {
                return Err(mlua::Error::RuntimeError(format!(
                    "{event}: AuthInfo key '{k}' is not supported (identities, groups)"
                )))
            }
        }
    }
    Ok(out)
}

fn borrow_listener_domain(ud: &AnyUserData) -> mlua::Result<ListenerDomain> {
    Ok(ud.borrow::<ListenerDomainValue>()?.0.clone())
}

/// Log hooks (`kumo.configure_log_hook`, `policy-extras.log_hooks`) and
/// queues delivered by the policy (`protocol = { custom_lua = ... }`).
impl PolicyEngine {
    /// Offer a log record, as a message, to `hook`: `Some` (possibly edited,
    /// with the `queue` meta set) to queue it.
    pub async fn should_enqueue_log_record(
        &self,
        hook: &crate::config::LogHookConfig,
        mut msg: Message,
    ) -> Result<Option<Message>, EventError> {
        let name = hook.name.clone();
        if let Some(helper) = &hook.helper {
            // Records of the hook's own deliveries would loop.
            let from_hook = msg
                .meta
                .get("log_record")
                .and_then(|r| r.get("reception_protocol"))
                .and_then(serde_json::Value::as_str)
                == Some("LogRecord");
            if from_hook {
                return Ok(None);
            }
            if helper.has_filter {
                let event = crate::helpers::log_hooks::filter_event(&name);
                let (drop, edited) = self.message_predicate(event, msg, name).await?;
                if drop {
                    return Ok(None);
                }
                msg = edited;
            }
            msg.meta.insert(
                "queue".into(),
                serde_json::Value::String(format!("{}.log_hook", hook.name)),
            );
            return Ok(Some(msg));
        }
        const EVENT: &str = "should_enqueue_log_record";
        if !self.has_handler(EVENT) {
            return Ok(None);
        }
        let (keep, msg) = self.message_predicate(EVENT.into(), msg, name).await?;
        Ok(keep.then_some(msg))
    }

    /// Call `event(message, hook_name)`: whether it returned `true`, and
    /// the message as it left it.
    async fn message_predicate(
        &self,
        event: String,
        msg: Message,
        name: String,
    ) -> Result<(bool, Message), EventError> {
        let handle = MessageHandle::new(msg);
        let for_lua = handle.clone();
        let yes = self
            .run(move |lua| match handler(lua, &event)? {
                Some(f) => {
                    let ud = lua.create_userdata(for_lua)?;
                    let v: Value = f.call((ud, name))?;
                    Ok(matches!(v, Value::Boolean(true)))
                }
                None => Ok(false),
            })
            .await?;
        Ok((yes, handle.into_message()))
    }

    /// Deliver one message through the policy: the `constructor` event's
    /// connection object (made once per interpreter and queue, and made
    /// again after a failed send) has its `send(message)` called. Its
    /// return value, if a string, is the disposition.
    pub async fn custom_send(
        &self,
        constructor: String,
        queue: (String, Option<String>, Option<String>),
        msg: Message,
    ) -> Result<String, EventError> {
        self.run(move |lua| {
            let (domain, tenant, campaign) = queue;
            let key = format!(
                "ironpost.custom_lua\u{0}{constructor}\u{0}{domain}\u{0}{}\u{0}{}",
                tenant.as_deref().unwrap_or(""),
                campaign.as_deref().unwrap_or("")
            );
            let conn = match lua.named_registry_value::<Option<Table>>(&key)? {
                Some(c) => c,
                None => {
                    let f = handler(lua, &constructor)?.ok_or_else(|| {
                        mlua::Error::RuntimeError(format!(
                            "no handler is bound to the custom_lua constructor event '{constructor}'"
                        ))
                    })?;
                    let c: Table = f.call((domain, tenant, campaign))?;
                    lua.set_named_registry_value(&key, c.clone())?;
                    c
                }
            };
            let send: Function = conn.get("send")?;
            let ud = lua.create_userdata(MessageHandle::new(msg))?;
            match send.call::<Value>((conn.clone(), ud)) {
                Ok(Value::String(s)) => Ok(s.to_str()?.to_string()),
                Ok(_) => Ok("delivered by the policy".to_string()),
                Err(e) => {
                    lua.set_named_registry_value(&key, Value::Nil)?;
                    Err(e)
                }
            }
        })
        .await
    }

    /// `policy-extras.log_hooks`' `new_json`: POST `body` as JSON. A 2xx
    /// delivers; any other status is `Reject(500)` (the record is dropped,
    /// as in KumoMTA); no answer is `Failed` (retried).
    pub async fn post_json(&self, url: String, body: Vec<u8>) -> Result<String, EventError> {
        tokio::task::spawn_blocking(move || {
            static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> =
                std::sync::OnceLock::new();
            let client = CLIENT.get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .timeout(std::time::Duration::from_secs(30))
                    .build()
                    .expect("HTTP client")
            });
            let response = client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .map_err(|e| EventError::Failed(format!("POST: {}", e.without_url())))?;
            let status = response.status();
            let text = response.text().unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            let disposition = format!(
                "{} {}: {text}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            if status.is_success() {
                Ok(disposition)
            } else {
                Err(EventError::Reject {
                    code: 500,
                    text: disposition,
                })
            }
        })
        .await
        .map_err(|e| EventError::Failed(format!("policy task failed: {e}")))?
    }
}

impl PolicyEngine {
    /// `smtp_client_rewrite_delivery_status(response, domain, tenant,
    /// campaign, routing_domain)`: a different status code to act on, or
    /// `None` to keep the remote server's.
    pub async fn rewrite_delivery_status(
        &self,
        response: String,
        queue: (String, Option<String>, Option<String>, Option<String>),
    ) -> Result<Option<u16>, EventError> {
        const EVENT: &str = "smtp_client_rewrite_delivery_status";
        if !self.has_handler(EVENT) {
            return Ok(None);
        }
        self.run(move |lua| {
            let Some(f) = handler(lua, EVENT)? else {
                return Ok(None);
            };
            let (domain, tenant, campaign, routing_domain) = queue;
            let v: Value = f.call((response, domain, tenant, campaign, routing_domain))?;
            match v {
                Value::Nil => Ok(None),
                Value::Integer(n) if (200..600).contains(&n) => Ok(Some(n as u16)),
                Value::Number(n) if (200.0..600.0).contains(&n) && n.fract() == 0.0 => {
                    Ok(Some(n as u16))
                }
                other => Err(mlua::Error::RuntimeError(format!(
                    "{EVENT} must return an SMTP status code (200-599) or nil, not {other:?}"
                ))),
            }
        })
        .await
    }
}

impl PolicyEngine {
    /// `requeue_message(message, smtp_response, insert_context,
    /// increment_attempts, delay)` after a transient failure: the message
    /// as the handler left it (its `queue`, `routing_domain`, `tenant` or
    /// `campaign` meta may now name another queue).
    pub async fn requeue_message(
        &self,
        msg: Message,
        smtp_response: String,
        insert_context: Vec<String>,
    ) -> Result<Message, EventError> {
        const EVENT: &str = "requeue_message";
        let handle = MessageHandle::new(msg);
        let for_lua = handle.clone();
        self.run(move |lua| {
            if let Some(f) = handler(lua, EVENT)? {
                let ud = lua.create_userdata(for_lua)?;
                f.call::<()>((ud, smtp_response, insert_context, true, Value::Nil))?;
            }
            Ok(())
        })
        .await?;
        Ok(handle.into_message())
    }
}
