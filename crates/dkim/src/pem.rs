//! A small PEM (RFC 7468) reader and writer that keeps every copy of the
//! decoded key in zeroizing buffers and never echoes its input in errors.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::{DkimError, Result};

/// One `-----BEGIN label----- ... -----END label-----` block.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    /// A legacy `Proc-Type: 4,ENCRYPTED` header was present.
    pub(crate) encrypted_header: bool,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// Does the input look like PEM (rather than DER)?
pub(crate) fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes
        .windows(BEGIN.len())
        .any(|window| window == BEGIN.as_bytes())
}

/// A label safe to repeat in an error message: short upper-case words only.
pub(crate) fn printable_label(label: &str) -> Option<&str> {
    let ok = !label.is_empty()
        && label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    ok.then_some(label)
}

/// Parses every PEM block in `input`. Text outside blocks is ignored, as
/// OpenSSL does (key files often carry comments or a certificate).
pub(crate) fn parse_blocks(input: &[u8]) -> Result<Vec<PemBlock>> {
    let text = std::str::from_utf8(input)
        .map_err(|_| DkimError::invalid_key("PEM input is not valid ASCII text"))?;
    let mut blocks = Vec::new();
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']));

    while let Some(line) = lines.next() {
        let line = line.trim_start();
        let Some(label) = line
            .strip_prefix(BEGIN)
            .and_then(|rest| rest.strip_suffix(DASHES))
        else {
            continue;
        };
        let label = label.to_string();
        // Collected base64 text: as secret as the key itself.
        let mut b64 = Zeroizing::new(String::with_capacity(input.len()));
        let mut encrypted_header = false;
        let mut in_headers = true;
        let mut terminated = false;

        for body_line in lines.by_ref() {
            let body_line = body_line.trim_start();
            if let Some(end) = body_line.strip_prefix(END) {
                let end_label = end.strip_suffix(DASHES).unwrap_or("");
                if end_label != label {
                    return Err(DkimError::invalid_key(
                        "corrupt PEM: the END line does not match the BEGIN line",
                    ));
                }
                terminated = true;
                break;
            }
            if body_line.starts_with(BEGIN) {
                return Err(DkimError::invalid_key(
                    "corrupt PEM: a BEGIN line inside another PEM block",
                ));
            }
            if in_headers && body_line.contains(':') {
                // RFC 1421 encapsulated header (legacy OpenSSL encryption).
                let upper = body_line.to_ascii_uppercase();
                if upper.starts_with("PROC-TYPE:") && upper.contains("ENCRYPTED") {
                    encrypted_header = true;
                }
                continue;
            }
            if body_line.is_empty() {
                continue;
            }
            in_headers = false;
            b64.push_str(body_line);
        }

        if !terminated {
            return Err(DkimError::invalid_key(
                "corrupt PEM: the block has no END line (truncated file?)",
            ));
        }

        let mut der = Zeroizing::new(Vec::with_capacity(b64.len() / 4 * 3 + 3));
        if encrypted_header {
            // The body is ciphertext; no need to decode it.
        } else if b64.is_empty() {
            return Err(DkimError::invalid_key("corrupt PEM: the block is empty"));
        } else if STANDARD.decode_vec(b64.as_bytes(), &mut der).is_err() {
            return Err(DkimError::invalid_key(
                "corrupt PEM: the block body is not valid base64",
            ));
        }
        blocks.push(PemBlock {
            label,
            encrypted_header,
            der,
        });
    }
    Ok(blocks)
}

/// Encodes `der` as PEM with 64-character lines and LF line endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(Vec::with_capacity(b64.len() + b64.len() / 64 + 80));
    out.extend_from_slice(BEGIN.as_bytes());
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(DASHES.as_bytes());
    out.push(b'\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(END.as_bytes());
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(DASHES.as_bytes());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = encode("PRIVATE KEY", &der);
        let blocks = parse_blocks(&pem).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "PRIVATE KEY");
        assert_eq!(&blocks[0].der[..], &der[..]);
        assert!(looks_like_pem(&pem));
        assert!(!looks_like_pem(&der));
    }

    #[test]
    fn crlf_comments_and_several_blocks() {
        let text = "comment line\r\n-----BEGIN A-----\r\nAAEC\r\n-----END A-----\r\n\
                    junk\n-----BEGIN B-----\nAwQF\n-----END B-----\n";
        let blocks = parse_blocks(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(&blocks[0].der[..], &[0, 1, 2]);
        assert_eq!(blocks[1].label, "B");
        assert_eq!(&blocks[1].der[..], &[3, 4, 5]);
    }

    #[test]
    fn errors() {
        for bad in [
            "-----BEGIN A-----\nAAEC\n",
            "-----BEGIN A-----\nAAEC\n-----END B-----\n",
            "-----BEGIN A-----\n!!!!\n-----END A-----\n",
            "-----BEGIN A-----\n-----END A-----\n",
        ] {
            assert!(parse_blocks(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn legacy_encrypted_header() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                    DEK-Info: AES-256-CBC,00\n\nzzzz\n-----END RSA PRIVATE KEY-----\n";
        let blocks = parse_blocks(text.as_bytes()).unwrap();
        assert!(blocks[0].encrypted_header);
    }
}
