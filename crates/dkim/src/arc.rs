//! ARC sealing (RFC 8617): a new ARC set (ARC-Seal, ARC-Message-Signature,
//! ARC-Authentication-Results) made with a [`Signer`]'s domain, selector,
//! header list and key, so that the key never leaves this crate.
//!
//! The set is built here rather than with mail-auth's `ArcSealer`, whose
//! ARC-Authentication-Results can only carry the results mail-auth itself
//! renders; this one carries any RFC 8601 `resinfo` text. The pieces are
//! mail-auth's: its message parser (so the fields seen are those its ARC
//! verifier sees), its canonicalization and its SHA-256. Each header field is
//! written out first and then canonicalized from those very bytes, exactly as
//! a verifier will, so folding can never make the signature disagree with
//! the text.
//!
//! Validating the existing chain is the caller's job (it needs DNS): this
//! module only reads the chain's header fields, checks that the instances
//! are complete (1..=N, one field of each kind per instance) and seals with
//! the `cv=` the caller found.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mail_auth::common::crypto::HashAlgorithm;
use mail_auth::dkim::Canonicalization;
use mail_auth::AuthenticatedMessage;

use crate::error::{DkimError, Result};
use crate::signer::Signer;

/// RFC 8617 section 4.2.1: an instance above 50 is invalid, so a chain of
/// 50 sets cannot be sealed again.
pub const ARC_MAX_INSTANCE: u32 = 50;

const AAR: &str = "ARC-Authentication-Results";
const AMS: &str = "ARC-Message-Signature";
const AS: &str = "ARC-Seal";

/// Folding: lines are kept under this many columns where the text allows.
const FOLD_AT: usize = 76;
/// RFC 5322 section 2.1.1: no line may exceed 998 characters.
const LINE_MAX: usize = 998;

/// The `cv=` of the new ARC-Seal: what validating the existing chain found.
/// A failed chain is not sealed (the message is passed on unmodified, as
/// KumoMTA does), so there is no `Fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArcCv {
    /// The message has no ARC set: the new one is instance 1.
    None,
    /// The chain of N sets validated: the new set is instance N + 1.
    Pass,
}

impl fmt::Display for ArcCv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArcCv::None => "none",
            ArcCv::Pass => "pass",
        })
    }
}

/// One header field as it is in the message: the name and the raw value
/// after the colon, with its folding and trailing CRLF.
type Field<'a> = (&'a [u8], &'a [u8]);

/// The existing sets, in instance order: (AAR, AMS, AS) for i = 1..=N.
type Chain<'a> = Vec<[Field<'a>; 3]>;

