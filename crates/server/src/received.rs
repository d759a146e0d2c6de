//! The `Received:` trace header (RFC 5321 §4.4, protocol names RFC 3848).

use std::net::IpAddr;

pub struct TraceInfo<'a> {
    /// The client's EHLO name; HTTP has none.
    pub helo: Option<&'a str>,
    pub peer: IpAddr,
    pub hostname: &'a str,
    /// `SMTP`, `ESMTP`, ... ([`protocol`]), or `HTTP` / `HTTPS`.
    pub protocol: &'a str,
    pub tls: Option<&'a (String, String)>,
    pub id: &'a str,
    /// Named only for single-recipient messages, so one recipient of a
    /// multi-recipient message does not learn the others.
    pub single_recipient: Option<&'a str>,
}

pub fn protocol(esmtp: bool, tls: bool, auth: bool) -> &'static str {
    match (esmtp, tls, auth) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

pub fn header(t: &TraceInfo<'_>) -> Vec<u8> {
    let peer = match t.peer {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    let from = match t.helo {
        Some(helo) => format!("{helo} ({peer})"),
        None => peer,
    };
    let mut h = format!(
        "Received: from {from}\r\n\tby {} (Ironpost) with {} id {}",
        t.hostname, t.protocol, t.id
    );
    if let Some((version, cipher)) = t.tls {
        h.push_str(&format!("\r\n\t(using {version} with cipher {cipher})"));
    }
    if let Some(r) = t.single_recipient {
        h.push_str(&format!("\r\n\tfor <{r}>"));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", chrono::Utc::now().to_rfc2822()));
    h.into_bytes()
}

/// KumoMTA's supplemental trace header (`X-KumoRef` by default): base64
/// of a JSON object with a marker key, the recipient (single-recipient
/// messages only, as with `Received: ... for`) and the metadata fields the
/// listener names.
pub fn supplemental(
    cfg: &ironpost_policy::TraceHeaders,
    recipients: &[String],
    meta: &serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    use base64::Engine;
    let mut obj = serde_json::Map::new();
    obj.insert("_@_".into(), "\\_/".into());
    if let [only] = recipients {
        obj.insert("recipient".into(), only.clone().into());
    }
    for name in &cfg.include_meta_names {
        if let Some(v) = meta.get(name) {
            obj.insert(name.clone(), v.clone());
        }
    }
    let payload = base64::engine::general_purpose::STANDARD
        .encode(serde_json::Value::Object(obj).to_string());
    format!("{}: {payload}\r\n", cfg.header_name).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplemental_header() {
        use base64::Engine;
        let cfg = ironpost_policy::TraceHeaders {
            supplemental_header: true,
            include_meta_names: vec!["tenant".into()],
            ..Default::default()
        };
        let mut meta = serde_json::Map::new();
        meta.insert("tenant".into(), "acme".into());
        meta.insert("secret".into(), "x".into());
        let line = String::from_utf8(supplemental(&cfg, &["a@b.test".into()], &meta)).unwrap();
        let b64 = line.strip_prefix("X-KumoRef: ").unwrap().trim_end();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"_@_": "\\_/", "recipient": "a@b.test", "tenant": "acme"})
        );
        let two =
            String::from_utf8(supplemental(&cfg, &["a@b".into(), "c@d".into()], &meta)).unwrap();
        let b64 = two.strip_prefix("X-KumoRef: ").unwrap().trim_end();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert!(!String::from_utf8(decoded).unwrap().contains("recipient"));
    }

    #[test]
    fn shape() {
        let tls = (
            "TLSv1_3".to_string(),
            "TLS13_AES_256_GCM_SHA384".to_string(),
        );
        let h = String::from_utf8(header(&TraceInfo {
            helo: Some("client.test"),
            peer: "127.0.0.1".parse().unwrap(),
            hostname: "mx.test",
            protocol: "ESMTPS",
            tls: Some(&tls),
            id: "abc",
            single_recipient: Some("a@b.test"),
        }))
        .unwrap();
        assert!(h.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Ironpost) with ESMTPS id abc\r\n"));
        assert!(h.contains("for <a@b.test>;\r\n\t"));
        assert!(h.ends_with("\r\n"));
    }
}
