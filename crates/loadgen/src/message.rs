//! The messages traffic-gen sends: addresses spread over many domains, and
//! valid RFC 5322 content of an exact size, ready for the wire.
//!
//! The padding is built once; a message is its headers (which differ per
//! message) followed by a slice of that padding, so rendering one is a few
//! small writes and one copy. No line of it starts with a dot, so it goes on
//! the wire as it is, followed by `.` CRLF.

use std::io::Write;

use crate::error::Error;

/// Length of a padding line's text (RFC 5322 recommends at most 78 with CRLF).
pub const LINE_TEXT: usize = 76;
const LINE: usize = LINE_TEXT + 2;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Who a message is from and to.
#[derive(Clone, Debug)]
pub struct Addressing {
    /// A fixed sender; otherwise `sender<N>@` a sender domain.
    pub from: Option<String>,
    /// A fixed recipient; otherwise `user<N>@` a recipient domain.
    pub to: Option<String>,
    pub sender_domains: Vec<String>,
    pub recipient_domains: Vec<String>,
}

impl Default for Addressing {
    fn default() -> Self {
        Addressing {
            from: None,
            to: None,
            sender_domains: vec!["traffic-gen.test".into()],
            recipient_domains: vec!["example.test".into()],
        }
    }
}

/// `dom1.test` … `dom<n>.test`.
pub fn numbered_domains(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("dom{i}.test")).collect()
}

impl Addressing {
    /// Refuses what could not go into a MAIL or RCPT command as it is.
    pub fn validate(&self) -> Result<(), Error> {
        let check_addr = |what: &str, a: &str| -> Result<(), Error> {
            let ok = a.len() <= 254
                && a.split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
                && a.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>()[],;:\\\"".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{what} {a:?} is not a plain address"
                )))
            }
        };
        let check_domain = |what: &str, d: &str| -> Result<(), Error> {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if ok {
                Ok(())
            } else {
                Err(Error::Config(format!("{what} {d:?} is not a domain")))
            }
        };
        if let Some(a) = &self.from {
            check_addr("sender", a)?;
        } else if self.sender_domains.is_empty() {
            return Err(Error::Config("no sender domain".into()));
        }
        if let Some(a) = &self.to {
            check_addr("recipient", a)?;
        } else if self.recipient_domains.is_empty() {
            return Err(Error::Config("no recipient domain".into()));
        }
        for d in &self.sender_domains {
            check_domain("sender domain", d)?;
        }
        for d in &self.recipient_domains {
            check_domain("recipient domain", d)?;
        }
        Ok(())
    }

    /// The sender of message `seq`, written into `out` (cleared first).
    pub fn sender(&self, seq: u64, out: &mut String) {
        out.clear();
        match &self.from {
            Some(a) => out.push_str(a),
            None => {
                let d = &self.sender_domains[(seq % self.sender_domains.len() as u64) as usize];
                let _ = std::fmt::Write::write_fmt(out, format_args!("sender{}@{d}", seq % 1000));
            }
        }
    }

    /// The recipient of message `seq` (domains taken in turn), into `out`.
    pub fn recipient(&self, seq: u64, out: &mut String) {
        out.clear();
        match &self.to {
            Some(a) => out.push_str(a),
            None => {
                let n = self.recipient_domains.len() as u64;
                let d = &self.recipient_domains[(seq % n) as usize];
                let _ = std::fmt::Write::write_fmt(out, format_args!("user{seq}@{d}"));
            }
        }
    }
}

/// Builds the messages of one run, all of `size` bytes.
#[derive(Debug)]
pub struct MessageTemplate {
    size: usize,
    run_id: String,
    /// Enough padding lines for the whole size.
    padding: Vec<u8>,
}

