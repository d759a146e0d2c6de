//! ARC (RFC 8617): validating the chain a message arrives with
//! ([`Authenticator::arc_verify`], KumoMTA's `msg:arc_verify()`) and adding
//! our own set to it ([`Authenticator::arc_seal`], KumoMTA's
//! `msg:arc_seal(signer, server_id, authentication_results)`).
//!
//! Validation is mail-auth's `verify_arc` on this authenticator's resolver
//! and caches: every ARC-Seal, and the most recent ARC-Message-Signature,
//! against the keys in DNS. The new set is made by `ironpost_dkim`
//! ([`ironpost_dkim::Signer::arc_seal`]), so key material never leaves the
//! dkim crate.
//!
//! Bounds: a message with more than [`MAX_ARC_SETS`] fields of any ARC kind
//! fails before anything is parsed or looked up; the whole validation (DNS
//! included) is bounded by [`Limits::timeout`](crate::Limits::timeout).
//! ARC has no `temperror` (RFC 8617 section 4.4: the chain is `none`,
//! `pass` or `fail`), so a timeout gives `fail` with reason `timeout`, and
//! a DNS error gives `fail` with a reason starting `temperror:`.

use crate::{AuthResult, Authenticator, AuthnError, MAX_ARC_SETS};
use ironpost_dkim::{ArcCv, Signer, ARC_MAX_INSTANCE};
use mail_auth::{AuthenticatedMessage, DkimResult};
use std::collections::BTreeMap;

/// The longest `reason` written into an ARC-Authentication-Results field;
/// a longer one is cut (at a character boundary) and ends with `...`.
const REASON_MAX: usize = 200;

/// What validating the chain found.
enum Chain {
    /// No ARC header field.
    None,
    /// The chain of `sets` sets validated; the latest seal is `d=`, `s=`.
    Pass { sets: usize, d: String, s: String },
    /// The first failure found, and the latest seal if the chain parsed.
    Fail {
        reason: String,
        seal: Option<(String, String)>,
    },
}

impl Chain {
    fn fail(reason: impl Into<String>) -> Chain {
        Chain::Fail {
            reason: reason.into(),
            seal: None,
        }
    }

    /// The `arc` result: `none`, `pass` (props `header.d` and `header.s`:
    /// the domain and selector of the most recent ARC-Seal, the sealer
    /// vouching for the chain) or `fail` with the first failure as reason
    /// (and the same props when the chain parsed).
    fn into_result(self) -> AuthResult {
        let mut r = AuthResult {
            method: "arc".into(),
            ..Default::default()
        };
        let seal = match self {
            Chain::None => {
                r.result = "none".into();
                None
            }
            Chain::Pass { d, s, .. } => {
                r.result = "pass".into();
                Some((d, s))
            }
            Chain::Fail { reason, seal } => {
                r.result = "fail".into();
                r.reason = Some(reason);
                seal
            }
        };
        if let Some((d, s)) = seal {
            r.props.insert("header.d".into(), d);
            r.props.insert("header.s".into(), s);
        }
        r
    }
}

impl Authenticator {
    /// Validates the message's ARC chain (RFC 8617 section 5.2): `none`
    /// (no ARC set), `pass` (every seal and the latest message signature
    /// verify, instances 1..=N complete, cv= values consistent) or `fail`
    /// with the first failure as `reason`. On `pass` (and on a `fail` where
    /// the chain parsed) the props `header.d` and `header.s` name the most
    /// recent sealer. `header.oldest-pass` is not given: mail-auth verifies
    /// only the latest ARC-Message-Signature, as RFC 8617 requires.
    ///
    /// More than [`MAX_ARC_SETS`] sets: `fail` at once. Past
    /// [`Limits::timeout`](crate::Limits::timeout): `fail`, reason
    /// `timeout`. A DNS failure: `fail`, reason `temperror: ...`.
    pub async fn arc_verify(&self, message: &[u8]) -> AuthResult {
        self.arc_chain(message).await.into_result()
    }

