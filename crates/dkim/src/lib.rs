//! DKIM signing for Ironpost (RFC 6376, RSA-SHA256 and Ed25519-SHA256 per
//! RFC 8463), key parsing and the key tooling behind `ironpost dkim`.
//!
//! The cryptography is mail-auth's (backed by ring). This crate adds strict
//! key parsing with clear errors, configuration validation, over-signing and
//! the key generation / DNS record helpers.
//!
//! ```no_run
//! use ironpost_dkim::{Algorithm, Signer, SignerConfig, SigningKey};
//! let pem = std::fs::read("/etc/ironpost/dkim/example.com/s1.key")?;
//! let key = SigningKey::from_bytes(Algorithm::Ed25519Sha256, &pem)?;
//! let signer = Signer::new(SignerConfig::new("example.com", "s1"), key)?;
//! let message = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
//! let header = signer.sign(message)?; // "DKIM-Signature: ...\r\n"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arc;
mod error;
mod headers;
mod key;
mod names;
mod pem;
mod signer;
mod tooling;

pub use arc::{ArcCv, ARC_MAX_INSTANCE};
pub use error::{DkimError, Result};
pub use key::{public_key_from_private, Algorithm, RemoteSign, SigningKey};
pub use signer::{Canon, Signer, SignerConfig, DEFAULT_HEADERS};
pub use tooling::{
    check_record, dns_record, generate, record_matches, write_key_file, DnsRecord, RecordCheck,
    RSA_BITS_MAX, RSA_BITS_MIN,
};
pub use zeroize::Zeroizing;
