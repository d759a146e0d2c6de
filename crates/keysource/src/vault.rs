//! HashiCorp Vault KV v2 reads, with token or AppRole authentication, a
//! per-secret cache and fail-closed behaviour during an outage.
//!
//! A fetched secret is served from memory for `CACHE_TTL`. After that it is
//! fetched again; if Vault cannot be reached the cached value is still
//! served until `CACHE_TTL + GRACE`, then the secret is dropped and loads
//! fail with a temporary error. Tokens and secrets never appear in errors
//! or logs.

use crate::{Secret, VaultSource};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const CACHE_TTL: Duration = Duration::from_secs(300);
pub const GRACE: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault address missing: set vault_address or VAULT_ADDR")]
    NoAddress,
    #[error("vault token missing: set vault_token, VAULT_TOKEN, or vault_role_id/vault_secret_id")]
    NoToken,
    #[error("vault {what}: {reason}")]
    Config { what: &'static str, reason: String },
    /// Vault could not be reached or answered 5xx: try again later.
    #[error("vault unavailable for {location}: {reason}")]
    Unavailable { location: String, reason: String },
    #[error("vault denied access to {location} (HTTP {status}): check the token's policy")]
    Denied { location: String, status: u16 },
    #[error("vault has no secret at {location}")]
    NotFound { location: String },
    #[error("vault secret {location} has no field {field:?}")]
    MissingField { location: String, field: String },
}

impl VaultError {
    /// Temporary errors defer the work that needed the secret; others are
    /// configuration mistakes.
    pub fn is_temporary(&self) -> bool {
        matches!(self, VaultError::Unavailable { .. })
    }
}

struct Cached {
    value: Secret,
    fetched: Instant,
}

struct Token {
    value: Zeroizing<String>,
    obtained: Instant,
    lease: Option<Duration>,
}

fn secrets() -> &'static Mutex<HashMap<String, Cached>> {
    static S: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn tokens() -> &'static Mutex<HashMap<String, Token>> {
    static T: OnceLock<Mutex<HashMap<String, Token>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn address(v: &VaultSource) -> Result<String, VaultError> {
    v.vault_address
        .clone()
        .or_else(|| std::env::var("VAULT_ADDR").ok())
        .filter(|a| !a.is_empty())
        .map(|a| a.trim_end_matches('/').to_string())
        .ok_or(VaultError::NoAddress)
}

fn client(v: &VaultSource) -> Result<reqwest::blocking::Client, VaultError> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &v.vault_ca_file {
        let pem = std::fs::read(ca).map_err(|e| VaultError::Config {
            what: "vault_ca_file",
            reason: format!("{}: {e}", ca.display()),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| VaultError::Config {
                what: "vault_ca_file",
                reason: format!("{}: {e}", ca.display()),
            })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| VaultError::Config {
        what: "HTTP client",
        reason: e.to_string(),
    })
}

fn unavailable(location: &str, e: impl std::fmt::Display) -> VaultError {
    VaultError::Unavailable {
        location: location.to_string(),
        reason: e.to_string(),
    }
}

/// A transport error with its causes (e.g. "invalid peer certificate:
/// UnknownIssuer"), which reqwest's own message leaves out.
fn transport(location: &str, e: reqwest::Error) -> VaultError {
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        reason.push_str(": ");
        reason.push_str(&c.to_string());
        cause = c.source();
    }
    unavailable(location, reason)
}

/// The token to use: explicit, from the environment, or from an AppRole
/// login (renewed before it expires, re-obtained when renewal fails).
fn token(
    v: &VaultSource,
    addr: &str,
    http: &reqwest::blocking::Client,
) -> Result<Zeroizing<String>, VaultError> {
    if let Some(t) = v
        .vault_token
        .clone()
        .or_else(|| std::env::var("VAULT_TOKEN").ok())
        .filter(|t| !t.is_empty())
    {
        if v.vault_role_id.is_none() {
            return Ok(Zeroizing::new(t));
        }
    }
    let (Some(role), Some(secret)) = (&v.vault_role_id, &v.vault_secret_id) else {
        return Err(VaultError::NoToken);
    };
    let role_id = role.load().map_err(|e| VaultError::Config {
        what: "vault_role_id",
        reason: e.to_string(),
    })?;
    let key = format!("{addr}|{}", String::from_utf8_lossy(role_id.expose()));
    {
        let mut t = lock(tokens());
        if let Some(tok) = t.get(&key) {
            let age = tok.obtained.elapsed();
            match tok.lease {
                Some(lease) if age >= lease * 2 / 3 => {
                    // Renew before expiry; fall through to a fresh login on failure.
                    if let Ok(lease) = renew(addr, http, &tok.value) {
                        let value = tok.value.clone();
                        t.insert(
                            key.clone(),
                            Token {
                                value: value.clone(),
                                obtained: Instant::now(),
                                lease,
                            },
                        );
                        return Ok(value);
                    }
                    t.remove(&key);
                }
                _ => return Ok(tok.value.clone()),
            }
        }
    }
    let secret_id = secret.load().map_err(|e| VaultError::Config {
        what: "vault_secret_id",
        reason: e.to_string(),
    })?;
    let body = serde_json::json!({
        "role_id": String::from_utf8_lossy(role_id.expose()),
        "secret_id": String::from_utf8_lossy(secret_id.expose()),
    });
    let location = format!("{addr}/v1/auth/approle/login");
    let resp = http
        .post(&location)
        .json(&body)
        .send()
        .map_err(|e| transport(&location, e))?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(unavailable(&location, format!("HTTP {status}")));
    }
    if !status.is_success() {
        return Err(VaultError::Denied {
            location,
            status: status.as_u16(),
        });
    }
    let v: serde_json::Value = resp.json().map_err(|e| unavailable(&location, e))?;
    let tok = v["auth"]["client_token"]
        .as_str()
        .ok_or_else(|| unavailable(&location, "no client_token in the AppRole login response"))?;
    let lease = v["auth"]["lease_duration"]
        .as_u64()
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let value = Zeroizing::new(tok.to_string());
    lock(tokens()).insert(
        key,
        Token {
            value: value.clone(),
            obtained: Instant::now(),
            lease,
        },
    );
    Ok(value)
}

