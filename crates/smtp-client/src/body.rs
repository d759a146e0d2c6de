//! Turning a message into the DATA stream, free of I/O.
//!
//! Every line ending becomes CRLF (a bare LF, a bare CR, and CRLF alike), a
//! `.` that starts a line (at the very start of the message or after any of
//! those line endings) is doubled, and the stream ends with `CRLF . CRLF`,
//! adding a CRLF when the message does not end with a line ending. So the
//! emitted stream never contains a CR or LF outside a CRLF pair, and never
//! contains `CRLF . CRLF` before the end: no receiver, however it treats
//! bare line endings, can read two messages out of it ("SMTP smuggling").
//!
//! [`DotStuffer`] works incrementally, so a large message is sent in chunks
//! without a second full copy.

use memchr::memchr2;

/// Incremental encoder. Feed the message with [`push`](Self::push), in
/// chunks of any size split anywhere, then call [`finish`](Self::finish).
#[derive(Clone, Debug)]
pub struct DotStuffer {
    /// The next byte starts a line.
    line_start: bool,
    /// The previous input byte was a CR not yet written (it may be the first
    /// half of a CRLF split across two chunks).
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    pub fn new() -> DotStuffer {
        DotStuffer {
            line_start: true,
            pending_cr: false,
        }
    }

    /// Encode `input`, appending to `out`. Output is at most
    /// `2 * input.len() + 2` bytes.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        if self.pending_cr && !rest.is_empty() {
            // CR LF, or a bare CR: either way one CRLF.
            out.extend_from_slice(b"\r\n");
            self.pending_cr = false;
            self.line_start = true;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            if self.line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            let n = memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
            out.extend_from_slice(&rest[..n]);
            if n > 0 {
                self.line_start = false;
            }
            if n == rest.len() {
                return;
            }
            if rest[n] == b'\n' {
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
                rest = &rest[n + 1..];
            } else if n + 1 < rest.len() {
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
                let skip = if rest[n + 1] == b'\n' { 2 } else { 1 };
                rest = &rest[n + skip..];
            } else {
                // CR at the end of this chunk: decide with the next one.
                self.pending_cr = true;
                return;
            }
        }
    }

    /// Append the end of the stream: a CRLF if the message did not end with
    /// a line ending, then `.` CRLF.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The complete DATA stream for `message`, terminator included. For tests
/// and fuzzing; the client itself encodes in chunks.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut s = DotStuffer::new();
    s.push(message, &mut out);
    s.finish(&mut out);
    out
}

/// The first position at which `stream` breaks the DATA-stream invariants
/// (a CR or LF outside a CRLF pair, a premature `CRLF . CRLF`, or a missing
/// terminator), or `None` if it is well formed. Exposed for fuzz targets.
pub fn check_data_stream(stream: &[u8]) -> Option<usize> {
    if !stream.ends_with(b"\r\n.\r\n") && stream != b".\r\n" {
        return Some(stream.len());
    }
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\r' if stream.get(i + 1) == Some(&b'\n') => i += 2,
            b'\r' | b'\n' => return Some(i),
            b'.' if i == 0 || stream[i - 1] == b'\n' => {
                // A line that starts with a dot is either the terminator,
                // which must be at the very end, or a stuffed dot.
                if stream[i..].starts_with(b".\r\n") {
                    if i + 3 != stream.len() {
                        return Some(i);
                    }
                    i += 3;
                } else if stream.get(i + 1) == Some(&b'.') {
                    i += 2;
                } else {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = DotStuffer::new();
        for c in message.chunks(size.max(1)) {
            s.push(c, &mut out);
        }
        s.push(b"", &mut out);
        s.finish(&mut out);
        out
    }

    #[test]
    fn examples() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\rb\r", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n\r.\r\n", b"a\r\n\r\n..\r\n.\r\n"),
            (b"..x\r\n...\r\n", b"...x\r\n....\r\n.\r\n"),
            (b"a.b\r\n", b"a.b\r\n.\r\n"),
            (b"\r", b"\r\n.\r\n"),
            (b"\n", b"\r\n.\r\n"),
            (b"\r\r\n\n", b"\r\n\r\n\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                dot_stuff(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            for size in 1..=4 {
                assert_eq!(chunked(input, size), *want, "chunk {size} {input:?}");
            }
            assert_eq!(check_data_stream(want), None, "{want:?}");
        }
    }

    #[test]
    fn checker_catches_bad_streams() {
        assert_eq!(check_data_stream(b"a\r\n"), Some(3));
        assert_eq!(check_data_stream(b"a\nb\r\n.\r\n"), Some(1));
        assert_eq!(check_data_stream(b"a\rb\r\n.\r\n"), Some(1));
        assert_eq!(check_data_stream(b"a\r\n.\r\nb\r\n.\r\n"), Some(3));
        assert_eq!(check_data_stream(b".x\r\n.\r\n"), Some(0));
    }

    /// Tiny deterministic generator, so the test needs no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// What the receiver should reconstruct: line endings normalised to
    /// CRLF, plus a final CRLF when missing.
    fn normalised(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    if input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Reverse the stuffing (RFC 5321 §4.5.2) of a well-formed stream.
    fn unstuff(stream: &[u8]) -> Vec<u8> {
        let body = &stream[..stream.len() - 3];
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn random_inputs_round_trip() {
        let alphabet = b"\r\n.a";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (rng.next() % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next() % 4) as usize])
                .collect();
            let stream = dot_stuff(&input);
            assert_eq!(check_data_stream(&stream), None, "{input:?} -> {stream:?}");
            assert_eq!(unstuff(&stream), normalised(&input), "{input:?}");
            let size = 1 + (rng.next() % 5) as usize;
            assert_eq!(chunked(&input, size), stream, "{input:?} chunk {size}");
        }
    }
}