    /// Seals the message for the next hop (RFC 8617 section 5.1): validates
    /// the chain first; if it fails, returns `Ok(None)` and the message
    /// passes on unmodified (KumoMTA's behaviour; that includes a chain
    /// that could not be validated for a DNS error or the timeout).
    /// A chain of [`ARC_MAX_INSTANCE`] sets cannot be extended: `Ok(None)`
    /// too. Otherwise returns the new set's three header fields (`ARC-Seal`,
    /// `ARC-Message-Signature`, `ARC-Authentication-Results`, instance
    /// N + 1, `cv=none` on a message without ARC, `cv=pass` after a valid
    /// chain), CRLF-terminated, to prepend to the message.
    ///
    /// `serv_id` is the `authserv-id` of the ARC-Authentication-Results (a
    /// host name) and `results` its content, rendered as RFC 8601 `resinfo`
    /// (`dkim=pass header.d=example.com`); callers usually include the
    /// [`arc_verify`](Self::arc_verify) result. The domain, selector, key,
    /// header list and canonicalization are the `signer`'s.
    ///
    /// Errors: an invalid `serv_id` or result (method, result or property
    /// name that is not an RFC 8601 keyword), a message without `From`, a
    /// signing failure.
    pub async fn arc_seal(
        &self,
        message: &[u8],
        signer: &Signer,
        serv_id: &str,
        results: &[AuthResult],
    ) -> Result<Option<Vec<u8>>, AuthnError> {
        // Inputs first: a bad call should not cost DNS lookups.
        let resinfo = results
            .iter()
            .map(render_resinfo)
            .collect::<Result<Vec<String>, AuthnError>>()?;
        if !valid_authserv_id(serv_id) {
            return Err(AuthnError::Message(format!(
                "invalid ARC server id {:?}: a host name is expected",
                serv_id.escape_debug().to_string()
            )));
        }
        let cv = match self.arc_chain(message).await {
            Chain::None => ArcCv::None,
            Chain::Pass { sets, .. } if sets >= ARC_MAX_INSTANCE as usize => {
                tracing::debug!(sets, "ARC chain is full: not sealing");
                return Ok(None);
            }
            Chain::Pass { .. } => ArcCv::Pass,
            Chain::Fail { reason, .. } => {
                tracing::debug!(%reason, "ARC chain fails: not sealing");
                return Ok(None);
            }
        };
        let set = signer
            .arc_seal(message, cv, serv_id, &resinfo)
            .map_err(|e| AuthnError::Message(format!("ARC sealing: {e}")))?;
        Ok(Some(set.into_bytes()))
    }

    /// Validates the chain within the time limit.
    async fn arc_chain(&self, message: &[u8]) -> Chain {
        // Counted before parsing: a message with thousands of ARC fields
        // costs one scan of its header section.
        let counts = arc_field_counts(message);
        let most = counts.iter().copied().max().unwrap_or(0);
        if most == 0 {
            return Chain::None;
        }
        if most > MAX_ARC_SETS {
            return Chain::fail(format!(
                "too many ARC sets ({most}, at most {MAX_ARC_SETS})"
            ));
        }
        let timeout = self.limits().timeout;
        match tokio::time::timeout(timeout, self.arc_validate(message)).await {
            Ok(chain) => chain,
            Err(_) => Chain::fail("timeout"),
        }
    }

    async fn arc_validate(&self, message: &[u8]) -> Chain {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return Chain::fail("the message has no header section");
        };
        let output = self.inner.auth.verify_arc(self.params(&parsed)).await;
        let seal = output.sets().last().map(|set| {
            (
                set.seal.header.d.to_ascii_lowercase(),
                set.seal.header.s.clone(),
            )
        });
        match output.result() {
            DkimResult::Pass => {
                let (d, s) = seal.unwrap_or_default();
                Chain::Pass {
                    sets: output.sets().len(),
                    d,
                    s,
                }
            }
            // Only when the message has no ARC field, which was ruled out;
            // an incomplete chain (e.g. seals only) is a failure.
            DkimResult::None => Chain::fail("broken or missing ARC chain"),
            DkimResult::TempError(e) => Chain::Fail {
                reason: format!("temperror: {}", reason(e)),
                seal,
            },
            DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
                Chain::Fail {
                    reason: reason(e),
                    seal,
                }
            }
        }
    }
}

/// mail-auth's error as a `reason`; a signature that does not verify says
/// so whatever the crypto library reports (ring's Ed25519 gives only
/// "Unspecified").
fn reason(e: &mail_auth::Error) -> String {
    use mail_auth::common::crypto::CryptoError;
    match e {
        mail_auth::Error::Crypto(CryptoError::FailedVerification | CryptoError::Library(_)) => {
            "signature verification failed".into()
        }
        e => e.to_string(),
    }
}

/// How many ARC-Authentication-Results, ARC-Message-Signature and ARC-Seal
/// fields the header section holds.
fn arc_field_counts(message: &[u8]) -> [usize; 3] {
    const NAMES: [&str; 3] = [
        "ARC-Authentication-Results",
        "ARC-Message-Signature",
        "ARC-Seal",
    ];
    let mut counts = [0usize; 3];
    for field in crate::header::fields(message).0 {
        if let Some(i) = NAMES.iter().position(|n| field.name_is(n)) {
            counts[i] += 1;
        }
    }
    counts
}

