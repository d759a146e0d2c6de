//! A sending domain's security posture. [`records`] derives what the
//! domain should publish from what the policy configures; [`check`]
//! resolves what is live and grades it against the same [`Posture`].
//! Both take typed data: reading the policy is the caller's job.

pub mod check;
pub mod records;

use serde::Serialize;
use std::net::IpAddr;

/// What the policy says about one mail domain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Posture {
    /// The mail domain (`example.com`), lower case, no trailing dot.
    pub domain: String,
    /// The egress sources' addresses that may send this domain's mail.
    pub source_addresses: Vec<IpAddr>,
    /// False when some egress source has no fixed address (the host's
    /// default route picks it): the SPF record cannot end in `-all` then.
    pub sources_complete: bool,
    /// The DKIM keys the policy's signers use for this domain.
    pub dkim: Vec<DkimKey>,
    /// DMARC aggregate report addresses (`mailto:` URIs).
    pub dmarc_rua: Vec<String>,
    /// TLS-RPT report addresses (`mailto:` or `https:` URIs).
    pub tls_rpt_rua: Vec<String>,
    /// The MTA-STS policy Ironpost hosts for this domain.
    pub mta_sts: Option<MtaSts>,
    /// BIMI: the SVG logo's URL and, optionally, the VMC's URL.
    pub bimi: Option<Bimi>,
    /// The listeners' certificates, for inbound DANE (`TLSA 3 1 1`).
    pub listener_certs: Vec<ListenerCert>,
}

/// One DKIM key: its selector and the TXT record value that publishes it.
#[derive(Clone, Debug, Serialize)]
pub struct DkimKey {
    pub selector: String,
    /// `rsa` or `ed25519` (the record's `k=`).
    pub key_type: String,
    /// The public key, base64 (the record's `p=`).
    pub public_key_b64: String,
    /// RSA modulus bits; `None` for Ed25519.
    pub bits: Option<usize>,
}

/// An MTA-STS policy (RFC 8461 §3.2).
#[derive(Clone, Debug, Serialize)]
pub struct MtaSts {
    /// `enforce`, `testing` or `none`.
    pub mode: String,
    /// `mx` patterns: host names or `*.suffix`.
    pub mx: Vec<String>,
    /// Seconds.
    pub max_age: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bimi {
    pub logo_url: String,
    pub authority_url: Option<String>,
}

/// A listener's host name, port and leaf certificate (DER).
#[derive(Clone, Debug, Serialize)]
pub struct ListenerCert {
    pub hostname: String,
    pub port: u16,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
}

impl MtaSts {
    /// The policy file's body (RFC 8461 §3.2): CRLF line endings.
    pub fn policy_text(&self) -> String {
        let mut text = format!("version: STSv1\r\nmode: {}\r\n", self.mode);
        for mx in &self.mx {
            text.push_str(&format!("mx: {mx}\r\n"));
        }
        text.push_str(&format!("max_age: {}\r\n", self.max_age));
        text
    }

    /// The TXT record's `id`: derived from the policy's content, so it
    /// changes exactly when the policy does (senders refetch on a new id).
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.policy_text().as_bytes());
        digest[..10].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `TLSA 3 1 1` data: the SHA-256 of the certificate's public key info.
pub fn tlsa_311(cert_der: &[u8]) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(Sha256::digest(spki)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The modulus size of an RSA public key given as SubjectPublicKeyInfo
/// DER; `None` for any other key.
pub fn rsa_bits(spki_der: &[u8]) -> Option<usize> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => Some(rsa.key_size()),
        _ => None,
    }
}
