//! `policy-extras.dkim_sign`: sign by the From domain according to TOML or
//! JSON data: `[base]` defaults, `[domain."example.com"]` tables and named
//! `[signature."name"]` tables listed in `additional_signatures` (for an RSA
//! and an Ed25519 signature side by side). A domain listed here whose key
//! cannot be loaded makes the handler raise, so the message is deferred
//! rather than sent unsigned.

use crate::dkim::{make_signer, sign, SignerParams};
use crate::message::MessageHandle;
use ironpost_dkim::Algorithm;
use ironpost_keysource::{KeySource, VaultSource};
use mlua::{AnyUserData, Lua, Table, Value};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Fields shared by `[base]`, `[domain.X]` and `[signature.X]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// Signing domain (d=); defaults to the From domain. Only for
    /// `[signature.X]` tables.
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    headers: Option<Vec<String>>,
    #[serde(default)]
    algo: Option<String>,
    #[serde(default)]
    filename: Option<PathBuf>,
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

const DEFAULT_KEY_DIR: &str = "/etc/ironpost/dkim";

fn algo_of(v: &str) -> Result<Algorithm, String> {
    match v {
        "sha256" | "rsa" | "rsa-sha256" => Ok(Algorithm::RsaSha256),
        "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
        other => Err(format!(
            "algo: expected \"sha256\" or \"ed25519\", got {other:?}"
        )),
    }
}

fn check_policy(v: &Option<String>) -> Result<(), String> {
    match v.as_deref() {
        None | Some("Always") | Some("SignAlways") => Ok(()),
        Some(other) => Err(format!(
            "policy: expected \"Always\" (or \"SignAlways\"), got {other:?}"
        )),
    }
}

/// One signature to make, fully resolved except the message domain.
struct Plan {
    from_domain: String,
    spec: Spec,
}

impl Plan {
    fn params(&self, base: &Spec) -> Result<(Algorithm, SignerParams), String> {
        let s = &self.spec;
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let algo = algo_of(pick(&s.algo, &base.algo).as_deref().unwrap_or("sha256"))?;
        let domain = s.domain.clone().unwrap_or_else(|| self.from_domain.clone());
        let selector = pick(&s.selector, &base.selector)
            .ok_or_else(|| format!("no selector configured for {domain}"))?;
        let key = if let Some(f) = &s.filename {
            KeySource::File(f.clone())
        } else if let Some(mount) = pick(&s.vault_mount, &base.vault_mount) {
            let prefix = pick(&s.vault_path_prefix, &base.vault_path_prefix)
                .unwrap_or_else(|| "dkim".into());
            KeySource::Vault(VaultSource {
                vault_mount: mount,
                vault_path: s
                    .vault_path
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}/{domain}")),
                vault_address: None,
                vault_token: None,
                vault_key: "key".into(),
                vault_ca_file: None,
                vault_role_id: None,
                vault_secret_id: None,
            })
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
                over_sign: s.over_sign.or(base.over_sign).unwrap_or(false),
                expiration: s.expiration.or(base.expiration),
                ttl,
            },
        ))
    }
}

fn load(files: &[String]) -> Result<DkimData, String> {
    let merged = super::load_merged(files)?;
    let names = files.join(", ");
    let data: DkimData = serde_path_to_error::deserialize(serde_json::Value::Object(merged))
        .map_err(|e| format!("dkim_sign {names}: key '{}': {}", e.path(), e.inner()))?;
    let check = |table: String, s: &Spec| -> Result<(), String> {
        check_policy(&s.policy).map_err(|e| format!("dkim_sign {names}: {table}: {e}"))?;
        if let Some(a) = &s.algo {
            algo_of(a).map_err(|e| format!("dkim_sign {names}: {table}: {e}"))?;
        }
        for name in s.additional_signatures.iter().flatten() {
            if !data.signature.contains_key(name) {
                return Err(format!("dkim_sign {names}: {table}: additional_signatures names [signature.{name:?}], which is not defined"));
            }
        }
        Ok(())
    };
    check("[base]".into(), &data.base)?;
    for (d, s) in &data.domain {
        check(format!("[domain.{d:?}]"), s)?;
    }
    for (n, s) in &data.signature {
        check(format!("[signature.{n:?}]"), s)?;
    }
    Ok(data)
}

fn plans(data: &DkimData, from_domain: &str) -> Vec<Plan> {
    let Some(spec) = data.domain.get(from_domain) else {
        return vec![];
    };
    let mut out = vec![Plan {
        from_domain: from_domain.to_string(),
        spec: spec.clone(),
    }];
    let extra = spec
        .additional_signatures
        .clone()
        .or_else(|| data.base.additional_signatures.clone())
        .unwrap_or_default();
    for name in extra {
        if let Some(s) = data.signature.get(&name) {
            out.push(Plan {
                from_domain: from_domain.to_string(),
                spec: s.clone(),
            });
        }
    }
    out
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "setup",
        lua.create_function(|lua, (_this, files): (Value, Vec<String>)| {
            let data = Arc::new(load(&files).map_err(mlua::Error::RuntimeError)?);
            lua.create_function(move |_, msg: AnyUserData| {
                let handle = msg.borrow::<MessageHandle>()?.clone();
                let mut guard = handle.0.lock().unwrap_or_else(|p| p.into_inner());
                let Some(from_domain) = crate::message::from_domain(&guard.data) else {
                    return Ok(());
                };
                for plan in plans(&data, &from_domain) {
                    let (algo, params) =
                        plan.params(&data.base).map_err(mlua::Error::RuntimeError)?;
                    let signer = make_signer(algo, &params).map_err(|e| {
                        mlua::Error::RuntimeError(format!(
                            "dkim_sign: cannot sign for {} (selector {}): {e}",
                            params.domain, params.selector
                        ))
                    })?;
                    let header = sign(&signer, &guard.data).map_err(mlua::Error::RuntimeError)?;
                    guard.data.splice(0..0, header.into_bytes());
                }
                Ok(())
            })
        })?,
    )?;
    Ok(m)
}
