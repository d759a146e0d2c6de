//! Key tooling behind `ironpost dkim keygen` and `ironpost dkim verify-dns`.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{DkimError, Result};
use crate::key::{Algorithm, SigningKey};
use crate::{names, pem};

/// Smallest and largest RSA key sizes `generate` accepts.
pub const RSA_BITS_MIN: usize = 2048;
pub const RSA_BITS_MAX: usize = 4096;

/// PKCS#8 v1 prefix for an Ed25519 private key (RFC 8410): SEQUENCE, version
/// 0, AlgorithmIdentifier id-Ed25519, OCTET STRING { OCTET STRING (32) }.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Generates a new private key.
///
/// Returns the private key as PKCS#8 PEM (in a buffer zeroized on drop) and
/// the base64 public key for the DNS record's `p=` tag. `bits` is the RSA
/// modulus size (2048 to 4096); it is ignored for Ed25519. The Ed25519 key is
/// written in the PKCS#8 v1 form OpenSSL writes, so every tool can read it.
pub fn generate(algo: Algorithm, bits: usize) -> Result<(Zeroizing<Vec<u8>>, String)> {
    let pem: Zeroizing<Vec<u8>> = match algo {
        Algorithm::RsaSha256 => {
            if !(RSA_BITS_MIN..=RSA_BITS_MAX).contains(&bits) {
                return Err(DkimError::KeyGen(format!(
                    "RSA key size must be between {RSA_BITS_MIN} and {RSA_BITS_MAX} bits, not {bits}"
                )));
            }
            // RsaPrivateKey zeroizes itself on drop.
            let key = rsa::RsaPrivateKey::new(&mut OsRng, bits)
                .map_err(|e| DkimError::KeyGen(format!("RSA key generation: {e}")))?;
            let text = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| DkimError::KeyGen("cannot encode the RSA key as PKCS#8".into()))?;
            Zeroizing::new(text.as_bytes().to_vec())
        }
        Algorithm::Ed25519Sha256 => {
            let mut der = Zeroizing::new(Vec::with_capacity(48));
            der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
            let mut seed = Zeroizing::new([0u8; 32]);
            OsRng
                .try_fill_bytes(&mut seed[..])
                .map_err(|e| DkimError::KeyGen(format!("system random generator: {e}")))?;
            der.extend_from_slice(&seed[..]);
            pem::encode("PRIVATE KEY", &der)
        }
    };
    // Parse it back: proves the signing library accepts what we wrote.
    let public = SigningKey::from_bytes(algo, &pem)?.public_key_b64();
    Ok((pem, public))
}

/// A DKIM key record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// `S._domainkey.D` (no trailing dot).
    pub name: String,
    /// The TXT record's character strings, each at most 255 bytes; their
    /// concatenation is the record value.
    pub txt_strings: Vec<String>,
}

impl DnsRecord {
    /// The record value: the strings concatenated.
    pub fn txt_value(&self) -> String {
        self.txt_strings.concat()
    }

    /// A BIND zone file line:
    /// `S._domainkey.D. IN TXT "v=DKIM1; k=rsa; p=..." "..."`.
    pub fn zone_line(&self) -> String {
        let mut line = format!("{}. IN TXT", self.name);
        for s in &self.txt_strings {
            // The content is "v=DKIM1; k=...; p=<base64>": no quote or
            // backslash can occur, so no escaping is needed.
            line.push_str(" \"");
            line.push_str(s);
            line.push('"');
        }
        line
    }
}

/// Builds the DNS TXT record for a public key (`p=` value in base64).
pub fn dns_record(
    domain: &str,
    selector: &str,
    algo: Algorithm,
    public_b64: &str,
) -> Result<DnsRecord> {
    names::validate_domain(domain)?;
    names::validate_selector(selector)?;
    let public = STANDARD
        .decode(public_b64.trim())
        .map_err(|_| DkimError::config("the public key is not valid base64"))?;
    if algo == Algorithm::Ed25519Sha256 && public.len() != 32 {
        return Err(DkimError::config("an Ed25519 public key is 32 bytes long"));
    }
    let value = format!(
        "v=DKIM1; k={}; p={}",
        algo.k_tag(),
        STANDARD.encode(&public)
    );
    // ASCII only, so splitting on byte boundaries is safe.
    let txt_strings = value
        .as_bytes()
        .chunks(255)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect();
    Ok(DnsRecord {
        name: format!("{selector}._domainkey.{domain}"),
        txt_strings,
    })
}

/// Writes a private key to `<dir>/<domain>/<selector>.key` with mode 0600,
/// creating missing directories with mode 0700. Refuses to overwrite an
/// existing file (or follow a symlink there). Returns the path written.
pub fn write_key_file(dir: &Path, domain: &str, selector: &str, pem: &[u8]) -> Result<PathBuf> {
    names::validate_domain(domain)?;
    names::validate_selector(selector)?;
    let domain_dir = dir.join(domain);
    let io_err = |context: String| move |source| DkimError::Io { context, source };

    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&domain_dir)
        .map_err(io_err(format!(
            "cannot create directory {}",
            domain_dir.display()
        )))?;
    let meta = std::fs::symlink_metadata(&domain_dir).map_err(io_err(format!(
        "cannot inspect directory {}",
        domain_dir.display()
    )))?;
    if !meta.is_dir() {
        return Err(DkimError::Io {
            context: format!("{} is not a directory", domain_dir.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }

    let path = domain_dir.join(format!("{selector}.key"));
    let mut file = OpenOptions::new()
        .write(true)
        // O_CREAT|O_EXCL: never overwrite, and never follow a symlink
        // planted at the path (POSIX requires the open to fail then).
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| {
            let context = if source.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} already exists; refusing to overwrite a key (choose a new selector)",
                    path.display()
                )
            } else {
                format!("cannot create key file {}", path.display())
            };
            DkimError::Io { context, source }
        })?;
    let written = file.write_all(pem).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(DkimError::Io {
            context: format!("cannot write key file {}", path.display()),
            source,
        });
    }
    Ok(path)
}

