//! DANE (RFC 7672): TLSA records built from fuzz input (usage, selector,
//! matching type, data) matched against a presented chain made of real
//! certificates (fuzz/certs), damaged copies of them, or raw bytes. A
//! record's data is either fuzz bytes or derived from a chain certificate
//! (its DER or its SPKI, whole or hashed), so that the matching and the
//! DANE-TA chain validation behind a match are reached too.
//!
//! Nothing may panic, and a decision must be consistent: only usable
//! records are kept; a match names one of them and a position in the chain;
//! a DANE-EE match is on the leaf; no usable record means no match; the
//! decision is the same when asked twice and through the rustls verifier.
#![no_main]

use arbitrary::Arbitrary;
use ironpost_smtp_client::dane::{USAGE_DANE_EE, USAGE_DANE_TA};
use ironpost_smtp_client::{DaneFailure, DaneFailureKind, DaneVerifier, Tlsa};
use libfuzzer_sys::fuzz_target;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

const CERTS: [&[u8]; 4] = [
    include_bytes!("../certs/leaf.der"),
    include_bytes!("../certs/intermediate.der"),
    include_bytes!("../certs/root.der"),
    include_bytes!("../certs/self_signed.der"),
];

#[derive(Arbitrary, Debug)]
enum Cert {
    Known(u8),
    /// A known certificate with bytes overwritten (`(position, value)`).
    Damaged(u8, Vec<(u16, u8)>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Data {
    Raw(Vec<u8>),
    /// Made from the chain certificate at this position (or a known
    /// certificate past its end), as the record's selector and matching
    /// type say, or against them when `swap` is set.
    FromChain {
        position: u8,
        swap: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Record {
    usage: u8,
    selector: u8,
    matching: u8,
    data: Data,
}

#[derive(Arbitrary, Debug)]
struct Input {
    chain: Vec<Cert>,
    records: Vec<Record>,
    names: Vec<String>,
    sni: String,
    /// Seconds since 2020-01-01.
    now: u32,
}

fn cert_bytes(c: &Cert) -> Vec<u8> {
    match c {
        Cert::Known(i) => CERTS[usize::from(*i) % CERTS.len()].to_vec(),
        Cert::Damaged(i, edits) => {
            let mut der = CERTS[usize::from(*i) % CERTS.len()].to_vec();
            for &(at, b) in edits {
                let at = usize::from(at) % der.len();
                der[at] = b;
            }
            der
        }
        Cert::Raw(b) => b.clone(),
    }
}

fn spki(der: &[u8]) -> Vec<u8> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.tbs_certificate.subject_pki.raw.to_vec())
        .unwrap_or_default()
}

fn record_data(r: &Record, chain: &[Vec<u8>]) -> Vec<u8> {
    let (position, swap) = match &r.data {
        Data::Raw(b) => return b.clone(),
        Data::FromChain { position, swap } => (usize::from(*position), *swap),
    };
    let der = chain
        .get(position)
        .cloned()
        .unwrap_or_else(|| CERTS[position % CERTS.len()].to_vec());
    let spki_selected = (r.selector == 1) != swap;
    let content = if spki_selected { spki(&der) } else { der };
    match r.matching {
        1 => ring::digest::digest(&ring::digest::SHA256, &content)
            .as_ref()
            .to_vec(),
        2 => ring::digest::digest(&ring::digest::SHA512, &content)
            .as_ref()
            .to_vec(),
        _ => content,
    }
}

fn usable_by_definition(t: &Tlsa) -> bool {
    matches!(t.usage, 2 | 3)
        && matches!(t.selector, 0 | 1)
        && match t.matching {
            0 => !t.data.is_empty(),
            1 => t.data.len() == 32,
            2 => t.data.len() == 64,
            _ => false,
        }
}

fuzz_target!(|input: Input| {
    // Bounded so one input cannot run for long (each candidate anchor
    // costs a chain validation).
    if input.chain.is_empty() || input.chain.len() > 6 || input.records.len() > 8 {
        return;
    }
    let chain: Vec<Vec<u8>> = input.chain.iter().map(cert_bytes).collect();
    // Usage, selector and matching type mostly in range, now and then not.
    let records: Vec<Tlsa> = input
        .records
        .iter()
        .map(|r| {
            let squash = |v: u8, n: u8| if v < 128 { v % n } else { v };
            Tlsa::new(
                squash(r.usage, 4),
                squash(r.selector, 2),
                squash(r.matching, 3),
                record_data(r, &chain),
            )
        })
        .collect();
    for r in &records {
        assert_eq!(r.is_usable(), usable_by_definition(r));
        let shown = r.to_string();
        assert!(shown.len() <= 3 * 4 + 2 * 64 + 32, "{shown}");
    }

    let verifier = DaneVerifier::new(&records, &input.names);
    let usable: Vec<&Tlsa> = records.iter().filter(|r| r.is_usable()).collect();
    assert_eq!(verifier.records().iter().collect::<Vec<_>>(), usable);
    for n in verifier.reference_names() {
        assert!(!n.is_empty() && !n.ends_with('.'));
        assert_eq!(*n, n.to_ascii_lowercase());
    }
    let _ = format!("{verifier:?}");

    let ders: Vec<CertificateDer<'_>> =
        chain.iter().map(|c| CertificateDer::from(&c[..])).collect();
    let (leaf, intermediates) = ders.split_first().unwrap();
    let sni = ServerName::try_from(input.sni.as_str()).ok();
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        1_577_836_800 + u64::from(input.now),
    ));

    let result = verifier.verify_chain(leaf, intermediates, sni.as_ref(), now);
    match &result {
        Ok(m) => {
            assert!(verifier.records().contains(&m.record));
            if let Some(depth) = m.depth {
                assert!(depth < chain.len());
            }
            if m.record.usage == USAGE_DANE_EE {
                assert_eq!(m.depth, Some(0));
            } else {
                assert_eq!(m.record.usage, USAGE_DANE_TA);
            }
        }
        Err(e) => {
            assert!(e.to_string().starts_with("DANE: "));
            if usable.is_empty() {
                assert_eq!(e.kind, DaneFailureKind::NoMatch);
            }
            let back = e.clone().into_rustls_error();
            assert_eq!(DaneFailure::from_rustls_error(&back), Some(e));
        }
    }
    assert_eq!(
        verifier.verify_chain(leaf, intermediates, sni.as_ref(), now),
        result
    );

    // The rustls entry point decides the same (with the SNI name always
    // present, as in a handshake).
    if let Some(sni) = &sni {
        let expected = verifier.verify_chain(leaf, intermediates, Some(sni), now);
        let got = verifier.verify_server_cert(leaf, intermediates, sni, &[], now);
        match (expected, got) {
            (Ok(_), Ok(_)) => {}
            (Err(e), Err(r)) => assert_eq!(DaneFailure::from_rustls_error(&r), Some(&e)),
            (e, g) => panic!("verify_chain {e:?} but verify_server_cert {g:?}"),
        }
    }
});
