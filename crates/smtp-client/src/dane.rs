//! DANE for SMTP (RFC 7672): server authentication by DNSSEC-validated
//! TLSA records, as a rustls [`ServerCertVerifier`].
//!
//! Looking up the TLSA RRset (and deciding that it is DNSSEC-secure) is the
//! caller's job; this module only matches and validates. The caller builds
//! one [`DaneVerifier`] per MX host from its TLSA records and reference
//! names, and hands [`dane_config`] to
//! [`SmtpClient::starttls`](crate::SmtpClient::starttls).
//!
//! Supported:
//!
//! - DANE-EE(3): the leaf certificate (selector 0) or its public key
//!   (selector 1) matches; no name, chain or validity-period checks
//!   (RFC 7672 §3.1.1, §3.2).
//! - DANE-TA(2): a certificate of the presented chain (the leaf included)
//!   matches and becomes the trust anchor; the leaf must chain to it, be
//!   within its validity period, allow server authentication (if it has an
//!   EKU) and carry one of the reference names (RFC 7672 §3.1.2, §3.2.2).
//!   A TA that is not sent by the server is still usable when its record
//!   holds the full value: `2 0 0` (the whole certificate) or `2 1 0` (the
//!   public key; the anchor's name is then taken from the chain, as in
//!   RFC 7671 §5.2.3). A digest of a TA that is not sent cannot be used.
//! - Matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512).
//!
//! PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3) and
//! are dropped by [`usable`]. Revocation is not checked (RFC 7672 §3.1
//! leaves it to the DNS).

use crate::tls::{
    config_with_verifier, handshake_signature, provider, signature_schemes, ClientCert,
    TlsConfigError,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use std::fmt;
use std::sync::Arc;

/// Certificate usage DANE-TA(2).
pub const USAGE_DANE_TA: u8 = 2;
/// Certificate usage DANE-EE(3).
pub const USAGE_DANE_EE: u8 = 3;
/// Selector Cert(0): the whole certificate.
pub const SELECTOR_CERT: u8 = 0;
/// Selector SPKI(1): the SubjectPublicKeyInfo.
pub const SELECTOR_SPKI: u8 = 1;
/// Matching type Full(0): the data is the selected content itself.
pub const MATCHING_FULL: u8 = 0;
/// Matching type SHA2-256(1).
pub const MATCHING_SHA256: u8 = 1;
/// Matching type SHA2-512(2).
pub const MATCHING_SHA512: u8 = 2;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    pub fn new(usage: u8, selector: u8, matching: u8, data: impl Into<Vec<u8>>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data: data.into(),
        }
    }

    /// Usable for SMTP under RFC 7672 §3.1: DANE-TA or DANE-EE, a known
    /// selector and matching type, and a digest of the right length.
    pub fn is_usable(&self) -> bool {
        matches!(self.usage, USAGE_DANE_TA | USAGE_DANE_EE)
            && matches!(self.selector, SELECTOR_CERT | SELECTOR_SPKI)
            && match self.matching {
                MATCHING_FULL => !self.data.is_empty(),
                MATCHING_SHA256 => self.data.len() == 32,
                MATCHING_SHA512 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Does this record match a certificate, given its DER and SPKI DER?
    fn matches(&self, cert: &Presented<'_>) -> bool {
        let content = match self.selector {
            SELECTOR_CERT => cert.der,
            SELECTOR_SPKI => match &cert.spki {
                Some(spki) => spki.as_slice(),
                None => return false,
            },
            _ => return false,
        };
        match self.matching {
            MATCHING_FULL => content == self.data.as_slice(),
            MATCHING_SHA256 => digest(&ring::digest::SHA256, content) == self.data,
            MATCHING_SHA512 => digest(&ring::digest::SHA512, content) == self.data,
            _ => false,
        }
    }
}

/// Presentation format, as in a zone file (`3 1 1 ab12…`); long data is
/// shortened so that logging a `3 0 0` record does not dump a certificate.
impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        if self.data.len() <= MAX {
            f.write_str(&hex(&self.data))
        } else {
            write!(
                f,
                "{}… ({} octets)",
                hex(&self.data[..MAX / 2]),
                self.data.len()
            )
        }
    }
}