/// The outcome of comparing a published DNS record with a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordCheck {
    /// The record publishes this key's public key.
    Match,
    /// The record's `k=` names another algorithm.
    AlgorithmMismatch { published: String },
    /// The record publishes a different key.
    KeyMismatch,
    /// The record has an empty `p=`: the key was revoked.
    Revoked,
}

/// Extracts the record value from a TXT record given either as its value or
/// as zone-style quoted strings (`"v=DKIM1; ..." "..."`).
fn unquote_txt(txt: &str) -> String {
    if !txt.contains('"') {
        return txt.trim().to_string();
    }
    let mut out = String::with_capacity(txt.len());
    let mut in_quotes = false;
    let mut chars = txt.chars();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (false, '"') => in_quotes = true,
            (true, '"') => in_quotes = false,
            (true, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (true, c) => out.push(c),
            (false, _) => {}
        }
    }
    out
}

/// Compares a published DKIM TXT record with a private key, saying why they
/// differ. `txt` is the record value (or zone-style quoted strings).
pub fn check_record(txt: &str, algo: Algorithm, private_key: &[u8]) -> Result<RecordCheck> {
    let value = unquote_txt(txt);
    let mut k = "rsa".to_string();
    let mut p: Option<String> = None;
    for (i, part) in value.split(';').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((tag, val)) = part.split_once('=') else {
            return Err(DkimError::Record(format!("tag {} has no '=' sign", i + 1)));
        };
        let tag = tag.trim();
        let val: String = val.chars().filter(|c| !c.is_whitespace()).collect();
        match tag {
            "v" if val != "DKIM1" => {
                return Err(DkimError::Record(format!(
                    "v={val:?} is not a DKIM key record (expected v=DKIM1)"
                )))
            }
            "k" => k = val.to_ascii_lowercase(),
            "p" => p = Some(val),
            _ => {}
        }
    }
    let p = p.ok_or_else(|| DkimError::Record("the record has no p= tag".into()))?;
    if k != algo.k_tag() {
        return Ok(RecordCheck::AlgorithmMismatch { published: k });
    }
    if p.is_empty() {
        return Ok(RecordCheck::Revoked);
    }
    let published = STANDARD
        .decode(p.as_bytes())
        .map_err(|_| DkimError::Record("p= is not valid base64".into()))?;

    let key = SigningKey::from_bytes(algo, private_key)?;
    let matches = match algo {
        Algorithm::Ed25519Sha256 => published == key.public_key_der(),
        Algorithm::RsaSha256 => {
            // Published keys are usually SubjectPublicKeyInfo; a bare PKCS#1
            // RSAPublicKey is accepted too. Compare the numbers, not bytes.
            let ours = rsa::RsaPublicKey::from_public_key_der(key.public_key_der())
                .map_err(|_| DkimError::invalid_key("cannot read back the RSA public key"))?;
            let theirs = rsa::RsaPublicKey::from_public_key_der(&published)
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(&published))
                .map_err(|_| DkimError::Record("p= is not an RSA public key".into()))?;
            ours == theirs
        }
    };
    Ok(if matches {
        RecordCheck::Match
    } else {
        RecordCheck::KeyMismatch
    })
}

/// `true` when the published record carries this private key's public key
/// for this algorithm. See [`check_record`] for the reason when it does not.
pub fn record_matches(txt: &str, algo: Algorithm, private_key: &[u8]) -> Result<bool> {
    Ok(check_record(txt, algo, private_key)? == RecordCheck::Match)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote() {
        assert_eq!(unquote_txt("v=DKIM1; p=abc"), "v=DKIM1; p=abc");
        assert_eq!(
            unquote_txt("x. IN TXT \"v=DKIM1; \" \"p=a\\\"bc\""),
            "v=DKIM1; p=a\"bc"
        );
    }

    #[test]
    fn record_splitting() {
        let public = STANDARD.encode([7u8; 600]);
        let rec = dns_record("example.com", "s1", Algorithm::RsaSha256, &public).unwrap();
        assert_eq!(rec.name, "s1._domainkey.example.com");
        assert!(rec.txt_strings.len() >= 4);
        assert!(rec.txt_strings.iter().all(|s| s.len() <= 255));
        assert!(rec.txt_strings[..rec.txt_strings.len() - 1]
            .iter()
            .all(|s| s.len() == 255));
        assert_eq!(rec.txt_value(), format!("v=DKIM1; k=rsa; p={public}"));
        let line = rec.zone_line();
        assert!(line.starts_with("s1._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p="));
        assert_eq!(unquote_txt(&line), rec.txt_value());
    }

    #[test]
    fn record_rejects_bad_input() {
        assert!(dns_record("example.com", "s1", Algorithm::Ed25519Sha256, "AAAA").is_err());
        assert!(dns_record("example.com", "s1", Algorithm::RsaSha256, "not base64!").is_err());
        assert!(dns_record("exa\"mple.com", "s1", Algorithm::RsaSha256, "AAAA").is_err());
        assert!(dns_record("example.com", "../s1", Algorithm::RsaSha256, "AAAA").is_err());
    }
}
