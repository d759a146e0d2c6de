//! Building commands and interpreting a mail transaction, free of I/O.
//!
//! Every argument that goes into a command line is checked here: nothing
//! with a CR, LF or other control character can reach the wire, so a
//! hostile address or HELO name cannot inject commands.

use crate::caps::Capabilities;
use crate::error::ClientError;
use crate::reply::Reply;
use base64::Engine as _;
use zeroize::Zeroizing;

/// Longest address accepted in MAIL FROM or RCPT TO (RFC 5321 §4.5.3.1.3
/// says 256 for a path; leave room for servers that allow more).
pub const MAX_ADDRESS: usize = 512;

/// What the message needs from the MAIL command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// Message size in octets, sent as `SIZE=` when the server offers SIZE.
    pub size: Option<u64>,
    /// The message has 8-bit content: `BODY=8BITMIME` when offered.
    pub eight_bit: bool,
    /// The message needs SMTPUTF8 (also implied by a non-ASCII address).
    pub smtputf8: bool,
}

/// The replies of one mail transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionResult {
    /// Every recipient with its RCPT reply, in the order given.
    pub recipients: Vec<(String, Reply)>,
    /// The reply that decided the message for the accepted recipients: the
    /// reply after the final dot, or the reply refusing DATA. `None` when no
    /// recipient was accepted (the transaction was reset).
    pub data_reply: Option<Reply>,
}

impl TransactionResult {
    /// Number of recipients the server accepted at RCPT.
    pub fn accepted(&self) -> usize {
        self.recipients
            .iter()
            .filter(|(_, r)| r.is_positive())
            .count()
    }

    /// For each recipient, the reply that decides its fate: its RCPT reply
    /// when that was negative, otherwise the data reply.
    pub fn outcomes(&self) -> impl Iterator<Item = (&str, &Reply)> {
        self.recipients.iter().map(move |(rcpt, reply)| {
            let decisive = match &self.data_reply {
                Some(data) if reply.is_positive() => data,
                _ => reply,
            };
            (rcpt.as_str(), decisive)
        })
    }

    /// Recipients the message was delivered to.
    pub fn delivered(&self) -> impl Iterator<Item = &str> {
        self.outcomes()
            .filter(|(_, r)| r.is_positive())
            .map(|(rcpt, _)| rcpt)
    }
}

fn clean(what: &'static str, s: &str, allow_empty: bool) -> Result<(), ClientError> {
    let ok = (allow_empty || !s.is_empty())
        && s.len() <= MAX_ADDRESS
        && !s
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b == b'<' || b == b'>');
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(what))
    }
}

/// `EHLO name` / `HELO name`: a domain or address literal, printable ASCII
/// without spaces.
pub fn hello_command(verb: &str, name: &str) -> Result<Vec<u8>, ClientError> {
    let ok = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(ClientError::InvalidArgument("EHLO name"));
    }
    Ok(format!("{verb} {name}\r\n").into_bytes())
}

/// Whether the transaction needs SMTPUTF8.
pub fn needs_smtputf8(sender: &str, recipients: &[String], params: &MailParams) -> bool {
    params.smtputf8 || !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii())
}

/// `MAIL FROM:<sender>` with the parameters the server supports. `sender`
/// is the bare address, empty for the null reverse path.
pub fn mail_from_command(
    sender: &str,
    params: &MailParams,
    smtputf8: bool,
    caps: &Capabilities,
) -> Result<Vec<u8>, ClientError> {
    clean("sender address", sender, true)?;
    let mut line = format!("MAIL FROM:<{sender}>");
    if let (Some(size), Some(_)) = (params.size, caps.size) {
        line.push_str(&format!(" SIZE={size}"));
    }
    if params.eight_bit && caps.eight_bit_mime {
        line.push_str(" BODY=8BITMIME");
    }
    if smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    line.push_str("\r\n");
    Ok(line.into_bytes())
}

/// `RCPT TO:<recipient>`.
pub fn rcpt_to_command(recipient: &str) -> Result<Vec<u8>, ClientError> {
    clean("recipient address", recipient, false)?;
    Ok(format!("RCPT TO:<{recipient}>\r\n").into_bytes())
}

