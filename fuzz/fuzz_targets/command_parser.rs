//! Arbitrary bytes through line framing, command parsing and the session
//! state machine: nothing may panic, and every reply must be well formed.
//! Framing must not depend on how the bytes arrive: read in chunks into a
//! growing buffer, as the server reads its socket, the same lines and
//! errors come out as from the whole input at once.
#![no_main]

use ironpost_wire::line::{LineError, Next};
use ironpost_wire::{command, Action, LineReader, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Event {
    Line(Vec<u8>),
    Error(LineError),
}

/// The framing events of `data` read `chunk` bytes at a time (the rest of
/// an over-long line, dropped silently, is not an event).
fn framing(data: &[u8], chunk: usize) -> Vec<Event> {
    let mut reader = LineReader::new();
    let mut events = Vec::new();
    let mut buf = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        let mut used = 0;
        while let Some((n, next)) = reader.next(&buf[used..]) {
            match next {
                Next::Line(l) => events.push(Event::Line(l.to_vec())),
                Next::Error(e) => events.push(Event::Error(e)),
                Next::Skip => {}
            }
            used += n;
        }
        buf.drain(..used);
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(SessionConfig {
        hostname: "fuzz.test".into(),
        max_message_size: 1000,
        max_recipients: 3,
        max_messages: 2,
        starttls: true,
        auth_mechanisms: vec!["PLAIN".into()],
    });
    let mut reader = LineReader::new();
    let mut buf = data;
    while let Some((n, next)) = reader.next(buf) {
        assert!(n > 0 && n <= buf.len());
        if let Next::Line(line) = next {
            let action = match command::parse(line) {
                Ok(cmd) => session.handle(cmd),
                Err(reply) => Action::Reply(reply),
            };
            match action {
                Action::Reply(r) | Action::Close(r) => {
                    let bytes = r.to_bytes();
                    assert!(bytes.ends_with(b"\r\n"));
                    // No reply line may contain a bare CR or LF.
                    let body = &bytes[..bytes.len() - 2];
                    for line in body.split(|&b| b == b'\n') {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        assert!(!line.contains(&b'\r'));
                    }
                }
                Action::CheckRecipient(m) => {
                    session.accept_recipient(m);
                }
                Action::StartData => {
                    session.take_transaction(true);
                }
                Action::StartTls => session.tls_established(),
                Action::Auth { .. } => session.set_authenticated(),
            }
        }
        buf = &buf[n..];
    }

    if let Some(&first) = data.first() {
        let chunk = usize::from(first).max(1) * 16;
        assert_eq!(framing(data, chunk), framing(data, data.len()));
    }
});
