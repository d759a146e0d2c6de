//! The signer's connection loop over a real socketpair: what it signs is
//! what the key signs locally; keys outside its directories are refused;
//! malformed input ends the connection with an error, never a panic.

use ironpost_dkim::{generate, Algorithm, SigningKey};
use ironpost_signer::protocol::{
    self, Algo, KeyRef, Op, Reply, Request, Response, SignRequest, MAX_FRAME, VERSION,
};
use ironpost_signer::{service, KeyPolicy, SignerError};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;

fn start(policy: KeyPolicy) -> (UnixStream, JoinHandle<Result<(), SignerError>>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || service::serve(theirs, &policy));
    (ours, t)
}

fn ask(conn: &mut UnixStream, id: u64, op: Op) -> Response {
    let req = Request {
        version: VERSION,
        id,
        op,
    };
    protocol::write_frame(conn, &protocol::encode(&req).unwrap()).unwrap();
    let payload = protocol::read_frame(conn).unwrap().unwrap();
    protocol::decode(&payload).unwrap()
}

fn sign(path: PathBuf, algorithm: Algo, data: &[u8]) -> Op {
    Op::Sign(SignRequest {
        key: KeyRef::File(path),
        algorithm,
        ttl_secs: 60,
        data: data.to_vec(),
    })
}

#[test]
fn signs_what_the_key_signs_and_refuses_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (pem, _) = generate(Algorithm::Ed25519Sha256, 0).unwrap();
    std::fs::write(keys.join("ed.key"), &*pem).unwrap();
    std::fs::write(dir.path().join("outside.key"), &*pem).unwrap();
    let (mut conn, t) = start(KeyPolicy {
        key_dirs: vec![keys.canonicalize().unwrap()],
        vault_addr: None,
        confine_files: true,
    });

    assert_eq!(ask(&mut conn, 1, Op::Health).reply, Reply::Healthy);
    let data = b"from:Ann <ann@example.com>\r\ndkim-signature:v=1; b=";
    let resp = ask(
        &mut conn,
        2,
        sign(keys.join("ed.key"), Algo::Ed25519Sha256, data),
    );
    assert_eq!(resp.id, 2);
    // Ed25519 is deterministic: the signer's answer is the local signature.
    let local = SigningKey::from_bytes(Algorithm::Ed25519Sha256, &pem)
        .unwrap()
        .sign_bytes(data)
        .unwrap();
    assert_eq!(resp.reply, Reply::Signature(local));

    let resp = ask(
        &mut conn,
        3,
        sign(dir.path().join("outside.key"), Algo::Ed25519Sha256, data),
    );
    assert!(matches!(resp.reply, Reply::Refused(_)), "{resp:?}");
    // A key of another type is a failure, not a crash.
    let resp = ask(
        &mut conn,
        4,
        sign(keys.join("ed.key"), Algo::RsaSha256, data),
    );
    assert!(matches!(resp.reply, Reply::Failed { .. }), "{resp:?}");

    drop(conn);
    assert!(t.join().unwrap().is_ok(), "a clean hang-up is not an error");
}

#[test]
fn malformed_input_closes_the_connection() {
    let policy = KeyPolicy::default;
    let cases: Vec<Vec<u8>> = vec![
        // Garbage payload.
        vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
        // Another protocol version.
        {
            let mut r = Request {
                version: VERSION,
                id: 1,
                op: Op::Health,
            };
            r.version = VERSION + 1;
            protocol::encode(&r).unwrap()
        },
        // A frame longer than the limit.
        ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec(),
        // A stream ending inside a frame.
        vec![0, 0, 0, 9, 1, 1],
    ];
    for bytes in cases {
        let (mut conn, t) = start(policy());
        conn.write_all(&bytes).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let r = t.join().expect("the signer must not panic");
        assert!(r.is_err(), "{bytes:?} was accepted");
    }
}