impl MessageTemplate {
    /// Messages of `size` bytes of content (headers, blank line, body; the
    /// final dot not included). A size smaller than the headers gives a
    /// message of headers only.
    pub fn new(size: usize) -> MessageTemplate {
        let lines = size / LINE + 2;
        let mut padding = Vec::with_capacity(lines * LINE);
        for i in 0..lines {
            for j in 0..LINE_TEXT {
                padding.push(ALPHABET[(i + j) % ALPHABET.len()]);
            }
            padding.extend_from_slice(b"\r\n");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        MessageTemplate {
            size,
            run_id: format!("{:x}.{:x}", now.as_millis(), std::process::id()),
            padding,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Message `seq` from `from` to `to`, dated `date` (RFC 5322 format),
    /// followed by the `.` CRLF that ends DATA, into `out` (cleared first).
    pub fn render(&self, seq: u64, from: &str, to: &str, date: &str, out: &mut Vec<u8>) {
        out.clear();
        let id_domain = from.rsplit_once('@').map_or("traffic-gen.test", |(_, d)| d);
        let _ = write!(
            out,
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: traffic-gen message {seq}\r\n\
             Date: {date}\r\nMessage-ID: <{seq}.{}@{id_domain}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n",
            self.run_id
        );
        let body = self.size.saturating_sub(out.len());
        self.pad(body, out);
        out.extend_from_slice(b".\r\n");
    }

    /// `len` bytes of body: full padding lines, then one shorter line.
    fn pad(&self, len: usize, out: &mut Vec<u8>) {
        let (mut full, rest) = (len / LINE, len % LINE);
        // A line takes at least its CRLF: a remainder of one byte is made
        // by shortening the last full line by one and adding an empty line.
        let (short, empty) = match rest {
            0 => (None, false),
            1 if full > 0 => {
                full -= 1;
                (Some(LINE_TEXT - 1), true)
            }
            1 => (None, false),
            2 => (None, true),
            r => (Some(r - 2), false),
        };
        out.extend_from_slice(&self.padding[..full * LINE]);
        if let Some(n) = short {
            let start = full * LINE;
            out.extend_from_slice(&self.padding[start..start + n]);
            out.extend_from_slice(b"\r\n");
        }
        if empty {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Now, as an RFC 5322 date.
pub fn date_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_wire(wire: &[u8]) {
        assert!(wire.ends_with(b"\r\n.\r\n"), "ends with CRLF . CRLF");
        let content = &wire[..wire.len() - 3];
        for line in content.split_inclusive(|&b| b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "{line:?}");
            assert!(!line[..line.len() - 2].contains(&b'\r'));
            assert!(!line.starts_with(b"."), "line starting with a dot");
            assert!(line.len() <= 998);
        }
    }

    #[test]
    fn exact_sizes_and_valid_lines() {
        let a = Addressing {
            recipient_domains: numbered_domains(3),
            ..Addressing::default()
        };
        let (mut from, mut to, mut out) = (String::new(), String::new(), Vec::new());
        for size in (300..1200).chain([10240, 100_000]) {
            let t = MessageTemplate::new(size);
            for seq in [0u64, 7, 123_456_789] {
                a.sender(seq, &mut from);
                a.recipient(seq, &mut to);
                t.render(seq, &from, &to, &date_now(), &mut out);
                check_wire(&out);
                assert_eq!(out.len() - 3, size, "size {size} seq {seq}");
            }
        }
        // Smaller than the headers: headers only, still valid.
        let t = MessageTemplate::new(10);
        t.render(1, "a@b.test", "c@d.test", &date_now(), &mut out);
        check_wire(&out);
        let text = String::from_utf8(out).unwrap();
        for h in ["From:", "To:", "Subject:", "Date:", "Message-ID:"] {
            assert!(text.contains(h), "{h}");
        }
    }

    #[test]
    fn domains_in_turn() {
        let a = Addressing {
            recipient_domains: numbered_domains(3),
            ..Addressing::default()
        };
        let mut s = String::new();
        let got: Vec<String> = (0..4)
            .map(|i| {
                a.recipient(i, &mut s);
                s.clone()
            })
            .collect();
        assert_eq!(
            got,
            [
                "user0@dom1.test",
                "user1@dom2.test",
                "user2@dom3.test",
                "user3@dom1.test"
            ]
        );
        a.sender(5, &mut s);
        assert_eq!(s, "sender5@traffic-gen.test");
        assert!(a.validate().is_ok());
        let bad = Addressing {
            to: Some("x@y>\r\nRCPT TO:<z@w".into()),
            ..Addressing::default()
        };
        assert!(bad.validate().is_err());
    }
}
