//! `policy-extras.dkim_sign`: sign by the From domain according to TOML or
//! JSON data (or inline Lua tables), as KumoMTA's `dkim_sign.lua` does:
//!
//! - `[domain."example.com"]` blocks are looked up through KumoMTA's
//!   domain-map rules, so `[domain."*.example.com"]` matches
//!   `mail.example.com`; the signing domain (d=) is the From domain.
//! - `[base]` holds the defaults; `base.additional_signatures` names
//!   `[signature."name"]` blocks (each with its own `domain`) that are added
//!   to every message, whether or not its From domain has a block; a
//!   signature with `policy = "OnlyIfMissingDomainBlock"` only when it has
//!   none.
//! - With `base.vault_mount` the key is read from Vault at
//!   `<vault_path_prefix or "dkim">/<domain>/<selector>`, or at `filename`
//!   when the block names one; otherwise from `filename`, or
//!   `<key_dir>/<domain>/<selector>.key`.
//! - A message without a From header is rejected with KumoMTA's
//!   `552 5.6.0 DKIM signing requires a From header, but it is missing from
//!   this message`; a From header that is not one address is an error, so
//!   the message is deferred rather than sent unsigned, as is a domain whose
//!   key cannot be loaded.
//! - The data files are read again when one of them changes, and at least
//!   every 5 minutes (KumoMTA memoizes them for 5 minutes and drops them on a
//!   configuration change); a file that no longer loads makes signing fail
//!   (the message is deferred) until it is fixed.
//!
//! **Ironpost** additions: `key_dir` (the default key directory, otherwise
//! `/etc/ironpost/dkim`), `ttl` (the signer cache), `vault_path` (an
//! explicit Vault path), `algo` and `vault_mount` / `vault_path_prefix` in
//! any block, `policy = "SignAlways"` as a synonym of `"Always"`, and
//! `additional_signatures` in a `[domain]` block (replacing the base list
//! for that domain; such signatures may leave out `domain` to sign as the
//! From domain). Keys KumoMTA does not allow where they are written
//! (`domain`, `filename` or `vault_path` in `[base]`, `domain` in a
//! `[domain]` block, `additional_signatures` in a `[signature]` block) are
//! refused, as is any unknown key.