impl Signer {
    /// Seals `message` (as it will be passed on, CRLF line endings) with a
    /// new ARC set and returns its three header fields, `ARC-Seal`,
    /// `ARC-Message-Signature` and `ARC-Authentication-Results`, folded and
    /// CRLF-terminated, to prepend to the message.
    ///
    /// `cv` is what validating the message's chain found: [`ArcCv::None`]
    /// requires that the message has no ARC header field, [`ArcCv::Pass`]
    /// that it has complete sets 1..=N (N < [`ARC_MAX_INSTANCE`]).
    /// `authserv_id` (a host name, RFC 8601 `authserv-id`) and `results`
    /// (`resinfo` texts such as `spf=pass smtp.mailfrom=example.com`, no
    /// control characters) make the ARC-Authentication-Results payload; no
    /// results gives `none`.
    ///
    /// The ARC-Message-Signature uses the signer's canonicalization and
    /// signs the configured header fields that are present (every
    /// occurrence), each configured field that is absent as absent (so it
    /// cannot be added), once more each present one when over-signing is
    /// configured; never an `ARC-*` field (RFC 8617 section 4.1.2 forbids
    /// ARC-Seal). It has no `x=`: a chain does not expire. Like
    /// [`Signer::sign`] this is CPU-bound.
    pub fn arc_seal(
        &self,
        message: &[u8],
        cv: ArcCv,
        authserv_id: &str,
        results: &[String],
    ) -> Result<String> {
        validate_authserv_id(authserv_id)?;
        for r in results {
            validate_resinfo(r)?;
        }

        let parsed = AuthenticatedMessage::parse(message)
            .ok_or_else(|| DkimError::Message("the message has no header fields".into()))?;
        let headers = parsed.raw_parsed_headers();
        let body = parsed.raw_body();

        let chain = existing_chain(headers)?;
        let instance = match (cv, chain.len()) {
            (ArcCv::None, 0) => 1,
            (ArcCv::None, n) => {
                return Err(DkimError::Message(format!(
                    "cv=none, but the message already has {n} ARC set(s)"
                )))
            }
            (ArcCv::Pass, 0) => {
                return Err(DkimError::Message(
                    "cv=pass, but the message has no ARC set".into(),
                ))
            }
            (ArcCv::Pass, n) => n as u32 + 1,
        };
        if instance > ARC_MAX_INSTANCE {
            return Err(DkimError::Message(format!(
                "the ARC chain already has {} sets, the most RFC 8617 allows",
                ARC_MAX_INSTANCE
            )));
        }

        let config = self.config();
        let a_tag = self.algorithm().a_tag();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);

        // ARC-Authentication-Results.
        let mut aar = Folder::new(AAR.len() + 1);
        aar.word(&format!("i={instance};"));
        if results.is_empty() {
            aar.word(&format!("{authserv_id};"));
            aar.word("none");
        } else {
            aar.word(&format!("{authserv_id};"));
            for (n, r) in results.iter().enumerate() {
                aar.line_break();
                let last = n + 1 == results.len();
                let words: Vec<&str> = r.split(' ').filter(|w| !w.is_empty()).collect();
                for (m, w) in words.iter().enumerate() {
                    if !last && m + 1 == words.len() {
                        aar.word(&format!("{w};"));
                    } else {
                        aar.word(w);
                    }
                }
            }
        }
        let aar_value = aar.finish()?;

        // ARC-Message-Signature: the signed fields, bottom-up (the order in
        // which a verifier picks repeated names), then the body hash.
        let (signed, h) = self.arc_signed_fields(headers)?;
        let ch: Canonicalization = config.header_canonicalization.into();
        let cb: Canonicalization = config.body_canonicalization.into();
        let bh = HashAlgorithm::Sha256.hash(cb.canonical_body(body, 0));
        let mut ams = Folder::new(AMS.len() + 1);
        for word in [
            format!("i={instance};"),
            format!("a={a_tag};"),
            format!(
                "c={}/{};",
                config.header_canonicalization, config.body_canonicalization
            ),
            format!("d={};", config.domain),
            format!("s={};", config.selector),
            format!("t={now};"),
        ] {
            ams.word(&word);
        }
        ams.line_break();
        ams.list("h=", &h, ':');
        ams.push_str(";");
        ams.line_break();
        ams.word(&format!("bh={};", STANDARD.encode(bh.as_ref())));
        ams.line_break();
        ams.push_str("b=");
        let unsigned = ams.value.clone();
        let mut input = Vec::with_capacity(1024);
        ch.canonicalize_headers(signed.iter().copied(), &mut input);
        ch.canonicalize_headers(
            std::iter::once((AMS.as_bytes(), unsigned.as_bytes())),
            &mut input,
        );
        let b = self.key().sign_bytes(&input)?;
        ams.base64(&STANDARD.encode(b));
        let ams_value = ams.finish()?;

