//! Private key parsing: RSA (PKCS#1 or PKCS#8, PEM or DER) and Ed25519
//! (PKCS#8 v1 or v2, PEM or DER).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::signature::RsaKeyPair;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use rsa::pkcs8::der::asn1::ObjectIdentifier;
use rsa::pkcs8::{EncodePublicKey, PrivateKeyInfo};
use zeroize::Zeroizing;

use crate::error::{DkimError, Result};
use crate::pem;

/// A DKIM signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `a=rsa-sha256`, `k=rsa`.
    RsaSha256,
    /// `a=ed25519-sha256`, `k=ed25519` (RFC 8463).
    Ed25519Sha256,
}

impl Algorithm {
    /// The `k=` tag value of the DNS key record: `rsa` or `ed25519`.
    pub fn k_tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }

    /// The `a=` tag value of the signature: `rsa-sha256` or `ed25519-sha256`.
    pub fn a_tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    pub(crate) fn key_noun(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "an RSA",
            Algorithm::Ed25519Sha256 => "an Ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.a_tag())
    }
}

impl FromStr for Algorithm {
    type Err = DkimError;

    /// Accepts `rsa`, `sha256` (the dkim_sign helper's spelling),
    /// `rsa-sha256`, `ed25519` and `ed25519-sha256`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "sha256" | "rsa-sha256" | "rsa_sha256" => Ok(Algorithm::RsaSha256),
            "ed25519" | "ed25519-sha256" | "ed25519_sha256" => Ok(Algorithm::Ed25519Sha256),
            _ => Err(DkimError::config(format!(
                "unknown DKIM algorithm {s:?}; expected \"rsa\" (\"sha256\") or \"ed25519\""
            ))),
        }
    }
}

/// A parsed private key, ready to sign. Cheap to clone (shared), `Send` and
/// `Sync`. Its `Debug` output never shows key material.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    pub(crate) inner: Arc<KeyPair>,
    /// The `p=` value in binary form: SubjectPublicKeyInfo DER for RSA, the
    /// raw 32-byte key for Ed25519.
    public_key: Arc<[u8]>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// The key material itself. RSA signs with aws-lc-rs, about 1.7x faster
/// than ring on x86-64 for RSA-2048 (ring has no AVX-512 path);
/// Ed25519 stays on mail-auth's ring key, which is fast already.
pub(crate) enum KeyPair {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519Key),
    /// Held by another process (the signer); only its answers come here.
    Remote(Arc<dyn RemoteSign>),
}

/// A key that lives elsewhere: it is handed the exact bytes DKIM or ARC
/// signs (for Ed25519, before the SHA-256 that RFC 8463 applies) and
/// returns the signature. Whoever implements it never gives out the key.
pub trait RemoteSign: Send + Sync {
    /// The signature over `data`, or why there is none. The reason is
    /// logged and the message deferred, so it must not contain secrets.
    fn sign(&self, algorithm: Algorithm, data: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

impl KeyPair {
    /// Signs `data` as DKIM does: RSASSA-PKCS1-v1_5 over SHA-256 of it, or
    /// Ed25519 over SHA-256 of it.
    pub(crate) fn sign(&self, algorithm: Algorithm, data: &[u8]) -> Result<Vec<u8>> {
        use mail_auth::common::crypto::SigningKey as _;
        match self {
            KeyPair::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    data,
                    &mut signature,
                )
                .map_err(|_| DkimError::Sign("RSA signing failed".into()))?;
                Ok(signature)
            }
            KeyPair::Ed25519(key) => key.sign(data).map_err(|e| DkimError::Sign(e.to_string())),
            KeyPair::Remote(remote) => remote.sign(algorithm, data).map_err(DkimError::Sign),
        }
    }
}

/// What the DER bytes turned out to be.
enum KeyFormat {
    Pkcs1Rsa,
    Pkcs8,
    EncryptedPkcs8,
}

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const OID_X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
const OID_X448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.111");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");

fn describe_oid(oid: &ObjectIdentifier) -> &'static str {
    match *oid {
        OID_RSA => "an RSA key",
        OID_RSA_PSS => "an RSA-PSS key",
        OID_ED25519 => "an Ed25519 key",
        OID_ED448 => "an Ed448 key",
        OID_X25519 => "an X25519 key",
        OID_X448 => "an X448 key",
        OID_EC => "an EC (ECDSA) key",
        OID_DSA => "a DSA key",
        _ => "a key of an unknown type",
    }
}

