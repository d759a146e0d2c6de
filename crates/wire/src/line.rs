//! Command-line framing. Only CRLF ends a command line; a bare CR or LF is
//! an error rather than a line break, so a command cannot be hidden inside
//! another one by an ambiguous line ending.

/// RFC 5321 allows 512 octets; extensions push that up. Anything longer is
/// refused and discarded up to the next line feed.
pub const MAX_COMMAND_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line ends in a bare LF")]
    BareLf,
    #[error("line contains a bare CR")]
    BareCr,
    #[error("line too long")]
    TooLong,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// A complete line without its CRLF.
    Line(&'a [u8]),
    Error(LineError),
    /// Bytes of an over-long line already reported, dropped silently.
    Skip,
}

#[derive(Debug, Default)]
pub struct LineReader {
    discarding: bool,
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader::default()
    }

    /// Examine `buf` and return how many bytes to consume and what they were,
    /// or `None` when more input is needed.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Option<(usize, Next<'a>)> {
        let Some(lf) = memchr::memchr(b'\n', buf) else {
            if buf.len() > MAX_COMMAND_LINE {
                let first = !self.discarding;
                self.discarding = true;
                return Some((
                    buf.len(),
                    if first {
                        Next::Error(LineError::TooLong)
                    } else {
                        Next::Skip
                    },
                ));
            }
            return None;
        };
        let consumed = lf + 1;
        if self.discarding {
            self.discarding = false;
            return Some((consumed, Next::Skip));
        }
        if lf > MAX_COMMAND_LINE {
            return Some((consumed, Next::Error(LineError::TooLong)));
        }
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Some((consumed, Next::Error(LineError::BareLf)));
        }
        let line = &buf[..lf - 1];
        if memchr::memchr(b'\r', line).is_some() {
            return Some((consumed, Next::Error(LineError::BareCr)));
        }
        Some((consumed, Next::Line(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_lines_and_errors() {
        let mut r = LineReader::new();
        assert_eq!(r.next(b"NOOP\r\nQUIT"), Some((6, Next::Line(b"NOOP"))));
        assert_eq!(r.next(b"QUIT"), None);
        assert_eq!(
            r.next(b"NOOP\nX"),
            Some((5, Next::Error(LineError::BareLf)))
        );
        assert_eq!(
            r.next(b"NO\rOP\r\n"),
            Some((7, Next::Error(LineError::BareCr)))
        );
    }

    #[test]
    fn long_lines_reported_once() {
        let mut r = LineReader::new();
        let long = vec![b'a'; MAX_COMMAND_LINE + 1];
        assert_eq!(
            r.next(&long),
            Some((long.len(), Next::Error(LineError::TooLong)))
        );
        assert_eq!(r.next(&long), Some((long.len(), Next::Skip)));
        assert_eq!(r.next(b"aa\r\nNOOP\r\n"), Some((4, Next::Skip)));
        assert_eq!(r.next(b"NOOP\r\n"), Some((6, Next::Line(b"NOOP"))));
    }
}
