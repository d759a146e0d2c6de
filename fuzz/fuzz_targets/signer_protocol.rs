//! The signer's side of its protocol, fed whatever a hostile network
//! process could send: a stream of frames into `service::serve`, and each
//! frame's payload into the request decoder.
//! - nothing panics; a malformed stream ends with an error;
//! - a payload that decodes re-encodes to a frame that decodes to the
//!   same request;
//! - with no key directory admitted, no request is answered with a
//!   signature, and every answer carries the request's id.
#![no_main]

use ironpost_signer::protocol::{self, Reply, Request, Response};
use ironpost_signer::{service, KeyPolicy};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

struct Pipe<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = protocol::decode::<Request>(data) {
        let frame = protocol::encode(&req).expect("a decoded request encodes");
        assert_eq!(protocol::decode::<Request>(&frame[4..]).unwrap(), req);
    }

    let policy = KeyPolicy {
        key_dirs: Vec::new(),
        vault_addr: None,
        confine_files: true,
    };
    let mut pipe = Pipe {
        input: data,
        output: Vec::new(),
    };
    let _ = service::serve(&mut pipe, &policy);
    let mut answers = &pipe.output[..];
    while let Some(payload) = protocol::read_frame(&mut answers).expect("our own frames") {
        let resp: Response = protocol::decode(&payload).expect("our own responses");
        assert!(!matches!(resp.reply, Reply::Signature(_)));
    }
});
