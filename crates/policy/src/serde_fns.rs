//! `kumo.serde`: JSON, TOML and YAML to and from Lua values, plus the
//! older top-level names KumoMTA keeps as aliases (`kumo.json_parse`, ...).
//! Files are read whole; each function names itself in its errors.

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde_json::Value as Json;

fn err(func: &str, e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(format!("kumo.serde.{func}: {e}"))
}

fn read(func: &str, path: &str) -> mlua::Result<String> {
    std::fs::read_to_string(path).map_err(|e| err(func, format!("{path}: {e}")))
}

fn to_json(lua: &Lua, func: &str, v: Value) -> mlua::Result<Json> {
    lua.from_value(v).map_err(|e| err(func, e))
}

type Parse = fn(&str) -> Result<Json, String>;
type Encode = fn(&Json) -> Result<String, String>;

/// JSON as KumoMTA reads it: `/* */`, `//` and `#` comments count as
/// spaces (outside strings).
fn parse_json(text: &str) -> Result<Json, String> {
    serde_json::from_str(&blank_comments(text)).map_err(|e| e.to_string())
}

fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('#', _) | ('/', Some('/')) => {
                out.push(' ');
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                out.push(' ');
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    // Keep line breaks so error positions stay right.
                    if c == '\n' {
                        out.push('\n');
                    }
                    prev = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}
fn parse_toml(text: &str) -> Result<Json, String> {
    let t: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}
fn parse_yaml(text: &str) -> Result<Json, String> {
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}
fn encode_json(v: &Json) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}
fn encode_json_pretty(v: &Json) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| e.to_string())
}
fn encode_toml(v: &Json) -> Result<String, String> {
    toml::to_string(v).map_err(|e| e.to_string())
}
fn encode_toml_pretty(v: &Json) -> Result<String, String> {
    toml::to_string_pretty(v).map_err(|e| e.to_string())
}
fn encode_yaml(v: &Json) -> Result<String, String> {
    serde_yaml_ng::to_string(v).map_err(|e| e.to_string())
}

const PARSERS: &[(&str, &str, Parse)] = &[
    ("json_parse", "json_load", parse_json),
    ("toml_parse", "toml_load", parse_toml),
    ("yaml_parse", "yaml_load", parse_yaml),
];

const ENCODERS: &[(&str, Encode)] = &[
    ("json_encode", encode_json),
    ("json_encode_pretty", encode_json_pretty),
    ("toml_encode", encode_toml),
    ("toml_encode_pretty", encode_toml_pretty),
    ("yaml_encode", encode_yaml),
];

/// Installs `kumo.serde` and the top-level aliases on `kumo`.
pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let serde = lua.create_table()?;
    for &(parse_name, load_name, parse) in PARSERS {
        let f = lua.create_function(move |lua, text: String| {
            let v = parse(&text).map_err(|e| err(parse_name, e))?;
            lua.to_value(&v)
        })?;
        serde.set(parse_name, f.clone())?;
        kumo.set(parse_name, f)?;
        let f = lua.create_function(move |lua, path: String| {
            let text = read(load_name, &path)?;
            let v = parse(&text).map_err(|e| err(load_name, format!("{path}: {e}")))?;
            lua.to_value(&v)
        })?;
        serde.set(load_name, f.clone())?;
        kumo.set(load_name, f)?;
    }
    for &(name, encode) in ENCODERS {
        let f = lua.create_function(move |lua, v: Value| {
            let j = to_json(lua, name, v)?;
            encode(&j).map_err(|e| err(name, e))
        })?;
        serde.set(name, f.clone())?;
        kumo.set(name, f)?;
    }
    kumo.set("serde", serde)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        let kumo = lua.create_table().unwrap();
        install(&lua, &kumo).unwrap();
        lua.globals().set("kumo", kumo).unwrap();
        lua
    }

    #[test]
    fn round_trips_and_aliases() {
        let lua = lua();
        let ok: bool = lua
            .load(
                r#"
local v = { name = 'x', list = { 1, 2, 3 }, nested = { on = true } }
for _, fmt in ipairs({ 'json', 'toml', 'yaml' }) do
  local text = kumo.serde[fmt .. '_encode'](v)
  local back = kumo.serde[fmt .. '_parse'](text)
  assert(back.name == 'x' and back.list[3] == 3 and back.nested.on == true, fmt)
end
assert(kumo.json_parse(kumo.serde.json_encode_pretty({ a = 1 })).a == 1)
assert(kumo.toml_parse(kumo.toml_encode_pretty({ a = 'b' })).a == 'b')
assert(kumo.json_encode == kumo.serde.json_encode or type(kumo.json_encode) == 'function')
return true
"#,
            )
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn json_comments_are_spaces() {
        let v = parse_json(
            "{ # shell\n \"a\": 1, // line\n /* block\n */ \"b\": \"x // not # a comment\" }",
        )
        .unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["b"], "x // not # a comment");
        assert!(parse_json("{ \"a\": \"q\\\"#\" }").is_ok());
    }

    #[test]
    fn errors_name_the_function() {
        let lua = lua();
        let e = lua
            .load("return kumo.serde.yaml_parse('a: [')")
            .exec()
            .unwrap_err()
            .to_string();
        assert!(e.contains("kumo.serde.yaml_parse"), "{e}");
        let e = lua
            .load("return kumo.serde.toml_load('/nonexistent/x.toml')")
            .exec()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kumo.serde.toml_load") && e.contains("/nonexistent/x.toml"),
            "{e}"
        );
    }
}
