//! The DATA receiver, fed in fuzzer-chosen chunks and checked against a
//! line-by-line reference model:
//! - it ends exactly at the first raw CRLF.CRLF (counting the DATA
//!   command's CRLF), and with the same outcome, however the input is split;
//! - an accepted message is the reference's unstuffed (and, with `Fix`,
//!   repaired) content, byte for byte; with `Fix` or `Deny` it has only CRLF
//!   line endings;
//! - a refused one is refused for one of the reasons the reference finds.
//!   What a refused message left in the output does not matter: it is
//!   thrown away.
#![no_main]

use ironpost_wire::{DataOptions, DataOutcome, DataReceiver, LineEndings};
use libfuzzer_sys::fuzz_target;

/// Input layout: `[line limit, size limit, chunk sizes (4 bytes)..., data]`.
const HEADER: usize = 6;

fn reference_end(input: &[u8]) -> Option<usize> {
    let mut v = b"\r\n".to_vec();
    v.extend_from_slice(input);
    v.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 3)
}

/// What the receiver should make of a complete DATA phase (`content` is
/// everything before the final `.CRLF`), ignoring the limits, and which
/// limits it breaks.
struct Expected {
    out: Vec<u8>,
    bare: bool,
    too_long: bool,
}

fn reference(content: &[u8], le: LineEndings, max_line: usize) -> Expected {
    let mut e = Expected {
        out: Vec::new(),
        bare: false,
        too_long: false,
    };
    let mut rest = content;
    while !rest.is_empty() {
        // Only CRLF ends a line; the content always ends with one.
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let mut line = &rest[..end];
        rest = &rest[end + 2..];
        // The stuffed dot is dropped but counts towards the line's length.
        let mut len = 0;
        if let Some(unstuffed) = line.strip_prefix(b".") {
            line = unstuffed;
            len = 1;
        }
        for &b in line {
            if b == b'\r' || b == b'\n' {
                // A bare CR or LF ends a line for the length limit only.
                len = 0;
                match le {
                    LineEndings::Deny => e.bare = true,
                    LineEndings::Allow => e.out.push(b),
                    LineEndings::Fix => e.out.extend_from_slice(b"\r\n"),
                }
            } else {
                len += 1;
                e.too_long |= len > max_line;
                e.out.push(b);
            }
        }
        e.out.extend_from_slice(b"\r\n");
    }
    e
}

fn only_crlf(out: &[u8]) -> bool {
    out.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => out.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && out[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((header, input)) = data.split_first_chunk::<HEADER>() else {
        return;
    };
    // At least 1: a limit of 0 would refuse the stuffed dot of ".\r" too.
    let max_line_length = 1 + usize::from(header[0]);
    // Small enough for short inputs to reach it.
    let max_size = u64::from(header[1]) * 8;
    // All zero would never make progress: feed whole chunks of 255 then.
    let chunks: &[u8] = if header[2..].iter().all(|&c| c == 0) {
        &[255]
    } else {
        &header[2..]
    };

    let end = reference_end(input);
    for le in [LineEndings::Deny, LineEndings::Allow, LineEndings::Fix] {
        let opts = DataOptions {
            line_endings: le,
            max_line_length,
            max_size,
        };
        let mut whole = DataReceiver::new(opts);
        let mut out_whole = Vec::new();
        let (n, done) = whole.feed(input, &mut out_whole);
        assert_eq!(done.then_some(n), end);
        assert_eq!(done, whole.is_done());

        // The same input in chunks whose sizes cycle through the header
        // (a 0 feeds an empty slice, which must be harmless).
        let mut parts = DataReceiver::new(opts);
        let mut out_parts = Vec::new();
        let mut at = 0;
        let mut sizes = chunks.iter().cycle();
        let mut parts_done = false;
        while at < input.len() && !parts_done {
            let size = usize::from(*sizes.next().unwrap());
            let end = (at + size).min(input.len());
            let (used, d) = parts.feed(&input[at..end], &mut out_parts);
            assert!(used <= end - at);
            // Short of the end, a chunk is consumed whole.
            assert!(d || used == end - at);
            at += used;
            parts_done = d;
        }
        assert_eq!(parts_done, done);
        if done {
            assert_eq!(at, n);
        }
        assert_eq!(parts.outcome(), whole.outcome());
        if whole.outcome() == DataOutcome::Ok {
            assert_eq!(out_parts, out_whole);
            assert_eq!(parts.size(), whole.size());
        }

        if !done {
            continue;
        }
        let expected = reference(&input[..n - 3], le, max_line_length);
        let too_big = expected.out.len() as u64 > max_size;
        match whole.outcome() {
            DataOutcome::Ok => {
                assert!(!expected.bare && !expected.too_long && !too_big);
                assert_eq!(out_whole, expected.out);
                assert_eq!(whole.size(), out_whole.len() as u64);
                if le != LineEndings::Allow {
                    assert!(only_crlf(&out_whole));
                }
            }
            DataOutcome::BareLineEnding => assert!(expected.bare),
            DataOutcome::LineTooLong => assert!(expected.too_long),
            DataOutcome::TooBig => assert!(too_big),
        }
    }
});
