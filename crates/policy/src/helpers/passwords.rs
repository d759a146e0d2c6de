//! `policy-extras.passwords`: check SMTP AUTH (or HTTP Basic) credentials
//! against Argon2id or bcrypt hashes, so no plaintext password is stored.
//!
//! ```lua
//! local passwords = require 'policy-extras.passwords'
//! kumo.on('smtp_server_auth_plain', passwords:setup { '/etc/ironpost/users.toml' })
//! -- or: passwords:setup_sqlite { path = '/etc/ironpost/users.db',
//! --       query = 'select hash from users where name = ?' }
//! ```
//! The TOML holds `[users]` with `name = "$argon2id$..."` or `"$2b$..."`.
//! Verification is constant time in the hash libraries; an unknown user is
//! checked against a dummy hash so timing does not reveal which users exist.

use super::load_data_file;
use mlua::{Lua, Table, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

// A valid Argon2id hash of a random string, used for unknown users.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Rk8CQ1s1lQn5n0q4gqO0I7c3kq4wQk1o9m0rXw3n5y8";

pub fn verify(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        match PasswordHash::new(hash) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    } else if hash.starts_with("$2") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else {
        false
    }
}

fn load_users(files: &[String]) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for f in files {
        add_users(f, &load_data_file(Path::new(f))?, &mut users)?;
    }
    Ok(users)
}

/// The users of one data file's text (TOML, or JSON when `json`), as
/// `setup` reads them from a file: no file, no Lua.
pub fn parse_users(text: &str, json: bool) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    let v = super::parse_data(text, json).map_err(|e| format!("(text): {e}"))?;
    add_users("(text)", &v, &mut users)?;
    Ok(users)
}

/// `name`: the file `v` was read from, for errors.
fn add_users(
    name: &str,
    v: &serde_json::Value,
    users: &mut HashMap<String, String>,
) -> Result<(), String> {
    let table = v
        .get("users")
        .and_then(|u| u.as_object())
        .ok_or_else(|| format!("{name}: expected a [users] table"))?;
    for (user, hash) in table {
        let h = hash
            .as_str()
            .ok_or_else(|| format!("{name}: [users] {user}: expected a hash string"))?;
        if !(h.starts_with("$argon2id$") || h.starts_with("$2")) {
            return Err(format!(
                "{name}: [users] {user}: expected an Argon2id ($argon2id$) or bcrypt ($2b$) hash"
            ));
        }
        users.insert(user.clone(), h.to_string());
    }
    Ok(())
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<String>)| {
            let users = Arc::new(load_users(&files).map_err(mlua::Error::RuntimeError)?);
            lua.create_function(
                move |_, (_authz, authc, password): (Value, String, String)| {
                    let hash = users.get(&authc).map(String::as_str);
                    let ok = verify(&password, hash.unwrap_or(DUMMY));
                    Ok(ok && hash.is_some() && !password.is_empty())
                },
            )
        })?,
    )?;
    m.set(
        "setup_sqlite",
        lua.create_function(|lua, (_this, opts): (Value, Table)| {
            let path: String = opts.get("path")?;
            let query: String = opts.get("query")?;
            // The same rules as `sqlite.open`: the query is the policy's.
            let conn = crate::sqlite::open_database(
                lua,
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| mlua::Error::RuntimeError(format!("passwords.setup_sqlite: {e}")))?;
            let conn = Arc::new(std::sync::Mutex::new(conn));
            lua.create_function(
                move |_, (_authz, authc, password): (Value, String, String)| {
                    let c = conn.lock().unwrap_or_else(|p| p.into_inner());
                    let hash: Option<String> = c.query_row(&query, [&authc], |r| r.get(0)).ok();
                    let ok = verify(&password, hash.as_deref().unwrap_or(DUMMY));
                    Ok(ok && hash.is_some() && !password.is_empty())
                },
            )
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let h = argon2::Argon2::default()
            .hash_password(b"tiger", &salt)
            .unwrap()
            .to_string();
        assert!(verify("tiger", &h));
        assert!(!verify("tigre", &h));
        let b = bcrypt::hash("tiger", 4).unwrap();
        assert!(verify("tiger", &b));
        assert!(!verify("lion", &b));
        assert!(!verify("x", DUMMY));
        assert!(!verify("x", "plaintext"));
    }
}
