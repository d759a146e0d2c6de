//! The message as the policy sees it, and its Lua face.

use crate::headers;
use mlua::{LuaSerdeExt, UserData, UserDataFields, UserDataMethods, Value};
use serde_json::{Map, Value as Json};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Message {
    pub id: String,
    /// Envelope sender; empty for the null reverse-path.
    pub sender: String,
    pub recipients: Vec<String>,
    pub meta: Map<String, Json>,
    /// RFC 5322 content with CRLF line endings.
    pub data: Vec<u8>,
    /// Delivery attempts so far (`msg:num_attempts()`).
    pub attempts: u32,
}

impl Message {
    /// The scheduled queue, as KumoMTA names it: the `queue` meta, or the
    /// campaign, tenant, first recipient's domain and routing domain.
    pub fn queue_name(&self) -> String {
        let meta = |k: &str| self.meta.get(k).and_then(Json::as_str).map(str::to_string);
        if let Some(q) = meta("queue") {
            return q;
        }
        let domain = self
            .recipients
            .first()
            .and_then(|r| r.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        crate::QueueName {
            campaign: meta("campaign"),
            tenant: meta("tenant"),
            domain,
            routing_domain: meta("routing_domain"),
        }
        .to_string()
    }
}

/// An email address split for policy use (`msg:sender().domain`).
#[derive(Clone, Debug)]
pub struct AddressValue {
    pub email: String,
    pub name: Option<String>,
}

impl AddressValue {
    pub fn parse(email: &str) -> AddressValue {
        AddressValue {
            email: email.to_string(),
            name: None,
        }
    }
    fn split(&self) -> (&str, &str) {
        match self.email.rfind('@') {
            Some(i) => (&self.email[..i], &self.email[i + 1..]),
            None => (&self.email, ""),
        }
    }
}

impl UserData for AddressValue {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("email", |_, a| Ok(a.email.clone()));
        fields.add_field_method_get("user", |_, a| Ok(a.split().0.to_string()));
        fields.add_field_method_get("domain", |_, a| Ok(a.split().1.to_ascii_lowercase()));
        fields.add_field_method_get("name", |_, a| Ok(a.name.clone()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, a, ()| Ok(a.email.clone()));
    }
}

/// Shared so the engine can take the (possibly edited) message back after
/// the event returns.
#[derive(Clone)]
pub struct MessageHandle(pub Arc<Mutex<Message>>);

impl MessageHandle {
    pub fn new(msg: Message) -> MessageHandle {
        MessageHandle(Arc::new(Mutex::new(msg)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Message) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A copy of the message as it is now.
    pub fn snapshot(&self) -> Message {
        self.with(|m| m.clone())
    }

    pub fn into_message(self) -> Message {
        match Arc::try_unwrap(self.0) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            // Policy kept a reference (e.g. in a global): hand back a copy.
            Err(shared) => shared.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Lower-cased domain of the From header address.
pub fn from_domain(data: &[u8]) -> Option<String> {
    from_header(data).and_then(|a| {
        a.email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
    })
}

fn from_header(data: &[u8]) -> Option<AddressValue> {
    let raw = headers::first_value(data, "From")?;
    let synthetic = format!("From: {raw}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(synthetic.as_bytes())?;
    let addr = parsed.from()?.first()?;
    Some(AddressValue {
        email: addr.address()?.to_string(),
        name: addr.name().map(str::to_string),
    })
}

fn lua_err(e: impl ToString) -> mlua::Error {
    mlua::Error::RuntimeError(e.to_string())
}

/// An address given as a string or an EnvelopeAddress.
fn address_text(v: &Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        Value::UserData(ud) => Ok(ud.borrow::<AddressValue>()?.email.clone()),
        other => Err(mlua::Error::RuntimeError(format!(
            "expected an address (string or EnvelopeAddress), not a {}",
            other.type_name()
        ))),
    }
}

impl UserData for MessageHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("id", |_, m, ()| Ok(m.with(|m| m.id.clone())));
        methods.add_method("sender", |_, m, ()| {
            Ok(m.with(|m| (!m.sender.is_empty()).then(|| AddressValue::parse(&m.sender))))
        });
        methods.add_method("recipient", |_, m, ()| {
            Ok(m.with(|m| m.recipients.first().map(|r| AddressValue::parse(r))))
        });
        methods.add_method("recipients", |_, m, ()| {
            Ok(m.with(|m| {
                m.recipients
                    .iter()
                    .map(|r| AddressValue::parse(r))
                    .collect::<Vec<_>>()
            }))
        });
        methods.add_method("from_header", |_, m, ()| {
            Ok(m.with(|m| from_header(&m.data)))
        });
        methods.add_method("get_meta", |lua, m, key: String| {
            let v = m.with(|m| m.meta.get(&key).cloned());
            match v {
                Some(v) => lua.to_value(&v),
                None => Ok(Value::Nil),
            }
        });
        methods.add_method("set_meta", |lua, m, (key, value): (String, Value)| {
            let json: Json = lua.from_value(value)?;
            m.with(|m| m.meta.insert(key, json));
            Ok(())
        });
        methods.add_method("get_first_named_header_value", |_, m, name: String| {
            Ok(m.with(|m| headers::first_value(&m.data, &name)))
        });
        methods.add_method("append_header", |_, m, (name, value): (String, String)| {
            headers::validate(&name, &value).map_err(lua_err)?;
            m.with(|m| headers::append(&mut m.data, &name, &value));
            Ok(())
        });
        methods.add_method("prepend_header", |_, m, (name, value): (String, String)| {
            headers::validate(&name, &value).map_err(lua_err)?;
            m.with(|m| headers::prepend(&mut m.data, &name, &value));
            Ok(())
        });
        methods.add_method("remove_all_named_headers", |_, m, name: String| {
            m.with(|m| headers::remove_all(&mut m.data, &name));
            Ok(())
        });
        methods.add_method("dkim_sign", |lua, m, signer: mlua::AnyUserData| {
            let signer = {
                let value = signer.borrow::<crate::dkim::DkimSignerValue>()?;
                crate::probe::note_signer(lua, &value.0);
                value.0.clone()
            };
            m.with(|m| {
                let header = crate::dkim::sign(&signer, &m.data).map_err(lua_err)?;
                m.data.splice(0..0, header.into_bytes());
                Ok(())
            })
        });
        methods.add_method("dkim_verify", |lua, m, resolver: Value| {
            const F: &str = "msg:dkim_verify";
            crate::authn::no_resolver_name(F, &resolver)?;
            let auth = crate::authn::authenticator(lua, F)?;
            let data = m.with(|m| m.data.clone());
            let results = crate::authn::block_on(F, auth.dkim_verify(&data))?;
            let t = lua.create_table()?;
            for r in &results {
                t.push(crate::authn::to_lua(lua, r)?)?;
            }
            Ok(t)
        });
        methods.add_method("arc_verify", |lua, m, resolver: Value| {
            const F: &str = "msg:arc_verify";
            crate::authn::no_resolver_name(F, &resolver)?;
            let auth = crate::authn::authenticator(lua, F)?;
            let data = m.with(|m| m.data.clone());
            let r = crate::authn::block_on(F, auth.arc_verify(&data))?;
            crate::authn::to_lua(lua, &r)
        });
        methods.add_method(
            "arc_seal",
            |lua, m, (signer, serv_id, results, resolver): (mlua::AnyUserData, String, Value, Value)| {
                const F: &str = "msg:arc_seal";
                crate::authn::no_resolver_name(F, &resolver)?;
                let auth = crate::authn::authenticator(lua, F)?;
                let signer = signer.borrow::<crate::dkim::DkimSignerValue>()?.0.clone();
                let results = crate::authn::results_from_lua(lua, F, results)?;
                let data = m.with(|m| m.data.clone());
                let sealed =
                    crate::authn::block_on(F, auth.arc_seal(&data, &signer, &serv_id, &results))?
                        .map_err(|e| lua_err(format!("{F}: {e}")))?;
                if let Some(headers) = sealed {
                    m.with(|m| {
                        m.data.splice(0..0, headers);
                    });
                }
                Ok(())
            },
        );
        methods.add_method(
            "add_authentication_results",
            |lua, m, (serv_id, results): (String, Value)| {
                const F: &str = "msg:add_authentication_results";
                let results = crate::authn::results_from_lua(lua, F, results)?;
                m.with(|m| crate::authn::add_results(m, &serv_id, &results))
                    .map_err(lua_err)?;
                Ok(())
            },
        );
        methods.add_method("recipient_list", |_, m, ()| {
            Ok(m.with(|m| {
                m.recipients
                    .iter()
                    .map(|r| AddressValue::parse(r))
                    .collect::<Vec<_>>()
            }))
        });
        methods.add_method("set_recipient", |_, m, v: Value| {
            let list = match &v {
                Value::Table(t) => t
                    .sequence_values::<Value>()
                    .map(|v| address_text(&v?))
                    .collect::<mlua::Result<Vec<_>>>()?,
                other => vec![address_text(other)?],
            };
            m.with(|m| m.recipients = list);
            Ok(())
        });
        methods.add_method("set_sender", |_, m, v: Value| {
            let sender = address_text(&v)?;
            m.with(|m| m.sender = sender);
            Ok(())
        });
        // Each header as a { name, value } pair.
        methods.add_method("get_all_headers", |_, m, ()| {
            Ok(m.with(|m| {
                headers::all(&m.data)
                    .into_iter()
                    .map(|(n, v)| vec![n, v])
                    .collect::<Vec<_>>()
            }))
        });
        methods.add_method("get_all_named_header_values", |_, m, name: String| {
            Ok(m.with(|m| {
                headers::all(&m.data)
                    .into_iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>()
            }))
        });
        // KumoMTA: X- headers (or the named ones) into metadata, names
        // lower-cased with '-' as '_'; a repeated header's last value wins.
        methods.add_method("import_x_headers", |_, m, names: Option<Vec<String>>| {
            m.with(|m| {
                for (name, value) in headers::all(&m.data) {
                    let wanted = match &names {
                        Some(list) => list.iter().any(|n| n.eq_ignore_ascii_case(&name)),
                        None => name.len() > 2 && name[..2].eq_ignore_ascii_case("x-"),
                    };
                    if wanted {
                        let key = name.to_ascii_lowercase().replace('-', "_");
                        m.meta.insert(key, Json::String(value));
                    }
                }
            });
            Ok(())
        });
        methods.add_method("remove_x_headers", |_, m, names: Option<Vec<String>>| {
            m.with(|m| {
                let doomed: Vec<String> = headers::all(&m.data)
                    .into_iter()
                    .map(|(n, _)| n)
                    .filter(|n| match &names {
                        Some(list) => list.iter().any(|x| x.eq_ignore_ascii_case(n)),
                        None => n.len() > 2 && n[..2].eq_ignore_ascii_case("x-"),
                    })
                    .collect();
                for n in doomed {
                    headers::remove_all(&mut m.data, &n);
                }
            });
            Ok(())
        });
        methods.add_method("queue_name", |_, m, ()| Ok(m.with(|m| m.queue_name())));
        methods.add_method("num_attempts", |_, m, ()| Ok(m.with(|m| m.attempts)));
        // Ironpost has no per-message scheduling; clearing it is a no-op,
        // setting it is refused rather than ignored.
        methods.add_method("set_scheduling", |_, _, v: Value| match v {
            Value::Nil => Ok(()),
            _ => Err(lua_err(
                "msg:set_scheduling: Ironpost does not support message scheduling yet",
            )),
        });
        methods.add_method("get_data", |lua, m, ()| {
            m.with(|m| lua.create_string(&m.data))
        });
        // KumoMTA's contract: returns nil, or a string saying why the
        // message fails CHECKS; only bad flags or settings raise.
        methods.add_method(
            "check_fix_conformance",
            |lua, m, (check, fix, settings): (String, String, Option<Value>)| {
                let settings =
                    crate::conformance::Settings::from_lua(lua, settings).map_err(lua_err)?;
                m.with(|m| {
                    // As KumoMTA: `<message id>@<sender domain>`.
                    let domain = m
                        .sender
                        .rsplit_once('@')
                        .map(|(_, d)| d)
                        .filter(|d| !d.is_empty())
                        .unwrap_or("localhost");
                    let id = format!("{}@{domain}", m.id);
                    crate::conformance::check_fix(&mut m.data, &check, &fix, &settings, &id)
                })
                .map_err(lua_err)
            },
        );
    }
}
