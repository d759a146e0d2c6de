//! Throwaway PKI for TLS tests, built with rcgen.
//!
//! All keys are ECDSA P-256 (rcgen's default): fast to generate, and
//! supported by rustls' ring provider on both sides of a handshake.
//!
//! Everything comes as PEM strings, DER or rustls types, never as types of
//! other Ironpost crates, so the crates testkit depends on can use it in
//! their own tests.

use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that lives for the duration of a test.
pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA certificate and key themselves, e.g. for TLSA digests.
    pub cert: Certificate,
    pub key: KeyPair,
}

impl TestCa {
    /// A self-signed root.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let cert = ca_params(name).self_signed(&key).expect("self-sign CA");
        TestCa::from_parts(cert, key)
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let cert = ca_params(name)
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign intermediate CA");
        TestCa::from_parts(cert, key)
    }

    fn from_parts(cert: Certificate, key: KeyPair) -> TestCa {
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert,
            key,
        }
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Server leaf (leaf only, no chain) valid for `dns_names`, which may
    /// also contain IP literals such as "127.0.0.1"; (cert PEM, key PEM).
    pub fn issue_server(&self, dns_names: &[&str]) -> (String, String) {
        self.issue(dns_names).into_pem()
    }

    /// Client-auth leaf whose subject CN is `common_name`.
    pub fn issue_client(&self, common_name: &str) -> (String, String) {
        let mut params = leaf_params(&[], ExtendedKeyUsagePurpose::ClientAuth);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.sign(params).into_pem()
    }

    /// Client-auth leaf that expired in 2001.
    pub fn issue_expired_client(&self, common_name: &str) -> (String, String) {
        let mut params = leaf_params(&[], ExtendedKeyUsagePurpose::ClientAuth);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        expire(&mut params);
        self.sign(params).into_pem()
    }

    /// Server leaf that expired in 2001, otherwise identical to `issue_server`.
    pub fn issue_expired_server(&self, dns_names: &[&str]) -> (String, String) {
        self.issue_expired(dns_names).into_pem()
    }

    /// [`issue_server`](Self::issue_server) as a [`Leaf`].
    pub fn issue(&self, dns_names: &[&str]) -> Leaf {
        self.sign(leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth))
    }

    /// [`issue_expired_server`](Self::issue_expired_server) as a [`Leaf`].
    pub fn issue_expired(&self, dns_names: &[&str]) -> Leaf {
        let mut params = leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth);
        expire(&mut params);
        self.sign(params)
    }

    /// A rustls server config (ring provider, TLS 1.2 and 1.3) presenting a
    /// fresh leaf of this CA for `dns_names`, without the CA in the chain.
    pub fn server_config(&self, dns_names: &[&str]) -> Arc<ServerConfig> {
        let (cert, key) = self.issue_server(dns_names);
        crate::tls::server_config(cert.as_bytes(), key.as_bytes(), None)
            .expect("server config for a test leaf")
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Leaf::new(cert, key)
    }
}

/// An end-entity certificate and its key.
pub struct Leaf {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    pub key: KeyPair,
    cert_pem: String,
}

impl Leaf {
    fn new(cert: Certificate, key: KeyPair) -> Leaf {
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key,
        }
    }

    /// A self-signed server certificate for `dns_names`.
    pub fn self_signed(dns_names: &[&str]) -> Leaf {
        Leaf::self_sign(leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth))
    }

    /// A self-signed server certificate for `dns_names` that expired in 2001.
    pub fn self_signed_expired(dns_names: &[&str]) -> Leaf {
        let mut params = leaf_params(dns_names, ExtendedKeyUsagePurpose::ServerAuth);
        expire(&mut params);
        Leaf::self_sign(params)
    }

    fn self_sign(params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("generate key");
        let cert = params.self_signed(&key).expect("self-sign");
        Leaf::new(cert, key)
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki(&self) -> Vec<u8> {
        self.key.public_key_der()
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// (cert PEM, key PEM).
    pub fn into_pem(self) -> (String, String) {
        let key = self.key.serialize_pem();
        (self.cert_pem, key)
    }
}

/// Self-signed server certificate (cert pem, key pem) for `dns_names`.
pub fn self_signed(dns_names: &[&str]) -> (String, String) {
    Leaf::self_signed(dns_names).into_pem()
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
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

fn expire(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2001, 1, 1);
}