/// The AUTH PLAIN initial response (RFC 4616): base64 of
/// `NUL username NUL password`, no authorization identity. The result and
/// every intermediate buffer are zeroed when dropped.
pub fn auth_plain_response(
    username: &str,
    password: &[u8],
) -> Result<Zeroizing<String>, ClientError> {
    if username.is_empty() || username.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(ClientError::InvalidArgument("AUTH username"));
    }
    // Never quote the password: just say it is unusable.
    if password.contains(&0) {
        return Err(ClientError::InvalidArgument("AUTH password (contains NUL)"));
    }
    let mut raw = Zeroizing::new(Vec::with_capacity(username.len() + password.len() + 2));
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password);
    let mut encoded = Zeroizing::new(String::with_capacity(raw.len() * 4 / 3 + 4));
    base64::engine::general_purpose::STANDARD.encode_string(&*raw, &mut encoded);
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_reply;

    fn caps(lines: &[&str]) -> Capabilities {
        Capabilities::from_lines(lines)
    }

    fn reply(s: &str) -> Reply {
        parse_reply(format!("{s}\r\n").as_bytes())
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn mail_from_parameters_follow_capabilities() {
        let all = caps(&["mx", "SIZE 1000", "8BITMIME", "SMTPUTF8"]);
        let p = MailParams {
            size: Some(42),
            eight_bit: true,
            smtputf8: false,
        };
        assert_eq!(
            mail_from_command("a@b", &p, false, &all).unwrap(),
            b"MAIL FROM:<a@b> SIZE=42 BODY=8BITMIME\r\n"
        );
        assert_eq!(
            mail_from_command("", &p, true, &all).unwrap(),
            b"MAIL FROM:<> SIZE=42 BODY=8BITMIME SMTPUTF8\r\n"
        );
        assert_eq!(
            mail_from_command("a@b", &p, false, &caps(&["mx"])).unwrap(),
            b"MAIL FROM:<a@b>\r\n"
        );
    }

    #[test]
    fn injection_is_refused() {
        let c = caps(&["mx"]);
        let p = MailParams::default();
        for bad in ["a@b>\r\nRCPT TO:<x@y", "a\n@b", "a@b\r", "<a@b>", "a\0b"] {
            assert!(mail_from_command(bad, &p, false, &c).is_err(), "{bad:?}");
            assert!(rcpt_to_command(bad).is_err(), "{bad:?}");
        }
        assert!(rcpt_to_command("").is_err());
        assert!(rcpt_to_command(&"a".repeat(MAX_ADDRESS + 1)).is_err());
        assert!(hello_command("EHLO", "a b").is_err());
        assert!(hello_command("EHLO", "a\r\nQUIT").is_err());
        assert!(hello_command("EHLO", "").is_err());
        assert_eq!(
            hello_command("HELO", "[127.0.0.1]").unwrap(),
            b"HELO [127.0.0.1]\r\n"
        );
    }

    #[test]
    fn smtputf8_detection() {
        let p = MailParams::default();
        assert!(!needs_smtputf8("a@b", &["c@d".into()], &p));
        assert!(needs_smtputf8("ä@b", &["c@d".into()], &p));
        assert!(needs_smtputf8("a@b", &["c@dä".into()], &p));
    }

    #[test]
    fn auth_plain_encoding() {
        // RFC 4616 example without authzid.
        assert_eq!(
            auth_plain_response("tim", b"tanstaaftanstaaf")
                .unwrap()
                .as_str(),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        let e = auth_plain_response("tim", b"sec\0ret").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("sec"));
        assert!(auth_plain_response("a\0b", b"x").is_err());
        assert!(auth_plain_response("", b"x").is_err());
    }

    #[test]
    fn outcomes_pick_the_decisive_reply() {
        let t = TransactionResult {
            recipients: vec![
                ("a@x".into(), reply("250 2.1.5 ok")),
                ("b@x".into(), reply("550 5.1.1 unknown")),
                ("c@x".into(), reply("451 4.3.0 later")),
            ],
            data_reply: Some(reply("250 2.0.0 queued")),
        };
        assert_eq!(t.accepted(), 1);
        let codes: Vec<u16> = t.outcomes().map(|(_, r)| r.code).collect();
        assert_eq!(codes, vec![250, 550, 451]);
        assert_eq!(t.delivered().collect::<Vec<_>>(), vec!["a@x"]);
        let t = TransactionResult {
            data_reply: Some(reply("554 5.6.0 no")),
            ..t
        };
        let codes: Vec<u16> = t.outcomes().map(|(_, r)| r.code).collect();
        assert_eq!(codes, vec![554, 550, 451]);
        assert_eq!(t.delivered().count(), 0);
    }
}
