//! The policy helpers (`require 'policy-extras.*'`), driven by TOML or JSON
//! files. Errors name the file, the table and the key.

pub mod dkim_sign;
pub mod listener_domains;
pub mod log_hooks;
pub mod passwords;
pub mod posture;
pub mod queues;
pub mod shaping;
pub mod sources;

use serde_json::Value;
use std::path::Path;

/// Read a TOML file, or a JSON file (comments and trailing commas allowed,
/// as the KumoMTA documentation writes them) when the name ends in `.json`.
pub fn load_data_file(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_data(&text, json).map_err(|e| format!("{}: {e}", path.display()))
}

/// A data file's text: TOML, or JSON with comments and trailing commas
/// when `json` is set. Kept apart from the file so the loaders can be
/// checked (and fuzzed) without files or Lua.
pub fn parse_data(text: &str, json: bool) -> Result<Value, String> {
    if json {
        json5::from_str(text).map_err(|e| e.to_string())
    } else {
        let t: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        serde_json::to_value(t).map_err(|e| e.to_string())
    }
}

/// Load every file (each a table of tables) and merge them in order.
pub fn load_merged(files: &[String]) -> Result<serde_json::Map<String, Value>, String> {
    let mut merged = serde_json::Map::new();
    for f in files {
        match load_data_file(Path::new(f))? {
            Value::Object(m) => merge(&mut merged, m),
            _ => return Err(format!("{f}: expected a file of tables")),
        }
    }
    Ok(merged)
}

/// Later files override earlier ones key by key within each table.
pub fn merge(into: &mut serde_json::Map<String, Value>, from: serde_json::Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// One data source of a helper's `setup` list: a file name, or (as KumoMTA
/// allows) an inline Lua table.
pub struct Source {
    /// How errors name it: the file name, or `inline table #n`.
    pub name: String,
    pub data: serde_json::Map<String, Value>,
}

impl Source {
    /// A source from a data file's text (see [`parse_data`]).
    pub fn from_text(name: &str, text: &str, json: bool) -> Result<Source, String> {
        match parse_data(text, json).map_err(|e| format!("{name}: {e}"))? {
            Value::Object(data) => Ok(Source {
                name: name.to_string(),
                data,
            }),
            _ => Err(format!("{name}: expected a table of tables")),
        }
    }
}

/// Read every entry of a `setup` list: strings are files (TOML, or JSON
/// when the name ends in `.json`), tables are used as they are.
pub fn load_sources(
    lua: &mlua::Lua,
    helper: &str,
    list: Vec<mlua::Value>,
) -> Result<Vec<Source>, String> {
    use mlua::LuaSerdeExt;
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let (name, data) = match item {
            mlua::Value::String(s) => {
                let name = s
                    .to_str()
                    .map_err(|e| format!("{helper}: {e}"))?
                    .to_string();
                let data =
                    load_data_file(Path::new(&name)).map_err(|e| format!("{helper}: {e}"))?;
                (name, data)
            }
            mlua::Value::Table(t) => {
                let name = format!("inline table #{}", i + 1);
                let data: Value = lua
                    .from_value(mlua::Value::Table(t))
                    .map_err(|e| format!("{helper}: {name}: {e}"))?;
                // An empty Lua table reads as an empty array.
                let data = match data {
                    Value::Array(a) if a.is_empty() => Value::Object(Default::default()),
                    other => other,
                };
                (name, data)
            }
            other => {
                return Err(format!(
                    "{helper}: setup expects a list of file names or tables, not a {}",
                    other.type_name()
                ))
            }
        };
        match data {
            Value::Object(data) => out.push(Source { name, data }),
            _ => return Err(format!("{helper}: {name}: expected a table of tables")),
        }
    }
    Ok(out)
}

/// Mark a helper as set up in this interpreter; a second `setup` is an
/// error, as in KumoMTA ("... module has already been configured").
pub fn configure_once(lua: &mlua::Lua, module: &str) -> mlua::Result<()> {
    let key = format!("ironpost.configured.{module}");
    if lua.named_registry_value::<bool>(&key).unwrap_or(false) {
        return Err(mlua::Error::RuntimeError(format!(
            "{module}: the module has already been configured (setup may be called once)"
        )));
    }
    lua.set_named_registry_value(&key, true)
}