        // ARC-Seal: every set so far in instance order, each AAR, AMS, AS,
        // then the new AAR and AMS and this seal without its signature;
        // always relaxed (RFC 8617).
        let mut seal = Folder::new(AS.len() + 1);
        for word in [
            format!("i={instance};"),
            format!("a={a_tag};"),
            format!("d={};", config.domain),
            format!("s={};", config.selector),
            format!("cv={cv};"),
            format!("t={now};"),
        ] {
            seal.word(&word);
        }
        seal.line_break();
        seal.push_str("b=");
        let unsigned = seal.value.clone();
        let aar_field = format!("{aar_value}\r\n");
        let ams_field = format!("{ams_value}\r\n");
        let mut input = Vec::with_capacity(1024 * (chain.len() + 1));
        let relaxed = Canonicalization::Relaxed;
        for set in &chain {
            relaxed.canonicalize_headers(set.iter().copied(), &mut input);
        }
        relaxed.canonicalize_headers(
            [
                (AAR.as_bytes(), aar_field.as_bytes()),
                (AMS.as_bytes(), ams_field.as_bytes()),
                (AS.as_bytes(), unsigned.as_bytes()),
            ]
            .into_iter(),
            &mut input,
        );
        let b = self.key().sign_bytes(&input)?;
        seal.base64(&STANDARD.encode(b));
        let seal_value = seal.finish()?;

        Ok(format!(
            "{AS}:{seal_value}\r\n{AMS}:{ams_value}\r\n{AAR}:{aar_value}\r\n"
        ))
    }

    /// The fields the AMS signs, bottom-up, and its `h=` list.
    fn arc_signed_fields<'a>(
        &self,
        headers: &[Field<'a>],
    ) -> Result<(Vec<Field<'a>>, Vec<String>)> {
        let names: Vec<&str> = self
            .config()
            .headers
            .iter()
            .map(String::as_str)
            .filter(|n| !is_arc_field(n.as_bytes()))
            .collect();
        let mut counts = vec![0usize; names.len()];
        let mut signed = Vec::new();
        for &(name, value) in headers.iter().rev() {
            if let Some(i) = names
                .iter()
                .position(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            {
                counts[i] += 1;
                signed.push((name, value));
            }
        }
        let from_present = names
            .iter()
            .zip(&counts)
            .any(|(n, c)| n.eq_ignore_ascii_case("From") && *c > 0);
        if !from_present {
            return Err(DkimError::Message(
                "the message has no From header field".into(),
            ));
        }
        let mut h: Vec<String> = signed
            .iter()
            .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
            .collect();
        for (name, count) in names.iter().zip(counts) {
            if count == 0 || self.config().over_sign {
                h.push(name.to_string());
            }
        }
        Ok((signed, h))
    }
}

fn is_arc_field(name: &[u8]) -> bool {
    [AAR, AMS, AS]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// The ARC sets already on the message, in instance order.
fn existing_chain<'a>(headers: &[Field<'a>]) -> Result<Chain<'a>> {
    let mut found: Vec<[Option<Field<'a>>; 3]> = Vec::new();
    for &(name, value) in headers {
        let kind = if name.eq_ignore_ascii_case(AAR.as_bytes()) {
            0
        } else if name.eq_ignore_ascii_case(AMS.as_bytes()) {
            1
        } else if name.eq_ignore_ascii_case(AS.as_bytes()) {
            2
        } else {
            continue;
        };
        let i = instance_of(value).ok_or_else(|| {
            DkimError::Message(format!(
                "an {} header field has no valid i= tag",
                String::from_utf8_lossy(name)
            ))
        })?;
        if i == 0 || i > ARC_MAX_INSTANCE {
            return Err(DkimError::Message(format!(
                "ARC instance i={i} is out of range"
            )));
        }
        let i = i as usize;
        if found.len() < i {
            found.resize(i, [None, None, None]);
        }
        let slot = &mut found[i - 1][kind];
        if slot.is_some() {
            return Err(DkimError::Message(format!(
                "ARC instance {i} has two {} header fields",
                String::from_utf8_lossy(name)
            )));
        }
        *slot = Some((name, value));
    }
    found
        .into_iter()
        .enumerate()
        .map(|(n, set)| match set {
            [Some(aar), Some(ams), Some(seal)] => Ok([aar, ams, seal]),
            _ => Err(DkimError::Message(format!(
                "ARC set {} is incomplete",
                n + 1
            ))),
        })
        .collect()
}