/// The records of an RRset that are usable for SMTP (RFC 7672 §3.1); the
/// others must be ignored. When none is left, the RRset gives no
/// authentication (RFC 7672 §2.2: the caller falls back to unauthenticated
/// TLS, or fails if it requires DANE).
pub fn usable(records: &[Tlsa]) -> Vec<Tlsa> {
    records.iter().filter(|r| r.is_usable()).cloned().collect()
}

/// Why a DANE verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DaneFailureKind {
    /// No usable TLSA record matched the presented chain.
    NoMatch,
    /// A DANE-TA record matched but the leaf has none of the reference
    /// names.
    HostMismatch,
    /// A DANE-TA record matched but the leaf has expired.
    Expired,
    /// A DANE-TA record matched but the leaf does not validate up to it
    /// (bad signature, unusable EKU, not yet valid, unparsable, …).
    ChainInvalid,
}

impl DaneFailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DaneFailureKind::NoMatch => "no TLSA record matched",
            DaneFailureKind::HostMismatch => "certificate not valid for the reference names",
            DaneFailureKind::Expired => "certificate expired",
            DaneFailureKind::ChainInvalid => "certificate chain invalid",
        }
    }
}

impl fmt::Display for DaneFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DANE verification failure, carried to the caller inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; get it
/// back with [`DaneFailure::from_certificate_error`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneFailure {
    pub kind: DaneFailureKind,
    /// What was presented or what went wrong, for the operator.
    pub detail: String,
}

impl DaneFailure {
    fn new(kind: DaneFailureKind, detail: impl Into<String>) -> DaneFailure {
        DaneFailure {
            kind,
            detail: detail.into(),
        }
    }

    /// The DANE failure inside a certificate error, if it is one.
    pub fn from_certificate_error(e: &CertificateError) -> Option<&DaneFailure> {
        match e {
            CertificateError::Other(OtherError(inner)) => inner.downcast_ref::<DaneFailure>(),
            _ => None,
        }
    }

    /// The DANE failure inside a rustls error, if it is one.
    pub fn from_rustls_error(e: &rustls::Error) -> Option<&DaneFailure> {
        match e {
            rustls::Error::InvalidCertificate(c) => DaneFailure::from_certificate_error(c),
            _ => None,
        }
    }

