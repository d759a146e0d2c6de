//! The outbound client's pure parts, through the checks its `fuzz` module
//! makes: replies (possibly multi-line, possibly hostile) read from a
//! server, and the DATA stream built from a message, whole and in chunks
//! (it must be well formed, so no message can smuggle a second one).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ironpost_smtp_client::fuzz::replies(data);
    ironpost_smtp_client::fuzz::data_stream(data);
});
