//! Test helpers: keys made with the `openssl` command-line tool, and the
//! dkimpy verifier.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// True when the `openssl` CLI can be run. Tests that need it print a note
/// and return early when it cannot.
pub fn have_openssl() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let ok = Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("NOTE: openssl CLI not found; skipping tests that need it");
        }
        ok
    })
}

/// Runs openssl with `args`, feeding `stdin`, and returns stdout.
pub fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn cached(cell: &'static OnceLock<Vec<u8>>, make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    cell.get_or_init(make).clone()
}

/// Ed25519, PKCS#8 v1 PEM, as `openssl genpkey` writes it.
pub fn ed25519_pem() -> Vec<u8> {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&K, || openssl(&["genpkey", "-algorithm", "ed25519"], None))
}

/// RSA-2048, PKCS#1 PEM ("BEGIN RSA PRIVATE KEY").
pub fn rsa_pkcs1_pem() -> Vec<u8> {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&K, || openssl(&["genrsa", "-traditional", "2048"], None))
}

/// RSA-2048, PKCS#8 PEM ("BEGIN PRIVATE KEY").
pub fn rsa_pkcs8_pem() -> Vec<u8> {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&K, || {
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        )
    })
}

/// The same key as PKCS#8 DER.
pub fn to_der(pem: &[u8]) -> Vec<u8> {
    let der = openssl(
        &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
        Some(pem),
    );
    // SEQUENCE { INTEGER version, SEQUENCE AlgorithmIdentifier, ... }
    let hl = if der[1] < 0x80 {
        2
    } else {
        2 + usize::from(der[1] & 0x7f)
    };
    assert_eq!(der[hl..hl + 2], [0x02, 0x01], "PKCS#8 expected");
    assert_eq!(der[hl + 3], 0x30, "PKCS#8 expected");
    der
}

/// The public key as SubjectPublicKeyInfo DER.
pub fn public_der(pem: &[u8]) -> Vec<u8> {
    openssl(&["pkey", "-pubout", "-outform", "DER"], Some(pem))
}

/// PKCS#8 encrypted with a password.
pub fn encrypt_pkcs8(pem: &[u8]) -> Vec<u8> {
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:x",
        ],
        Some(pem),
    )
}

/// The directory of this crate.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python interpreter that can `import dkim` (dkimpy) and `nacl` (for
/// Ed25519). Debian's python3-dkim serves /usr/bin/python3; otherwise dkimpy
/// is installed with pip into the python3 on PATH (idempotent: pip does
/// nothing when it is already there).
pub fn dkimpy_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let works = |py: &Path| {
            Command::new(py)
                .args(["-c", "import dkim, nacl"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let candidates = [PathBuf::from("/usr/bin/python3"), PathBuf::from("python3")];
        if let Some(py) = candidates.iter().find(|p| works(p)) {
            return py.clone();
        }
        eprintln!("NOTE: dkimpy not importable; installing it with pip into python3");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "dkimpy", "pynacl"])
            .status()
            .expect("run python3 -m pip");
        assert!(status.success(), "pip install dkimpy pynacl failed");
        let py = PathBuf::from("python3");
        assert!(works(&py), "dkimpy still not importable after pip install");
        py
    })
    .clone()
}