/// Reads one DER tag-length header; returns (tag, content, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Sniffs the structure of a DER private key without interpreting secrets.
fn sniff_der(der: &[u8]) -> Result<KeyFormat> {
    const NOT_A_KEY: &str =
        "not a PEM or DER private key (expected PKCS#8 \"BEGIN PRIVATE KEY\" or PKCS#1 \"BEGIN RSA PRIVATE KEY\")";
    let (tag, body, _) = der_tlv(der).ok_or_else(|| DkimError::invalid_key(NOT_A_KEY))?;
    if tag != 0x30 {
        return Err(DkimError::invalid_key(NOT_A_KEY));
    }
    let (first, _, rest) = der_tlv(body).ok_or_else(|| DkimError::invalid_key(NOT_A_KEY))?;
    let (second, _, _) = der_tlv(rest).ok_or_else(|| DkimError::invalid_key(NOT_A_KEY))?;
    match (first, second) {
        // version INTEGER, then AlgorithmIdentifier SEQUENCE
        (0x02, 0x30) => Ok(KeyFormat::Pkcs8),
        // version INTEGER, then modulus INTEGER
        (0x02, 0x02) => Ok(KeyFormat::Pkcs1Rsa),
        // EncryptionAlgorithmIdentifier SEQUENCE, then encryptedData OCTET STRING
        (0x30, 0x04) => Ok(KeyFormat::EncryptedPkcs8),
        (0x30, 0x30) => Err(DkimError::invalid_key(
            "this looks like a certificate; the signer needs the private key",
        )),
        _ => Err(DkimError::invalid_key(NOT_A_KEY)),
    }
}

/// Picks the private key block out of PEM input.
fn select_pem_block(blocks: Vec<pem::PemBlock>) -> Result<Zeroizing<Vec<u8>>> {
    let mut other: Option<String> = None;
    for block in blocks {
        if block.encrypted_header {
            return Err(DkimError::EncryptedKey);
        }
        match block.label.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" => return Ok(block.der),
            "ENCRYPTED PRIVATE KEY" => return Err(DkimError::EncryptedKey),
            "EC PRIVATE KEY" => return Err(wrong_any("an EC (ECDSA) key")),
            "DSA PRIVATE KEY" => return Err(wrong_any("a DSA key")),
            "OPENSSH PRIVATE KEY" => {
                return Err(DkimError::invalid_key(
                    "the OpenSSH private key format is not supported; use a PKCS#8 PEM key (\"BEGIN PRIVATE KEY\")",
                ))
            }
            label => {
                if other.is_none() {
                    other = Some(label.to_string());
                }
            }
        }
    }
    Err(match other.as_deref() {
        Some("PUBLIC KEY") | Some("RSA PUBLIC KEY") => {
            DkimError::invalid_key("this is a public key; the signer needs the private key")
        }
        Some("CERTIFICATE") => {
            DkimError::invalid_key("this is a certificate; the signer needs the private key")
        }
        Some(label) => match pem::printable_label(label) {
            Some(label) => DkimError::invalid_key(format!(
                "no private key found in the PEM input (found a \"{label}\" block)"
            )),
            None => DkimError::invalid_key("no private key found in the PEM input"),
        },
        None => DkimError::invalid_key("corrupt PEM: no \"-----BEGIN ...-----\" block found"),
    })
}

/// A wrong-key-type error whose expected algorithm is filled in later.
fn wrong_any(found: &'static str) -> DkimError {
    DkimError::WrongKeyType {
        // Placeholder, replaced in `from_bytes` with the requested algorithm.
        expected: Algorithm::RsaSha256,
        found,
    }
}

fn rejected(algo: Algorithm, err: impl fmt::Display) -> DkimError {
    // The libraries' rejection reasons are static words such as
    // "InvalidEncoding" or "TooSmall"; they never contain key bytes.
    let reason = err.to_string();
    let reason = reason
        .strip_prefix("Cryptography layer error: ")
        .unwrap_or(&reason);
    match (algo, reason) {
        (Algorithm::RsaSha256, "TooSmall") => DkimError::invalid_key(
            "the RSA key is too small; keys of 2048 to 8192 bits are accepted",
        ),
        (Algorithm::RsaSha256, "TooLarge") => DkimError::invalid_key(
            "the RSA key is too large; keys of 2048 to 8192 bits are accepted",
        ),
        _ => DkimError::invalid_key(format!(
            "the {} key was rejected ({reason})",
            match algo {
                Algorithm::RsaSha256 => "RSA",
                Algorithm::Ed25519Sha256 => "Ed25519",
            }
        )),
    }
}

impl SigningKey {
    /// Parses a private key.
    ///
    /// RSA: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`),
    /// PEM or DER, 2048 to 8192 bits. Ed25519: PKCS#8, PEM or DER, both the
    /// v1 form OpenSSL writes and the v2 form that also carries the public key.
    /// Encrypted keys are refused. Copies of the decoded key made here are
    /// zeroized; the caller owns (and should zeroize) `bytes`.
    pub fn from_bytes(algo: Algorithm, bytes: &[u8]) -> Result<SigningKey> {
        Self::parse(algo, bytes).map_err(|err| match err {
            DkimError::WrongKeyType { found, .. } => DkimError::WrongKeyType {
                expected: algo,
                found,
            },
            other => other,
        })
    }

