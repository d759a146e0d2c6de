//! RFC 8460 (SMTP TLS Reporting) result types, and the classification of
//! this crate's TLS failures into them.
//!
//! The DNS-side types (`tlsa-invalid` for an unusable RRset,
//! `dnssec-invalid`, `dane-required`) and the MTA-STS ones are decided by
//! the callers that look up the policies; from a handshake only the
//! certificate and STARTTLS types can be derived.

use crate::dane::{DaneFailure, DaneFailureKind};
use crate::error::{ClientError, Phase, TlsError};
use rustls::CertificateError;
use std::fmt;
use std::str::FromStr;

/// A `result-type` of RFC 8460 §4.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsResultType {
    StartTlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl TlsResultType {
    pub const ALL: [TlsResultType; 11] = [
        TlsResultType::StartTlsNotSupported,
        TlsResultType::CertificateHostMismatch,
        TlsResultType::CertificateExpired,
        TlsResultType::CertificateNotTrusted,
        TlsResultType::ValidationFailure,
        TlsResultType::TlsaInvalid,
        TlsResultType::DnssecInvalid,
        TlsResultType::DaneRequired,
        TlsResultType::StsPolicyFetchError,
        TlsResultType::StsPolicyInvalid,
        TlsResultType::StsWebpkiInvalid,
    ];

    /// The string used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsResultType::StartTlsNotSupported => "starttls-not-supported",
            TlsResultType::CertificateHostMismatch => "certificate-host-mismatch",
            TlsResultType::CertificateExpired => "certificate-expired",
            TlsResultType::CertificateNotTrusted => "certificate-not-trusted",
            TlsResultType::ValidationFailure => "validation-failure",
            TlsResultType::TlsaInvalid => "tlsa-invalid",
            TlsResultType::DnssecInvalid => "dnssec-invalid",
            TlsResultType::DaneRequired => "dane-required",
            TlsResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            TlsResultType::StsPolicyInvalid => "sts-policy-invalid",
            TlsResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

impl fmt::Display for TlsResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not an RFC 8460 result type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS-RPT result type {0:?}")]
pub struct UnknownResultType(pub String);

impl FromStr for TlsResultType {
    type Err = UnknownResultType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlsResultType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownResultType(s.to_string()))
    }
}

/// The result type of a DANE verification failure.
///
/// A chain that does not validate up to a matched DANE-TA anchor is
/// `certificate-not-trusted`, which RFC 8460 §4.3.2.1 defines to cover
/// "certificate chain errors", as for PKIX.
pub fn classify_dane_failure(kind: DaneFailureKind) -> TlsResultType {
    match kind {
        DaneFailureKind::NoMatch => TlsResultType::TlsaInvalid,
        DaneFailureKind::HostMismatch => TlsResultType::CertificateHostMismatch,
        DaneFailureKind::Expired => TlsResultType::CertificateExpired,
        DaneFailureKind::ChainInvalid => TlsResultType::CertificateNotTrusted,
    }
}

/// The result type of a certificate refused by a verifier: DANE failures
/// by their kind, WebPKI (rustls/webpki) errors by their meaning.
pub fn classify_certificate_error(e: &CertificateError) -> TlsResultType {
    if let Some(dane) = DaneFailure::from_certificate_error(e) {
        return classify_dane_failure(dane.kind);
    }
    match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsResultType::CertificateHostMismatch
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            TlsResultType::CertificateExpired
        }
        // A verifier of our own (not DANE) that refused for its own reasons.
        CertificateError::ApplicationVerificationFailure | CertificateError::Other(_) => {
            TlsResultType::ValidationFailure
        }
        // Unknown CA, bad signature, wrong EKU, not yet valid, revoked,
        // unparsable, …: RFC 8460's catch-all for certificate problems.
        _ => TlsResultType::CertificateNotTrusted,
    }
}

/// The result type of a rustls error, such as one returned by
/// [`check_certificate`](crate::tls::check_certificate).
pub fn classify_rustls_error(e: &rustls::Error) -> TlsResultType {
    match e {
        rustls::Error::InvalidCertificate(c) => classify_certificate_error(c),
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertRevocationList(_) => {
            TlsResultType::CertificateNotTrusted
        }
        // Handshake failures without a certificate verdict (no common
        // cipher suite, alerts from the peer, protocol errors).
        _ => TlsResultType::ValidationFailure,
    }
}

/// The result type of a failed handshake or TLS setup.
pub fn classify_tls_error(e: &TlsError) -> TlsResultType {
    match &e.rustls {
        Some(r) => classify_rustls_error(r),
        // I/O failure during the handshake, invalid server name, …
        None => TlsResultType::ValidationFailure,
    }
}

