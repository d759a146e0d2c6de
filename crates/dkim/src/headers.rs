//! Header field scanning that mirrors mail-auth's own (private) header
//! iterator, so that the over-signing counts agree with what mail-auth will
//! sign. Ported from mail-auth 0.13 `common/headers.rs` (`scan_field`,
//! `scan_value`; Apache-2.0 OR MIT, Stalwart Labs).

use memchr::{memchr, memchr2};

enum FieldScan {
    Named { colon: usize, end: usize },
    Unnamed { end: usize },
    End,
}

fn scan_field(message: &[u8], start_pos: usize, from: usize) -> FieldScan {
    let mut cur = from;
    while let Some(rest) = message.get(cur..) {
        let Some(offset) = memchr2(b':', b'\n', rest) else {
            break;
        };
        let head = &rest[..offset];
        let pos = cur + offset;
        if rest[offset] == b':' {
            return scan_value(message, pos);
        } else if head.last() == Some(&b'\r') || pos == start_pos {
            // An empty line: end of the header section.
            return FieldScan::End;
        }
        match message.get(pos + 1) {
            Some(b' ' | b'\t') => cur = pos + 1,
            _ => return FieldScan::Unnamed { end: pos + 1 },
        }
    }
    FieldScan::End
}

fn scan_value(message: &[u8], colon: usize) -> FieldScan {
    let mut cur = colon + 1;
    while let Some(rest) = message.get(cur..) {
        let Some(offset) = memchr(b'\n', rest) else {
            break;
        };
        let pos = cur + offset;
        match message.get(pos + 1) {
            Some(b' ' | b'\t') => cur = pos + 1,
            _ => {
                return FieldScan::Named {
                    colon,
                    end: pos + 1,
                }
            }
        }
    }
    FieldScan::End
}

/// The names of the header fields, top to bottom, as mail-auth sees them.
pub(crate) fn header_names(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0usize;
    std::iter::from_fn(move || match scan_field(message, pos, pos) {
        FieldScan::Named { colon, end } => {
            let name = &message[pos..colon];
            pos = end;
            Some(name)
        }
        FieldScan::Unnamed { end } => {
            let name = &message[pos..end];
            pos = end;
            Some(name)
        }
        FieldScan::End => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(m: &str) -> Vec<String> {
        header_names(m.as_bytes())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn scans_like_mail_auth() {
        assert_eq!(
            names("From: a\r\nSubject: x\r\n y\r\nTo:b\r\n\r\nBody: no\r\n"),
            ["From", "Subject", "To"]
        );
        assert_eq!(names("From: a\n\nTo: b\n"), ["From"]);
        assert_eq!(names("From: a\r\nTo: b"), ["From"]);
        assert_eq!(names(""), Vec::<String>::new());
    }
}