use super::DomainMap;
use crate::dkim::{make_signer, sign, SignerParams};
use crate::error::Rejection;
use crate::message::MessageHandle;
use ironpost_dkim::Algorithm;
use ironpost_keysource::{KeySource, VaultSource};
use mlua::{AnyUserData, Lua, LuaSerdeExt, Table, Value};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Fields shared by `[base]`, `[domain.X]` and `[signature.X]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// Signing domain (d=). Only for `[signature.X]` tables.
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    headers: Option<Vec<String>>,
    #[serde(default)]
    algo: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    vault_mount: Option<String>,
    #[serde(default)]
    vault_path: Option<String>,
    #[serde(default)]
    vault_path_prefix: Option<String>,
    /// **Ironpost:** directory of `<domain>/<selector>.key` files.
    #[serde(default)]
    key_dir: Option<PathBuf>,
    #[serde(default)]
    header_canonicalization: Option<String>,
    #[serde(default)]
    body_canonicalization: Option<String>,
    #[serde(default)]
    over_sign: Option<bool>,
    #[serde(default)]
    expiration: Option<u64>,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    additional_signatures: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DkimData {
    #[serde(default)]
    base: Spec,
    #[serde(default)]
    domain: HashMap<String, Spec>,
    #[serde(default)]
    signature: HashMap<String, Spec>,
}

/// The data, checked, with the domain blocks in a [`DomainMap`].
pub struct Compiled {
    base: Spec,
    domains: DomainMap<Spec>,
    signature: HashMap<String, Spec>,
    /// Key files and directories named (see [`key_files_of`]).
    pub key_files: Vec<PathBuf>,
}

const DEFAULT_KEY_DIR: &str = "/etc/ironpost/dkim";
/// KumoMTA memoizes the data for 5 minutes.
const RELOAD_AFTER: Duration = Duration::from_secs(300);
const MISSING_FROM: &str =
    "5.6.0 DKIM signing requires a From header, but it is missing from this message";

fn algo_of(v: &str) -> Result<Algorithm, String> {
    match v {
        "sha256" | "rsa" | "rsa-sha256" => Ok(Algorithm::RsaSha256),
        "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
        other => Err(format!(
            "algo: expected \"sha256\" or \"ed25519\", got {other:?}"
        )),
    }
}

/// The canonicalizations, checked at setup as `algo` is: signing refuses
/// any other value, and would defer every message it should sign.
fn check_canon(s: &Spec) -> Result<(), String> {
    for (key, v) in [
        ("header_canonicalization", &s.header_canonicalization),
        ("body_canonicalization", &s.body_canonicalization),
    ] {
        if let Some(v) = v {
            v.parse::<ironpost_dkim::Canon>()
                .map_err(|_| format!("{key}: expected \"Relaxed\" or \"Simple\", got {v:?}"))?;
        }
    }
    Ok(())
}

/// The signing policy of a block: `Always` everywhere, and for
/// `[signature]` blocks also `OnlyIfMissingDomainBlock`.
fn check_policy(v: &Option<String>, signature: bool) -> Result<(), String> {
    match v.as_deref() {
        None | Some("Always") | Some("SignAlways") => Ok(()),
        Some("OnlyIfMissingDomainBlock") if signature => Ok(()),
        Some(other) if signature => Err(format!(
            "policy: expected \"Always\" or \"OnlyIfMissingDomainBlock\", got {other:?}"
        )),
        Some(other) => Err(format!(
            "policy: expected \"Always\" (or \"SignAlways\"), got {other:?}"
        )),
    }
}

fn only_if_missing_domain_block(s: &Spec) -> bool {
    s.policy.as_deref() == Some("OnlyIfMissingDomainBlock")
}

/// Resolve one signature's signer parameters, as `dkim_sign.lua` builds
/// them: the block's values, else `[base]`'s.
fn params(s: &Spec, base: &Spec, domain: String) -> Result<(Algorithm, SignerParams), String> {
    let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
    let algo = algo_of(pick(&s.algo, &base.algo).as_deref().unwrap_or("sha256"))?;
    let selector = pick(&s.selector, &base.selector)
        .ok_or_else(|| format!("no selector configured for {domain}"))?;
    let key = if let Some(mount) = pick(&s.vault_mount, &base.vault_mount) {
        let prefix =
            pick(&s.vault_path_prefix, &base.vault_path_prefix).unwrap_or_else(|| "dkim".into());
        let vault_path = s
            .vault_path
            .clone()
            .or_else(|| s.filename.clone())
            .unwrap_or_else(|| format!("{prefix}/{domain}/{selector}"));
        KeySource::Vault(VaultSource {
            vault_mount: mount,
            vault_path,
            vault_address: None,
            vault_token: None,
            vault_key: "key".into(),
            vault_ca_file: None,
            vault_role_id: None,
            vault_secret_id: None,
        })
    } else if let Some(f) = &s.filename {
        KeySource::File(PathBuf::from(f))
    } else {
        let dir = s
            .key_dir
            .clone()
            .or_else(|| base.key_dir.clone())
            .unwrap_or_else(|| DEFAULT_KEY_DIR.into());
        KeySource::File(dir.join(&domain).join(format!("{selector}.key")))
    };
    let ttl = match pick(&s.ttl, &base.ttl) {
        Some(t) => crate::duration::parse(&t)?,
        None => Duration::from_secs(300),
    };
    Ok((
        algo,
        SignerParams {
            domain,
            selector,
            headers: s
                .headers
                .clone()
                .or_else(|| base.headers.clone())
                .unwrap_or_default(),
            key,
            header_canonicalization: pick(
                &s.header_canonicalization,
                &base.header_canonicalization,
            )
            .unwrap_or_else(|| "Relaxed".into()),
            body_canonicalization: pick(&s.body_canonicalization, &base.body_canonicalization)
                .unwrap_or_else(|| "Relaxed".into()),
            // Lua's `domain.over_sign or base.over_sign`: a `false` in the
            // block does not override a `true` in [base].
            over_sign: s.over_sign == Some(true) || base.over_sign == Some(true),
            expiration: s.expiration.or(base.expiration),
            ttl,
        },
    ))
}

/// One entry of the `setup` list.
enum Source {
    File(String),
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// Modification time and length of a data file, to notice edits.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(sources: &[Source]) -> Vec<Stamp> {
    sources
        .iter()
        .filter_map(|s| match s {
            Source::File(f) => Some(
                std::fs::metadata(f)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len()))),
            ),
            Source::Inline(_) => None,
        })
        .collect()
}

/// As KumoMTA's `load_json_or_toml_file`: TOML when the name ends in
/// `.toml`, JSON (comments allowed) otherwise.
fn load_file(name: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))?;
    super::parse_data(&text, !name.ends_with(".toml")).map_err(|e| format!("{name}: {e}"))
}

/// Check and load one data file's text (TOML, or JSON when `json`), as
/// `setup` does with a file name: no file, no Lua.
pub fn parse(text: &str, json: bool) -> Result<Compiled, String> {
    match super::parse_data(text, json).map_err(|e| format!("dkim_sign: (text): {e}"))? {
        serde_json::Value::Object(m) => load(&[Source::Inline(m)]),
        _ => Err("dkim_sign: (text): expected a table of tables".into()),
    }
}

fn names_of(sources: &[Source]) -> String {
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Source::File(f) => f.clone(),
            Source::Inline(_) => format!("inline table #{}", i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn load(sources: &[Source]) -> Result<Compiled, String> {
    let names = names_of(sources);
    let mut merged = serde_json::Map::new();
    for (i, s) in sources.iter().enumerate() {
        let v = match s {
            Source::File(f) => load_file(f).map_err(|e| format!("dkim_sign: {e}"))?,
            Source::Inline(m) => serde_json::Value::Object(m.clone()),
        };
        match v {
            serde_json::Value::Object(m) => super::merge(&mut merged, m),
            _ => {
                let name = match s {
                    Source::File(f) => f.clone(),
                    Source::Inline(_) => format!("inline table #{}", i + 1),
                };
                return Err(format!("dkim_sign: {name}: expected a table of tables"));
            }
        }
    }
    let data: DkimData = serde_path_to_error::deserialize(serde_json::Value::Object(merged))
        .map_err(|e| format!("dkim_sign {names}: key '{}': {}", e.path(), e.inner()))?;
    let fail = |table: &str, e: String| format!("dkim_sign {names}: {table}: {e}");
    let not_here = |table: &str, key: &str, why: &str| {
        fail(
            table,
            format!("key '{key}' is not valid here ({why}; KumoMTA refuses it too)"),
        )
    };

    // [base]
    let base = &data.base;
    check_policy(&base.policy, false).map_err(|e| fail("[base]", e))?;
    if let Some(a) = &base.algo {
        algo_of(a).map_err(|e| fail("[base]", e))?;
    }
    check_canon(base).map_err(|e| fail("[base]", e))?;
    if let Some(t) = &base.ttl {
        crate::duration::parse(t).map_err(|e| fail("[base]", format!("ttl: {e}")))?;
    }
    for (key, set) in [
        ("domain", base.domain.is_some()),
        ("filename", base.filename.is_some()),
        ("vault_path", base.vault_path.is_some()),
    ] {
        if set {
            return Err(not_here(
                "[base]",
                key,
                "it names one key; put it in a [domain] or [signature] block",
            ));
        }
    }
    for name in base.additional_signatures.iter().flatten() {
        let Some(sig) = data.signature.get(name) else {
            return Err(fail(
                "[base]",
                format!("additional_signatures names [signature.{name:?}], which is not defined"),
            ));
        };
        if sig.domain.is_none() {
            return Err(fail(
                &format!("[signature.{name:?}]"),
                "'domain' is required (the signature is listed in base.additional_signatures, \
                 which signs every message)"
                    .into(),
            ));
        }
    }

    // [domain.X]
    let mut domains = DomainMap::default();
    for (d, s) in &data.domain {
        let table = format!("[domain.{d:?}]");
        check_policy(&s.policy, false).map_err(|e| fail(&table, e))?;
        if let Some(a) = &s.algo {
            algo_of(a).map_err(|e| fail(&table, e))?;
        }
        check_canon(s).map_err(|e| fail(&table, e))?;
        if let Some(t) = &s.ttl {
            crate::duration::parse(t).map_err(|e| fail(&table, format!("ttl: {e}")))?;
        }
        if s.domain.is_some() {
            return Err(not_here(
                &table,
                "domain",
                "a [domain] block signs as the From domain",
            ));
        }
        if s.selector.is_none() && base.selector.is_none() {
            return Err(fail(
                &table,
                "missing a selector and no default selector is defined in [base]".into(),
            ));
        }
        for name in s.additional_signatures.iter().flatten() {
            let Some(sig) = data.signature.get(name) else {
                return Err(fail(
                    &table,
                    format!(
                        "additional_signatures names [signature.{name:?}], which is not defined"
                    ),
                ));
            };
            if only_if_missing_domain_block(sig) {
                return Err(fail(
                    &table,
                    format!(
                        "additional_signatures names [signature.{name:?}], whose policy \
                         \"OnlyIfMissingDomainBlock\" never applies to a domain that has a block"
                    ),
                ));
            }
        }
        domains.insert(d, s.clone());
    }

    // [signature.X]
    for (n, s) in &data.signature {
        let table = format!("[signature.{n:?}]");
        check_policy(&s.policy, true).map_err(|e| fail(&table, e))?;
        if let Some(a) = &s.algo {
            algo_of(a).map_err(|e| fail(&table, e))?;
        }
        check_canon(s).map_err(|e| fail(&table, e))?;
        if let Some(t) = &s.ttl {
            crate::duration::parse(t).map_err(|e| fail(&table, format!("ttl: {e}")))?;
        }
        if s.additional_signatures.is_some() {
            return Err(not_here(
                &table,
                "additional_signatures",
                "only [base] (or, in Ironpost, a [domain] block) lists signatures",
            ));
        }
        if s.selector.is_none() && base.selector.is_none() {
            return Err(fail(
                &table,
                "missing a selector and no default selector is defined in [base]".into(),
            ));
        }
    }
    let key_files = key_files_of(&data);
    Ok(Compiled {
        domains,
        signature: data.signature,
        base: data.base,
        key_files,
    })
}

/// The key files the data names (or implies: `key_dir/domain/selector.key`)
/// and the key directories, so start-up can check who may read them. A
/// wildcard block's files depend on the domain: its directory is checked.
fn key_files_of(data: &DkimData) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let base = &data.base;
    let named = data
        .domain
        .iter()
        .map(|(d, s)| (Some(d.as_str()), s))
        .chain(data.signature.values().map(|s| (s.domain.as_deref(), s)));
    for (domain, s) in named {
        if s.vault_mount.is_some() || base.vault_mount.is_some() {
            continue;
        }
        if let Some(f) = &s.filename {
            out.push(PathBuf::from(f));
            continue;
        }
        let dir = s
            .key_dir
            .clone()
            .or_else(|| base.key_dir.clone())
            .unwrap_or_else(|| DEFAULT_KEY_DIR.into());
        let selector = s.selector.as_ref().or(base.selector.as_ref());
        match (domain.filter(|d| !d.contains('*')), selector) {
            (Some(d), Some(sel)) => out.push(dir.join(d).join(format!("{sel}.key"))),
            _ => out.push(dir),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The setup's data, read again when a file changes or is older than
/// [`RELOAD_AFTER`].
struct Loader {
    sources: Vec<Source>,
    state: Mutex<Loaded>,
}

struct Loaded {
    data: Arc<Compiled>,
    at: Instant,
    stamps: Vec<Stamp>,
}

impl Loader {
    fn current(&self) -> Result<Arc<Compiled>, String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamps(&self.sources);
        if st.at.elapsed() >= RELOAD_AFTER || now != st.stamps {
            let data = Arc::new(load(&self.sources)?);
            *st = Loaded {
                data,
                at: Instant::now(),
                stamps: now,
            };
        }
        Ok(st.data.clone())
    }
}

/// The From header's single address, lower-cased domain; `Ok(None)` when
/// there is no From header.
fn from_domain(data: &[u8]) -> Result<Option<String>, String> {
    let Some(raw) = crate::headers::first_value(data, "From") else {
        return Ok(None);
    };
    let synthetic = format!("From: {raw}\r\n\r\n");
    let bad = |why: &str| format!("dkim_sign: the From header {raw:?} {why}");
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(synthetic.as_bytes())
        .ok_or_else(|| bad("cannot be parsed"))?;
    let addr = match parsed.from() {
        Some(mail_parser::Address::List(list)) if list.len() == 1 => &list[0],
        Some(mail_parser::Address::List(list)) if list.len() > 1 => {
            return Err(bad("is not a simple single address"))
        }
        Some(mail_parser::Address::Group(_)) => return Err(bad("is not a simple address")),
        _ => return Err(bad("holds no address")),
    };
    let email = addr.address().ok_or_else(|| bad("holds no address"))?;
    match email.rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => Ok(Some(d.trim_end_matches('.').to_ascii_lowercase())),
        _ => Err(bad("has an address without a domain")),
    }
}

/// The signatures `dkim_sign.lua` makes for this From domain, in order:
/// the domain block's, then each additional signature that applies.
fn plans(data: &Compiled, from_domain: &str) -> Vec<(Spec, String)> {
    let mut out = Vec::new();
    let block = data.domains.get(from_domain);
    if let Some(spec) = block {
        out.push((spec.clone(), from_domain.to_string()));
    }
    let extra = block
        .and_then(|s| s.additional_signatures.as_ref())
        .or(data.base.additional_signatures.as_ref());
    for name in extra.into_iter().flatten() {
        let Some(sig) = data.signature.get(name) else {
            continue; // checked at load
        };
        if only_if_missing_domain_block(sig) && block.is_some() {
            continue;
        }
        let domain = sig
            .domain
            .clone()
            .unwrap_or_else(|| from_domain.to_string());
        out.push((sig.clone(), domain));
    }
    out
}

impl Compiled {
    /// The signers a message from `from_domain` gets, in order.
    pub fn signers(&self, from_domain: &str) -> Result<Vec<(Algorithm, SignerParams)>, String> {
        plans(self, from_domain)
            .into_iter()
            .map(|(spec, domain)| params(&spec, &self.base, domain))
            .collect()
    }
}

fn sign_message(lua: &Lua, data: &Compiled, handle: &MessageHandle) -> mlua::Result<()> {
    let mut guard = handle.0.lock().unwrap_or_else(|p| p.into_inner());
    let Some(from_domain) = from_domain(&guard.data).map_err(mlua::Error::RuntimeError)? else {
        return Err(mlua::Error::external(Rejection {
            code: 552,
            text: MISSING_FROM.into(),
        }));
    };
    let signers = data
        .signers(&from_domain)
        .map_err(mlua::Error::RuntimeError)?;
    for (algo, params) in signers {
        let signer = make_signer(algo, &params).map_err(|e| {
            mlua::Error::RuntimeError(format!(
                "dkim_sign: cannot sign for {} (selector {}): {e}",
                params.domain, params.selector
            ))
        })?;
        crate::probe::note_signer(lua, &signer);
        let header = sign(&signer, &guard.data).map_err(mlua::Error::RuntimeError)?;
        guard.data.splice(0..0, header.into_bytes());
    }
    Ok(())
}

fn sources(lua: &Lua, list: Vec<Value>) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        match item {
            Value::String(s) => out.push(Source::File(
                s.to_str()
                    .map_err(|e| format!("dkim_sign: {e}"))?
                    .to_string(),
            )),
            Value::Table(t) => {
                let v: serde_json::Value = lua
                    .from_value(Value::Table(t))
                    .map_err(|e| format!("dkim_sign: inline table #{}: {e}", i + 1))?;
                match v {
                    serde_json::Value::Object(m) => out.push(Source::Inline(m)),
                    serde_json::Value::Array(a) if a.is_empty() => {
                        out.push(Source::Inline(Default::default()))
                    }
                    _ => {
                        return Err(format!(
                            "dkim_sign: inline table #{}: expected a table of tables",
                            i + 1
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "dkim_sign: setup expects a list of file names or tables, not a {}",
                    other.type_name()
                ))
            }
        }
    }
    Ok(out)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<Value>)| {
            super::configure_once(lua, "dkim_sign")?;
            let sources = sources(lua, files).map_err(mlua::Error::RuntimeError)?;
            let data = Arc::new(load(&sources).map_err(mlua::Error::RuntimeError)?);
            if let Some(ctx) = lua.app_data_ref::<crate::state::StateCtx>() {
                let mut keys = ctx
                    .shared
                    .key_files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for f in &data.key_files {
                    if !keys.iter().any(|(_, k)| k == f) {
                        keys.push(("policy-extras.dkim_sign".into(), f.clone()));
                    }
                }
            }
            let loader = Arc::new(Loader {
                state: Mutex::new(Loaded {
                    data,
                    at: Instant::now(),
                    stamps: stamps(&sources),
                }),
                sources,
            });
            lua.create_function(move |lua, msg: AnyUserData| {
                let handle = msg.borrow::<MessageHandle>()?.clone();
                let data = loader.current().map_err(mlua::Error::RuntimeError)?;
                sign_message(lua, &data, &handle)
            })
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(toml: &str) -> Compiled {
        let v: toml::Value = toml::from_str(toml).unwrap();
        let serde_json::Value::Object(m) = serde_json::to_value(v).unwrap() else {
            panic!()
        };
        load(&[Source::Inline(m)]).unwrap()
    }

    #[test]
    fn key_sources_follow_dkim_sign_lua() {
        let c = spec(
            "[base]\nselector = 's1'\nvault_mount = 'secret'\n[domain.'a.test']\n[domain.'b.test']\nfilename = 'keys/b'\n",
        );
        let (_, p) = params(c.domains.get("a.test").unwrap(), &c.base, "a.test".into()).unwrap();
        assert!(
            matches!(&p.key, KeySource::Vault(v) if v.vault_mount == "secret" && v.vault_path == "dkim/a.test/s1"),
            "{:?}",
            p.key.describe()
        );
        let (_, p) = params(c.domains.get("b.test").unwrap(), &c.base, "b.test".into()).unwrap();
        assert!(
            matches!(&p.key, KeySource::Vault(v) if v.vault_path == "keys/b"),
            "{:?}",
            p.key.describe()
        );
        let c = spec(
            "[base]\nselector = 's1'\nover_sign = true\n[domain.'a.test']\nover_sign = false\n",
        );
        let (_, p) = params(c.domains.get("a.test").unwrap(), &c.base, "a.test".into()).unwrap();
        assert!(
            matches!(&p.key, KeySource::File(f) if f == Path::new("/etc/ironpost/dkim/a.test/s1.key")),
            "{}",
            p.key.describe()
        );
        assert!(p.over_sign, "Lua `false or true` is true");
    }

    /// A canonicalization signing would refuse is refused at setup, in
    /// every kind of block (found by the policy_helpers fuzz target).
    #[test]
    fn canonicalization_checked_at_setup() {
        // The key lands in [base] itself, a [domain] block or a [signature].
        for block in [
            "",
            "[domain.'a.test']\n",
            "[signature.s]\ndomain = 'a.test'\n",
        ] {
            for key in ["header_canonicalization", "body_canonicalization"] {
                let text = format!("[base]\nselector = 's1'\n{block}{key} = 'bogus'\n");
                let err = parse(&text, false).err().expect(&text);
                assert!(err.contains(key) && err.contains("bogus"), "{err}");
                parse(&text.replace("bogus", "simple"), false).expect(&text);
            }
        }
    }

    #[test]
    fn from_domain_needs_one_address() {
        assert_eq!(
            from_domain(b"From: A <a@Example.COM>\r\n\r\n").unwrap(),
            Some("example.com".into())
        );
        assert_eq!(from_domain(b"Subject: x\r\n\r\n").unwrap(), None);
        assert!(from_domain(b"From: a@x.test, b@y.test\r\n\r\n").is_err());
    }
}
