//! The policy helpers (`require 'policy-extras.*'`), driven by TOML or JSON
//! files. Errors name the file, the table and the key.

pub mod dkim_sign;
pub mod listener_domains;
pub mod passwords;
pub mod queues;
pub mod shaping;

use serde_json::Value;
use std::path::Path;

/// Read a TOML file, or a JSON file (comments and trailing commas allowed,
/// as the KumoMTA documentation writes them) when the name ends in `.json`.
pub fn load_data_file(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        json5::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let t: toml::Value =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::to_value(t).map_err(|e| format!("{}: {e}", path.display()))
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