/// The `i=` tag: the first tag of an ARC header field (RFC 8617 sections
/// 4.1.1 to 4.1.3 put it anywhere in AMS and AS; every sealer puts it
/// first, but it is looked for in every tag).
fn instance_of(value: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(';').find_map(|part| {
        let (tag, v) = part.split_once('=')?;
        if tag.trim() != "i" {
            return None;
        }
        let v = v.trim();
        if v.is_empty() || v.len() > 3 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    })
}

fn validate_authserv_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(DkimError::config(format!(
            "invalid authserv-id {:?}: a host name is expected",
            id.escape_debug().to_string()
        )))
    }
}

fn validate_resinfo(r: &str) -> Result<()> {
    let ok = !r.trim().is_empty() && !r.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(DkimError::Message(format!(
            "invalid authentication result text {:?}",
            r.escape_debug().to_string()
        )))
    }
}

/// Builds a header field value (starting with the space after the colon),
/// folding between words so that lines stay short.
struct Folder {
    value: String,
    /// Length of the current line so far.
    column: usize,
}

impl Folder {
    /// `start`: the columns the field name and colon take.
    fn new(start: usize) -> Folder {
        Folder {
            value: String::with_capacity(512),
            column: start,
        }
    }

    fn line_break(&mut self) {
        self.value.push_str("\r\n\t");
        self.column = 1;
    }

    /// A word, after a space or at the start of a continuation line.
    fn word(&mut self, word: &str) {
        if self.column > 1 {
            if self.column + 1 + word.len() > FOLD_AT {
                self.line_break();
            } else {
                self.push_str(" ");
            }
        }
        self.push_str(word);
    }

    fn push_str(&mut self, s: &str) {
        self.value.push_str(s);
        self.column += s.len();
    }

