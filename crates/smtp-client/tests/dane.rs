//! DANE verification (RFC 7672) and RFC 8460 classification: record
//! matching on certificates from rcgen, real handshakes in memory and over
//! loopback, and the classification of WebPKI failures.

use ironpost_smtp_client::dane::{dane_config, usable, DaneFailure, DaneFailureKind, DaneVerifier};
use ironpost_smtp_client::tls::{check_certificate, root_store, webpki_verifier};
use ironpost_smtp_client::tls_report::{
    classify_client_error, classify_rustls_error, classify_tls_error, TlsResultType,
};
use ironpost_smtp_client::{ClientError, SmtpClient, Timeouts, Tlsa};
use ironpost_testkit::fake_smtp::{Behaviour, FakeServer};
use ironpost_testkit::{Leaf, TestCa};
use rustls::client::danger::ServerCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn sha512(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA512, data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const MX: &str = "mx.example";

fn verifier(records: &[Tlsa]) -> DaneVerifier {
    DaneVerifier::new(records, &[MX])
}

fn verify(
    v: &DaneVerifier,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<ironpost_smtp_client::dane::DaneMatch, DaneFailure> {
    v.verify_chain(leaf, intermediates, None, UnixTime::now())
}

fn kind(r: Result<ironpost_smtp_client::dane::DaneMatch, DaneFailure>) -> DaneFailureKind {
    r.expect_err("should have failed").kind
}

// ---------------------------------------------------------- matching

#[test]
fn usable_filters_rfc7672_records() {
    let d32 = vec![7u8; 32];
    let d64 = vec![7u8; 64];
    let records = vec![
        Tlsa::new(0, 1, 1, d32.clone()), // PKIX-TA: unusable for SMTP
        Tlsa::new(1, 1, 1, d32.clone()), // PKIX-EE: unusable
        Tlsa::new(2, 1, 1, d32.clone()),
        Tlsa::new(3, 1, 1, d32.clone()),
        Tlsa::new(3, 0, 2, d64.clone()),
        Tlsa::new(3, 1, 0, vec![0x30, 0x00]),
        Tlsa::new(4, 1, 1, d32.clone()),   // unknown usage
        Tlsa::new(3, 2, 1, d32.clone()),   // unknown selector
        Tlsa::new(3, 1, 3, d32.clone()),   // unknown matching type
        Tlsa::new(3, 1, 1, vec![7u8; 31]), // short SHA-256
        Tlsa::new(3, 1, 1, d64.clone()),   // SHA-512 length for SHA-256
        Tlsa::new(2, 0, 2, d32.clone()),   // SHA-256 length for SHA-512
        Tlsa::new(3, 0, 0, Vec::new()),    // empty exact data
    ];
    assert_eq!(
        usable(&records),
        vec![
            Tlsa::new(2, 1, 1, d32.clone()),
            Tlsa::new(3, 1, 1, d32),
            Tlsa::new(3, 0, 2, d64),
            Tlsa::new(3, 1, 0, vec![0x30, 0x00]),
        ]
    );
    // The verifier drops them too: a PKIX-EE record that would match
    // does not authenticate.
    let leaf = Leaf::self_signed(&[MX]);
    let v = verifier(&[Tlsa::new(1, 1, 1, sha256(&leaf.spki()))]);
    assert!(v.records().is_empty());
    let e = verify(&v, &leaf.der, &[]).unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::NoMatch);
    assert!(e.detail.contains("no usable TLSA record"), "{e}");
}

#[test]
fn dane_ee_matches_cert_or_spki_by_any_matching_type() {
    let leaf = Leaf::self_signed(&[MX]);
    for record in [
        Tlsa::new(3, 1, 1, sha256(&leaf.spki())),
        Tlsa::new(3, 0, 1, sha256(&leaf.der)),
        Tlsa::new(3, 1, 2, sha512(&leaf.spki())),
        Tlsa::new(3, 0, 2, sha512(&leaf.der)),
        Tlsa::new(3, 0, 0, leaf.der.to_vec()),
        Tlsa::new(3, 1, 0, leaf.spki()),
    ] {
        let m = verify(&verifier(std::slice::from_ref(&record)), &leaf.der, &[])
            .unwrap_or_else(|e| panic!("{record}: {e}"));
        assert_eq!((m.record, m.depth), (record, Some(0)));
    }
}

#[test]
fn dane_ee_ignores_names_dates_and_issuer() {
    let ca = TestCa::new("Some CA");
    for leaf in [
        ca.issue(&["wrong.example"]),
        ca.issue_expired(&[MX]),
        Leaf::self_signed_expired(&["wrong.example"]),
    ] {
        let v = verifier(&[Tlsa::new(3, 1, 1, sha256(&leaf.spki()))]);
        verify(&v, &leaf.der, &[]).unwrap();
        // Even with an unrelated, unverifiable chain behind it.
        verify(&v, &leaf.der, &[ca.der(), Leaf::self_signed(&["x"]).der]).unwrap();
    }
}

#[test]
fn wrong_digest_is_no_match_and_says_what_was_presented() {
    let ca = TestCa::new("Some CA");
    let leaf = ca.issue(&[MX]);
    let mut digest = sha256(&leaf.spki());
    digest[0] ^= 1;
    let v = verifier(&[Tlsa::new(3, 1, 1, digest)]);
    let e = verify(&v, &leaf.der, &[ca.der()]).unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::NoMatch);
    // The operator can compare these with the DNS.
    assert!(e.detail.contains(&hex(&sha256(&leaf.spki()))), "{e}");
    assert!(e.detail.contains(&hex(&sha256(&leaf.der))), "{e}");
    assert!(e.detail.contains(&hex(&sha256(&ca.cert.der()[..]))), "{e}");
    let rustls = e.into_rustls_error();
    assert_eq!(classify_rustls_error(&rustls), TlsResultType::TlsaInvalid);
    assert_eq!(
        DaneFailure::from_rustls_error(&rustls).unwrap().kind,
        DaneFailureKind::NoMatch
    );
}

