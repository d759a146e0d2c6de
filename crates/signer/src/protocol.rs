//! The wire format between the network process and the signer: frames of
//! a 4-byte big-endian length and a postcard-encoded, versioned message.
//! Two operations only: `Sign` and `Health`.
//!
//! Decoding is the signer's attack surface (the network process may be
//! owned by an attacker), so it is pure, bounded by [`MAX_FRAME`], and
//! fuzzed (`fuzz/fuzz_targets/signer_protocol.rs`).

use crate::SignerError;
use ironpost_dkim::Algorithm;
use ironpost_keysource::{KeySource, VaultSource};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The schema version both sides speak; a frame of another is refused.
pub const VERSION: u16 = 1;

/// The largest frame either side accepts. What DKIM signs is the
/// canonicalised header block (the body only as its hash), far below this.
pub const MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u16,
    /// Echoed in the response, so a late answer cannot be taken for
    /// another request's.
    pub id: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Health,
    Sign(SignRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    pub key: KeyRef,
    pub algorithm: Algo,
    /// How long the signer may keep the loaded key (the policy's `ttl`).
    pub ttl_secs: u32,
    /// Exactly what DKIM or ARC signs (see `ironpost_dkim::RemoteSign`).
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algo {
    RsaSha256,
    Ed25519Sha256,
}

impl From<Algorithm> for Algo {
    fn from(a: Algorithm) -> Algo {
        match a {
            Algorithm::RsaSha256 => Algo::RsaSha256,
            Algorithm::Ed25519Sha256 => Algo::Ed25519Sha256,
        }
    }
}

impl From<Algo> for Algorithm {
    fn from(a: Algo) -> Algorithm {
        match a {
            Algo::RsaSha256 => Algorithm::RsaSha256,
            Algo::Ed25519Sha256 => Algorithm::Ed25519Sha256,
        }
    }
}

/// Where a key is, as the policy names it. Inline key data never crosses:
/// a key written in the policy is in the network process already.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyRef {
    File(PathBuf),
    Vault(VaultRef),
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VaultRef {
    pub mount: String,
    pub path: String,
    pub key: String,
    pub address: Option<String>,
    /// Only a token the policy itself spells out (the network process has
    /// it anyway); the signer's own token never travels.
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub role_id: Option<Box<KeyRef>>,
    pub secret_id: Option<Box<KeyRef>>,
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KeyRef {
    /// From a policy keysource; `None` for inline data, which stays local.
    /// A relative file path is made absolute here, against this process's
    /// directory, as the policy meant it.
    pub fn from_source(source: &KeySource) -> Option<KeyRef> {
        match source {
            KeySource::File(p) => Some(KeyRef::File(
                std::path::absolute(p).unwrap_or_else(|_| p.clone()),
            )),
            KeySource::Data(_) => None,
            KeySource::Vault(v) => Some(KeyRef::Vault(VaultRef {
                mount: v.vault_mount.clone(),
                path: v.vault_path.clone(),
                key: v.vault_key.clone(),
                address: v.vault_address.clone(),
                token: v.vault_token.clone(),
                ca_file: v.vault_ca_file.clone(),
                role_id: match &v.vault_role_id {
                    Some(k) => Some(Box::new(KeyRef::from_source(k)?)),
                    None => None,
                },
                secret_id: match &v.vault_secret_id {
                    Some(k) => Some(Box::new(KeyRef::from_source(k)?)),
                    None => None,
                },
            })),
        }
    }

    /// The keysource the signer loads.
    pub fn to_source(&self) -> KeySource {
        match self {
            KeyRef::File(p) => KeySource::File(p.clone()),
            KeyRef::Vault(v) => KeySource::Vault(VaultSource {
                vault_mount: v.mount.clone(),
                vault_path: v.path.clone(),
                vault_address: v.address.clone(),
                vault_token: v.token.clone(),
                vault_key: v.key.clone(),
                vault_ca_file: v.ca_file.clone(),
                vault_role_id: v.role_id.as_ref().map(|k| Box::new(k.to_source())),
                vault_secret_id: v.secret_id.as_ref().map(|k| Box::new(k.to_source())),
            }),
        }
    }

    /// Safe for logs: where the key is, never a token.
    pub fn describe(&self) -> String {
        self.to_source().describe()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub version: u16,
    pub id: u64,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Healthy,
    Signature(Vec<u8>),
    /// The request is not allowed (a key the signer does not serve).
    Refused(String),
    /// The key could not be loaded or used; `temporary` when a retry may
    /// succeed (Vault unreachable).
    Failed {
        temporary: bool,
        reason: String,
    },
}

/// Encodes `msg` as one frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, SignerError> {
    let mut out = vec![0u8; 4];
    out = postcard::to_extend(msg, out).map_err(|e| SignerError::Protocol(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(SignerError::Protocol(format!(
            "a {len}-byte message exceeds the {MAX_FRAME}-byte frame limit"
        )));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes a frame's payload (after the length prefix). Trailing bytes and
/// another version are errors.
pub fn decode<'a, T: Deserialize<'a> + Versioned>(payload: &'a [u8]) -> Result<T, SignerError> {
    let (msg, rest): (T, _) =
        postcard::take_from_bytes(payload).map_err(|e| SignerError::Protocol(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SignerError::Protocol(format!(
            "{} bytes after the message",
            rest.len()
        )));
    }
    if msg.version() != VERSION {
        return Err(SignerError::Protocol(format!(
            "protocol version {} (this build speaks {VERSION})",
            msg.version()
        )));
    }
    Ok(msg)
}

/// The version field both message types carry.
pub trait Versioned {
    fn version(&self) -> u16;
}
impl Versioned for Request {
    fn version(&self) -> u16 {
        self.version
    }
}
impl Versioned for Response {
    fn version(&self) -> u16 {
        self.version
    }
}

/// Reads one frame's payload. `Ok(None)` at a clean end of stream (before
/// any byte of a frame).
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, SignerError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(SignerError::Protocol(
                    "the stream ended inside a frame".into(),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SignerError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(SignerError::Protocol(format!(
            "a {len}-byte frame exceeds the {MAX_FRAME}-byte limit"
        )));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            SignerError::Protocol("the stream ended inside a frame".into())
        }
        _ => SignerError::Io(e),
    })?;
    Ok(Some(payload))
}

/// Writes one encoded frame.
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> Result<(), SignerError> {
    w.write_all(frame).map_err(SignerError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_request() -> Request {
        Request {
            version: VERSION,
            id: 7,
            op: Op::Sign(SignRequest {
                key: KeyRef::Vault(VaultRef {
                    mount: "secret".into(),
                    path: "dkim/example.com".into(),
                    key: "key".into(),
                    address: None,
                    token: Some("hvs.TOKEN".into()),
                    ca_file: None,
                    role_id: Some(Box::new(KeyRef::File("/etc/role".into()))),
                    secret_id: None,
                }),
                algorithm: Algo::Ed25519Sha256,
                ttl_secs: 300,
                data: b"from:a\r\n".to_vec(),
            }),
        }
    }

    #[test]
    fn round_trip() {
        let req = sign_request();
        let frame = encode(&req).unwrap();
        let payload = read_frame(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(decode::<Request>(&payload).unwrap(), req);
        let resp = Response {
            version: VERSION,
            id: 7,
            reply: Reply::Signature(vec![1, 2, 3]),
        };
        let frame = encode(&resp).unwrap();
        assert_eq!(decode::<Response>(&frame[4..]).unwrap(), resp);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut frame = encode(&sign_request()).unwrap();
        // Another version.
        let mut other = sign_request();
        other.version = 2;
        let f = encode(&other).unwrap();
        assert!(decode::<Request>(&f[4..]).is_err());
        // Trailing garbage, truncation, an oversized length.
        frame.push(0);
        assert!(decode::<Request>(&frame[4..]).is_err());
        assert!(decode::<Request>(&frame[4..10]).is_err());
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(read_frame(&mut &huge[..]).is_err());
        assert!(read_frame(&mut &[0u8, 0, 0, 9, 1][..]).is_err());
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let r = format!("{:?}", sign_request());
        assert!(!r.contains("hvs."), "{r}");
    }

    #[test]
    fn inline_keys_do_not_cross() {
        let d: KeySource = serde_json::from_str(r#"{"key_data":"x"}"#).unwrap();
        assert!(KeyRef::from_source(&d).is_none());
    }
}