    /// As the error rustls expects from a verifier.
    pub fn into_rustls_error(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

impl fmt::Display for DaneFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DANE: {}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for DaneFailure {}

/// Which record authenticated the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneMatch {
    pub record: Tlsa,
    /// Position in the presented chain of the matching certificate (0 is
    /// the leaf), or `None` for a trust anchor taken from the record itself.
    pub depth: Option<usize>,
}

/// Server authentication by TLSA records (RFC 7672), for one MX host.
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    /// A verifier for `records` (unusable ones are dropped, see [`usable`])
    /// and `reference_names`: the names DANE-TA leaves are checked against,
    /// normally the MX host name and, if it is a CNAME, the name it
    /// expands to (RFC 7672 §3.2.2). Names are compared case-insensitively
    /// and without a trailing dot. With no reference names the name the
    /// connection was made to (the SNI name) is used.
    ///
    /// With no usable record every certificate is refused: deciding to fall
    /// back to unauthenticated TLS is the caller's business.
    pub fn new<S: AsRef<str>>(records: &[Tlsa], reference_names: &[S]) -> DaneVerifier {
        let mut names: Vec<String> = Vec::new();
        for n in reference_names {
            let n = n.as_ref().trim_end_matches('.').to_ascii_lowercase();
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        DaneVerifier {
            records: usable(records),
            names,
            provider: provider(),
        }
    }

    pub fn records(&self) -> &[Tlsa] {
        &self.records
    }

    pub fn reference_names(&self) -> &[String] {
        &self.names
    }

    /// The DANE decision for a chain (leaf first) at time `now`, without
    /// the handshake signature; usable after the fact on the chain from
    /// [`TlsInfo`](crate::TlsInfo). `sni` is the name used when the
    /// verifier has no reference names.
    pub fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        sni: Option<&ServerName<'_>>,
        now: UnixTime,
    ) -> Result<DaneMatch, DaneFailure> {
        if self.records.is_empty() {
            return Err(DaneFailure::new(
                DaneFailureKind::NoMatch,
                "no usable TLSA record",
            ));
        }
        let chain: Vec<Presented<'_>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(Presented::new)
            .collect();

        // DANE-EE: a match is all it takes.
        for record in self.records.iter().filter(|r| r.usage == USAGE_DANE_EE) {
            if record.matches(&chain[0]) {
                return Ok(DaneMatch {
                    record: record.clone(),
                    depth: Some(0),
                });
            }
        }

        // DANE-TA: every matching certificate is a candidate anchor; any
        // one that validates is enough. The first failure is reported, as
        // it is the one closest to the leaf; with none, nothing matched.
        let mut failure: Option<DaneFailure> = None;
        for record in self.records.iter().filter(|r| r.usage == USAGE_DANE_TA) {
            let mut in_chain = false;
            for (depth, cert) in chain.iter().enumerate() {
                if !record.matches(cert) {
                    continue;
                }
                in_chain = true;
                let result = if depth == 0 {
                    self.leaf_as_anchor(end_entity, sni, now)
                } else {
                    let anchor = webpki::anchor_from_trusted_cert(&intermediates[depth - 1])
                        .map_err(|e| chain_invalid("trust anchor", e));
                    anchor.and_then(|a| {
                        let others: Vec<CertificateDer<'_>> = intermediates
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| *i != depth - 1)
                            .map(|(_, c)| CertificateDer::from(c.as_ref()))
                            .collect();
                        self.validate(end_entity, &[a], &others, sni, now)
                    })
                };
                match result {
                    Ok(()) => {
                        return Ok(DaneMatch {
                            record: record.clone(),
                            depth: Some(depth),
                        })
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if in_chain || record.matching != MATCHING_FULL {
                continue;
            }
            // A TA not sent by the server, but whose record holds all that
            // an anchor needs.
            let result = match record.selector {
                SELECTOR_CERT => {
                    let der = CertificateDer::from(record.data.as_slice());
                    webpki::anchor_from_trusted_cert(&der)
                        .map_err(|e| chain_invalid("trust anchor from the TLSA record", e))
                        .and_then(|a| self.validate(end_entity, &[a], intermediates, sni, now))
                }
                _ => match der_sequence_contents(&record.data) {
                    // The anchor's name is whatever a presented certificate
                    // names as its issuer: only the key is trusted.
                    Some(spki) => {
                        let anchors: Vec<TrustAnchor<'_>> = chain
                            .iter()
                            .filter_map(|c| c.issuer.as_deref())
                            .map(|issuer| TrustAnchor {
                                subject: issuer.into(),
                                subject_public_key_info: spki.into(),
                                name_constraints: None,
                            })
                            .collect();
                        self.validate(end_entity, &anchors, intermediates, sni, now)
                    }
                    None => Err(DaneFailure::new(
                        DaneFailureKind::ChainInvalid,
                        "TLSA 2 1 0 data is not a DER SubjectPublicKeyInfo",
                    )),
                },
            };
            match result {
                Ok(()) => {
                    return Ok(DaneMatch {
                        record: record.clone(),
                        depth: None,
                    })
                }
                // Only a chain that reached the anchor says more than "no
                // match": an unrelated full TA record would otherwise turn
                // every NoMatch into ChainInvalid.
                Err(e) if e.kind != DaneFailureKind::ChainInvalid => {
                    failure.get_or_insert(e);
                }
                Err(_) => {}
            }
        }
        Err(failure
            .unwrap_or_else(|| DaneFailure::new(DaneFailureKind::NoMatch, describe_chain(&chain))))
    }

    /// The leaf chains to one of `anchors`, is valid now for server
    /// authentication, and has a reference name.
    fn validate(
        &self,
        end_entity: &CertificateDer<'_>,
        anchors: &[TrustAnchor<'_>],
        intermediates: &[CertificateDer<'_>],
        sni: Option<&ServerName<'_>>,
        now: UnixTime,
    ) -> Result<(), DaneFailure> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| chain_invalid("leaf certificate", e))?;
        let verify = |time| {
            ee.verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                anchors,
                intermediates,
                time,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map(|_| ())
        };
        match verify(now) {
            Ok(()) => {}
            // webpki checks dates before looking for the issuer, so this
            // says nothing about the anchor: only if the chain would have
            // validated just before expiry is this an expired certificate
            // (and not one that has nothing to do with the anchor).
            Err(e @ webpki::Error::CertExpired { not_after, .. }) => {
                return match verify(not_after) {
                    Ok(()) | Err(webpki::Error::CertExpired { .. }) => {
                        Err(DaneFailure::new(DaneFailureKind::Expired, format!("{e:?}")))
                    }
                    Err(e) => Err(chain_invalid("validation up to the DANE-TA anchor", e)),
                };
            }
            Err(e) => return Err(chain_invalid("validation up to the DANE-TA anchor", e)),
        }
        self.check_names(&ee, sni)
    }

    /// A leaf that matches a DANE-TA record is its own anchor (RFC 7671
    /// §5.2.2 allows it): nothing to chain, but the name and validity
    /// period still apply.
    fn leaf_as_anchor(
        &self,
        end_entity: &CertificateDer<'_>,
        sni: Option<&ServerName<'_>>,
        now: UnixTime,
    ) -> Result<(), DaneFailure> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| chain_invalid("leaf certificate", e))?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|e| {
            DaneFailure::new(
                DaneFailureKind::ChainInvalid,
                format!("leaf certificate: {e}"),
            )
        })?;
        let validity = cert.validity();
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now_secs > validity.not_after.timestamp() {
            return Err(DaneFailure::new(
                DaneFailureKind::Expired,
                format!("leaf expired at {}", validity.not_after),
            ));
        }
        if now_secs < validity.not_before.timestamp() {
            return Err(DaneFailure::new(
                DaneFailureKind::ChainInvalid,
                format!("leaf not valid before {}", validity.not_before),
            ));
        }
        self.check_names(&ee, sni)
    }

    fn check_names(
        &self,
        ee: &webpki::EndEntityCert<'_>,
        sni: Option<&ServerName<'_>>,
    ) -> Result<(), DaneFailure> {
        let mut tried: Vec<String> = Vec::new();
        let configured = self
            .names
            .iter()
            .filter_map(|n| ServerName::try_from(n.as_str()).ok());
        let names: Vec<ServerName<'_>> = if self.names.is_empty() {
            sni.into_iter().cloned().collect()
        } else {
            configured.collect()
        };
        for name in &names {
            if ee.verify_is_valid_for_subject_name(name).is_ok() {
                return Ok(());
            }
            tried.push(name.to_str().into_owned());
        }
        // Bounded: the certificate is the peer's choice.
        let presented: Vec<&str> = ee.valid_dns_names().take(10).collect();
        Err(DaneFailure::new(
            DaneFailureKind::HostMismatch,
            format!(
                "certificate names {presented:?} do not include {}",
                if tried.is_empty() {
                    "any reference name (none is a valid DNS name)".to_string()
                } else {
                    format!("{tried:?}")
                }
            ),
        ))
    }
}

