//! The rest of KumoMTA's `kumo` API: a few small functions Ironpost
//! provides here, tuning knobs for KumoMTA's own thread pools (accepted and
//! announced at start as having no effect, since Ironpost sizes its own),
//! and every other documented function or module, which raises an error
//! that names it the moment a policy touches it.

use mlua::{Lua, MetaMethod, Table, Value};

/// Documented in KumoMTA's reference (docs/reference/kumo/ and the
/// kumo.* module directories), not provided by Ironpost.
const FUNCTIONS: &[&str] = &[
    "apply_supplemental_trace_header",
    "bump_config_epoch",
    "compute_egress_path_config_constraints",
    "compute_queue_config_constraints",
    "configure_accounting_db_path",
    "disconnect",
    "eval_config_monitor_globs",
    "format_egress_path_config_constraints",
    "format_egress_path_config_toml",
    "format_queue_config_toml",
    "generate_rfc3464_message",
    "get_memory_hard_limit",
    "get_memory_low_thresh",
    "get_memory_soft_limit",
    "glob",
    "inject_message",
    "invoke_get_egress_path_config",
    "invoke_get_egress_pool",
    "invoke_get_egress_source",
    "invoke_get_queue_config",
    "make_message",
    "read_dir",
    "set_config_monitor_globs",
    "set_httpinject_recipient_rate_limit",
    "set_lruttl_cache_capacity",
    "set_memory_hard_limit",
    "set_memory_low_thresh",
    "set_memory_soft_limit",
    "spawn_task",
    "suspend_delivery_when_spool_unhealthy",
    "uncached_glob",
];

const MODULES: &[&str] = &[
    "aaa",
    "amqp",
    "api",
    "cidr",
    "counter_series",
    "crypto",
    "digest",
    "domain_map",
    "encode",
    "file_type",
    "fs",
    "jsonl",
    "kafka",
    "mimepart",
    "mpsc",
    "nats",
    "shaping",
    "spf",
    "time",
    "uuid",
    "xfer",
];

/// Sizes of KumoMTA's thread pools and Lua context pool: they tune its
/// runtime, not what happens to mail.
const TUNING: &[&str] = &[
    "set_httpinject_threads",
    "set_logging_threads",
    "set_max_lua_context_age",
    "set_max_lua_context_use_count",
    "set_max_spare_lua_contexts",
    "set_qmaint_threads",
    "set_ready_qmaint_threads",
    "set_readyq_threads",
    "set_smtpsrv_threads",
    "set_spoolin_threads",
];

fn refused(what: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!(
        "{what}: Ironpost does not support this KumoMTA function yet"
    ))
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    for name in FUNCTIONS {
        if kumo.contains_key(*name)? {
            continue;
        }
        let what = format!("kumo.{name}");
        kumo.set(
            *name,
            lua.create_function(move |_, _: mlua::MultiValue| -> mlua::Result<()> {
                Err(refused(&what))
            })?,
        )?;
    }
    for module in MODULES {
        if kumo.contains_key(*module)? {
            continue;
        }
        let table = lua.create_table()?;
        let meta = lua.create_table()?;
        let prefix = format!("kumo.{module}");
        meta.set(
            MetaMethod::Index.name(),
            lua.create_function(move |_, (_, key): (Value, Value)| -> mlua::Result<()> {
                let key = match key {
                    Value::String(s) => s.to_string_lossy(),
                    other => format!("{other:?}"),
                };
                Err(refused(&format!("{prefix}.{key}")))
            })?,
        )?;
        table.set_metatable(Some(meta));
        kumo.set(*module, table)?;
    }
    for name in TUNING {
        let what = format!("kumo.{name}");
        kumo.set(
            *name,
            lua.create_function(move |_, args: mlua::MultiValue| {
                let shown: Vec<String> = args.iter().map(|v| format!("{v:?}")).collect();
                tracing::info!(
                    "{what}({}) has no effect: Ironpost sizes its own thread and interpreter pools",
                    shown.join(", ")
                );
                Ok(())
            })?,
        )?;
    }
    kumo.set(
        "available_parallelism",
        lua.create_function(|_, ()| {
            Ok(std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1))
        })?,
    )?;
    kumo.set(
        "version",
        lua.create_function(|_, ()| Ok(format!("ironpost {}", env!("CARGO_PKG_VERSION"))))?,
    )?;
    kumo.set(
        "sleep",
        lua.create_function(|_, secs: f64| {
            // Runs on the policy's blocking threads; capped so a typo
            // cannot park an interpreter for hours.
            let secs = if secs.is_finite() {
                secs.clamp(0.0, 60.0)
            } else {
                0.0
            };
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            Ok(())
        })?,
    )?;
    for (name, level) in [
        ("log_error", tracing::Level::ERROR),
        ("log_warn", tracing::Level::WARN),
        ("log_info", tracing::Level::INFO),
        ("log_debug", tracing::Level::DEBUG),
    ] {
        kumo.set(
            name,
            lua.create_function(move |_, args: mlua::MultiValue| {
                let text: Vec<String> = args
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.to_string_lossy(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                let text = text.join(" ");
                match level {
                    tracing::Level::ERROR => tracing::error!(target: "policy", "{text}"),
                    tracing::Level::WARN => tracing::warn!(target: "policy", "{text}"),
                    tracing::Level::INFO => tracing::info!(target: "policy", "{text}"),
                    _ => tracing::debug!(target: "policy", "{text}"),
                }
                Ok(())
            })?,
        )?;
    }
    Ok(())
}
