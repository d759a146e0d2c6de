use super::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::path::Path;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM, certificate DER) for `name`.
    fn issue(&self, name: &str) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

fn write(dir: &Path, name: &str, text: &str) -> KeySource {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    KeySource::File(path)
}

fn client(ca: &Ca, alpn: &[&[u8]], client_cert: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots());
    let mut config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

struct Handshake {
    /// The server's leaf certificate as the client saw it.
    server_cert: Option<Vec<u8>>,
    alpn: Option<Vec<u8>>,
    server_ok: bool,
}

async fn handshake(source: &Arc<TlsSource>, client: Arc<ClientConfig>) -> Handshake {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(source.config().await);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("mx.test").unwrap();
    let (server, client) = tokio::join!(acceptor.accept(s), connector.connect(name, c));
    let (server_cert, alpn) = match &client {
        Ok(t) => {
            let conn = t.get_ref().1;
            (
                conn.peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec()),
                conn.alpn_protocol().map(<[u8]>::to_vec),
            )
        }
        Err(_) => (None, None),
    };
    Handshake {
        server_cert,
        alpn,
        server_ok: server.is_ok(),
    }
}

#[tokio::test]
async fn keysource_certificate_is_reloaded_and_a_bad_reload_keeps_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert_a, key_a, der_a) = ca.issue("mx.test");
    let cert = write(dir.path(), "cert.pem", &cert_a);
    let key = write(dir.path(), "key.pem", &key_a);
    let options = TlsOptions::new(vec!["ignored.test".into()])
        .label("listener test")
        .reload_interval(Duration::from_millis(100));
    let source = Arc::new(TlsSource::new(Some(cert), Some(key), options).unwrap());
    assert!(!source.is_self_signed());
    assert!(source.describe().starts_with("certificate from "));
    let h = handshake(&source, client(&ca, &[], None)).await;
    assert!(h.server_ok);
    assert_eq!(h.server_cert.as_deref(), Some(&der_a[..]));

    // Rotated on disk: served once the interval has passed, not before.
    let (cert_b, key_b, der_b) = ca.issue("mx.test");
    write(dir.path(), "cert.pem", &cert_b);
    write(dir.path(), "key.pem", &key_b);
    let h = handshake(&source, client(&ca, &[], None)).await;
    assert_eq!(h.server_cert.as_deref(), Some(&der_a[..]));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let h = handshake(&source, client(&ca, &[], None)).await;
    assert_eq!(h.server_cert.as_deref(), Some(&der_b[..]));

    // A broken certificate on disk: the previous one stays.
    write(dir.path(), "cert.pem", "not a certificate");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let h = handshake(&source, client(&ca, &[], None)).await;
    assert!(h.server_ok);
    assert_eq!(h.server_cert.as_deref(), Some(&der_b[..]));
}

#[test]
fn broken_material_fails_at_start_without_echoing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert_pem, key_pem, _) = ca.issue("mx.test");
    let options = || TlsOptions::new(vec!["localhost".into()]);

    let bad_cert = write(dir.path(), "bad-cert.pem", "SECRET-ISH TEXT");
    let key = write(dir.path(), "key.pem", &key_pem);
    let err = TlsSource::new(Some(bad_cert), Some(key), options())
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("tls_certificate: "), "{err}");
    assert!(err.contains("bad-cert.pem"), "{err}");

    let cert = write(dir.path(), "cert.pem", &cert_pem);
    let bad_key = write(dir.path(), "bad-key.pem", "hunter2 hunter2");
    let err = TlsSource::new(Some(cert.clone()), Some(bad_key), options())
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("tls_private_key: "), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let missing = KeySource::File(dir.path().join("missing.pem"));
    let err = TlsSource::new(Some(cert), Some(missing), options())
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("cannot load tls_private_key: "), "{err}");
}

#[tokio::test]
async fn self_signed_without_a_configured_pair_with_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert_pem, _, _) = ca.issue("mx.test");
    // A certificate without a key is not a pair: self-signed.
    let cert = write(dir.path(), "cert.pem", &cert_pem);
    let options = TlsOptions::new(vec!["localhost".into(), "127.0.0.1".into()])
        .alpn(vec![b"http/1.1".to_vec()])
        .reload_interval(Duration::ZERO);
    let source = Arc::new(TlsSource::new(Some(cert), None, options).unwrap());
    assert!(source.is_self_signed());
    assert_eq!(
        source.describe(),
        "self-signed certificate generated in memory"
    );
    let config = source.config().await;
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    // Never regenerated, whatever the interval.
    assert!(Arc::ptr_eq(&config, &source.config().await));
    // Not issued by our CA: the client refuses it.
    let h = handshake(&source, client(&ca, &[b"http/1.1"], None)).await;
    assert!(h.server_cert.is_none());
}

#[tokio::test]
async fn alpn_is_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert_pem, key_pem, _) = ca.issue("mx.test");
    let cert = write(dir.path(), "cert.pem", &cert_pem);
    let key = write(dir.path(), "key.pem", &key_pem);
    let options = TlsOptions::new(vec![]).alpn(vec![b"http/1.1".to_vec()]);
    let source = Arc::new(TlsSource::new(Some(cert), Some(key), options).unwrap());
    let h = handshake(&source, client(&ca, &[b"h2", b"http/1.1"], None)).await;
    assert!(h.server_ok);
    assert_eq!(h.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_certificates_required_or_optional() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new();
    let client_ca = Ca::new();
    let other_ca = Ca::new();
    let (cert_pem, key_pem, _) = server_ca.issue("mx.test");
    let cert = write(dir.path(), "cert.pem", &cert_pem);
    let key = write(dir.path(), "key.pem", &key_pem);
    let ca_source = write(dir.path(), "client-ca.pem", &client_ca.cert.pem());
    let (good_cert, good_key, _) = client_ca.issue("client.test");
    let (bad_cert, bad_key, _) = other_ca.issue("client.test");

    for (mode, anonymous_ok) in [
        (ClientCertMode::Required, false),
        (ClientCertMode::Optional, true),
    ] {
        let verifier = client_verifier(&ca_source, mode).unwrap();
        let options = TlsOptions::new(vec![]).client_auth(Some(verifier));
        let source =
            Arc::new(TlsSource::new(Some(cert.clone()), Some(key.clone()), options).unwrap());
        let h = handshake(&source, client(&server_ca, &[], None)).await;
        assert_eq!(h.server_ok, anonymous_ok, "{mode:?} without a certificate");
        let h = handshake(
            &source,
            client(&server_ca, &[], Some((&good_cert, &good_key))),
        )
        .await;
        assert!(h.server_ok, "{mode:?} with a certificate from the CA");
        let h = handshake(
            &source,
            client(&server_ca, &[], Some((&bad_cert, &bad_key))),
        )
        .await;
        assert!(!h.server_ok, "{mode:?} with a certificate from another CA");
    }
}

#[test]
fn client_ca_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.pem", "");
    let err = client_verifier(&empty, ClientCertMode::Required)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no CA certificate found"), "{err}");
}

#[test]
fn the_self_signed_certificate_lasts_a_year_and_names_every_name() {
    let (der, _) = super::generate_self_signed(&["mx.test".into(), "127.0.0.1".into()]).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let v = cert.validity();
    let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400;
    assert!((365..=367).contains(&days), "{days} days");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(v.not_before.timestamp() <= now && now < v.not_after.timestamp());
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let text = format!("{san:?}");
    assert!(text.contains("mx.test") && text.contains("127"), "{text}");
}