fn renew(
    addr: &str,
    http: &reqwest::blocking::Client,
    token: &str,
) -> Result<Option<Duration>, VaultError> {
    let location = format!("{addr}/v1/auth/token/renew-self");
    let resp = http
        .post(&location)
        .header("X-Vault-Token", token)
        .json(&serde_json::json!({}))
        .send()
        .map_err(|e| transport(&location, e))?;
    if !resp.status().is_success() {
        return Err(unavailable(&location, format!("HTTP {}", resp.status())));
    }
    let v: serde_json::Value = resp.json().map_err(|e| unavailable(&location, e))?;
    Ok(v["auth"]["lease_duration"]
        .as_u64()
        .filter(|s| *s > 0)
        .map(Duration::from_secs))
}

fn fetch(v: &VaultSource) -> Result<Secret, VaultError> {
    let addr = address(v)?;
    let http = client(v)?;
    let tok = token(v, &addr, &http)?;
    let location = format!(
        "{addr}/v1/{}/data/{}",
        v.vault_mount.trim_matches('/'),
        v.vault_path.trim_matches('/')
    );
    let resp = http
        .get(&location)
        .header("X-Vault-Token", tok.as_str())
        .send()
        .map_err(|e| transport(&location, e))?;
    let status = resp.status();
    match status.as_u16() {
        200 => {}
        404 => return Err(VaultError::NotFound { location }),
        401 | 403 => {
            return Err(VaultError::Denied {
                location,
                status: status.as_u16(),
            })
        }
        _ => return Err(unavailable(&location, format!("HTTP {status}"))),
    }
    let body: serde_json::Value = resp.json().map_err(|e| unavailable(&location, e))?;
    let field = &body["data"]["data"][&v.vault_key];
    let bytes = match field {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Null => {
            return Err(VaultError::MissingField {
                location,
                field: v.vault_key.clone(),
            });
        }
        other => other.to_string().into_bytes(),
    };
    Ok(Secret::new(bytes))
}

/// Load through the cache (see the module comment for the rules).
pub fn load(v: &VaultSource) -> Result<Secret, VaultError> {
    // The credentials are part of the key: a keysource with a wrong or
    // revoked token must not be served what another one fetched.
    let credentials = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        v.vault_token.hash(&mut h);
        std::env::var("VAULT_TOKEN").ok().hash(&mut h);
        v.vault_role_id.as_ref().map(|r| r.describe()).hash(&mut h);
        h.finish()
    };
    let key = format!(
        "{}|{}|{}|{}|{credentials:x}",
        address(v).unwrap_or_default(),
        v.vault_mount,
        v.vault_path,
        v.vault_key
    );
    if let Some(c) = lock(secrets()).get(&key) {
        if c.fetched.elapsed() < CACHE_TTL {
            return Ok(c.value.clone());
        }
    }
    match fetch(v) {
        Ok(secret) => {
            lock(secrets()).insert(
                key,
                Cached {
                    value: secret.clone(),
                    fetched: Instant::now(),
                },
            );
            Ok(secret)
        }
        Err(e) if e.is_temporary() => {
            let mut cache = lock(secrets());
            match cache.get(&key) {
                Some(c) if c.fetched.elapsed() < CACHE_TTL + GRACE => {
                    tracing::warn!(
                        "serving a cached secret ({}/{}) while Vault is unavailable: {e}",
                        v.vault_mount,
                        v.vault_path
                    );
                    Ok(c.value.clone())
                }
                _ => {
                    // Past the grace period the secret must not linger.
                    cache.remove(&key);
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// Test hook: forget cached secrets and tokens.
pub fn clear_cache() {
    lock(secrets()).clear();
    lock(tokens()).clear();
}

/// Test hook: age every cached secret by `by`.
pub fn age_cache(by: Duration) {
    for c in lock(secrets()).values_mut() {
        c.fetched = c.fetched.checked_sub(by).unwrap_or(c.fetched);
    }
}