    /// `tag` then the items joined by `sep`, folded before a separator.
    fn list(&mut self, tag: &str, items: &[String], sep: char) {
        self.push_str(tag);
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                if self.column + 1 + item.len() > FOLD_AT {
                    self.line_break();
                }
                self.value.push(sep);
                self.column += 1;
            }
            self.push_str(item);
        }
    }

    /// Base64 text, wrapped (whitespace inside base64 is FWS, ignored).
    fn base64(&mut self, text: &str) {
        let mut rest = text;
        loop {
            let take = FOLD_AT.saturating_sub(self.column).max(16).min(rest.len());
            self.push_str(&rest[..take]);
            rest = &rest[take..];
            if rest.is_empty() {
                break;
            }
            self.line_break();
        }
    }

    fn finish(self) -> Result<String> {
        if self.value.split("\r\n").any(|line| line.len() > LINE_MAX) {
            return Err(DkimError::Message(
                "an ARC header field line would exceed 998 characters".into(),
            ));
        }
        Ok(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, Algorithm, SignerConfig, SigningKey};

    fn signer(algo: Algorithm) -> Signer {
        let (pem, _) = generate(algo, 2048).unwrap();
        let key = SigningKey::from_bytes(algo, &pem).unwrap();
        Signer::new(SignerConfig::new("example.com", "arc"), key).unwrap()
    }

    const MESSAGE: &str = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n";

    fn fields(headers: &str) -> Vec<(String, String)> {
        let m = AuthenticatedMessage::parse(headers.as_bytes()).unwrap();
        m.raw_parsed_headers()
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn first_set_is_instance_one() {
        for algo in [Algorithm::RsaSha256, Algorithm::Ed25519Sha256] {
            let s = signer(algo);
            let results = vec![
                "spf=pass smtp.mailfrom=example.com".to_string(),
                "dkim=pass header.d=example.com header.s=s1".to_string(),
            ];
            let set = s
                .arc_seal(MESSAGE.as_bytes(), ArcCv::None, "mx.example.org", &results)
                .unwrap();
            let f = fields(&format!("{set}{MESSAGE}"));
            assert_eq!(f[0].0, "ARC-Seal");
            assert!(f[0].1.starts_with(" i=1; a="), "{set}");
            assert!(f[0].1.contains("cv=none;"), "{set}");
            assert_eq!(f[1].0, "ARC-Message-Signature");
            assert!(f[1].1.starts_with(" i=1; a="), "{set}");
            assert!(f[1].1.contains("h=Subject:To:From:Date:"), "{set}");
            assert!(!f[1].1.to_ascii_lowercase().contains("arc-"), "{set}");
            assert_eq!(f[2].0, "ARC-Authentication-Results");
            let aar: String = f[2].1.replace("\r\n\t", " ");
            assert_eq!(
                aar.trim(),
                "i=1; mx.example.org; spf=pass smtp.mailfrom=example.com; \
                 dkim=pass header.d=example.com header.s=s1"
            );
            for line in set.split("\r\n") {
                assert!(line.len() <= 78, "long line {line:?}");
            }
            assert_eq!(instance_of(f[0].1.as_bytes()), Some(1));
        }
    }

    #[test]
    fn cv_must_match_the_chain() {
        let s = signer(Algorithm::Ed25519Sha256);
        let err = s
            .arc_seal(MESSAGE.as_bytes(), ArcCv::Pass, "mx", &[])
            .unwrap_err();
        assert!(err.to_string().contains("no ARC set"), "{err}");
        let set = s
            .arc_seal(MESSAGE.as_bytes(), ArcCv::None, "mx", &[])
            .unwrap();
        assert!(set.contains("i=1; mx; none\r\n"), "{set}");
        let sealed = format!("{set}{MESSAGE}");
        let err = s
            .arc_seal(sealed.as_bytes(), ArcCv::None, "mx", &[])
            .unwrap_err();
        assert!(err.to_string().contains("already has 1"), "{err}");
        let second = s
            .arc_seal(sealed.as_bytes(), ArcCv::Pass, "mx", &[])
            .unwrap();
        assert!(second.starts_with("ARC-Seal: i=2; "), "{second}");
        assert!(second.contains("cv=pass;"), "{second}");
    }

    #[test]
    fn incomplete_or_duplicate_sets_are_refused() {
        let s = signer(Algorithm::Ed25519Sha256);
        let set = s
            .arc_seal(MESSAGE.as_bytes(), ArcCv::None, "mx", &[])
            .unwrap();
        // Drop the ARC-Seal.
        let without_seal = set.split_once("\r\nARC-Message").unwrap().1;
        let m = format!("ARC-Message{without_seal}{MESSAGE}");
        let err = s
            .arc_seal(m.as_bytes(), ArcCv::Pass, "mx", &[])
            .unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
        let m = format!("{set}{set}{MESSAGE}");
        let err = s
            .arc_seal(m.as_bytes(), ArcCv::Pass, "mx", &[])
            .unwrap_err();
        assert!(err.to_string().contains("two"), "{err}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        let s = signer(Algorithm::Ed25519Sha256);
        assert!(s
            .arc_seal(MESSAGE.as_bytes(), ArcCv::None, "mx; evil", &[])
            .is_err());
        assert!(s
            .arc_seal(
                MESSAGE.as_bytes(),
                ArcCv::None,
                "mx",
                &["spf=pass\r\nX-Injected: 1".into()]
            )
            .is_err());
        let no_from = "To: b@example.net\r\n\r\nbody\r\n";
        assert!(s
            .arc_seal(no_from.as_bytes(), ArcCv::None, "mx", &[])
            .is_err());
    }
}
