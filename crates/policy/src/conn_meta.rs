//! Connection metadata (`conn_meta:get_meta('authz_id')`).

use mlua::{LuaSerdeExt, UserData, UserDataMethods, Value};
use serde_json::{Map, Value as Json};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct ConnMeta(pub Arc<Mutex<Map<String, Json>>>);

impl ConnMeta {
    pub fn new(map: Map<String, Json>) -> ConnMeta {
        ConnMeta(Arc::new(Mutex::new(map)))
    }
    pub fn snapshot(&self) -> Map<String, Json> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Set (or, with `None`, remove) a key the server owns.
    pub fn set(&self, key: &str, value: Option<Json>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(v) => m.insert(key.to_string(), v),
            None => m.remove(key),
        };
    }
}

impl UserData for ConnMeta {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get_meta", |lua, c, key: String| {
            let v =
                c.0.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .cloned();
            match v {
                Some(v) => lua.to_value(&v),
                None => Ok(Value::Nil),
            }
        });
        methods.add_method("set_meta", |lua, c, (key, value): (String, Value)| {
            let json: Json = lua.from_value(value)?;
            c.0.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, json);
            Ok(())
        });
    }
}
