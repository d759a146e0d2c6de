//! `kumo.regex_set_map.new{ pattern = value, ... }`: one compiled regex set
//! mapping any matching text to the value of its pattern. When several
//! patterns match, the first in sorted pattern order wins, so a lookup
//! never depends on Lua's table order.

use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};
use serde_json::Value as Json;

struct RegexSetMap {
    set: regex::RegexSet,
    values: Vec<Json>,
}

impl UserData for RegexSetMap {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__index", |lua, m, text: String| {
            match m.set.matches(&text).iter().next() {
                Some(i) => lua.to_value(&m.values[i]),
                None => Ok(Value::Nil),
            }
        });
    }
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let module = lua.create_table()?;
    module.set(
        "new",
        lua.create_function(|lua, map: Option<Table>| {
            let mut pairs: Vec<(String, Json)> = Vec::new();
            if let Some(map) = map {
                for kv in map.pairs::<String, Value>() {
                    let (k, v) = kv?;
                    pairs.push((k, lua.from_value(v)?));
                }
            }
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            let set = regex::RegexSet::new(pairs.iter().map(|(k, _)| k))
                .map_err(|e| mlua::Error::RuntimeError(format!("kumo.regex_set_map.new: {e}")))?;
            Ok(RegexSetMap {
                set,
                values: pairs.into_iter().map(|(_, v)| v).collect(),
            })
        })?,
    )?;
    kumo.set("regex_set_map", module)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kumomta_documented_example() {
        // docs/reference/kumo.regex_set_map/new.md
        let lua = mlua::Lua::new();
        let kumo = lua.create_table().unwrap();
        super::install(&lua, &kumo).unwrap();
        lua.globals().set("kumo", kumo).unwrap();
        lua.load(
            r#"
local map = kumo.regex_set_map.new {
  hello = 'hello',
  bye = 'bye',
  later = 'bye',
  ['Good day'] = 'hello',
}
assert(map['hello there'] == 'hello')
assert(map['goodbye'] == 'bye')
assert(map['see you later'] == 'bye')
assert(map['not.set'] == nil)
"#,
        )
        .exec()
        .unwrap();
        let e = lua
            .load("kumo.regex_set_map.new { ['('] = 1 }")
            .exec()
            .unwrap_err();
        assert!(e.to_string().contains("kumo.regex_set_map.new"), "{e}");
    }
}
