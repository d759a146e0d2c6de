//! The DKIM signer: configuration, validation and signing through mail-auth.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use mail_auth::common::crypto::{
    Algorithm as MailAuthAlgorithm, Sha256, SigningKey as MailAuthSigningKey,
};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};

use crate::error::{DkimError, Result};
use crate::key::{Algorithm, KeyPair, SigningKey};
use crate::{headers, names};

/// The headers signed when the configuration lists none.
pub const DEFAULT_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Cc",
    "Reply-To",
    "In-Reply-To",
    "References",
];

/// Header or body canonicalization (RFC 6376 section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Canon {
    #[default]
    Relaxed,
    Simple,
}

impl FromStr for Canon {
    type Err = DkimError;

    /// `"Relaxed"` or `"Simple"`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("relaxed") {
            Ok(Canon::Relaxed)
        } else if s.eq_ignore_ascii_case("simple") {
            Ok(Canon::Simple)
        } else {
            Err(DkimError::config(format!(
                "unknown canonicalization {s:?}; expected \"Relaxed\" or \"Simple\""
            )))
        }
    }
}

impl fmt::Display for Canon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Canon::Relaxed => "relaxed",
            Canon::Simple => "simple",
        })
    }
}

impl From<Canon> for Canonicalization {
    fn from(c: Canon) -> Self {
        match c {
            Canon::Relaxed => Canonicalization::Relaxed,
            Canon::Simple => Canonicalization::Simple,
        }
    }
}

/// What to sign and how. Field names follow the policy API
/// (`kumo.dkim.rsa_sha256_signer{...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerConfig {
    /// `d=`: the signing domain, in A-label (ASCII) form.
    pub domain: String,
    /// `s=`: the selector.
    pub selector: String,
    /// Header field names to sign; empty means [`DEFAULT_HEADERS`]. Must
    /// include `From`. Every occurrence of a listed name is signed, and a
    /// listed name that is absent is signed as absent (so it cannot be added).
    pub headers: Vec<String>,
    pub header_canonicalization: Canon,
    pub body_canonicalization: Canon,
    /// Sign each listed header that is present once more than it occurs, so
    /// that another instance cannot be added in transit.
    pub over_sign: bool,
    /// `x=`: the signature expires this many seconds after signing.
    pub expiration: Option<u64>,
}

impl SignerConfig {
    /// A configuration with the defaults: default headers, relaxed/relaxed,
    /// no over-signing, no expiration.
    pub fn new(domain: impl Into<String>, selector: impl Into<String>) -> Self {
        SignerConfig {
            domain: domain.into(),
            selector: selector.into(),
            headers: Vec::new(),
            header_canonicalization: Canon::Relaxed,
            body_canonicalization: Canon::Relaxed,
            over_sign: false,
            expiration: None,
        }
    }
}

/// A ready-to-use signer: a validated configuration and a parsed key.
/// `Send + Sync`; `sign` is a plain CPU-bound function (run it on a blocking
/// thread from async code).
#[derive(Debug, Clone)]
pub struct Signer {
    config: SignerConfig,
    key: SigningKey,
}

/// Adapter so a shared key can be used by a per-message mail-auth signer.
struct SharedKey(Arc<KeyPair>, Algorithm);

impl MailAuthSigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match &*self.0 {
            // Streams into the hash; no copy of the signed headers.
            KeyPair::Ed25519(key) => key.sign(input),
            key => {
                let mut data = Vec::with_capacity(512);
                input.write(&mut data);
                key.sign(self.1, &data).map_err(|e| {
                    mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                        e.to_string(),
                    ))
                })
            }
        }
    }

    fn algorithm(&self) -> MailAuthAlgorithm {
        match self.1 {
            Algorithm::RsaSha256 => MailAuthAlgorithm::RsaSha256,
            Algorithm::Ed25519Sha256 => MailAuthAlgorithm::Ed25519Sha256,
        }
    }
}

