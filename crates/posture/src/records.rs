//! The records a mail domain should publish, derived from its [`Posture`]:
//! zone-file lines with a comment on each, or the same as data.

use crate::{tlsa_311, Posture};
use serde::Serialize;
use std::net::IpAddr;

/// One DNS record to publish.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Owner name, fully qualified, without the trailing dot.
    pub name: String,
    /// `TXT` or `TLSA`.
    #[serde(rename = "type")]
    pub rtype: &'static str,
    /// The record data: for TXT the value (split into 255-byte strings
    /// only when written as a zone line).
    pub value: String,
    /// What the record is for and what to do next.
    pub comment: String,
}

/// Everything `dns records` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Records {
    pub domain: String,
    pub records: Vec<Record>,
    /// The MTA-STS policy file served at
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`, when hosted.
    pub mta_sts_policy: Option<String>,
    /// What could not be derived, and why (printed as comments).
    pub notes: Vec<String>,
}

/// DNS TXT character strings hold at most 255 bytes.
fn quoted_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| {
            let s = String::from_utf8_lossy(c);
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Records {
    /// BIND zone-file lines, each preceded by its comment.
    pub fn zone_file(&self) -> String {
        let mut out = format!("; Records for {} (ironpost dns records)\n", self.domain);
        for note in &self.notes {
            out.push_str(&format!("; NOTE: {note}\n"));
        }
        for r in &self.records {
            out.push('\n');
            for line in r.comment.lines() {
                out.push_str(&format!("; {line}\n"));
            }
            let data = match r.rtype {
                "TXT" => quoted_strings(&r.value),
                _ => r.value.clone(),
            };
            out.push_str(&format!("{}. 3600 IN {} {}\n", r.name, r.rtype, data));
        }
        if let Some(policy) = &self.mta_sts_policy {
            out.push_str(&format!(
                "\n; The MTA-STS policy Ironpost serves at https://mta-sts.{}/.well-known/mta-sts.txt\n",
                self.domain
            ));
            for line in policy.lines() {
                out.push_str(&format!(";   {line}\n"));
            }
        }
        out
    }
}

/// The SPF record: the sources' addresses, then `-all` when they are the
/// whole list, `~all` while some source sends from an address the policy
/// does not name.
fn spf(p: &Posture, notes: &mut Vec<String>) -> Option<Record> {
    let mut addrs = p.source_addresses.clone();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        notes.push(
            "no egress source of the policy has a source_address: SPF cannot list the sending addresses"
                .into(),
        );
        return None;
    }
    let mut value = "v=spf1".to_string();
    for a in &addrs {
        match a {
            IpAddr::V4(v4) => value.push_str(&format!(" ip4:{v4}")),
            IpAddr::V6(v6) => value.push_str(&format!(" ip6:{v6}")),
        }
    }
    let comment = if p.sources_complete {
        value.push_str(" -all");
        "SPF: the egress sources' addresses; -all because the policy names every one.".to_string()
    } else {
        value.push_str(" ~all");
        "SPF: the egress sources' addresses. ~all because some source has no source_address \
         (it sends from the host's default address): add it, then change ~all to -all."
            .to_string()
    };
    Some(Record {
        name: p.domain.clone(),
        rtype: "TXT",
        value,
        comment,
    })
}

fn dkim(p: &Posture, notes: &mut Vec<String>) -> Vec<Record> {
    if p.dkim.is_empty() {
        notes.push(format!(
            "the policy signs nothing for {}: no DKIM record (and DMARC can only align through SPF)",
            p.domain
        ));
    }
    p.dkim
        .iter()
        .map(|k| {
            let size = match k.bits {
                Some(bits) => format!("{bits}-bit RSA"),
                None => "Ed25519".to_string(),
            };
            Record {
                name: format!("{}._domainkey.{}", k.selector, p.domain),
                rtype: "TXT",
                value: format!("v=DKIM1; k={}; p={}", k.key_type, k.public_key_b64),
                comment: format!(
                    "DKIM: selector {} ({size} key the policy signs with).",
                    k.selector
                ),
            }
        })
        .collect()
}

fn dmarc(p: &Posture, notes: &mut Vec<String>) -> Record {
    let rua = if p.dmarc_rua.is_empty() {
        notes.push(format!(
            "no dmarc_rua for {} (policy-extras.posture): the DMARC record names a placeholder address",
            p.domain
        ));
        format!("mailto:dmarc-reports@{}", p.domain)
    } else {
        p.dmarc_rua.join(",")
    };
    Record {
        name: format!("_dmarc.{}", p.domain),
        rtype: "TXT",
        value: format!("v=DMARC1; p=none; rua={rua}; adkim=r; aspf=r"),
        comment: "DMARC: start at p=none and read the aggregate reports (rua) for two to four weeks.\n\
                  When every legitimate source passes SPF or DKIM aligned: p=quarantine; pct=25, then pct=100.\n\
                  After a further clean period: p=reject (and sp=reject for subdomains that send no mail)."
            .to_string(),
    }
}

fn mta_sts(p: &Posture) -> Option<Record> {
    let sts = p.mta_sts.as_ref()?;
    Some(Record {
        name: format!("_mta-sts.{}", p.domain),
        rtype: "TXT",
        value: format!("v=STSv1; id={}", sts.id()),
        comment: format!(
            "MTA-STS: the id is derived from the policy below and changes when it does.\n\
             Also publish mta-sts.{} (A/AAAA) pointing at Ironpost's HTTP listener.",
            p.domain
        ),
    })
}

fn tls_rpt(p: &Posture, notes: &mut Vec<String>) -> Record {
    let rua = if p.tls_rpt_rua.is_empty() {
        notes.push(format!(
            "no tls_rpt_rua for {} (policy-extras.posture): the TLS-RPT record names a placeholder address",
            p.domain
        ));
        format!("mailto:tls-reports@{}", p.domain)
    } else {
        p.tls_rpt_rua.join(",")
    };
    Record {
        name: format!("_smtp._tls.{}", p.domain),
        rtype: "TXT",
        value: format!("v=TLSRPTv1; rua={rua}"),
        comment: "TLS-RPT: where senders report TLS failures delivering to this domain (RFC 8460)."
            .to_string(),
    }
}

fn bimi(p: &Posture) -> Option<Record> {
    let b = p.bimi.as_ref()?;
    let mut value = format!("v=BIMI1; l={}", b.logo_url);
    let mut comment = "BIMI: the logo must be SVG Tiny PS, served over HTTPS; it is shown only \
                       with DMARC at p=quarantine or p=reject."
        .to_string();
    match &b.authority_url {
        Some(a) => value.push_str(&format!("; a={a}")),
        None => {
            value.push_str("; a=");
            comment.push_str(
                "\nMost receivers (Gmail, Apple) also want a VMC or CMC: add its URL as a=.",
            );
        }
    }
    Some(Record {
        name: format!("default._bimi.{}", p.domain),
        rtype: "TXT",
        value,
        comment,
    })
}

fn tlsa(p: &Posture, notes: &mut Vec<String>) -> Vec<Record> {
    let mut out = Vec::new();
    for c in &p.listener_certs {
        match tlsa_311(&c.cert_der) {
            Ok(digest) => out.push(Record {
                name: format!("_{}._tcp.{}", c.port, c.hostname),
                rtype: "TLSA",
                value: format!("3 1 1 {digest}"),
                comment: format!(
                    "DANE: the key of the certificate listener {}:{} presents (the zone must be DNSSEC-signed).\n\
                     Renewing with the same key keeps this valid; before a key change publish the new key's record too.",
                    c.hostname, c.port
                ),
            }),
            Err(e) => notes.push(format!("listener {}:{}: {e}", c.hostname, c.port)),
        }
    }
    out
}

/// The records for `p.domain`.
pub fn build(p: &Posture) -> Records {
    let mut notes = Vec::new();
    let mut records = Vec::new();
    records.extend(spf(p, &mut notes));
    records.extend(dkim(p, &mut notes));
    records.push(dmarc(p, &mut notes));
    records.extend(mta_sts(p));
    records.push(tls_rpt(p, &mut notes));
    records.extend(bimi(p));
    records.extend(tlsa(p, &mut notes));
    if p.mta_sts.is_none() {
        notes.push(format!(
            "the policy hosts no MTA-STS policy for {} (policy-extras.posture: mta_sts)",
            p.domain
        ));
    }
    Records {
        domain: p.domain.clone(),
        mta_sts_policy: p.mta_sts.as_ref().map(|s| s.policy_text()),
        records,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bimi, DkimKey, MtaSts};

    fn posture() -> Posture {
        Posture {
            domain: "example.com".into(),
            source_addresses: vec!["192.0.2.2".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            sources_complete: true,
            dkim: vec![DkimKey {
                selector: "s1".into(),
                key_type: "ed25519".into(),
                public_key_b64: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into(),
                bits: None,
            }],
            dmarc_rua: vec!["mailto:d@example.com".into()],
            tls_rpt_rua: vec![],
            mta_sts: Some(MtaSts {
                mode: "enforce".into(),
                mx: vec!["mx.example.com".into()],
                max_age: 604800,
            }),
            bimi: Some(Bimi {
                logo_url: "https://example.com/logo.svg".into(),
                authority_url: None,
            }),
            listener_certs: vec![],
        }
    }

    #[test]
    fn spf_lists_every_address_and_ends_hard_when_complete() {
        let r = build(&posture());
        assert_eq!(
            r.records[0].value,
            "v=spf1 ip4:192.0.2.2 ip6:2001:db8::1 -all"
        );
        let mut p = posture();
        p.sources_complete = false;
        assert!(build(&p).records[0].value.ends_with(" ~all"));
    }

    #[test]
    fn every_record_is_there_with_a_comment() {
        let r = build(&posture());
        let names: Vec<_> = r.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "example.com",
                "s1._domainkey.example.com",
                "_dmarc.example.com",
                "_mta-sts.example.com",
                "_smtp._tls.example.com",
                "default._bimi.example.com"
            ]
        );
        assert!(r.records.iter().all(|r| !r.comment.is_empty()));
        let zone = r.zone_file();
        assert!(zone.contains("_mta-sts.example.com. 3600 IN TXT \"v=STSv1; id="));
        assert!(zone.contains(";   mode: enforce"));
    }

    #[test]
    fn long_txt_values_are_split_into_255_byte_strings() {
        let long = "a".repeat(300);
        assert_eq!(
            quoted_strings(&long),
            format!("\"{}\" \"{}\"", "a".repeat(255), "a".repeat(45))
        );
    }

    #[test]
    fn the_sts_id_follows_the_policy() {
        let a = posture().mta_sts.unwrap();
        let mut b = a.clone();
        b.mode = "testing".into();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), a.clone().id());
        assert!(a.policy_text().ends_with("max_age: 604800\r\n"));
    }
}