#[test]
fn dane_ta_in_the_chain_validates_the_leaf_and_its_name() {
    let ca = TestCa::new("DANE CA");
    let leaf = ca.issue(&[MX]);
    for record in [
        Tlsa::new(2, 1, 1, sha256(&ca.key.public_key_der())),
        Tlsa::new(2, 0, 1, sha256(&ca.der())),
        Tlsa::new(2, 0, 2, sha512(&ca.der())),
        Tlsa::new(2, 0, 0, ca.der().to_vec()),
    ] {
        let v = verifier(std::slice::from_ref(&record));
        let m = verify(&v, &leaf.der, &[ca.der()]).unwrap_or_else(|e| panic!("{record}: {e}"));
        assert_eq!(m.depth, Some(1), "{record}");
    }
    let record = Tlsa::new(2, 1, 1, sha256(&ca.key.public_key_der()));

    // Reference names: case and trailing dot do not matter, and any one
    // of several will do (RFC 7672 §3.2.2).
    let v = DaneVerifier::new(std::slice::from_ref(&record), &["MX.Example."]);
    verify(&v, &leaf.der, &[ca.der()]).unwrap();
    let v = DaneVerifier::new(std::slice::from_ref(&record), &["other.example", MX]);
    verify(&v, &leaf.der, &[ca.der()]).unwrap();

    // Wrong name.
    let v = verifier(std::slice::from_ref(&record));
    let wrong = ca.issue(&["wrong.example"]);
    let e = verify(&v, &wrong.der, &[ca.der()]).unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::HostMismatch, "{e}");
    assert!(e.detail.contains("wrong.example"), "{e}");
    assert_eq!(
        classify_rustls_error(&e.into_rustls_error()),
        TlsResultType::CertificateHostMismatch
    );

    // Expired leaf.
    let expired = ca.issue_expired(&[MX]);
    let e = verify(&v, &expired.der, &[ca.der()]).unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::Expired, "{e}");
    assert_eq!(
        classify_rustls_error(&e.into_rustls_error()),
        TlsResultType::CertificateExpired
    );

    // A leaf of another CA, sent with the matching CA: the chain does not
    // reach the anchor.
    let other = TestCa::new("Other CA");
    let stranger = other.issue(&[MX]);
    let e = verify(&v, &stranger.der, &[ca.der()]).unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::ChainInvalid, "{e}");
    // Expired and from another CA: not reported as expired.
    let e = verify(&v, &other.issue_expired(&[MX]).der, &[ca.der()]).unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::ChainInvalid, "{e}");

    // A record for another CA matches nothing.
    let v = verifier(&[Tlsa::new(2, 1, 1, sha256(&other.key.public_key_der()))]);
    assert_eq!(
        kind(verify(&v, &leaf.der, &[ca.der()])),
        DaneFailureKind::NoMatch
    );
    // Nor does a TA digest of a CA the server does not send.
    let v = verifier(std::slice::from_ref(&record));
    assert_eq!(kind(verify(&v, &leaf.der, &[])), DaneFailureKind::NoMatch);
}