impl fmt::Debug for DaneVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts and names only: full-certificate records can be large.
        let count = |usage| self.records.iter().filter(|r| r.usage == usage).count();
        f.debug_struct("DaneVerifier")
            .field("dane_ee_records", &count(USAGE_DANE_EE))
            .field("dane_ta_records", &count(USAGE_DANE_TA))
            .field("reference_names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.verify_chain(end_entity, intermediates, Some(server_name), now) {
            Ok(m) => {
                tracing::debug!(
                    "DANE: authenticated by TLSA {} at depth {:?}",
                    m.record,
                    m.depth
                );
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e.into_rustls_error()),
        }
    }

    // The handshake signature binds the matched key to the connection;
    // without it a DANE-EE match on a copied certificate would be enough.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_schemes(&self.provider)
    }
}

/// A client config that authenticates the server with `verifier`.
pub fn dane_config(
    verifier: Arc<DaneVerifier>,
    client_cert: Option<ClientCert>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    config_with_verifier(verifier, client_cert)
}

/// A presented certificate with what the records are matched against.
struct Presented<'a> {
    der: &'a [u8],
    /// Parsed by webpki, as rustls does for the handshake signature, so that
    /// a DANE-EE SPKI match is on the very key the signature is checked
    /// with. `None` if webpki cannot parse the certificate.
    spki: Option<Vec<u8>>,
    /// The issuer Name, contents only (as webpki's trust anchors want it).
    issuer: Option<Vec<u8>>,
}

