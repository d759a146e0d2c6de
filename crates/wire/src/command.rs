//! SMTP command lines (without their CRLF) into [`Command`] values, with
//! errors already expressed as the reply to send.

use crate::address::{self, AddressError, Mailbox, ReversePath};
use crate::reply::Reply;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(ReversePath, MailParams),
    Rcpt(Mailbox),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// Recognised commands Ironpost deliberately does not implement.
    NotImplemented(&'static str),
}

fn syntax(text: &str) -> Reply {
    Reply::new(501, "5.5.4", text)
}

/// Parse one command line. The line must already be free of CR and LF (the
/// [`crate::LineReader`] guarantees that).
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    if line.contains(&0) {
        return Err(Reply::new(500, "5.5.2", "NUL byte in command"));
    }
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2", "Command is not valid UTF-8"))?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => Ok(Command::Ehlo(helo_arg(rest, "EHLO")?)),
        "HELO" => Ok(Command::Helo(helo_arg(rest, "HELO")?)),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(rest, Command::Data),
        "RSET" => no_args(rest, Command::Rset),
        "QUIT" => no_args(rest, Command::Quit),
        "STARTTLS" => no_args(rest, Command::StartTls),
        // NOOP and HELP may carry an argument that is ignored.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => Ok(Command::Vrfy),
        "AUTH" => parse_auth(rest),
        "EXPN" => Ok(Command::NotImplemented("EXPN")),
        "BDAT" => Ok(Command::NotImplemented("BDAT")),
        "ETRN" => Ok(Command::NotImplemented("ETRN")),
        "TURN" => Ok(Command::NotImplemented("TURN")),
        "" => Err(Reply::new(500, "5.5.2", "Empty command")),
        _ => Err(Reply::new(500, "5.5.1", "Command unrecognized")),
    }
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, Reply> {
    if rest.trim().is_empty() {
        Ok(cmd)
    } else {
        Err(syntax("This command takes no arguments"))
    }
}

fn helo_arg(rest: &str, verb: &str) -> Result<String, Reply> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(syntax(&format!(
            "{verb} requires a domain or address literal"
        )));
    }
    // Keep the first word only; some clients append text after the name.
    let name = arg.split(' ').next().unwrap_or(arg);
    if name.len() > address::MAX_DOMAIN + 8
        || !name.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii())
    {
        return Err(syntax(&format!("Malformed {verb} argument")));
    }
    Ok(name.to_string())
}

/// Strip `FROM:` / `TO:` (case-insensitive), tolerating a space after the
/// colon as most servers do.
fn strip_keyword<'a>(rest: &'a str, kw: &str) -> Option<&'a str> {
    let head = rest.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    Some(rest[kw.len()..].trim_start_matches(' '))
}

fn smtputf8_requested(params: &str) -> bool {
    params
        .split(' ')
        .any(|p| p.eq_ignore_ascii_case("SMTPUTF8"))
}

fn parse_mail(rest: &str) -> Result<Command, Reply> {
    let arg = strip_keyword(rest, "FROM:").ok_or_else(|| syntax("Syntax: MAIL FROM:<address>"))?;
    // SMTPUTF8 is a parameter after the address, but it governs how the
    // address itself is parsed.
    let utf8 = arg
        .rfind('>')
        .is_some_and(|i| smtputf8_requested(&arg[i + 1..]));
    let (path, params) = address::parse_reverse_path(arg, utf8).map_err(sender_error)?;
    let mut out = MailParams {
        size: None,
        body: None,
        smtputf8: false,
    };
    for p in params.split(' ').filter(|p| !p.is_empty()) {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        match (k.to_ascii_uppercase().as_str(), v) {
            ("SIZE", Some(v)) => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|_| v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| syntax("Malformed SIZE parameter"))?;
                out.size = Some(n);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => out.body = Some(Body::SevenBit),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                out.body = Some(Body::EightBitMime)
            }
            ("BODY", _) => return Err(Reply::new(555, "5.5.4", "Unsupported BODY type")),
            ("SMTPUTF8", None) => out.smtputf8 = true,
            // RFC 4954 AUTH= on MAIL is accepted and ignored: we never trust
            // a client-asserted submitter.
            ("AUTH", Some(_)) => {}
            _ => {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("Unsupported MAIL parameter {k}"),
                ))
            }
        }
    }
    Ok(Command::Mail(path, out))
}

