//! `require 'sqlite'`: `sqlite.open(path[, busy_timeout])` and
//! `db:execute(sql, ...)` with positional `?` parameters bound, never
//! interpolated. Policy code runs on blocking threads, so queries do not
//! stall the async runtime.

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The directories `sqlite.open` may open databases in (canonical paths):
/// the policy's own directory and those the operator adds with
/// `--sqlite-dir`. Kept as the Lua state's app data; none set, none allowed.
#[derive(Clone, Debug, Default)]
pub struct SqliteDirs(pub Vec<PathBuf>);

impl SqliteDirs {
    /// `path`, canonical, if it lies inside one of the directories.
    fn admit(&self, path: &str) -> Result<PathBuf, String> {
        let real = Path::new(path)
            .canonicalize()
            .map_err(|_| format!("sqlite.open {path}: not an existing SQLite database"))?;
        if self.0.iter().any(|d| real.starts_with(d)) {
            return Ok(real);
        }
        let dirs: Vec<String> = self.0.iter().map(|d| d.display().to_string()).collect();
        Err(format!(
            "sqlite.open {path}: outside the directories policy code may open databases in \
             ({}); add one with --sqlite-dir",
            if dirs.is_empty() {
                "none".to_string()
            } else {
                dirs.join(", ")
            }
        ))
    }
}

struct Db(Mutex<rusqlite::Connection>);

fn rt(e: impl ToString) -> mlua::Error {
    mlua::Error::RuntimeError(e.to_string())
}

fn to_sql(v: &Value) -> mlua::Result<SqlValue> {
    Ok(match v {
        Value::Nil => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Integer(*b as i64),
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Number(n) => SqlValue::Real(*n),
        Value::String(s) => match s.to_str() {
            Ok(t) => SqlValue::Text(t.to_string()),
            Err(_) => SqlValue::Blob(s.as_bytes().to_vec()),
        },
        other => return Err(rt(format!("sqlite: cannot bind a {}", other.type_name()))),
    })
}

fn to_lua(lua: &Lua, v: ValueRef<'_>) -> mlua::Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Nil,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Number(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::String(lua.create_string(t)?),
    })
}

impl UserData for Db {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("execute", |lua, db, (sql, args): (String, MultiValue)| {
            let params = args.iter().map(to_sql).collect::<mlua::Result<Vec<_>>>()?;
            let conn = db.0.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt = conn
                .prepare_cached(&sql)
                .map_err(|e| rt(format!("sqlite: {e}")))?;
            let columns = stmt.column_count();
            let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
            let bound: Vec<ToSqlOutput<'_>> = params
                .iter()
                .map(|p| ToSqlOutput::Borrowed(p.into()))
                .collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(bound.iter()))
                .map_err(|e| rt(format!("sqlite: {e}")))?;
            let out = lua.create_table()?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(|e| rt(format!("sqlite: {e}")))? {
                n += 1;
                // One column: an array of values; otherwise rows as tables.
                if columns == 1 {
                    out.set(n, to_lua(lua, row.get_ref(0).map_err(rt)?)?)?;
                } else {
                    let r = lua.create_table()?;
                    for (i, name) in names.iter().enumerate() {
                        r.set(name.as_str(), to_lua(lua, row.get_ref(i).map_err(rt)?)?)?;
                    }
                    out.set(n, r)?;
                }
            }
            Ok(out)
        });
    }
}