#[test]
fn dane_ta_with_intermediates() {
    let root = TestCa::new("Root");
    let inter = root.intermediate("Intermediate");
    let leaf = inter.issue(&[MX]);
    let chain = [inter.der(), root.der()];
    // Anchored at the root or at the intermediate.
    for (record, depth) in [
        (Tlsa::new(2, 1, 1, sha256(&root.key.public_key_der())), 2),
        (Tlsa::new(2, 0, 1, sha256(&inter.der())), 1),
    ] {
        let m = verify(&verifier(std::slice::from_ref(&record)), &leaf.der, &chain).unwrap();
        assert_eq!(m.depth, Some(depth));
    }
    // The root is not sent: usable only when the record holds it whole
    // (2 0 0, or 2 1 0 with the name taken from the chain).
    let short = [inter.der()];
    for record in [
        Tlsa::new(2, 0, 0, root.der().to_vec()),
        Tlsa::new(2, 1, 0, root.key.public_key_der()),
    ] {
        let m = verify(&verifier(std::slice::from_ref(&record)), &leaf.der, &short)
            .unwrap_or_else(|e| panic!("{record}: {e}"));
        assert_eq!(m.depth, None);
    }
    let e = verify(
        &verifier(&[Tlsa::new(2, 1, 1, sha256(&root.key.public_key_der()))]),
        &leaf.der,
        &short,
    )
    .unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::NoMatch);
    // Off-chain anchors still check the leaf.
    let wrong = inter.issue(&["wrong.example"]);
    let v = verifier(&[Tlsa::new(2, 1, 0, root.key.public_key_der())]);
    assert_eq!(
        kind(verify(&v, &wrong.der, &short)),
        DaneFailureKind::HostMismatch
    );
    let expired = inter.issue_expired(&[MX]);
    assert_eq!(
        kind(verify(&v, &expired.der, &short)),
        DaneFailureKind::Expired
    );
    // An unrelated full TA record is a plain no-match.
    let other = TestCa::new("Other");
    let v = verifier(&[Tlsa::new(2, 0, 0, other.der().to_vec())]);
    assert_eq!(
        kind(verify(&v, &leaf.der, &short)),
        DaneFailureKind::NoMatch
    );
    assert_eq!(
        kind(verify(&v, &expired.der, &short)),
        DaneFailureKind::NoMatch
    );
}

#[test]
fn dane_ta_matching_the_leaf_itself() {
    let leaf = Leaf::self_signed(&[MX]);
    let v = verifier(&[Tlsa::new(2, 0, 1, sha256(&leaf.der))]);
    assert_eq!(verify(&v, &leaf.der, &[]).unwrap().depth, Some(0));
    // Name and dates still apply, unlike DANE-EE.
    let wrong = Leaf::self_signed(&["wrong.example"]);
    let v = verifier(&[Tlsa::new(2, 1, 1, sha256(&wrong.spki()))]);
    assert_eq!(
        kind(verify(&v, &wrong.der, &[])),
        DaneFailureKind::HostMismatch
    );
    let expired = Leaf::self_signed_expired(&[MX]);
    let v = verifier(&[Tlsa::new(2, 1, 1, sha256(&expired.spki()))]);
    assert_eq!(
        kind(verify(&v, &expired.der, &[])),
        DaneFailureKind::Expired
    );
}

#[test]
fn wildcards_and_missing_reference_names() {
    let ca = TestCa::new("CA");
    let leaf = ca.issue(&["*.mail.example"]);
    let record = Tlsa::new(2, 1, 1, sha256(&ca.key.public_key_der()));
    let v = DaneVerifier::new(std::slice::from_ref(&record), &["mx.mail.example"]);
    verify(&v, &leaf.der, &[ca.der()]).unwrap();
    // Only the left-most label, as webpki does.
    let v = DaneVerifier::new(std::slice::from_ref(&record), &["a.mx.mail.example"]);
    assert_eq!(
        kind(verify(&v, &leaf.der, &[ca.der()])),
        DaneFailureKind::HostMismatch
    );
    // Without reference names the connection's name is used.
    let v = DaneVerifier::new(std::slice::from_ref(&record), &[] as &[&str]);
    let name = ServerName::try_from("mx.mail.example").unwrap();
    v.verify_chain(&leaf.der, &[ca.der()], Some(&name), UnixTime::now())
        .unwrap();
    let e = v
        .verify_chain(&leaf.der, &[ca.der()], None, UnixTime::now())
        .unwrap_err();
    assert_eq!(e.kind, DaneFailureKind::HostMismatch);
}