fn validate_header_name(name: &str) -> Result<()> {
    // RFC 5322 field-name: printable US-ASCII except colon.
    if name.is_empty()
        || name.len() > 128
        || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
    {
        return Err(DkimError::config(format!(
            "invalid header name {:?} in the signed header list",
            name.escape_debug().to_string()
        )));
    }
    Ok(())
}

impl Signer {
    /// Validates the configuration and pairs it with a key.
    pub fn new(mut config: SignerConfig, key: SigningKey) -> Result<Signer> {
        names::validate_domain(&config.domain)?;
        names::validate_selector(&config.selector)?;

        if config.headers.is_empty() {
            config.headers = DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect();
        }
        let mut headers: Vec<String> = Vec::with_capacity(config.headers.len());
        for name in &config.headers {
            let name = name.trim();
            validate_header_name(name)?;
            // A name listed twice would only add null entries to h=.
            if !headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                headers.push(name.to_string());
            }
        }
        if !headers.iter().any(|h| h.eq_ignore_ascii_case("From")) {
            return Err(DkimError::config(
                "the signed header list must include From (RFC 6376 section 5.4)",
            ));
        }
        config.headers = headers;

        if config.expiration == Some(0) {
            return Err(DkimError::config(
                "expiration must be a positive number of seconds",
            ));
        }
        Ok(Signer { config, key })
    }

    /// The validated configuration (with the header list filled in).
    pub fn config(&self) -> &SignerConfig {
        &self.config
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The `h=` list for this message, before mail-auth expands it.
    ///
    /// mail-auth signs every occurrence of a listed name and adds each listed
    /// name it did not match once more as absent. A name is matched by its
    /// first position in the list only, so listing a name twice yields
    /// (occurrences + 1) entries: exactly the over-signing we want.
    fn header_template(&self, message: &[u8]) -> Result<Vec<String>> {
        let names = &self.config.headers;
        let mut counts = vec![0usize; names.len()];
        for name in headers::header_names(message) {
            if let Some(i) = names
                .iter()
                .position(|h| name.eq_ignore_ascii_case(h.as_bytes()))
            {
                counts[i] += 1;
            }
        }
        let from_present = names
            .iter()
            .zip(&counts)
            .any(|(name, count)| name.eq_ignore_ascii_case("From") && *count > 0);
        if !from_present {
            return Err(DkimError::Message(
                "the message has no From header field".into(),
            ));
        }
        let mut template = Vec::with_capacity(names.len() * 2);
        for (name, count) in names.iter().zip(counts) {
            template.push(name.clone());
            if self.config.over_sign && count > 0 {
                template.push(name.clone());
            }
        }
        Ok(template)
    }

    /// Signs `message` (the complete message as it will be sent, CRLF line
    /// endings) and returns the `DKIM-Signature: ...\r\n` header field,
    /// folded, ready to prepend.
    pub fn sign(&self, message: &[u8]) -> Result<String> {
        let template = self.header_template(message)?;
        let signer = DkimSigner::from_key(SharedKey(self.key.inner.clone(), self.key.algorithm()))
            .domain(self.config.domain.as_str())
            .selector(self.config.selector.as_str())
            .headers(template)
            .header_canonicalization(self.config.header_canonicalization.into())
            .body_canonicalization(self.config.body_canonicalization.into());
        let signer = match self.config.expiration {
            Some(seconds) => signer.expiration(seconds),
            None => signer,
        };
        let signature = signer
            .sign(message)
            .map_err(|err| DkimError::Sign(err.to_string()))?;
        Ok(signature.to_header())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn signer_is_send_and_sync() {
        assert_send_sync::<Signer>();
        assert_send_sync::<SigningKey>();
    }

    #[test]
    fn canon_parses() {
        assert_eq!("Relaxed".parse::<Canon>().unwrap(), Canon::Relaxed);
        assert_eq!("simple".parse::<Canon>().unwrap(), Canon::Simple);
        assert!("strict".parse::<Canon>().is_err());
        assert_eq!(Canon::default(), Canon::Relaxed);
    }
}
