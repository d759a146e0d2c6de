//! `kumo.dkim.rsa_sha256_signer{...}`, `kumo.dkim.ed25519_signer{...}` and
//! `msg:dkim_sign(signer)`.
//!
//! Keys are loaded from their keysource once and kept for the signer's
//! `ttl` (default 5 minutes), so a rotated key in Vault or on disk is picked
//! up without a restart and key material does not outlive its TTL. A key
//! that cannot be loaded raises an error: the message is deferred (451), it
//! is never sent unsigned by accident.

use crate::duration;
use crate::kumo::parse_options;
use ironpost_dkim::{Algorithm, Canon, Signer, SignerConfig, SigningKey};
use ironpost_keysource::KeySource;
use mlua::{Lua, Table, UserData, Value};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn canon_relaxed() -> String {
    "Relaxed".into()
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerParams {
    pub domain: String,
    pub selector: String,
    #[serde(default)]
    pub headers: Vec<String>,
    pub key: KeySource,
    #[serde(default = "canon_relaxed")]
    pub header_canonicalization: String,
    #[serde(default = "canon_relaxed")]
    pub body_canonicalization: String,
    #[serde(default)]
    pub over_sign: bool,
    #[serde(default)]
    pub expiration: Option<u64>,
    #[serde(default = "five_minutes", deserialize_with = "duration::deserialize")]
    pub ttl: Duration,
}

/// A signer handed to Lua.
#[derive(Clone)]
pub struct DkimSignerValue(pub Arc<Signer>);
impl UserData for DkimSignerValue {}

struct CachedSigner {
    signer: Arc<Signer>,
    at: Instant,
    ttl: Duration,
}

fn cache() -> &'static Mutex<HashMap<String, CachedSigner>> {
    static C: OnceLock<Mutex<HashMap<String, CachedSigner>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn parse_canon(what: &str, v: &str) -> Result<Canon, String> {
    v.parse::<Canon>()
        .map_err(|_| format!("{what}: expected \"Relaxed\" or \"Simple\", got {v:?}"))
}

/// Where signing keys are. By default the policy loads them itself (the
/// CLI's tools); `ironpost serve` installs one that gives back keys held
/// by the signer process, so the network process never has key material.
pub trait KeyBackend: Send + Sync {
    fn key(&self, algo: Algorithm, source: &KeySource, ttl: Duration)
        -> Result<SigningKey, String>;
}

static KEY_BACKEND: OnceLock<Arc<dyn KeyBackend>> = OnceLock::new();

/// Installs the process's key backend; once, before the first signer.
pub fn set_key_backend(backend: Arc<dyn KeyBackend>) {
    let _ = KEY_BACKEND.set(backend);
}

fn load_key(algo: Algorithm, p: &SignerParams) -> Result<SigningKey, String> {
    // A key written in the policy is in this process anyway.
    if let (Some(backend), false) = (KEY_BACKEND.get(), p.key.is_inline()) {
        return backend.key(algo, &p.key, p.ttl);
    }
    let material = p
        .key
        .load()
        .map_err(|e| format!("DKIM key for {}/{}: {e}", p.domain, p.selector))?;
    SigningKey::from_bytes(algo, material.expose())
        .map_err(|e| format!("DKIM key {}: {e}", p.key.describe()))
}

/// Build (or reuse, within `ttl`) a signer.
pub fn make_signer(algo: Algorithm, p: &SignerParams) -> Result<Arc<Signer>, String> {
    let key = format!(
        "{algo}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}",
        p.domain,
        p.selector,
        p.key,
        p.header_canonicalization,
        p.body_canonicalization,
        p.over_sign,
        p.expiration,
        p.headers
    );
    {
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        // Drop expired entries so keys do not stay in memory past their TTL.
        c.retain(|_, v| v.at.elapsed() < v.ttl);
        if let Some(v) = c.get(&key) {
            return Ok(v.signer.clone());
        }
    }
    let signing_key = load_key(algo, p)?;
    let mut cfg = SignerConfig::new(p.domain.clone(), p.selector.clone());
    if !p.headers.is_empty() {
        cfg.headers = p.headers.clone();
    }
    cfg.header_canonicalization =
        parse_canon("header_canonicalization", &p.header_canonicalization)?;
    cfg.body_canonicalization = parse_canon("body_canonicalization", &p.body_canonicalization)?;
    cfg.over_sign = p.over_sign;
    cfg.expiration = p.expiration;
    let signer = Arc::new(Signer::new(cfg, signing_key).map_err(|e| e.to_string())?);
    cache().lock().unwrap_or_else(|e| e.into_inner()).insert(
        key,
        CachedSigner {
            signer: signer.clone(),
            at: Instant::now(),
            ttl: p.ttl,
        },
    );
    Ok(signer)
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let dkim = lua.create_table()?;
    for (name, algo) in [
        ("rsa_sha256_signer", Algorithm::RsaSha256),
        ("ed25519_signer", Algorithm::Ed25519Sha256),
    ] {
        dkim.set(
            name,
            lua.create_function(move |lua, opts: Value| {
                let func = format!("kumo.dkim.{name}");
                let params: SignerParams = parse_options(lua, &func, opts)?;
                if params.key.is_inline() {
                    crate::kumo::warn_inline_secret(&format!(
                        "{func}{{domain={}, selector={}}}: key",
                        params.domain, params.selector
                    ));
                }
                let signer = make_signer(algo, &params)
                    .map_err(|e| mlua::Error::RuntimeError(format!("{func}: {e}")))?;
                Ok(DkimSignerValue(signer))
            })?,
        )?;
    }
    kumo.set("dkim", dkim)
}

/// Sign `data` and return the DKIM-Signature header to prepend.
pub fn sign(signer: &Signer, data: &[u8]) -> Result<String, String> {
    signer
        .sign(data)
        .map_err(|e| format!("DKIM signing failed: {e}"))
}
