//! DKIM key records (RFC 6376 §3.6.1): each selector the policy signs
//! with publishes the signer's public key, unrevoked, long enough.

use super::report::{Check, Findings, Item};
use super::tags::{absence, clip, get, normalize, tag_list};
use crate::{DkimKey, Posture};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ironpost_dns::Dns;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

/// A parsed key record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    /// `k=`, lower case (default `rsa`).
    pub k: String,
    /// `p=` decoded; empty when revoked.
    pub p: Vec<u8>,
    /// `h=` (acceptable hashes), when present.
    pub h: Option<Vec<String>>,
    /// `s=` (service types), when present.
    pub s: Option<Vec<String>>,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
}

fn colon_list(v: &str) -> Vec<String> {
    v.split(':')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses a key record (the TXT's strings already joined).
pub(crate) fn parse(text: &str) -> Result<KeyRecord, String> {
    let tags = tag_list(text)?;
    if let Some(pos) = tags.iter().position(|(n, _)| n == "v") {
        if pos != 0 || tags[pos].1 != "DKIM1" {
            return Err("v= must come first and be DKIM1".into());
        }
    }
    let p = get(&tags, "p").ok_or("no p= tag")?;
    let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
    let p = STANDARD
        .decode(p.as_bytes())
        .map_err(|_| "p= is not valid base64".to_string())?;
    Ok(KeyRecord {
        k: get(&tags, "k").unwrap_or("rsa").to_ascii_lowercase(),
        p,
        h: get(&tags, "h").map(colon_list),
        s: get(&tags, "s").map(colon_list),
        testing: get(&tags, "t").is_some_and(|t| colon_list(t).iter().any(|f| f == "y")),
    })
}

/// Modulus and exponent of an RSA public key, as SubjectPublicKeyInfo
/// (what DKIM publishes) or bare PKCS#1 RSAPublicKey (which verifiers
/// accept too), leading zero bytes removed.
pub(crate) fn rsa_numbers(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let strip = |b: &[u8]| {
        let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[start..].to_vec()
    };
    if let Ok((rest, spki)) = SubjectPublicKeyInfo::from_der(der) {
        if rest.is_empty() {
            if let Ok(PublicKey::RSA(rsa)) = spki.parsed() {
                return Some((strip(rsa.modulus), strip(rsa.exponent)));
            }
            return None;
        }
    }
    match RSAPublicKey::from_der(der) {
        Ok(([], rsa)) => Some((strip(rsa.modulus), strip(rsa.exponent))),
        _ => None,
    }
}

/// Bits of an RSA modulus (leading zeros already stripped).
pub(crate) fn modulus_bits(modulus: &[u8]) -> usize {
    match modulus.first() {
        None => 0,
        Some(first) => (modulus.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// Grades the TXT records found at the selector against the local key.
pub(crate) fn grade(domain: &str, key: &DkimKey, txts: &[String]) -> Item {
    let name = format!("{}._domainkey.{domain}", key.selector);
    let mut f = Findings::new();
    // Other TXT records may share the name; the key record has p=.
    let records: Vec<&String> = txts.iter().filter(|t| t.contains("p=")).collect();
    let text = match records.as_slice() {
        [one] => *one,
        [] => {
            f.fail(format!("no DKIM key record at {name}"));
            return f.item(Check::Dkim, &key.selector);
        }
        many => {
            f.fail(format!(
                "{} key records at {name}: verifiers may pick either",
                many.len()
            ));
            return f.item(Check::Dkim, &key.selector);
        }
    };
    let rec = match parse(text) {
        Ok(r) => r,
        Err(e) => {
            f.fail(format!("{name}: {e}, in {:?}", clip(text, 120)));
            return f.item(Check::Dkim, &key.selector);
        }
    };
    let local_type = key.key_type.to_ascii_lowercase();
    if rec.k != local_type {
        f.fail(format!("k={} but the signer uses {local_type}", rec.k));
    }
    if rec.p.is_empty() {
        f.fail(format!("{name} is revoked (empty p=)"));
        return f.item(Check::Dkim, &key.selector);
    }
    let local = STANDARD
        .decode(key.public_key_b64.trim())
        .unwrap_or_default();
    let same = rec.p == local
        || (rec.k == "rsa" && rsa_numbers(&rec.p).is_some_and(|n| Some(n) == rsa_numbers(&local)));
    if same {
        f.pass(format!("{name} publishes the signer's key"));
    } else {
        f.fail(format!(
            "{name} publishes a different key than the signer's: publish the new p= (or rotate back)"
        ));
    }
    match rec.k.as_str() {
        "rsa" => match rsa_numbers(&rec.p) {
            Some((modulus, _)) => {
                let bits = modulus_bits(&modulus);
                if bits < 1024 {
                    f.fail(format!(
                        "RSA {bits} bits: verifiers ignore keys under 1024 bits"
                    ));
                } else if bits < 2048 {
                    f.warn(format!("RSA {bits} bits: use 2048 bits or more"));
                } else {
                    f.pass(format!("RSA {bits} bits"));
                }
            }
            None => f.fail("p= is not an RSA public key"),
        },
        "ed25519" if rec.p.len() == 32 => f.pass("Ed25519"),
        "ed25519" => f.fail(format!("p= is {} bytes; an Ed25519 key is 32", rec.p.len())),
        other => f.fail(format!("unknown key type k={other}")),
    }
    if let Some(h) = &rec.h {
        if !h.iter().any(|a| a == "sha256") {
            f.fail(format!(
                "h={} excludes sha256, which the signer uses",
                h.join(":")
            ));
        }
    }
    if let Some(s) = &rec.s {
        if !s.iter().any(|a| a == "*" || a == "email") {
            f.fail(format!("s={} does not cover email", s.join(":")));
        }
    }
    if rec.testing {
        f.warn("t=y: testing mode, verifiers may treat signed mail as unsigned");
    }
    f.item(Check::Dkim, &key.selector)
}

pub(crate) async fn check(posture: &Posture, dns: &Dns) -> Vec<Item> {
    let domain = normalize(&posture.domain);
    let mut items = Vec::new();
    for key in &posture.dkim {
        let name = format!("{}._domainkey.{domain}", key.selector);
        let item = match dns.txt(&name).await {
            Ok(txts) => grade(&domain, key, &txts),
            Err(e) => {
                let mut f = Findings::new();
                if e.is_permanent() {
                    f.fail(format!("no DKIM key record at {name} ({})", absence(&e)));
                } else {
                    f.fail(e.to_string());
                }
                f.item(Check::Dkim, &key.selector)
            }
        };
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::Verdict;

    /// A DER length.
    fn len(n: usize) -> Vec<u8> {
        match n {
            0..=127 => vec![n as u8],
            128..=255 => vec![0x81, n as u8],
            _ => vec![0x82, (n >> 8) as u8, n as u8],
        }
    }

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend(len(body.len()));
        v.extend_from_slice(body);
        v
    }

    /// An RSA SubjectPublicKeyInfo with a `bits`-bit modulus (not a real
    /// key: only its size and bytes matter here).
    pub(crate) fn rsa_spki(bits: usize, fill: u8) -> Vec<u8> {
        let mut modulus = vec![0u8];
        modulus.push(0x80);
        modulus.extend(std::iter::repeat_n(fill, bits / 8 - 1));
        let pkcs1 = tlv(0x30, &[tlv(0x02, &modulus), tlv(0x02, &[1, 0, 1])].concat());
        let alg = tlv(
            0x30,
            &[
                tlv(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                ),
                vec![0x05, 0x00],
            ]
            .concat(),
        );
        let mut bitstring = vec![0u8];
        bitstring.extend(pkcs1);
        tlv(0x30, &[alg, tlv(0x03, &bitstring)].concat())
    }

    fn pkcs1_of(spki: &[u8]) -> Vec<u8> {
        let (_, s) = SubjectPublicKeyInfo::from_der(spki).unwrap();
        s.subject_public_key.data.to_vec()
    }

    fn key(k: &str, p: &[u8]) -> DkimKey {
        DkimKey {
            selector: "s1".into(),
            key_type: k.into(),
            public_key_b64: STANDARD.encode(p),
            bits: None,
        }
    }

    fn grade_one(local: &DkimKey, txt: &str) -> Item {
        grade("example.test", local, &[txt.to_string()])
    }

    #[test]
    fn key_sizes() {
        for bits in [512, 1024, 2048, 4096] {
            let spki = rsa_spki(bits, 0x11);
            let (m, e) = rsa_numbers(&spki).unwrap();
            assert_eq!(modulus_bits(&m), bits);
            assert_eq!(e, vec![1, 0, 1]);
            assert_eq!(rsa_numbers(&pkcs1_of(&spki)), Some((m, e)));
        }
        assert_eq!(rsa_numbers(&[0u8; 32]), None);
        assert_eq!(modulus_bits(&[0x01, 0]), 9);
    }

    #[test]
    fn records() {
        let r = parse("v=DKIM1; k=ed25519; p=AAAA; t=y:s; h=sha256").unwrap();
        assert_eq!(r.k, "ed25519");
        assert_eq!(r.p, vec![0, 0, 0]);
        assert!(r.testing);
        assert_eq!(r.h, Some(vec!["sha256".to_string()]));
        assert_eq!(parse("p=").unwrap().p, Vec::<u8>::new());
        assert_eq!(parse("p=AA AA").unwrap().k, "rsa");
        assert!(parse("k=rsa; v=DKIM1; p=AAAA").is_err());
        assert!(parse("v=DKIM2; p=AAAA").is_err());
        assert!(parse("v=DKIM1; k=rsa").is_err());
        assert!(parse("v=DKIM1; p=!!").is_err());
    }

    #[test]
    fn grading() {
        let spki = rsa_spki(2048, 0x22);
        let local = key("rsa", &spki);
        let good = format!("v=DKIM1; k=rsa; p={}", STANDARD.encode(&spki));
        let item = grade_one(&local, &good);
        assert_eq!(item.verdict, Verdict::Pass, "{item:?}");
        assert!(item.detail.contains("RSA 2048 bits"));
        // Same numbers, PKCS#1 form.
        let pkcs1 = format!("v=DKIM1; p={}", STANDARD.encode(pkcs1_of(&spki)));
        assert_eq!(grade_one(&local, &pkcs1).verdict, Verdict::Pass);
        // Revoked.
        let item = grade_one(&local, "v=DKIM1; k=rsa; p=");
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("revoked"));
        // Another key.
        let other = rsa_spki(2048, 0x33);
        let item = grade_one(&local, &format!("v=DKIM1; p={}", STANDARD.encode(&other)));
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("different key"));
        // Short keys.
        let short = rsa_spki(1024, 0x44);
        let item = grade_one(
            &key("rsa", &short),
            &format!("v=DKIM1; p={}", STANDARD.encode(&short)),
        );
        assert_eq!(item.verdict, Verdict::Warn, "{item:?}");
        let tiny = rsa_spki(512, 0x44);
        let item = grade_one(
            &key("rsa", &tiny),
            &format!("v=DKIM1; p={}", STANDARD.encode(&tiny)),
        );
        assert_eq!(item.verdict, Verdict::Fail);
        // Key type.
        let ed = [7u8; 32];
        let item = grade_one(
            &key("ed25519", &ed),
            &format!("v=DKIM1; k=ed25519; p={}", STANDARD.encode(ed)),
        );
        assert_eq!(item.verdict, Verdict::Pass, "{item:?}");
        let item = grade_one(
            &key("ed25519", &ed),
            &format!("v=DKIM1; k=rsa; p={}", STANDARD.encode(ed)),
        );
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("k=rsa"));
        // Testing, hashes, services.
        let t = format!("v=DKIM1; k=ed25519; t=y; p={}", STANDARD.encode(ed));
        assert_eq!(grade_one(&key("ed25519", &ed), &t).verdict, Verdict::Warn);
        let h = format!("v=DKIM1; k=ed25519; h=sha1; p={}", STANDARD.encode(ed));
        assert_eq!(grade_one(&key("ed25519", &ed), &h).verdict, Verdict::Fail);
        let s = format!("v=DKIM1; k=ed25519; s=tlsrpt; p={}", STANDARD.encode(ed));
        assert_eq!(grade_one(&key("ed25519", &ed), &s).verdict, Verdict::Fail);
        // None or two records.
        let item = grade("example.test", &local, &["v=spf1 -all".to_string()]);
        assert_eq!(item.verdict, Verdict::Fail);
        let item = grade("example.test", &local, &[good.clone(), good]);
        assert!(item.detail.contains("2 key records"));
    }
}
