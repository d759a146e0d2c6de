//! The DATA receiver must end exactly at the first raw CRLF.CRLF (counting
//! the DATA command's CRLF), whatever the chunking and line-ending policy.
#![no_main]

use ironpost_wire::{DataOptions, DataReceiver, LineEndings};
use libfuzzer_sys::fuzz_target;

fn reference_end(input: &[u8]) -> Option<usize> {
    let mut v = b"\r\n".to_vec();
    v.extend_from_slice(input);
    v.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 3)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let split = split.min(input.len());
    for le in [LineEndings::Deny, LineEndings::Allow, LineEndings::Fix] {
        let opts = DataOptions { line_endings: le, max_line_length: 64, max_size: 4096 };
        let mut whole = DataReceiver::new(opts);
        let mut out_whole = Vec::new();
        let (n, done) = whole.feed(input, &mut out_whole);
        assert_eq!(done.then_some(n), reference_end(input));

        let mut parts = DataReceiver::new(opts);
        let mut out_parts = Vec::new();
        let (a, d) = parts.feed(&input[..split], &mut out_parts);
        let total = if d { a } else { a + parts.feed(&input[split..], &mut out_parts).0 };
        assert_eq!(total, n);
        assert_eq!(out_parts, out_whole);
        assert_eq!(parts.outcome(), whole.outcome());
        if le == LineEndings::Fix && whole.outcome() == ironpost_wire::DataOutcome::Ok {
            for (i, b) in out_whole.iter().enumerate() {
                if *b == b'\n' {
                    assert_eq!(out_whole[i - 1], b'\r');
                }
            }
        }
    }
});
