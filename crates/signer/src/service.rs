//! One signer connection: read a request, answer it, until the network
//! process hangs up. A malformed request ends the connection (the daemon
//! opens another); nothing in a request can panic the signer.

use crate::keys::{KeyCache, KeyError, KeyPolicy};
use crate::protocol::{self, Op, Reply, Request, Response, VERSION};
use crate::SignerError;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Requests per second a connection may make on average, and the burst
/// above it. Far above what the daemon needs (one per signature), it
/// bounds the CPU an attacker in the network process can take.
pub const RATE: f64 = 20_000.0;
pub const BURST: f64 = 2_000.0;

/// A token bucket that paces rather than refuses: past the rate, the
/// signer sleeps, so the daemon sees latency, not failed messages.
struct Pacer {
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new() -> Pacer {
        Pacer {
            tokens: BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * RATE).min(BURST);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / RATE;
            std::thread::sleep(Duration::from_secs_f64(wait));
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// Answers one request.
pub fn handle(req: Request, policy: &KeyPolicy, cache: &mut KeyCache) -> Response {
    let reply = match req.op {
        Op::Health => Reply::Healthy,
        Op::Sign(s) => match policy
            .admit(&s.key)
            .and_then(|()| cache.get(&s.key, s.algorithm, Duration::from_secs(s.ttl_secs.into())))
        {
            Ok(key) => match key.sign_bytes(&s.data) {
                Ok(sig) => Reply::Signature(sig),
                Err(e) => Reply::Failed {
                    temporary: false,
                    reason: e.to_string(),
                },
            },
            Err(KeyError::Refused(why)) => {
                tracing::warn!("signer: refused: {why}");
                Reply::Refused(why)
            }
            Err(KeyError::Failed { temporary, reason }) => Reply::Failed { temporary, reason },
        },
    };
    Response {
        version: VERSION,
        id: req.id,
        reply,
    }
}

/// Serves `stream` until it closes (`Ok`) or sends something malformed
/// (`Err`, logged by the caller; the connection is dropped).
pub fn serve(mut stream: impl Read + Write, policy: &KeyPolicy) -> Result<(), SignerError> {
    let mut cache = KeyCache::default();
    let mut pacer = Pacer::new();
    while let Some(payload) = protocol::read_frame(&mut stream)? {
        pacer.take();
        let req: Request = protocol::decode(&payload)?;
        let resp = handle(req, policy, &mut cache);
        protocol::write_frame(&mut stream, &protocol::encode(&resp)?)?;
    }
    Ok(())
}
