//! Key parsing: every accepted format, and a clear error for each refusal.
//! Keys are made at test time with the `openssl` command-line tool.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use ironpost_dkim::{public_key_from_private, Algorithm, DkimError, SigningKey};

const RSA: Algorithm = Algorithm::RsaSha256;
const ED: Algorithm = Algorithm::Ed25519Sha256;

fn pem_wrap(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// The error text must not contain any piece of the key: of a PEM key's
/// base64 body, or of a DER key's bytes.
fn assert_no_key_material(err: &DkimError, key: &[u8]) {
    let text = format!("{err} {err:?}");
    let text = text.as_bytes();
    let is_pem = key.windows(11).any(|w| w == b"-----BEGIN ");
    if is_pem {
        let body: Vec<u8> = String::from_utf8_lossy(key)
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.contains(':'))
            .collect::<String>()
            .into_bytes();
        for piece in body.windows(12).step_by(5) {
            assert!(
                !text.windows(12).any(|w| w == piece),
                "error leaks key text {:?}: {}",
                String::from_utf8_lossy(piece),
                String::from_utf8_lossy(text)
            );
        }
    } else {
        // Binary key: no 8-byte window with a non-ASCII byte may appear.
        for window in key.windows(8).step_by(3) {
            if window.is_ascii() {
                continue;
            }
            assert!(
                !text.windows(8).any(|w| w == window),
                "error leaks raw key bytes: {}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

fn expect_err(algo: Algorithm, key: &[u8]) -> DkimError {
    let err = SigningKey::from_bytes(algo, key).expect_err("key should be refused");
    assert_no_key_material(&err, key);
    err
}

fn check_public(algo: Algorithm, pem: &[u8]) {
    let key = SigningKey::from_bytes(algo, pem).unwrap();
    let spki = public_der(pem);
    match algo {
        Algorithm::RsaSha256 => assert_eq!(key.public_key_der(), &spki[..]),
        // The raw key is the last 32 bytes of the SubjectPublicKeyInfo.
        Algorithm::Ed25519Sha256 => assert_eq!(key.public_key_der(), &spki[spki.len() - 32..]),
    }
    assert_eq!(
        public_key_from_private(algo, pem).unwrap(),
        STANDARD.encode(key.public_key_der())
    );
}

#[test]
fn parses_rsa_pkcs1_pem() {
    if !have_openssl() {
        return;
    }
    let pem = rsa_pkcs1_pem();
    assert!(String::from_utf8_lossy(&pem).contains("BEGIN RSA PRIVATE KEY"));
    let key = SigningKey::from_bytes(RSA, &pem).unwrap();
    assert_eq!(key.algorithm(), RSA);
    check_public(RSA, &pem);
}

#[test]
fn parses_rsa_pkcs8_pem() {
    if !have_openssl() {
        return;
    }
    let pem = rsa_pkcs8_pem();
    assert!(String::from_utf8_lossy(&pem).contains("BEGIN PRIVATE KEY"));
    SigningKey::from_bytes(RSA, &pem).unwrap();
    check_public(RSA, &pem);
}

#[test]
fn rsa_der_forms() {
    if !have_openssl() {
        return;
    }
    let pkcs8_der = to_der(&rsa_pkcs8_pem());
    SigningKey::from_bytes(RSA, &pkcs8_der).unwrap();
    let pkcs1_der = openssl(
        &["rsa", "-traditional", "-outform", "DER"],
        Some(&rsa_pkcs1_pem()),
    );
    let a = SigningKey::from_bytes(RSA, &pkcs1_der).unwrap();
    let b = SigningKey::from_bytes(RSA, &rsa_pkcs1_pem()).unwrap();
    assert_eq!(a.public_key_der(), b.public_key_der());
}

#[test]
fn rsa_pem_with_crlf_and_surrounding_text() {
    if !have_openssl() {
        return;
    }
    let pem = String::from_utf8(rsa_pkcs8_pem()).unwrap();
    let messy = format!(
        "# DKIM key for example.com\r\n\r\n{}",
        pem.replace('\n', "\r\n")
    );
    SigningKey::from_bytes(RSA, messy.as_bytes()).unwrap();
}

#[test]
fn ed25519_pkcs8_v1_pem_and_der() {
    if !have_openssl() {
        return;
    }
    let pem = ed25519_pem();
    assert!(String::from_utf8_lossy(&pem).contains("BEGIN PRIVATE KEY"));
    let der = to_der(&pem);
    // v1: version 0, no public key: 48 bytes.
    assert_eq!(der.len(), 48);
    let a = SigningKey::from_bytes(ED, &pem).unwrap();
    let b = SigningKey::from_bytes(ED, &der).unwrap();
    assert_eq!(a.public_key_der(), b.public_key_der());
    assert_eq!(a.public_key_der().len(), 32);
    check_public(ED, &pem);
}

#[test]
fn ed25519_pkcs8_v2_der_and_pem() {
    // v2 (RFC 5958 OneAsymmetricKey with the public key), as ring writes it.
    let v2 = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().unwrap();
    assert_eq!(v2[4], 1, "version 1 (v2) expected");
    let a = SigningKey::from_bytes(ED, &v2).unwrap();
    let pem = pem_wrap("PRIVATE KEY", &v2);
    let b = SigningKey::from_bytes(ED, &pem).unwrap();
    assert_eq!(a.public_key_der(), b.public_key_der());
    // The embedded public key is the last 32 bytes of ring's encoding.
    assert_eq!(a.public_key_der(), &v2[v2.len() - 32..]);
    // (OpenSSL 3.0 cannot read ring's v2 encoding, so no cross-check here.)
}

#[test]
fn ed25519_v2_with_mismatched_public_key_is_refused() {
    let mut v2 = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().unwrap();
    let last = v2.len() - 1;
    v2[last] ^= 1;
    let err = expect_err(ED, &v2);
    assert!(matches!(err, DkimError::InvalidKey(_)), "{err}");
}

#[test]
fn generated_keys_parse() {
    let (pem, public) = ironpost_dkim::generate(ED, 0).unwrap();
    assert_eq!(public_key_from_private(ED, &pem).unwrap(), public);
    if have_openssl() {
        // OpenSSL reads our PEM and agrees on the public key.
        check_public(ED, &pem);
    }
}

#[test]
fn wrong_key_type() {
    if !have_openssl() {
        return;
    }
    let err = expect_err(RSA, &ed25519_pem());
    assert!(
        matches!(
            err,
            DkimError::WrongKeyType {
                expected: RSA,
                found: "an Ed25519 key"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "wrong key type: the rsa-sha256 signer needs an RSA key, but this is an Ed25519 key"
    );

    for rsa in [rsa_pkcs1_pem(), rsa_pkcs8_pem(), to_der(&rsa_pkcs8_pem())] {
        let err = expect_err(ED, &rsa);
        assert!(
            matches!(
                err,
                DkimError::WrongKeyType {
                    expected: ED,
                    found: "an RSA key"
                }
            ),
            "{err:?}"
        );
    }

    // EC keys, PKCS#8 and SEC1 ("EC PRIVATE KEY", after an "EC PARAMETERS" block).
    let ec8 = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        None,
    );
    let ec1 = openssl(&["ecparam", "-genkey", "-name", "prime256v1"], None);
    for ec in [ec8, ec1] {
        for algo in [RSA, ED] {
            let err = expect_err(algo, &ec);
            assert!(
                matches!(
                    err,
                    DkimError::WrongKeyType {
                        found: "an EC (ECDSA) key",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }
    let ed448 = openssl(&["genpkey", "-algorithm", "ed448"], None);
    let err = expect_err(ED, &ed448);
    assert!(err.to_string().contains("an Ed448 key"), "{err}");
}

#[test]
fn encrypted_keys_are_refused() {
    if !have_openssl() {
        return;
    }
    for (algo, pem) in [(RSA, rsa_pkcs8_pem()), (ED, ed25519_pem())] {
        let enc = encrypt_pkcs8(&pem);
        assert!(String::from_utf8_lossy(&enc).contains("BEGIN ENCRYPTED PRIVATE KEY"));
        let err = expect_err(algo, &enc);
        assert!(matches!(err, DkimError::EncryptedKey), "{err:?}");
        assert!(err.to_string().contains("encrypted keys are not supported"));
        // The DER form too.
        let enc_der = openssl(
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-passout",
                "pass:x",
                "-outform",
                "DER",
            ],
            Some(&pem),
        );
        let err = expect_err(algo, &enc_der);
        assert!(matches!(err, DkimError::EncryptedKey), "{err:?}");
    }
    // Legacy OpenSSL encryption of a PKCS#1 key (Proc-Type: 4,ENCRYPTED).
    let legacy = openssl(
        &["rsa", "-aes256", "-traditional", "-passout", "pass:x"],
        Some(&rsa_pkcs1_pem()),
    );
    assert!(String::from_utf8_lossy(&legacy).contains("Proc-Type: 4,ENCRYPTED"));
    let err = expect_err(RSA, &legacy);
    assert!(matches!(err, DkimError::EncryptedKey), "{err:?}");
}

#[test]
fn corrupt_pem() {
    if !have_openssl() {
        return;
    }
    let pem = String::from_utf8(rsa_pkcs8_pem()).unwrap();
    let lines: Vec<&str> = pem.lines().collect();

    // Truncated: no END line.
    let truncated = lines[..lines.len() / 2].join("\n");
    let err = expect_err(RSA, truncated.as_bytes());
    assert!(err.to_string().contains("no END line"), "{err}");

    // A line dropped from the middle: valid base64, broken structure.
    let mut dropped = lines.clone();
    dropped.remove(lines.len() / 2);
    let err = expect_err(RSA, dropped.join("\n").as_bytes());
    assert!(matches!(err, DkimError::InvalidKey(_)), "{err:?}");

    // A character that is not base64.
    let mut garbled_lines = lines.clone();
    let star_line = format!("*{}", &lines[3][1..]);
    garbled_lines[3] = &star_line;
    let garbled = garbled_lines.join("\n");
    let err = expect_err(RSA, garbled.as_bytes());
    assert!(err.to_string().contains("not valid base64"), "{err}");

    // Flipped bytes inside the key: ring's consistency checks refuse it.
    let mut der = to_der(pem.as_bytes());
    let mid = der.len() / 2;
    der[mid] ^= 0xff;
    der[mid + 1] ^= 0xff;
    expect_err(RSA, &pem_wrap("PRIVATE KEY", &der));

    // Mismatched END label.
    let mismatched = pem.replace("END PRIVATE KEY", "END RSA PRIVATE KEY");
    let err = expect_err(RSA, mismatched.as_bytes());
    assert!(err.to_string().contains("does not match"), "{err}");

    // Not PEM at all, empty, a public key, a certificate.
    let err = expect_err(RSA, b"this is not a key at all");
    assert!(
        err.to_string().contains("not a PEM or DER private key"),
        "{err}"
    );
    let err = expect_err(RSA, b"\n  \n");
    assert!(err.to_string().contains("empty"), "{err}");
    let public = openssl(&["pkey", "-pubout"], Some(pem.as_bytes()));
    let err = expect_err(RSA, &public);
    assert!(err.to_string().contains("public key"), "{err}");
    let cert = openssl(
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "/dev/stdin",
            "-subj",
            "/CN=t",
            "-days",
            "1",
        ],
        Some(pem.as_bytes()),
    );
    let err = expect_err(RSA, &cert);
    assert!(err.to_string().contains("certificate"), "{err}");
    let cert_der = openssl(&["x509", "-outform", "DER"], Some(&cert));
    let err = expect_err(RSA, &cert_der);
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn small_rsa_key_is_refused() {
    if !have_openssl() {
        return;
    }
    let small = openssl(&["genrsa", "-traditional", "1024"], None);
    let err = expect_err(RSA, &small);
    assert!(err.to_string().contains("2048"), "{err}");
}

#[test]
fn small_rsa_public_exponent_is_refused() {
    if !have_openssl() {
        return;
    }
    let e3 = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            "rsa_keygen_pubexp:3",
        ],
        None,
    );
    let err = expect_err(RSA, &e3);
    assert!(err.to_string().contains("exponent"), "{err}");
}

#[test]
fn debug_output_is_redacted() {
    if !have_openssl() {
        return;
    }
    let pem = rsa_pkcs1_pem();
    let key = SigningKey::from_bytes(RSA, &pem).unwrap();
    let text = format!("{key:?}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(text.len() < 120, "{text}");
}

#[test]
fn signer_config_validation() {
    use ironpost_dkim::{Signer, SignerConfig};
    let (pem, _) = ironpost_dkim::generate(ED, 0).unwrap();
    let key = SigningKey::from_bytes(ED, &pem).unwrap();
    let ok = |f: &dyn Fn(&mut SignerConfig)| {
        let mut c = SignerConfig::new("example.com", "s1");
        f(&mut c);
        Signer::new(c, key.clone())
    };
    let s = ok(&|_| {}).unwrap();
    assert_eq!(s.config().headers, ironpost_dkim::DEFAULT_HEADERS);
    // Duplicates are folded, case-insensitively.
    let s = ok(&|c| c.headers = vec!["From".into(), "from".into(), "To".into()]).unwrap();
    assert_eq!(s.config().headers, ["From", "To"]);
    for (what, f) in [
        (
            "no From",
            &(|c: &mut SignerConfig| c.headers = vec!["To".into()]) as &dyn Fn(&mut SignerConfig),
        ),
        ("bad header", &|c| {
            c.headers = vec!["From".into(), "X:Y".into()]
        }),
        ("bad domain", &|c| c.domain = "exa mple.com".into()),
        ("tag injection", &|c| {
            c.selector = "s1; d=evil.example".into()
        }),
        ("zero expiration", &|c| c.expiration = Some(0)),
    ] {
        let err = ok(f).unwrap_err();
        assert!(matches!(err, DkimError::Config(_)), "{what}: {err:?}");
    }
    // A message without From is not signed.
    let s = ok(&|_| {}).unwrap();
    let err = s
        .sign(b"To: a@example.com\r\nSubject: x\r\n\r\nbody\r\n")
        .unwrap_err();
    assert!(err.to_string().contains("no From header"), "{err}");
    assert!(s.sign(b"").is_err());
}