fn parse_rcpt(rest: &str) -> Result<Command, Reply> {
    let arg = strip_keyword(rest, "TO:").ok_or_else(|| syntax("Syntax: RCPT TO:<address>"))?;
    // UTF-8 addresses are only legal when MAIL carried SMTPUTF8; the session
    // checks that, so parse permissively here.
    let (mbox, params) = address::parse_forward_path(arg, true).map_err(recipient_error)?;
    if let Some(p) = params.split(' ').find(|p| !p.is_empty()) {
        return Err(Reply::new(
            555,
            "5.5.4",
            format!("Unsupported RCPT parameter {p}"),
        ));
    }
    Ok(Command::Rcpt(mbox))
}

fn parse_auth(rest: &str) -> Result<Command, Reply> {
    let mut parts = rest.split(' ').filter(|p| !p.is_empty());
    let mechanism = parts
        .next()
        .ok_or_else(|| syntax("Syntax: AUTH mechanism [initial-response]"))?
        .to_ascii_uppercase();
    let initial = parts.next().map(str::to_string);
    if parts.next().is_some() {
        return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
    }
    Ok(Command::Auth { mechanism, initial })
}

fn sender_error(e: AddressError) -> Reply {
    match e {
        AddressError::Utf8NotAllowed => {
            Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
        }
        e => Reply::new(501, "5.1.7", format!("Bad sender address syntax: {e}")),
    }
}

fn recipient_error(e: AddressError) -> Reply {
    Reply::new(501, "5.1.3", format!("Bad recipient address syntax: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse(b"ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse(b"NOOP anything"), Ok(Command::Noop));
    }

    #[test]
    fn mail_parameters() {
        let Ok(Command::Mail(p, params)) =
            parse(b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME")
        else {
            panic!()
        };
        assert_eq!(p.to_string(), "a@b.example");
        assert_eq!(params.size, Some(1000));
        assert_eq!(params.body, Some(Body::EightBitMime));
        assert!(parse(b"MAIL FROM: <a@b.example>").is_ok());
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=x").unwrap_err().code,
            501
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=99999999999999999999999")
                .unwrap_err()
                .code,
            501
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> RET=FULL").unwrap_err().code,
            555
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> BODY=BINARYMIME")
                .unwrap_err()
                .code,
            555
        );
        assert_eq!(parse(b"MAIL TO:<a@b.example>").unwrap_err().code, 501);
        assert_eq!(
            parse("MAIL FROM:<ä@b.example>".as_bytes())
                .unwrap_err()
                .code,
            553
        );
        assert!(parse("MAIL FROM:<ä@b.example> SMTPUTF8".as_bytes()).is_ok());
    }

    #[test]
    fn rcpt_and_errors() {
        assert!(matches!(
            parse(b"RCPT TO:<a@b.example>"),
            Ok(Command::Rcpt(_))
        ));
        assert_eq!(
            parse(b"RCPT TO:<a@b.example> NOTIFY=NEVER")
                .unwrap_err()
                .code,
            555
        );
        assert_eq!(parse(b"RCPT TO:a@b.example").unwrap_err().enhanced, "5.1.3");
        assert_eq!(parse(b"DATA x").unwrap_err().code, 501);
        assert_eq!(parse(b"FOO").unwrap_err().code, 500);
        assert_eq!(parse(b"").unwrap_err().code, 500);
        assert_eq!(parse(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL\0 FROM:<>").unwrap_err().code, 500);
        assert_eq!(parse(b"EXPN x"), Ok(Command::NotImplemented("EXPN")));
    }

    #[test]
    fn auth_syntax() {
        assert_eq!(
            parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            })
        );
        assert!(parse(b"AUTH").is_err());
    }
}
