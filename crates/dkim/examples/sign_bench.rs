//! Signing throughput on one core: RSA-2048 and Ed25519 over a 10 KB
//! message, about two seconds each.
//!
//! `cargo run --release -p ironpost-dkim --example sign_bench [seconds]`

use std::time::{Duration, Instant};

use ironpost_dkim::{generate, Algorithm, Signer, SignerConfig, SigningKey};

fn message() -> Vec<u8> {
    let mut m = String::from(
        "From: Alice <alice@example.com>\r\n\
         To: Bob <bob@example.net>\r\n\
         Subject: benchmark message\r\n\
         Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\
         Message-ID: <bench@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n",
    );
    let header_len = m.len();
    let line = "The quick brown fox jumps over the lazy dog, again and again.  \r\n";
    while m.len() - header_len < 10 * 1024 {
        m.push_str(line);
    }
    m.into_bytes()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    let msg = message();
    println!(
        "message: {} bytes ({} body); one thread; {:.1} s per algorithm",
        msg.len(),
        msg.len() - msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        seconds
    );
    for (name, algo, bits) in [
        ("RSA-2048", Algorithm::RsaSha256, 2048),
        ("Ed25519", Algorithm::Ed25519Sha256, 0),
    ] {
        let (pem, _) = generate(algo, bits).expect("generate key");
        let key = SigningKey::from_bytes(algo, &pem).expect("parse key");
        let signer = Signer::new(SignerConfig::new("example.com", "bench"), key).unwrap();
        // Warm up.
        for _ in 0..10 {
            std::hint::black_box(signer.sign(&msg).unwrap());
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            std::hint::black_box(signer.sign(std::hint::black_box(&msg)).unwrap());
            n += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "{name:>8}: {n:>6} signatures in {elapsed:.2} s = {:>7.1} µs/signature, {:>7.0} signatures/s/core",
            elapsed * 1e6 / n as f64,
            n as f64 / elapsed
        );
    }
}