/// The result type of a session error, if it is a TLS failure to report:
/// STARTTLS not offered or refused, a failed or timed-out handshake.
/// `None` for errors that have nothing to do with TLS.
pub fn classify_client_error(e: &ClientError) -> Option<TlsResultType> {
    match e {
        ClientError::NotOffered("STARTTLS")
        | ClientError::Rejected {
            phase: Phase::StartTls,
            ..
        } => Some(TlsResultType::StartTlsNotSupported),
        ClientError::Tls(e) => Some(classify_tls_error(e)),
        ClientError::Timeout(Phase::TlsHandshake)
        | ClientError::Io {
            phase: Phase::TlsHandshake,
            ..
        }
        | ClientError::Protocol {
            phase: Phase::StartTls | Phase::TlsHandshake,
            ..
        } => Some(TlsResultType::ValidationFailure),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::OtherError;
    use std::sync::Arc;

    #[test]
    fn strings_are_the_rfc_ones_and_round_trip() {
        let strings: Vec<&str> = TlsResultType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            strings,
            [
                "starttls-not-supported",
                "certificate-host-mismatch",
                "certificate-expired",
                "certificate-not-trusted",
                "validation-failure",
                "tlsa-invalid",
                "dnssec-invalid",
                "dane-required",
                "sts-policy-fetch-error",
                "sts-policy-invalid",
                "sts-webpki-invalid",
            ]
        );
        for t in TlsResultType::ALL {
            assert_eq!(t.to_string().parse::<TlsResultType>(), Ok(t));
        }
        assert!("starttls-not-supported ".parse::<TlsResultType>().is_err());
    }

    fn dane(kind: DaneFailureKind) -> rustls::Error {
        DaneFailure {
            kind,
            detail: "x".into(),
        }
        .into_rustls_error()
    }

    #[test]
    fn dane_and_pkix_errors() {
        for (kind, want) in [
            (DaneFailureKind::NoMatch, TlsResultType::TlsaInvalid),
            (
                DaneFailureKind::HostMismatch,
                TlsResultType::CertificateHostMismatch,
            ),
            (DaneFailureKind::Expired, TlsResultType::CertificateExpired),
            (
                DaneFailureKind::ChainInvalid,
                TlsResultType::CertificateNotTrusted,
            ),
        ] {
            assert_eq!(classify_rustls_error(&dane(kind)), want);
            let tls = TlsError {
                message: "m".into(),
                rustls: Some(dane(kind)),
            };
            assert_eq!(classify_tls_error(&tls), want);
        }
        use CertificateError as C;
        for (e, want) in [
            (C::NotValidForName, TlsResultType::CertificateHostMismatch),
            (C::Expired, TlsResultType::CertificateExpired),
            (C::UnknownIssuer, TlsResultType::CertificateNotTrusted),
            (C::BadSignature, TlsResultType::CertificateNotTrusted),
            (C::InvalidPurpose, TlsResultType::CertificateNotTrusted),
            (C::NotValidYet, TlsResultType::CertificateNotTrusted),
            (C::Revoked, TlsResultType::CertificateNotTrusted),
            (
                C::ApplicationVerificationFailure,
                TlsResultType::ValidationFailure,
            ),
            (
                C::Other(OtherError(Arc::new(std::fmt::Error))),
                TlsResultType::ValidationFailure,
            ),
        ] {
            assert_eq!(classify_certificate_error(&e), want, "{e:?}");
        }
        assert_eq!(
            classify_rustls_error(&rustls::Error::HandshakeNotComplete),
            TlsResultType::ValidationFailure
        );
        assert_eq!(
            classify_tls_error(&TlsError::new("handshake failed: reset")),
            TlsResultType::ValidationFailure
        );
    }

    #[test]
    fn client_errors() {
        assert_eq!(
            classify_client_error(&ClientError::NotOffered("STARTTLS")),
            Some(TlsResultType::StartTlsNotSupported)
        );
        let reply = crate::parse_reply(b"454 4.7.0 TLS not available\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(
            classify_client_error(&ClientError::Rejected {
                phase: Phase::StartTls,
                reply,
            }),
            Some(TlsResultType::StartTlsNotSupported)
        );
        assert_eq!(
            classify_client_error(&ClientError::Timeout(Phase::TlsHandshake)),
            Some(TlsResultType::ValidationFailure)
        );
        assert_eq!(
            classify_client_error(&ClientError::Tls(TlsError {
                message: "m".into(),
                rustls: Some(dane(DaneFailureKind::NoMatch)),
            })),
            Some(TlsResultType::TlsaInvalid)
        );
        assert_eq!(
            classify_client_error(&ClientError::Timeout(Phase::DataDot)),
            None
        );
        assert_eq!(
            classify_client_error(&ClientError::NotOffered("AUTH")),
            None
        );
    }
}