    fn parse(algo: Algorithm, bytes: &[u8]) -> Result<SigningKey> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(DkimError::invalid_key("the key is empty"));
        }
        let owned: Zeroizing<Vec<u8>>;
        let (format, der): (KeyFormat, &[u8]) = if pem::looks_like_pem(bytes) {
            owned = select_pem_block(pem::parse_blocks(bytes)?)?;
            // The label picked the block; the structure decides the format
            // (and catches an encrypted key under a plain label).
            (sniff_der(&owned)?, &owned[..])
        } else if bytes.first() == Some(&0x30) {
            (sniff_der(bytes)?, bytes)
        } else {
            return Err(DkimError::invalid_key(
                "not a PEM or DER private key (expected PKCS#8 \"BEGIN PRIVATE KEY\" or PKCS#1 \"BEGIN RSA PRIVATE KEY\")",
            ));
        };

        let inner = match format {
            KeyFormat::EncryptedPkcs8 => return Err(DkimError::EncryptedKey),
            KeyFormat::Pkcs1Rsa => match algo {
                Algorithm::RsaSha256 => {
                    KeyPair::Rsa(RsaKeyPair::from_der(der).map_err(|e| rejected(algo, e))?)
                }
                Algorithm::Ed25519Sha256 => return Err(wrong_any("an RSA key")),
            },
            KeyFormat::Pkcs8 => {
                let info = PrivateKeyInfo::try_from(der).map_err(|_| {
                    DkimError::invalid_key("corrupt PKCS#8 structure (not a valid private key)")
                })?;
                let oid = info.algorithm.oid;
                match (algo, oid) {
                    (Algorithm::RsaSha256, OID_RSA) => {
                        KeyPair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| rejected(algo, e))?)
                    }
                    (Algorithm::Ed25519Sha256, OID_ED25519) => KeyPair::Ed25519(
                        // Accepts v1 (seed only) and v2 (seed and public key;
                        // the public key is checked against the seed).
                        Ed25519Key::from_pkcs8_maybe_unchecked_der(der)
                            .map_err(|e| rejected(algo, e))?,
                    ),
                    (_, oid) => return Err(wrong_any(describe_oid(&oid))),
                }
            }
        };

        let public_key: Arc<[u8]> = match &inner {
            KeyPair::Rsa(key) => {
                // aws-lc-rs gives the PKCS#1 RSAPublicKey; DNS records publish
                // the SubjectPublicKeyInfo form (`openssl rsa -pubout`).
                use aws_lc_rs::signature::KeyPair as _;
                let pkcs1 = key.public_key().as_ref();
                let parts = rsa::pkcs1::RsaPublicKey::try_from(pkcs1)
                    .map_err(|_| DkimError::invalid_key("cannot derive the RSA public key"))?;
                let n = rsa::BigUint::from_bytes_be(parts.modulus.as_bytes());
                let e = rsa::BigUint::from_bytes_be(parts.public_exponent.as_bytes());
                // The limits ring enforced, kept now that aws-lc-rs parses:
                // 2048 to 8192 bits, and no small public exponent (e = 3
                // keys have a history of signature forgeries).
                if !(2048..=8192).contains(&n.bits()) {
                    return Err(rejected(
                        algo,
                        if n.bits() < 2048 {
                            "TooSmall"
                        } else {
                            "TooLarge"
                        },
                    ));
                }
                if e < rsa::BigUint::from(65537u32) {
                    return Err(DkimError::invalid_key(
                        "the RSA public exponent is below 65537; generate a new key",
                    ));
                }
                let public = rsa::RsaPublicKey::new_with_max_size(n, e, 8192)
                    .map_err(|_| DkimError::invalid_key("cannot derive the RSA public key"))?;
                let spki = public
                    .to_public_key_der()
                    .map_err(|_| DkimError::invalid_key("cannot encode the RSA public key"))?;
                Arc::from(spki.as_bytes())
            }
            KeyPair::Ed25519(key) => Arc::from(key.public_key()),
            KeyPair::Remote(_) => unreachable!("parsed keys are local"),
        };

        Ok(SigningKey {
            algorithm: algo,
            inner: Arc::new(inner),
            public_key,
        })
    }

    /// A key held by another process: signatures come from `remote`, and
    /// this side has no key material (its public key is unknown here, so
    /// [`SigningKey::public_key_der`] is empty).
    pub fn remote(algorithm: Algorithm, remote: Arc<dyn RemoteSign>) -> SigningKey {
        SigningKey {
            algorithm,
            inner: Arc::new(KeyPair::Remote(remote)),
            public_key: Arc::from(&[][..]),
        }
    }

    /// Whether the key material is held elsewhere.
    pub fn is_remote(&self) -> bool {
        matches!(*self.inner, KeyPair::Remote(_))
    }

    /// The signature over `data`, exactly as a DKIM or ARC signer would
    /// compute it: what the signer process answers a request with.
    pub fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.inner.sign(self.algorithm, data)
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key as published in the DNS record's `p=` tag, in binary:
    /// SubjectPublicKeyInfo DER for RSA, the raw 32 bytes for Ed25519.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key
    }

    /// The `p=` value: base64 of [`SigningKey::public_key_der`].
    pub fn public_key_b64(&self) -> String {
        STANDARD.encode(&self.public_key)
    }
}

/// The base64 `p=` value for a private key (PEM or DER).
pub fn public_key_from_private(algo: Algorithm, private_key: &[u8]) -> Result<String> {
    Ok(SigningKey::from_bytes(algo, private_key)?.public_key_b64())
}
