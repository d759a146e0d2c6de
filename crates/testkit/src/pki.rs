//! Throwaway PKI for TLS tests, built with rcgen.
//!
//! All keys are ECDSA P-256 (rcgen's default): fast to generate, and
//! supported by rustls' ring provider on both sides of a handshake.

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority that lives for the duration of a test.
pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    cert: Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert,
            key,
        }
    }

    /// Leaf certificate (leaf only, no chain) valid for `dns_names`, which
    /// may also contain IP literals such as "127.0.0.1".
    pub fn issue_server(&self, dns_names: &[&str]) -> (String, String) {
        self.issue(leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth))
    }

    /// Client-auth leaf whose subject CN is `common_name`.
    pub fn issue_client(&self, common_name: &str) -> (String, String) {
        let mut params = leaf_params(&[], ExtendedKeyUsagePurpose::ClientAuth);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.issue(params)
    }

    /// Client-auth leaf that expired in 2001.
    pub fn issue_expired_client(&self, common_name: &str) -> (String, String) {
        let mut params = leaf_params(&[], ExtendedKeyUsagePurpose::ClientAuth);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        self.issue(params)
    }

    /// Server leaf that expired in 2001, otherwise identical to `issue_server`.
    pub fn issue_expired_server(&self, dns_names: &[&str]) -> (String, String) {
        let mut params = leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// Self-signed server certificate (cert pem, key pem) for `dns_names`.
pub fn self_signed(dns_names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("generate key");
    let cert = leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth)
        .self_signed(&key)
        .expect("self-sign");
    (cert.pem(), key.serialize_pem())
}

fn leaf_params(names: &[&str], eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    // CertificateParams::new turns IP literals into IP SANs, which rustls
    // needs when the client connects by address.
    let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    params
}
