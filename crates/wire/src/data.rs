//! The DATA phase: framing, dot-unstuffing and line-ending policy.
//!
//! The only end of data is `CRLF . CRLF` in the raw input (the DATA command's
//! own CRLF counts as the first CRLF). Bare CR or LF never start a line for
//! framing purposes, whatever the line-ending policy, so no byte sequence can
//! make one DATA phase produce two messages: the "SMTP smuggling" class of
//! attacks relies on a receiver that treats `LF . LF` or `CR . CR` as an end.

/// What to do with a CR or LF that is not part of a CRLF pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineEndings {
    /// Refuse the message (`552 5.6.0`).
    #[default]
    Deny,
    /// Store the byte as it came.
    Allow,
    /// Replace it with CRLF.
    Fix,
}

#[derive(Clone, Copy, Debug)]
pub struct DataOptions {
    pub line_endings: LineEndings,
    /// Longest line, in octets, excluding the CRLF (RFC 5322: 998).
    pub max_line_length: usize,
    /// Largest message, in octets after unstuffing.
    pub max_size: u64,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            line_endings: LineEndings::Deny,
            max_line_length: 998,
            max_size: 20 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOutcome {
    Ok,
    BareLineEnding,
    LineTooLong,
    TooBig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just after CRLF (or at the start of DATA).
    LineStart,
    Text,
    /// Saw CR inside a line.
    Cr,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line.
    DotCr,
    Done,
}

#[derive(Debug)]
pub struct DataReceiver {
    opts: DataOptions,
    state: State,
    line_len: usize,
    size: u64,
    problem: Option<DataOutcome>,
}

impl DataReceiver {
    pub fn new(opts: DataOptions) -> DataReceiver {
        DataReceiver {
            opts,
            state: State::LineStart,
            line_len: 0,
            size: 0,
            problem: None,
        }
    }

