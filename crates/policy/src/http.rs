//! `kumo.http.build_client{}`: HTTP requests from policy, e.g. a credential
//! check against an internal service with a password from Vault. Runs on
//! the blocking threads the policy already runs on.

use crate::duration;
use crate::kumo::parse_options;
use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientOptions {
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    connect_timeout: Option<Duration>,
}

struct HttpClient(reqwest::blocking::Client);
struct HttpRequest(Mutex<Option<reqwest::blocking::RequestBuilder>>);
struct HttpResponse {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn rt(e: impl ToString) -> mlua::Error {
    mlua::Error::RuntimeError(e.to_string())
}

impl HttpRequest {
    fn map(
        &self,
        f: impl FnOnce(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
    ) -> mlua::Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let b = slot.take().ok_or_else(|| rt("http request already sent"))?;
        *slot = Some(f(b));
        Ok(())
    }
}

impl UserData for HttpClient {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        for verb in ["get", "post", "put"] {
            methods.add_method(verb, move |_, c, url: String| {
                let b = match verb {
                    "get" => c.0.get(&url),
                    "post" => c.0.post(&url),
                    _ => c.0.put(&url),
                };
                Ok(HttpRequest(Mutex::new(Some(b))))
            });
        }
    }
}

impl UserData for HttpRequest {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // Builder methods return the request, so calls chain as in KumoMTA
        // (`client:post(url):header(k, v):body(b):send()`).
        methods.add_function(
            "basic_auth",
            |_, (ud, user, password): (AnyUserData, String, Option<mlua::String>)| {
                let pw = password
                    .map(|p| p.to_str().map(|s| s.to_string()))
                    .transpose()?;
                ud.borrow::<HttpRequest>()?
                    .map(|b| b.basic_auth(user, pw))?;
                Ok(ud)
            },
        );
        methods.add_function(
            "header",
            |_, (ud, name, value): (AnyUserData, String, String)| {
                ud.borrow::<HttpRequest>()?.map(|b| b.header(name, value))?;
                Ok(ud)
            },
        );
        methods.add_function("body", |_, (ud, body): (AnyUserData, mlua::String)| {
            let bytes = body.as_bytes().to_vec();
            ud.borrow::<HttpRequest>()?.map(|b| b.body(bytes))?;
            Ok(ud)
        });
        methods.add_function("timeout", |_, (ud, d): (AnyUserData, Value)| {
            let d = match d {
                Value::Integer(n) => Duration::from_secs(n.max(0) as u64),
                Value::Number(n) => Duration::from_secs_f64(n.max(0.0)),
                Value::String(s) => duration::parse(&s.to_str()?).map_err(rt)?,
                _ => return Err(rt("request:timeout expects a duration")),
            };
            ud.borrow::<HttpRequest>()?.map(|b| b.timeout(d))?;
            Ok(ud)
        });
        methods.add_method("send", |_, r, ()| {
            let b =
                r.0.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .ok_or_else(|| rt("http request already sent"))?;
            // reqwest errors name the URL but never credentials.
            let resp = b
                .send()
                .map_err(|e| rt(format!("http request failed: {}", e.without_url())))?;
            let status = resp.status();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp
                .bytes()
                .map_err(|e| rt(format!("http response: {}", e.without_url())))?
                .to_vec();
            Ok(HttpResponse {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                headers,
                body,
            })
        });
    }
}

impl UserData for HttpResponse {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("status_code", |_, r, ()| Ok(r.status));
        methods.add_method("status_reason", |_, r, ()| Ok(r.reason.clone()));
        methods.add_method("status_is_success", |_, r, ()| {
            Ok((200..300).contains(&r.status))
        });
        methods.add_method("text", |lua, r, ()| lua.create_string(&r.body));
        methods.add_method("headers", |lua, r, ()| {
            let t = lua.create_table()?;
            for (k, v) in &r.headers {
                t.set(k.as_str(), v.as_str())?;
            }
            Ok(t)
        });
    }
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let http = lua.create_table()?;
    http.set(
        "build_client",
        lua.create_function(|lua, opts: Option<Value>| {
            let opts: ClientOptions = match opts {
                Some(v) => parse_options(lua, "kumo.http.build_client", v)?,
                None => ClientOptions::default(),
            };
            let mut b = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(5));
            if let Some(ua) = opts.user_agent {
                b = b.user_agent(ua);
            }
            if let Some(t) = opts.timeout {
                b = b.timeout(t);
            }
            if let Some(t) = opts.connect_timeout {
                b = b.connect_timeout(t);
            }
            Ok(HttpClient(
                b.build()
                    .map_err(|e| rt(format!("kumo.http.build_client: {e}")))?,
            ))
        })?,
    )?;
    kumo.set("http", http)
}