#[test]
fn ee_or_ta_either_is_enough() {
    let ca = TestCa::new("CA");
    let leaf = ca.issue(&["wrong.example"]);
    let ee = Tlsa::new(3, 1, 1, sha256(&leaf.spki()));
    let ta = Tlsa::new(2, 1, 1, sha256(&ca.key.public_key_der()));
    let mut bad_ee = ee.clone();
    bad_ee.data[5] ^= 0xff;
    // TA fails on the name, EE matches.
    verify(&verifier(&[ta.clone(), ee]), &leaf.der, &[ca.der()]).unwrap();
    // EE does not match, TA validates.
    let good = ca.issue(&[MX]);
    verify(
        &verifier(&[bad_ee.clone(), ta.clone()]),
        &good.der,
        &[ca.der()],
    )
    .unwrap();
    // Neither: the TA's reason is the one reported.
    assert_eq!(
        kind(verify(&verifier(&[bad_ee, ta]), &leaf.der, &[ca.der()])),
        DaneFailureKind::HostMismatch
    );
}

#[test]
fn display_and_debug_stay_short() {
    let leaf = Leaf::self_signed(&[MX]);
    let full = Tlsa::new(3, 0, 0, leaf.der.to_vec());
    let digest = Tlsa::new(3, 1, 1, sha256(&leaf.spki()));
    assert_eq!(digest.to_string(), format!("3 1 1 {}", hex(&digest.data)));
    assert!(full.to_string().len() < 120, "{full}");
    let v = DaneVerifier::new(&[full, digest], &[MX]);
    let debug = format!("{v:?}");
    assert!(debug.len() < 200, "{debug}");
    assert!(debug.contains("dane_ee_records: 2"), "{debug}");
}

// -------------------------------------------------------- handshakes

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    tls12_only: bool,
) -> Arc<ServerConfig> {
    let builder =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()));
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    Arc::new(
        builder
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// Runs a handshake in memory; the client's error if it fails.
fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    name: &str,
) -> Result<rustls::ProtocolVersion, rustls::Error> {
    let mut c = ClientConnection::new(client, ServerName::try_from(name.to_string()).unwrap())?;
    let mut s = ServerConnection::new(server).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().expect("server side failed");
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(c.protocol_version().unwrap());
        }
    }
    panic!("handshake did not finish");
}

fn config(records: &[Tlsa]) -> Arc<ClientConfig> {
    dane_config(Arc::new(verifier(records)), None).unwrap()
}

#[test]
fn in_memory_handshakes_tls13_and_tls12() {
    let ca = TestCa::new("CA");
    let leaf = ca.issue(&[MX]);
    let ee = Tlsa::new(3, 1, 1, sha256(&leaf.spki()));
    let ta = Tlsa::new(2, 0, 1, sha256(&ca.der()));
    for (tls12, want) in [
        (false, rustls::ProtocolVersion::TLSv1_3),
        (true, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let server = server_config(vec![leaf.der.clone(), ca.der()], leaf.private_key(), tls12);
        for record in [&ee, &ta] {
            let v = handshake(config(std::slice::from_ref(record)), server.clone(), MX)
                .unwrap_or_else(|e| panic!("{record}: {e}"));
            assert_eq!(v, want);
        }
        // DANE-EE needs no name: the SNI name may be anything.
        handshake(
            config(std::slice::from_ref(&ee)),
            server.clone(),
            "other.example",
        )
        .unwrap();

        let mut bad = ee.clone();
        bad.data[31] ^= 1;
        let e = handshake(config(&[bad]), server.clone(), MX).unwrap_err();
        assert_eq!(classify_rustls_error(&e), TlsResultType::TlsaInvalid, "{e}");
        // rustls shows the failure with Debug; the kind and detail are in it.
        assert!(e.to_string().contains("NoMatch"), "{e}");
    }
}

/// Serves a certificate with a private key that is not its own.
#[derive(Debug)]
struct Mismatched(Arc<CertifiedKey>);

impl ResolvesServerCert for Mismatched {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[test]
fn handshake_signature_is_checked() {
    // The server presents the certificate that the TLSA record pins, but
    // does not hold its key: a copied certificate must not authenticate.
    let victim = Leaf::self_signed(&[MX]);
    let attacker = Leaf::self_signed(&[MX]);
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&attacker.private_key()).unwrap();
    let certified = CertifiedKey::new(vec![victim.der.clone()], signing_key);
    for tls12 in [false, true] {
        let builder =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()));
        let builder = if tls12 {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        };
        let server = Arc::new(
            builder
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Mismatched(Arc::new(certified.clone())))),
        );
        let e = handshake(
            config(&[Tlsa::new(3, 1, 1, sha256(&victim.spki()))]),
            server,
            MX,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
            ),
            "tls12={tls12}: {e:?}"
        );
        assert!(DaneFailure::from_rustls_error(&e).is_none());
    }
}