impl<'a> Presented<'a> {
    fn new(der: &'a CertificateDer<'_>) -> Presented<'a> {
        match webpki::EndEntityCert::try_from(der) {
            Ok(cert) => Presented {
                der: der.as_ref(),
                spki: Some(cert.subject_public_key_info().as_ref().to_vec()),
                issuer: Some(cert.issuer().to_vec()),
            },
            Err(_) => Presented {
                der: der.as_ref(),
                spki: None,
                issuer: None,
            },
        }
    }
}

/// What was presented, for comparison with the TLSA records in the DNS.
fn describe_chain(chain: &[Presented<'_>]) -> String {
    let mut out = String::from("presented");
    for (depth, cert) in chain.iter().enumerate().take(8) {
        let spki = match &cert.spki {
            Some(spki) => hex(&digest(&ring::digest::SHA256, spki)),
            None => "unparsable".to_string(),
        };
        out.push_str(&format!(
            "{} [{depth}] cert sha256 {}, spki sha256 {spki}",
            if depth == 0 { ":" } else { ";" },
            hex(&digest(&ring::digest::SHA256, cert.der)),
        ));
    }
    if chain.len() > 8 {
        out.push_str(&format!("; and {} more", chain.len() - 8));
    }
    out
}

fn chain_invalid(what: &str, e: webpki::Error) -> DaneFailure {
    DaneFailure::new(DaneFailureKind::ChainInvalid, format!("{what}: {e:?}"))
}

fn digest(alg: &'static ring::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    ring::digest::digest(alg, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The contents of a DER SEQUENCE that spans all of `der`.
fn der_sequence_contents(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() == len).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_sequence_contents_needs_one_exact_sequence() {
        assert_eq!(
            der_sequence_contents(&[0x30, 0x02, 1, 2]),
            Some(&[1u8, 2][..])
        );
        assert_eq!(der_sequence_contents(&[0x30, 0x00]), Some(&[][..]));
        let mut long = vec![0x30, 0x81, 200];
        long.extend([9u8; 200]);
        assert_eq!(der_sequence_contents(&long).map(<[u8]>::len), Some(200));
        for bad in [
            &[][..],
            &[0x31, 0x00],       // not a SEQUENCE
            &[0x30, 0x03, 1, 2], // short
            &[0x30, 0x01, 1, 2], // trailing data
            &[0x30, 0x80],       // indefinite length
            &[0x30, 0x82, 0x00], // truncated length
        ] {
            assert_eq!(der_sequence_contents(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn failure_round_trips_through_rustls() {
        let e = DaneFailure::new(DaneFailureKind::Expired, "x").into_rustls_error();
        let back = DaneFailure::from_rustls_error(&e).unwrap();
        assert_eq!(back.kind, DaneFailureKind::Expired);
        assert_eq!(back.to_string(), "DANE: certificate expired: x");
        assert!(DaneFailure::from_rustls_error(&rustls::Error::HandshakeNotComplete).is_none());
    }
}
