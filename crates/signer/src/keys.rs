//! The signer's keys: which ones it agrees to serve, and the loaded keys
//! kept for their TTL.
//!
//! The network process names a key by where it is; if that process is
//! owned by an attacker, the name is attacker-chosen. A Vault key read
//! with the signer's own credentials may only be fetched from the signer's
//! own Vault address: its token is never sent elsewhere. When the signer
//! runs as a user of its own, it can read files the network process
//! cannot, so a file key must then lie (after resolving links) under one
//! of the key directories. Under one user for both, the network process
//! could read any such file itself, so a directory rule would protect
//! nothing and only break policies; paths must still be absolute.

use crate::protocol::{Algo, KeyRef};
use ironpost_dkim::SigningKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the signer admits.
#[derive(Debug, Clone, Default)]
pub struct KeyPolicy {
    /// Canonical directories under which file keys may be read.
    pub key_dirs: Vec<PathBuf>,
    /// The Vault address of the signer's environment (`VAULT_ADDR`).
    pub vault_addr: Option<String>,
    /// Whether file keys are confined to `key_dirs` (the signer has a user
    /// of its own).
    pub confine_files: bool,
}

/// Why a request is refused (not allowed), or failed (allowed, not done).
#[derive(Debug)]
pub enum KeyError {
    Refused(String),
    Failed { temporary: bool, reason: String },
}

impl KeyPolicy {
    /// `Ok` when `key` is one the signer serves.
    pub fn admit(&self, key: &KeyRef) -> Result<(), KeyError> {
        match key {
            KeyRef::File(p) => self.admit_file(p),
            KeyRef::Vault(v) => {
                if v.token.is_none() {
                    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
                    match (&v.address, &self.vault_addr) {
                        (None, _) => {}
                        (Some(a), Some(ours)) if norm(a) == norm(ours) => {}
                        (Some(a), _) => {
                            return Err(KeyError::Refused(format!(
                                "vault {}/{}: address {a} is not the signer's VAULT_ADDR, and the signer's credentials go nowhere else",
                                v.mount, v.path
                            )))
                        }
                    }
                }
                for k in [&v.role_id, &v.secret_id].into_iter().flatten() {
                    self.admit(k)?;
                }
                Ok(())
            }
        }
    }

    fn admit_file(&self, path: &Path) -> Result<(), KeyError> {
        if !path.is_absolute() {
            return Err(KeyError::Refused(format!(
                "key file {}: not an absolute path",
                path.display()
            )));
        }
        if !self.confine_files {
            return Ok(());
        }
        let real = path.canonicalize().map_err(|e| KeyError::Failed {
            temporary: false,
            reason: format!("key file {}: {e}", path.display()),
        })?;
        if self.key_dirs.iter().any(|d| real.starts_with(d)) {
            Ok(())
        } else {
            Err(KeyError::Refused(format!(
                "key file {} is outside the signer's key directories ({}); add its directory with --signer-key-dir",
                path.display(),
                self.key_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

struct Cached {
    key: SigningKey,
    loaded: Instant,
    ttl: Duration,
}

/// Keys loaded on first use and dropped when their TTL is over, so a key
/// rotated in Vault or on disk is picked up and none outlives its TTL.
#[derive(Default)]
pub struct KeyCache {
    keys: HashMap<(KeyRef, Algo), Cached>,
}

impl KeyCache {
    pub fn get(&mut self, key: &KeyRef, algo: Algo, ttl: Duration) -> Result<SigningKey, KeyError> {
        self.keys.retain(|_, c| c.loaded.elapsed() < c.ttl);
        if let Some(c) = self.keys.get(&(key.clone(), algo)) {
            return Ok(c.key.clone());
        }
        let material = key.to_source().load().map_err(|e| KeyError::Failed {
            temporary: e.is_temporary(),
            reason: e.to_string(),
        })?;
        let signing = SigningKey::from_bytes(algo.into(), material.expose()).map_err(|e| {
            KeyError::Failed {
                temporary: false,
                reason: format!("DKIM key {}: {e}", key.describe()),
            }
        })?;
        self.keys.insert(
            (key.clone(), algo),
            Cached {
                key: signing.clone(),
                loaded: Instant::now(),
                ttl,
            },
        );
        Ok(signing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::VaultRef;

    fn vault(address: Option<&str>, token: Option<&str>) -> KeyRef {
        KeyRef::Vault(VaultRef {
            mount: "secret".into(),
            path: "dkim/x".into(),
            key: "key".into(),
            address: address.map(Into::into),
            token: token.map(Into::into),
            ca_file: None,
            role_id: None,
            secret_id: None,
        })
    }

    #[test]
    fn files_only_under_the_key_directories() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(keys.join("a.key"), "x").unwrap();
        std::fs::write(dir.path().join("other.key"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("other.key"), keys.join("link.key")).unwrap();
        let p = KeyPolicy {
            key_dirs: vec![keys.canonicalize().unwrap()],
            vault_addr: None,
            confine_files: true,
        };
        assert!(p.admit(&KeyRef::File(keys.join("a.key"))).is_ok());
        for bad in [
            dir.path().join("other.key"),
            keys.join("link.key"),
            keys.join("../other.key"),
            PathBuf::from("keys/a.key"),
        ] {
            assert!(
                matches!(
                    p.admit(&KeyRef::File(bad.clone())),
                    Err(KeyError::Refused(_))
                ),
                "{}",
                bad.display()
            );
        }
        // One user for both processes: any absolute path.
        let open = KeyPolicy {
            confine_files: false,
            ..p
        };
        assert!(open
            .admit(&KeyRef::File(dir.path().join("other.key")))
            .is_ok());
        assert!(open.admit(&KeyRef::File("keys/a.key".into())).is_err());
    }

    #[test]
    fn the_signers_token_goes_only_to_its_vault() {
        let p = KeyPolicy {
            key_dirs: vec![],
            vault_addr: Some("https://vault.example:8200".into()),
            confine_files: true,
        };
        assert!(p.admit(&vault(None, None)).is_ok());
        assert!(p
            .admit(&vault(Some("https://VAULT.example:8200/"), None))
            .is_ok());
        assert!(matches!(
            p.admit(&vault(Some("https://evil.example"), None)),
            Err(KeyError::Refused(_))
        ));
        // A token the policy names may go where the policy says.
        assert!(p
            .admit(&vault(Some("https://other.example"), Some("t")))
            .is_ok());
    }
}