/// RFC 8601 `authserv-id` as a host name (a token, never quoted here).
fn valid_authserv_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// RFC 8601 `Keyword` (an ldh-str; `_` accepted too, as some methods and
/// properties in the wild use it).
fn is_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 2045 `token`: printable ASCII except SPACE and tspecials.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// A `pvalue` that needs no quoting: a token, or `local@domain` /
/// `@domain` made of tokens (RFC 8601 section 2.2).
fn is_bare_pvalue(s: &str) -> bool {
    if is_token(s) {
        return true;
    }
    match s.rsplit_once('@') {
        Some((local, domain)) => (local.is_empty() || is_token(local)) && is_token(domain),
        None => false,
    }
}

/// A quoted-string: `\` and `"` escaped, control characters as spaces.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn pvalue(s: &str) -> String {
    if is_bare_pvalue(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// One result as RFC 8601 `resinfo` text, without the leading `;`:
/// `method[/version]=result [reason="..."] [ptype.property=pvalue ...]`.
fn render_resinfo(r: &AuthResult) -> Result<String, AuthnError> {
    let bad = |what: &str, v: &str| {
        AuthnError::Message(format!(
            "invalid authentication result {what} {:?}",
            v.escape_debug().to_string()
        ))
    };
    if !is_keyword(&r.method) {
        return Err(bad("method", &r.method));
    }
    if !is_keyword(&r.result) {
        return Err(bad("result", &r.result));
    }
    let mut out = r.method.to_ascii_lowercase();
    if let Some(v) = r.method_version {
        out.push_str(&format!("/{v}"));
    }
    out.push('=');
    out.push_str(&r.result.to_ascii_lowercase());
    if let Some(reason) = &r.reason {
        out.push_str(" reason=");
        out.push_str(&quoted(&truncate(reason, REASON_MAX)));
    }
    let props: &BTreeMap<String, String> = &r.props;
    for (name, value) in props {
        let valid = match name.split_once('.') {
            Some((ptype, property)) => is_keyword(ptype) && is_keyword(property),
            None => false,
        };
        if !valid {
            return Err(bad("property", name));
        }
        out.push(' ');
        out.push_str(name);
        out.push('=');
        out.push_str(&pvalue(value));
    }
    Ok(out)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(method: &str, result: &str) -> AuthResult {
        AuthResult {
            method: method.into(),
            result: result.into(),
            ..Default::default()
        }
    }

    #[test]
    fn resinfo_rendering() {
        let mut r = result("dkim", "pass");
        r.props.insert("header.d".into(), "example.com".into());
        r.props.insert("header.b".into(), "ab/+cd".into());
        r.props.insert("header.i".into(), "user@example.com".into());
        assert_eq!(
            render_resinfo(&r).unwrap(),
            "dkim=pass header.b=\"ab/+cd\" header.d=example.com header.i=user@example.com"
        );
        let mut r = result("spf", "fail");
        r.method_version = Some(1);
        r.reason = Some("say \"no\"\r\nX-Evil: 1".into());
        assert_eq!(
            render_resinfo(&r).unwrap(),
            "spf/1=fail reason=\"say \\\"no\\\"  X-Evil: 1\""
        );
        r.reason = Some("x".repeat(500));
        assert_eq!(
            render_resinfo(&r).unwrap().len(),
            "spf/1=fail reason=".len() + 2 + REASON_MAX + 3
        );
        assert!(render_resinfo(&result("dkim pass", "pass")).is_err());
        assert!(render_resinfo(&result("dkim", "")).is_err());
        let mut r = result("dkim", "pass");
        r.props.insert("nodot".into(), "x".into());
        assert!(render_resinfo(&r).is_err());
    }

    #[test]
    fn counts_only_header_fields() {
        let m = b"ARC-Seal: i=1\r\narc-seal : i=2\r\n\tARC-Seal: folded\r\n\
                  ARC-Message-Signature: i=1\r\nSubject: x\r\n\r\nARC-Seal: body\r\n";
        assert_eq!(arc_field_counts(m), [0, 1, 2]);
        assert_eq!(arc_field_counts(b"From: a\n\nARC-Seal: x\n"), [0, 0, 0]);
    }

    #[test]
    fn chain_results() {
        let r = Chain::None.into_result();
        assert_eq!((r.method.as_str(), r.result.as_str()), ("arc", "none"));
        let r = Chain::Pass {
            sets: 2,
            d: "example.org".into(),
            s: "arc".into(),
        }
        .into_result();
        assert_eq!(r.result, "pass");
        assert_eq!(r.props["header.d"], "example.org");
        let r = Chain::fail("timeout").into_result();
        assert_eq!(r.result, "fail");
        assert_eq!(r.reason.as_deref(), Some("timeout"));
        assert!(r.props.is_empty());
    }
}