    /// Consume input, appending message content to `out`. Returns how many
    /// bytes were consumed and whether the end of data was reached. Bytes
    /// after the terminator are not consumed: they are the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return (i, true),
                State::LineStart if b == b'.' => {
                    self.line_len = 1;
                    self.state = State::Dot;
                    i += 1;
                }
                State::LineStart => self.state = State::Text,
                State::Text => {
                    let rest = &input[i..];
                    let n = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    // Emit the part that fits the line before failing on the
                    // rest: the first problem in byte order then wins, so the
                    // outcome does not depend on how the input was split.
                    let fits = self
                        .opts
                        .max_line_length
                        .saturating_sub(self.line_len)
                        .min(n);
                    self.emit(&rest[..fits], out);
                    self.add_to_line(n);
                    i += n;
                    if n < rest.len() {
                        if rest[n] == b'\r' {
                            self.state = State::Cr;
                        } else {
                            self.bare(b'\n', out);
                        }
                        i += 1;
                    }
                }
                State::Cr if b == b'\n' => {
                    self.emit(b"\r\n", out);
                    self.line_len = 0;
                    self.state = State::LineStart;
                    i += 1;
                }
                State::Cr => {
                    // The CR was bare; reprocess this byte as text.
                    self.bare(b'\r', out);
                    self.state = State::Text;
                }
                State::Dot if b == b'\r' => {
                    self.state = State::DotCr;
                    i += 1;
                }
                // A stuffed dot: drop it and treat the rest as text.
                State::Dot => self.state = State::Text,
                State::DotCr if b == b'\n' => {
                    self.state = State::Done;
                    return (i + 1, true);
                }
                State::DotCr => {
                    self.bare(b'\r', out);
                    self.state = State::Text;
                }
            }
        }
        (i, self.state == State::Done)
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn outcome(&self) -> DataOutcome {
        self.problem.unwrap_or(DataOutcome::Ok)
    }

    /// Octets of content so far, after unstuffing.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn add_to_line(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > self.opts.max_line_length {
            self.fail(DataOutcome::LineTooLong);
        }
    }

    fn bare(&mut self, byte: u8, out: &mut Vec<u8>) {
        match self.opts.line_endings {
            LineEndings::Deny => self.fail(DataOutcome::BareLineEnding),
            LineEndings::Allow => self.emit(&[byte], out),
            LineEndings::Fix => self.emit(b"\r\n", out),
        }
        self.line_len = 0;
    }

    fn fail(&mut self, why: DataOutcome) {
        self.problem.get_or_insert(why);
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.problem.is_some() {
            return;
        }
        self.size += bytes.len() as u64;
        if self.size > self.opts.max_size {
            self.fail(DataOutcome::TooBig);
            return;
        }
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], le: LineEndings) -> (usize, bool, DataOutcome, Vec<u8>) {
        let mut r = DataReceiver::new(DataOptions {
            line_endings: le,
            ..Default::default()
        });
        let mut out = Vec::new();
        let (n, done) = r.feed(input, &mut out);
        (n, done, r.outcome(), out)
    }

    /// Reference definition of the end of data: the first CRLF.CRLF, where the
    /// DATA command's CRLF precedes the content.
    fn reference_end(input: &[u8]) -> Option<usize> {
        let mut v = b"\r\n".to_vec();
        v.extend_from_slice(input);
        v.windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|p| p + 5 - 2)
    }

    #[test]
    fn simple_message_and_unstuffing() {
        let (n, done, o, out) = run(b"Subject: x\r\n\r\n..dot\r\n.\r\nMAIL", LineEndings::Deny);
        assert!(done);
        assert_eq!(o, DataOutcome::Ok);
        assert_eq!(&out, b"Subject: x\r\n\r\n.dot\r\n");
        assert_eq!(n, 24);
        assert_eq!(run(b".\r\n", LineEndings::Deny).0, 3);
    }

    #[test]
    fn smuggling_matrix_never_ends_early() {
        let payloads: &[&[u8]] = &[
            b"a\n.\nMAIL FROM:<x@y>\r\n",
            b"a\r.\rMAIL FROM:<x@y>\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\nMAIL FROM:<x@y>\r\n",
            b"a\r.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\rMAIL FROM:<x@y>\r\n",
            b"a\r\n\x00.\r\nMAIL FROM:<x@y>\r\n",
        ];
        for p in payloads {
            for le in [LineEndings::Deny, LineEndings::Allow, LineEndings::Fix] {
                let mut input = p.to_vec();
                input.extend_from_slice(b"tail\r\n.\r\n");
                let (n, done, outcome, out) = run(&input, le);
                assert!(done, "{p:?}");
                assert_eq!(n, input.len(), "{p:?} {le:?} ended early");
                if le == LineEndings::Deny && !p.contains(&0) {
                    assert_eq!(outcome, DataOutcome::BareLineEnding, "{p:?}");
                }
                if le == LineEndings::Fix {
                    // Fixed output has only CRLF line endings.
                    for (i, b) in out.iter().enumerate() {
                        if *b == b'\n' {
                            assert_eq!(out[i - 1], b'\r');
                        }
                        if *b == b'\r' {
                            assert_eq!(out.get(i + 1), Some(&b'\n'));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn limits() {
        let mut r = DataReceiver::new(DataOptions {
            max_size: 10,
            ..Default::default()
        });
        let mut out = Vec::new();
        let (_, done) = r.feed(b"0123456789abc\r\n.\r\n", &mut out);
        assert!(done);
        assert_eq!(r.outcome(), DataOutcome::TooBig);
        let long = [vec![b'a'; 999], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(run(&long, LineEndings::Deny).2, DataOutcome::LineTooLong);
        let ok = [vec![b'a'; 998], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(run(&ok, LineEndings::Deny).2, DataOutcome::Ok);
    }

    /// A line that is too long and a message that is too big: whichever
    /// comes first in the input decides the outcome, however it is split.
    #[test]
    fn first_problem_wins_whatever_the_split() {
        let opts = DataOptions {
            line_endings: LineEndings::Deny,
            max_line_length: 10,
            max_size: 15,
        };
        // The size limit is crossed at 'd', before the line limit at 'k'.
        let size_first = b"0123456789\r\nabcdefghijkl\r\n.\r\n";
        // The line limit is crossed at 'k', before the size limit.
        let line_first = b"abcdefghijklmnopqrst\r\n.\r\n";
        for (input, expected) in [
            (&size_first[..], DataOutcome::TooBig),
            (&line_first[..], DataOutcome::LineTooLong),
        ] {
            for split in 0..=input.len() {
                let mut r = DataReceiver::new(opts);
                let mut out = Vec::new();
                let (a, _) = r.feed(&input[..split], &mut out);
                let (b, done) = r.feed(&input[split..], &mut out);
                assert!(done);
                assert_eq!(a + b, input.len());
                assert_eq!(r.outcome(), expected, "{input:?} split at {split}");
            }
        }
    }

    /// Random inputs over a small alphabet, fed in every chunking, agree with
    /// the reference end-of-data definition and with each other.
    #[test]
    fn streaming_matches_reference() {
        let alphabet = b"\r\n.a";
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|k| alphabet[((seed >> (k * 2 % 60)) & 3) as usize])
                .collect();
            for le in [LineEndings::Deny, LineEndings::Allow, LineEndings::Fix] {
                let (n, done, outcome, out) = run(&input, le);
                assert_eq!(done.then_some(n), reference_end(&input), "{input:?}");
                for split in 0..input.len() {
                    let mut r = DataReceiver::new(DataOptions {
                        line_endings: le,
                        ..Default::default()
                    });
                    let mut o = Vec::new();
                    let (a, d1) = r.feed(&input[..split], &mut o);
                    let total = if d1 {
                        a
                    } else {
                        a + r.feed(&input[split..], &mut o).0
                    };
                    assert_eq!(total, n, "{input:?} split {split}");
                    assert_eq!(r.outcome(), outcome);
                    assert_eq!(o, out);
                }
            }
        }
    }
}