/// Opens a database for policy code (`sqlite.open`, the passwords helper):
/// an existing one only, in an allowed directory, with ATTACH (and so
/// `VACUUM INTO`) off. A policy must not be able to create or write files
/// elsewhere, least of all while `init` runs as root.
pub(crate) fn open_database(
    lua: &Lua,
    path: &str,
    flags: rusqlite::OpenFlags,
) -> Result<rusqlite::Connection, String> {
    let dirs = lua
        .app_data_ref::<SqliteDirs>()
        .map(|d| d.clone())
        .unwrap_or_default();
    let real = dirs.admit(path)?;
    // SQLite takes an empty file for an empty database: any empty file
    // would do as a place to write. Only real databases open.
    let mut magic = [0u8; 16];
    let is_db = std::fs::File::open(&real)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"SQLite format 3\0";
    if !is_db {
        return Err(format!(
            "sqlite.open {path}: not an existing SQLite database"
        ));
    }
    let flags = flags | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(&real, flags)
        .map_err(|e| format!("sqlite.open {path}: {e}"))?;
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(|e| format!("sqlite.open {path}: {e}"))?;
    Ok(conn)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "open",
        lua.create_function(|lua, (path, busy): (String, Option<f64>)| {
            let conn = open_database(lua, &path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .map_err(rt)?;
            conn.busy_timeout(Duration::from_secs_f64(busy.unwrap_or(5.0)))
                .map_err(|e| rt(format!("sqlite.open {path}: {e}")))?;
            Ok(Db(Mutex::new(conn)))
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua_with_db(path: &std::path::Path) -> Lua {
        let lua = Lua::new();
        let dir = path.parent().unwrap().canonicalize().unwrap();
        lua.set_app_data(SqliteDirs(vec![dir]));
        lua.globals().set("sqlite", module(&lua).unwrap()).unwrap();
        lua.globals()
            .set("path", path.to_string_lossy().into_owned())
            .unwrap();
        lua
    }

    #[test]
    fn no_file_can_be_written_outside_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE users (name TEXT)")
            .unwrap();
        let lua = lua_with_db(&db);
        lua.load("db = sqlite.open(path); db:execute('INSERT INTO users VALUES (?)', 'a')")
            .exec()
            .unwrap();
        let escape = dir.path().join("escape");
        for sql in [
            format!("ATTACH DATABASE '{}' AS a", escape.display()),
            format!("VACUUM INTO '{}'", escape.display()),
        ] {
            let e = lua
                .load(format!("db:execute([[{sql}]])"))
                .exec()
                .unwrap_err();
            assert!(e.to_string().contains("sqlite"), "{sql}: {e}");
            assert!(!escape.exists(), "{sql} wrote a file");
        }
        // A database that does not exist is not created, and an empty file
        // is not taken for one.
        let lua = lua_with_db(&dir.path().join("new.db"));
        assert!(lua.load("sqlite.open(path)").exec().is_err());
        assert!(!dir.path().join("new.db").exists());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let lua = lua_with_db(&empty);
        assert!(lua.load("sqlite.open(path)").exec().is_err());
        assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    }

    #[test]
    fn only_databases_inside_the_allowed_directories_open() {
        let allowed = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let make = |p: &std::path::Path| {
            rusqlite::Connection::open(p)
                .unwrap()
                .execute_batch("CREATE TABLE t (x)")
                .unwrap();
        };
        let inside = allowed.path().join("in.db");
        let outside = elsewhere.path().join("out.db");
        make(&inside);
        make(&outside);
        let lua = lua_with_db(&inside);
        lua.load("sqlite.open(path)").exec().unwrap();
        for p in [
            outside.display().to_string(),
            // `..` and symbolic links are resolved before the check.
            format!("{}/../{}/out.db", allowed.path().display(), {
                elsewhere.path().file_name().unwrap().to_string_lossy()
            }),
        ] {
            lua.globals().set("p", p.clone()).unwrap();
            let e = lua.load("sqlite.open(p)").exec().unwrap_err().to_string();
            assert!(e.contains("outside the directories"), "{p}: {e}");
        }
        let link = allowed.path().join("link.db");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        lua.globals().set("p", link.display().to_string()).unwrap();
        let e = lua.load("sqlite.open(p)").exec().unwrap_err().to_string();
        assert!(e.contains("outside the directories"), "{e}");
        // A state without the list opens nothing.
        let bare = Lua::new();
        bare.globals()
            .set("sqlite", module(&bare).unwrap())
            .unwrap();
        bare.globals()
            .set("p", inside.display().to_string())
            .unwrap();
        let e = bare.load("sqlite.open(p)").exec().unwrap_err().to_string();
        assert!(e.contains("none"), "{e}");
    }
}