// ------------------------------------------- loopback through the client

async fn starttls_with(server_tls: Arc<ServerConfig>, records: &[Tlsa]) -> Result<(), ClientError> {
    let server = FakeServer::start(Behaviour {
        tls: Some(server_tls),
        ..Behaviour::default()
    })
    .await;
    let timeouts = Timeouts::all(Duration::from_secs(10));
    let (mut c, _) = SmtpClient::connect(server.addr, None, &timeouts)
        .await
        .unwrap();
    c.ehlo("client.test").await.unwrap();
    c.starttls(MX, config(records)).await?;
    let caps = c.ehlo("client.test").await.unwrap();
    assert!(caps.esmtp);
    c.quit().await;
    Ok(())
}

#[tokio::test]
async fn starttls_over_loopback_with_dane() {
    let ca = TestCa::new("CA");
    let leaf = ca.issue(&[MX]);
    let server = server_config(vec![leaf.der.clone(), ca.der()], leaf.private_key(), false);
    starttls_with(server.clone(), &[Tlsa::new(3, 1, 1, sha256(&leaf.spki()))])
        .await
        .unwrap();
    starttls_with(
        server.clone(),
        &[Tlsa::new(2, 1, 1, sha256(&ca.key.public_key_der()))],
    )
    .await
    .unwrap();

    // Wrong digest: the handshake fails as tlsa-invalid.
    let mut digest = sha256(&leaf.spki());
    digest[0] ^= 0x80;
    let e = starttls_with(server.clone(), &[Tlsa::new(3, 1, 1, digest)])
        .await
        .unwrap_err();
    let ClientError::Tls(tls) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(classify_tls_error(tls), TlsResultType::TlsaInvalid, "{tls}");
    assert_eq!(classify_client_error(&e), Some(TlsResultType::TlsaInvalid));
    let failure = DaneFailure::from_certificate_error(tls.certificate_error().unwrap()).unwrap();
    assert_eq!(failure.kind, DaneFailureKind::NoMatch);
    assert!(tls.message.contains(&hex(&sha256(&leaf.spki()))), "{tls}");

    // DANE-TA with a leaf for another name.
    let wrong = ca.issue(&["wrong.example"]);
    let server = server_config(
        vec![wrong.der.clone(), ca.der()],
        wrong.private_key(),
        false,
    );
    let e = starttls_with(
        server,
        &[Tlsa::new(2, 1, 1, sha256(&ca.key.public_key_der()))],
    )
    .await
    .unwrap_err();
    assert_eq!(
        classify_client_error(&e),
        Some(TlsResultType::CertificateHostMismatch),
        "{e}"
    );
}

// -------------------------------------------- PKIX classification

#[test]
fn webpki_failures_are_classified() {
    let ca = TestCa::new("Trusted CA");
    let other = TestCa::new("Unknown CA");
    let v = webpki_verifier(root_store(Some(ca.cert.pem().as_bytes())).unwrap()).unwrap();
    let classify = |leaf: &Leaf, name: &str| {
        let e = check_certificate(&*v, name, std::slice::from_ref(&leaf.der)).unwrap_err();
        classify_rustls_error(&e)
    };
    check_certificate(&*v, MX, &[ca.issue(&[MX]).der]).unwrap();
    assert_eq!(
        classify(&ca.issue_expired(&[MX]), MX),
        TlsResultType::CertificateExpired
    );
    assert_eq!(
        classify(&ca.issue(&["wrong.example"]), MX),
        TlsResultType::CertificateHostMismatch
    );
    assert_eq!(
        classify(&other.issue(&[MX]), MX),
        TlsResultType::CertificateNotTrusted
    );
    assert_eq!(
        classify(&Leaf::self_signed(&[MX]), MX),
        TlsResultType::CertificateNotTrusted
    );
    // Through the verifier trait directly, as a handshake would.
    let leaf = other.issue(&[MX]);
    let e = v
        .verify_server_cert(
            &leaf.der,
            &[],
            &ServerName::try_from(MX).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_err();
    assert_eq!(
        classify_rustls_error(&e),
        TlsResultType::CertificateNotTrusted
    );
}
