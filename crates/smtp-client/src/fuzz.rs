//! Entry points for fuzz targets (cargo-fuzz, or any harness that feeds
//! bytes): each runs a pure piece of the client on arbitrary input and
//! panics if one of its invariants breaks.

use crate::body::{check_data_stream, dot_stuff, DotStuffer};
use crate::caps::Capabilities;
use crate::reply::{parse_reply, MAX_LINE, MAX_LINES};

/// Parse `data` as a stream of replies, as the client reads it.
pub fn replies(data: &[u8]) {
    let mut rest = data;
    while let Some(result) = parse_reply(rest) {
        let Ok((reply, used)) = result else { return };
        assert!(used > 0 && used <= rest.len());
        assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
        assert!((200..600).contains(&reply.code));
        for line in &reply.lines {
            assert!(line.len() <= MAX_LINE * 3, "lossy UTF-8 at most triples");
            assert!(!line.chars().any(char::is_control));
        }
        let _ = Capabilities::from_ehlo(&reply);
        rest = &rest[used..];
    }
}

/// Encode `data` as a DATA stream, whole and split at every byte given by
/// the first input byte, and check the stream is well formed either way.
pub fn data_stream(data: &[u8]) {
    let whole = dot_stuff(data);
    assert_eq!(check_data_stream(&whole), None);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut chunked = Vec::new();
    let mut s = DotStuffer::new();
    for c in data.chunks(step) {
        s.push(c, &mut chunked);
    }
    s.finish(&mut chunked);
    assert_eq!(whole, chunked);
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke() {
        for input in [
            &b""[..],
            b"250-a\r\n250 b\r\n421 x\r\n",
            b"250-\xff\x00\r\n250 \r\r\n",
            b"\x02\r\n.\r\r\n\n.\n",
            b"\x01.\r",
        ] {
            super::replies(input);
            super::data_stream(input);
        }
    }

    #[test]
    fn random_inputs() {
        let alphabet = b"2455-- \r\n\r\n.a\xff\x00";
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i % 60)) as usize + i) % alphabet.len()])
                .collect();
            super::replies(&input);
            super::data_stream(&input);
        }
    }
}