/// Keys are domain names; a lookup without an exact entry may resolve
/// through a `*.suffix` wildcard. The matching rules are KumoMTA's
/// (`crates/domain-map`): labels are walked from the right; where a label
/// has no node, the `*` entry at that level (if any) answers, whatever the
/// number of labels left. So `*.example.com` matches `a.example.com` and
/// `a.b.example.com` but not `example.com`, and `*` matches any name whose
/// last label has no node. A node that exists only as the parent of a
/// longer entry has no value and hides the wildcard (with entries
/// `*.example.com` and `a.b.example.com`, `b.example.com` matches nothing).
/// Names are compared without case and without a trailing dot.
#[derive(Debug, Clone)]
pub struct DomainMap<V> {
    top: std::collections::HashMap<String, DomainNode<V>>,
}

#[derive(Debug, Clone)]
struct DomainNode<V> {
    value: Option<V>,
    children: std::collections::HashMap<String, DomainNode<V>>,
}

impl<V> Default for DomainMap<V> {
    fn default() -> Self {
        DomainMap {
            top: Default::default(),
        }
    }
}

fn domain_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl<V> DomainMap<V> {
    pub fn insert(&mut self, pattern: &str, value: V) {
        let pattern = domain_key(pattern);
        let mut labels = pattern.rsplit('.').peekable();
        let mut current = &mut self.top;
        while let Some(label) = labels.next() {
            let node = current
                .entry(label.to_string())
                .or_insert_with(|| DomainNode {
                    value: None,
                    children: Default::default(),
                });
            if labels.peek().is_none() {
                node.value = Some(value);
                return;
            }
            current = &mut node.children;
        }
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        let name = domain_key(name);
        let mut labels = name.rsplit('.').peekable();
        let mut current = &self.top;
        while let Some(label) = labels.next() {
            match current.get(label) {
                Some(node) if labels.peek().is_none() => return node.value.as_ref(),
                Some(node) => current = &node.children,
                None => return current.get("*")?.value.as_ref(),
            }
        }
        None
    }
}

/// The field names a derived `Deserialize` struct declares, so a helper
/// can tell "an option Ironpost has" from "an option it lacks".
pub fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<W: Visitor<'de>>(self, _: W) -> Result<W::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<W: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: W,
        ) -> Result<W::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KumoMTA's own cases (crates/domain-map/src/lib.rs, `basic`).
    #[test]
    fn domain_map_matches_like_kumomta() {
        let mut map = DomainMap::default();
        map.insert("*.example.com", 42);
        map.insert("example.com", 24);
        map.insert("omg.wtf.woot.example.com", 128);
        assert_eq!(map.get("foo.com"), None);
        assert_eq!(map.get("example.com"), Some(&24));
        assert_eq!(map.get("lemon.example.com"), Some(&42));
        assert_eq!(map.get("lemon.cake.example.com"), Some(&42));
        assert_eq!(map.get("woot.example.com"), None);
        assert_eq!(map.get("wtf.woot.example.com"), None);
        assert_eq!(map.get("omg.wtf.woot.example.com"), Some(&128));
        assert_eq!(map.get("LEMON.Example.COM."), Some(&42));

        let mut wild = DomainMap::default();
        wild.insert("*.example.com", 1);
        assert_eq!(wild.get("example.com"), None);
        wild.insert("*", 2);
        assert_eq!(wild.get("other.org"), Some(&2));
        assert_eq!(wild.get("*"), Some(&2));
        // `com` has a node (from *.example.com), so `*` does not answer.
        assert_eq!(wild.get("other.com"), None);
    }

    #[test]
    fn struct_fields_lists_queue_config_options() {
        let f = struct_fields::<crate::delivery_config::QueueConfig>();
        assert!(
            f.contains(&"max_age") && f.contains(&"retry_interval"),
            "{f:?}"
        );
    }
}
