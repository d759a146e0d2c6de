//! Key files and DNS record checks (`ironpost dkim keygen` / `verify-dns`).

mod common;

use std::os::unix::fs::PermissionsExt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use ironpost_dkim::{
    check_record, dns_record, generate, public_key_from_private, record_matches, write_key_file,
    Algorithm, DkimError, RecordCheck,
};

const ED: Algorithm = Algorithm::Ed25519Sha256;
const RSA: Algorithm = Algorithm::RsaSha256;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn key_file_is_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("dkim");
    let (pem, _) = generate(ED, 0).unwrap();
    let path = write_key_file(&base, "example.com", "s2026", &pem).unwrap();
    assert_eq!(path, base.join("example.com").join("s2026.key"));
    assert_eq!(std::fs::read(&path).unwrap(), &pem[..]);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&base.join("example.com")), 0o700);
    assert_eq!(mode(&base), 0o700);

    // A second key for the same selector is refused; the first is intact.
    let (other, _) = generate(ED, 0).unwrap();
    let err = write_key_file(&base, "example.com", "s2026", &other).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), &pem[..]);

    // A symlink planted where the key would go is not followed.
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, base.join("example.com").join("s2.key")).unwrap();
    assert!(write_key_file(&base, "example.com", "s2", &pem).is_err());
    assert!(!target.exists());

    // Names that would escape the directory are refused.
    for (domain, selector) in [
        ("../etc", "s"),
        ("example.com", "../x"),
        ("a/b", "s"),
        ("", "s"),
    ] {
        let err = write_key_file(&base, domain, selector, &pem).unwrap_err();
        assert!(matches!(err, DkimError::Config(_)), "{err:?}");
    }
}

#[test]
fn record_check_outcomes() {
    let (pem, public) = generate(ED, 0).unwrap();
    let (other_pem, _) = generate(ED, 0).unwrap();
    let rec = dns_record("example.com", "ed", ED, &public).unwrap();

    assert_eq!(
        check_record(&rec.txt_value(), ED, &pem).unwrap(),
        RecordCheck::Match
    );
    assert!(record_matches(&rec.zone_line(), ED, &pem).unwrap());
    // As published by hand: other tag order, spaces, no v=.
    let by_hand = format!(" k = ed25519 ;p= {} ; t=s", &public);
    assert!(record_matches(&by_hand, ED, &pem).unwrap());
    // Split inside the base64, as DNS tools show multi-string records.
    let split = format!(
        "\"v=DKIM1; k=ed25519; p={}\" \"{}\"",
        &public[..10],
        &public[10..]
    );
    assert!(record_matches(&split, ED, &pem).unwrap());

    assert_eq!(
        check_record(&rec.txt_value(), ED, &other_pem).unwrap(),
        RecordCheck::KeyMismatch
    );
    assert_eq!(
        check_record("v=DKIM1; k=rsa; p=MIIB", ED, &pem).unwrap(),
        RecordCheck::AlgorithmMismatch {
            published: "rsa".into()
        }
    );
    // k= defaults to rsa.
    assert_eq!(
        check_record(&format!("v=DKIM1; p={public}"), ED, &pem).unwrap(),
        RecordCheck::AlgorithmMismatch {
            published: "rsa".into()
        }
    );
    assert_eq!(
        check_record("v=DKIM1; k=ed25519; p=", ED, &pem).unwrap(),
        RecordCheck::Revoked
    );
    for bad in [
        "v=spf1 -all",
        "v=DKIM1; k=ed25519",
        "v=DKIM1; k=ed25519; p=!!!",
        "garbage",
    ] {
        let err = check_record(bad, ED, &pem).unwrap_err();
        assert!(matches!(err, DkimError::Record(_)), "{bad}: {err:?}");
    }
}

#[test]
fn rsa_record_check_accepts_spki_and_pkcs1() {
    if !have_openssl() {
        return;
    }
    let pem = rsa_pkcs1_pem();
    let spki = STANDARD.encode(public_der(&pem));
    assert_eq!(public_key_from_private(RSA, &pem).unwrap(), spki);
    assert!(record_matches(&format!("v=DKIM1; k=rsa; p={spki}"), RSA, &pem).unwrap());
    // Also from the PKCS#8 form of the same key.
    let pkcs8 = openssl(&["pkey"], Some(&pem));
    assert!(record_matches(&format!("v=DKIM1; p={spki}"), RSA, &pkcs8).unwrap());
    // A bare PKCS#1 RSAPublicKey in p= (some old records) matches too.
    let pkcs1_pub = openssl(&["rsa", "-RSAPublicKey_out", "-outform", "DER"], Some(&pem));
    let p = STANDARD.encode(pkcs1_pub);
    assert!(record_matches(&format!("v=DKIM1; k=rsa; p={p}"), RSA, &pem).unwrap());
    // A different RSA key does not.
    let other = STANDARD.encode(public_der(&rsa_pkcs8_pem()));
    assert_eq!(
        check_record(&format!("v=DKIM1; k=rsa; p={other}"), RSA, &pem).unwrap(),
        RecordCheck::KeyMismatch
    );
    // The record for the key, split at 255 bytes, as keygen prints it.
    let rec = dns_record("example.com", "s1", RSA, &spki).unwrap();
    assert_eq!(rec.txt_strings.len(), 2);
    assert!(record_matches(&rec.zone_line(), RSA, &pem).unwrap());
}

#[test]
fn generate_refuses_bad_sizes() {
    for bits in [0, 1024, 2047, 8192] {
        let err = generate(RSA, bits).unwrap_err();
        assert!(err.to_string().contains("between 2048 and 4096"), "{err}");
    }
}

#[test]
fn ed25519_keygen_output() {
    let (pem, public) = generate(ED, 0).unwrap();
    let text = std::str::from_utf8(&pem).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(text.ends_with("-----END PRIVATE KEY-----\n"));
    assert_eq!(STANDARD.decode(&public).unwrap().len(), 32);
    let rec = dns_record("example.com", "ed", ED, &public).unwrap();
    assert_eq!(
        rec.zone_line(),
        format!("ed._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p={public}\"")
    );
    // Two keys differ.
    assert_ne!(generate(ED, 0).unwrap().1, public);
}
