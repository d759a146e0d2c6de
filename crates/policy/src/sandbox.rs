//! The Lua environment a policy runs in.
//!
//! Only `string`, `table`, `math`, `utf8`, `coroutine` and a reduced `os`
//! (time, date, clock, getenv) are loaded. `io`, `debug`, `package`,
//! `loadfile` and `dofile` are absent, `load` only accepts source text (Lua
//! bytecode can corrupt the VM), and `require` resolves Ironpost's built-in
//! modules and `.lua` files inside the policy directory, nothing else.

use crate::state::StateCtx;
use mlua::{Lua, LuaOptions, StdLib, Table, Value};
use std::path::{Path, PathBuf};

pub const LOADED_KEY: &str = "ironpost.loaded";

pub fn new_lua(unrestricted: bool) -> mlua::Result<Lua> {
    let libs = if unrestricted {
        StdLib::ALL_SAFE
    } else {
        StdLib::STRING
            | StdLib::TABLE
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS
    };
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    if !unrestricted {
        restrict(&lua)?;
    }
    lua.set_named_registry_value(LOADED_KEY, lua.create_table()?)?;
    Ok(lua)
}

fn restrict(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    globals.set("loadfile", Value::Nil)?;
    globals.set("dofile", Value::Nil)?;
    let os: Table = globals.get("os")?;
    let reduced = lua.create_table()?;
    for name in ["time", "date", "clock", "getenv"] {
        reduced.set(name, os.get::<Value>(name)?)?;
    }
    globals.set("os", reduced)?;
    lua.load(
        r#"
        local raw_load = load
        load = function(chunk, name, _mode, env)
          return raw_load(chunk, name, "t", env)
        end
        "#,
    )
    .set_name("=ironpost-sandbox")
    .exec()?;
    Ok(())
}

/// `print` goes to the diagnostic log instead of stdout.
pub fn install_print(lua: &Lua) -> mlua::Result<()> {
    let print = lua.create_function(|_, args: mlua::Variadic<Value>| {
        let text: Vec<String> = args
            .iter()
            .map(|v| v.to_string().unwrap_or_else(|_| "?".into()))
            .collect();
        tracing::info!(target: "policy", "{}", text.join("\t"));
        Ok(())
    })?;
    lua.globals().set("print", print)
}

fn module_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let valid = !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !valid {
        return Err(format!("require: invalid module name {name:?}"));
    }
    let candidate = dir.join(format!("{}.lua", name.replace('.', "/")));
    let resolved = candidate.canonicalize().map_err(|_| {
        format!(
            "require: module {name:?} not found (looked for {})",
            candidate.display()
        )
    })?;
    if !resolved.starts_with(dir) {
        return Err(format!(
            "require: module {name:?} resolves outside the policy directory"
        ));
    }
    Ok(resolved)
}

pub fn install_require(lua: &Lua) -> mlua::Result<()> {
    let require = lua.create_function(|lua, name: String| {
        let loaded: Table = lua.named_registry_value(LOADED_KEY)?;
        if let Some(v) = loaded.get::<Option<Value>>(name.as_str())? {
            return Ok(v);
        }
        let value = match crate::kumo::builtin_module(lua, &name)? {
            Some(v) => v,
            None => {
                let dir = lua
                    .app_data_ref::<StateCtx>()
                    .and_then(|c| c.policy_dir.clone())
                    .ok_or_else(|| {
                        mlua::Error::RuntimeError(format!("require: unknown module {name:?}"))
                    })?;
                let path = module_path(&dir, &name).map_err(mlua::Error::RuntimeError)?;
                let code = std::fs::read_to_string(&path).map_err(|e| {
                    mlua::Error::RuntimeError(format!("require: {}: {e}", path.display()))
                })?;
                let v: Value = lua
                    .load(code)
                    .set_name(format!("@{}", path.display()))
                    .call(name.clone())?;
                if v.is_nil() {
                    Value::Boolean(true)
                } else {
                    v
                }
            }
        };
        loaded.set(name.as_str(), value.clone())?;
        Ok(value)
    })?;
    lua.globals().set("require", require)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_functions_are_absent() {
        let lua = new_lua(false).unwrap();
        for expr in [
            "io",
            "debug",
            "package",
            "loadfile",
            "dofile",
            "os.execute",
            "os.exit",
            "os.remove",
            "os.rename",
        ] {
            let v: Value = lua.load(format!("return {expr}")).eval().unwrap();
            assert!(v.is_nil(), "{expr} should be nil");
        }
        let t: i64 = lua.load("return os.time()").eval().unwrap();
        assert!(t > 0);
        // Bytecode is refused even through load.
        let r: mlua::Result<Value> = lua
            .load("return load(string.dump(function() return 1 end))")
            .eval();
        let v = r.unwrap();
        assert!(v.is_nil());
    }
}
