//! The keysource forms of the policy API: a file path, `{ key_data = ... }`
//! or a HashiCorp Vault KV v2 location.

use crate::Secret;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum KeySource {
    File(PathBuf),
    Data(InlineData),
    Vault(VaultSource),
}

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InlineData {
    pub key_data: String,
}

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VaultSource {
    pub vault_mount: String,
    pub vault_path: String,
    #[serde(default)]
    pub vault_address: Option<String>,
    #[serde(default)]
    pub vault_token: Option<String>,
    #[serde(default = "default_vault_key")]
    pub vault_key: String,
    /// **Ironpost:** CA bundle (PEM file) for Vault's TLS certificate.
    #[serde(default)]
    pub vault_ca_file: Option<PathBuf>,
    /// **Ironpost:** AppRole login instead of a static token; both are
    /// keysources themselves.
    #[serde(default)]
    pub vault_role_id: Option<Box<KeySource>>,
    #[serde(default)]
    pub vault_secret_id: Option<Box<KeySource>>,
}

fn default_vault_key() -> String {
    "key".to_string()
}

// Debug output names where a secret lives, never the secret or a token.
impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error("cannot read key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("vault keysource {mount}/{path}: {source}")]
    Vault {
        mount: String,
        path: String,
        source: crate::vault::VaultError,
    },
}

impl KeySourceError {
    /// A temporary failure (Vault unreachable past the grace period): the
    /// message that needed the secret should be retried (`451 4.3.0`).
    pub fn is_temporary(&self) -> bool {
        matches!(self, KeySourceError::Vault { source, .. } if source.is_temporary())
    }
}

impl KeySource {
    /// A description safe for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(p) => format!("file {}", p.display()),
            KeySource::Data(_) => "inline key_data".to_string(),
            KeySource::Vault(v) => format!(
                "vault {}/{} field {}",
                v.vault_mount, v.vault_path, v.vault_key
            ),
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(self, KeySource::Data(_))
    }

    /// Fetch the secret. Blocking: call from a blocking context.
    pub fn load(&self) -> Result<Secret, KeySourceError> {
        match self {
            KeySource::File(path) => {
                std::fs::read(path)
                    .map(Secret::new)
                    .map_err(|source| KeySourceError::File {
                        path: path.clone(),
                        source,
                    })
            }
            KeySource::Data(d) => Ok(Secret::new(d.key_data.as_bytes().to_vec())),
            KeySource::Vault(v) => crate::vault::load(v).map_err(|source| KeySourceError::Vault {
                mount: v.vault_mount.clone(),
                path: v.vault_path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse_and_debug_hides_secrets() {
        let f: KeySource = serde_json::from_str(r#""/etc/key.pem""#).unwrap();
        assert_eq!(f, KeySource::File("/etc/key.pem".into()));
        let d: KeySource = serde_json::from_str(r#"{"key_data":"tiger"}"#).unwrap();
        assert!(d.is_inline());
        assert_eq!(format!("{d:?}"), "inline key_data");
        assert_eq!(d.load().unwrap().expose(), b"tiger");
        let v: KeySource = serde_json::from_str(
            r#"{"vault_mount":"secret","vault_path":"dkim/x","vault_token":"hvs.SECRET"}"#,
        )
        .unwrap();
        assert!(!format!("{v:?}").contains("hvs"));
        assert!(serde_json::from_str::<KeySource>(r#"{"key_dta":"x"}"#).is_err());
    }
}
