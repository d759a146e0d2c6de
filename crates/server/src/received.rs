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

#[cfg(test)]
mod tests {
    use super::*;

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
