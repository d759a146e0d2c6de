//! Errors. No variant ever carries key material: messages are built from
//! fixed strings, names the operator chose (domain, selector, path) and the
//! static descriptions of the cryptography libraries.

use crate::Algorithm;

/// Everything that can go wrong while parsing keys, signing or handling key
/// files and DNS records.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY` or a legacy
    /// `Proc-Type: 4,ENCRYPTED` PEM).
    #[error("encrypted keys are not supported; store the key unencrypted in a protected file or in Vault")]
    EncryptedKey,

    /// The key parsed, but it is for another algorithm.
    #[error("wrong key type: the {expected} signer needs {} key, but this is {found}", expected.key_noun())]
    WrongKeyType {
        expected: Algorithm,
        /// What the key is, e.g. "an Ed25519 key" or "an EC (ECDSA) key".
        found: &'static str,
    },

    /// The bytes are not a well-formed PEM or DER private key.
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// The signer configuration is not acceptable.
    #[error("invalid DKIM signer configuration: {0}")]
    Config(String),

    /// The message cannot be signed as it is.
    #[error("cannot sign message: {0}")]
    Message(String),

    /// The signing operation itself failed.
    #[error("DKIM signing failed: {0}")]
    Sign(String),

    /// Key generation failed.
    #[error("key generation failed: {0}")]
    KeyGen(String),

    /// A published DKIM TXT record could not be understood.
    #[error("invalid DKIM DNS record: {0}")]
    Record(String),

    /// Reading or writing a key file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DkimError {
    pub(crate) fn invalid_key(msg: impl Into<String>) -> Self {
        DkimError::InvalidKey(msg.into())
    }

    pub(crate) fn config(msg: impl Into<String>) -> Self {
        DkimError::Config(msg.into())
    }
}

/// Result alias for this crate.
pub type Result<T, E = DkimError> = std::result::Result<T, E>;
