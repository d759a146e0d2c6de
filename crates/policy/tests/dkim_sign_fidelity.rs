//! `policy-extras.dkim_sign` does what KumoMTA's `dkim_sign.lua` does
//! (assets/policy-extras/dkim_sign.lua): additional signatures on every
//! message, domain blocks matched through domain-map rules (wildcards),
//! 552 for a message without From, Vault paths `<prefix>/<domain>/<selector>`
//! (or `filename`), `OnlyIfMissingDomainBlock`, and data files read again
//! when they change. Signatures are verified by dkimpy.

use ironpost_dkim::{dns_record, generate, Algorithm};
use ironpost_policy::{EngineOptions, EventError, Message, PolicyEngine, PolicySource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Keys {
    dir: tempfile::TempDir,
    records: HashMap<String, String>,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
            records: HashMap::new(),
        }
    }

    /// An RSA key for `domain`/`selector` at `<dir>/<file>`, published in
    /// the test's DNS records.
    fn rsa(&mut self, file: &str, domain: &str, selector: &str) -> PathBuf {
        let (pem, public) = generate(Algorithm::RsaSha256, 2048).unwrap();
        let path = self.dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, &*pem).unwrap();
        let rec = dns_record(domain, selector, Algorithm::RsaSha256, &public).unwrap();
        self.records.insert(rec.name.clone(), rec.txt_value());
        path
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// dkimpy's verdict on every DKIM-Signature of `data`.
    fn verify(&self, data: &[u8]) -> Vec<bool> {
        let out = tempfile::tempdir().unwrap();
        let eml = out.path().join("m.eml");
        std::fs::write(&eml, data).unwrap();
        let recs = out.path().join("records.json");
        std::fs::write(&recs, serde_json::to_vec(&self.records).unwrap()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dkim/tests/verify_dkim.py");
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let r = Command::new(python)
            .arg(&script)
            .arg(&recs)
            .arg(&eml)
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&r.stdout).to_string();
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("{e}: {line} {}", String::from_utf8_lossy(&r.stderr)));
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect()
    }
}

fn engine(dir: &Path, setup: &str) -> Result<PolicyEngine, String> {
    let policy = format!(
        "local dkim_sign = require 'policy-extras.dkim_sign'\n\
         local signer = dkim_sign:setup {setup}\n\
         kumo.on('smtp_server_message_received', function(msg) signer(msg) end)\n"
    );
    let p = dir.join("policy.lua");
    std::fs::write(&p, policy).unwrap();
    PolicyEngine::start(
        PolicySource::File(p),
        EngineOptions {
            pool_size: 1,
            ..Default::default()
        },
    )
    .map(|(e, _)| e)
    .map_err(|e| e.to_string())
}

fn msg(headers: &str) -> Message {
    Message {
        id: "1".into(),
        sender: "s@sender.test".into(),
        recipients: vec!["r@dest.test".into()],
        data: format!("{headers}To: r@dest.test\r\nSubject: hi\r\n\r\nbody\r\n").into_bytes(),
        ..Default::default()
    }
}

async fn sign(e: &PolicyEngine, headers: &str) -> Result<Vec<u8>, EventError> {
    e.message_event("smtp_server_message_received", msg(headers), None)
        .await
        .map(|m| m.data)
}

/// The `d=` of each DKIM-Signature, top first.
fn signers(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.split("DKIM-Signature:")
        .skip(1)
        .filter_map(|s| {
            let d = s.split("d=").nth(1)?;
            Some(d.split(';').next()?.trim().to_string())
        })
        .collect()
}

/// docs/userguide/configuration/dkim.md: `base.additional_signatures`
/// ("MyESPName", policy Always) signs every message, with or without a
/// [domain] block for its From domain.
#[tokio::test(flavor = "multi_thread")]
async fn additional_signatures_sign_every_sender() {
    let mut k = Keys::new();
    let ex = k.rsa("example.com.key", "example.com", "dkim1024");
    let esp = k.rsa("myesp.com.key", "myesp.com", "dkim1024");
    let toml = k.write(
        "dkim_data.toml",
        &format!(
            "[base]\nadditional_signatures = [\"MyESPName\"]\nselector = \"dkim1024\"\nover_sign = true\n\
             [domain.\"example.com\"]\nselector = 'dkim1024'\nheaders = [\"From\", \"To\", \"Subject\"]\nfilename = \"{}\"\n\
             [signature.\"MyESPName\"]\npolicy = \"Always\"\ndomain = \"myesp.com\"\nfilename = \"{}\"\n",
            ex.display(),
            esp.display()
        ),
    );
    let e = engine(k.dir.path(), &format!("{{ '{}' }}", toml.display())).unwrap();

    let other = sign(&e, "From: a@other.test\r\n").await.unwrap();
    assert_eq!(signers(&other), ["myesp.com"]);
    assert_eq!(k.verify(&other), [true]);

    let own = sign(&e, "From: a@example.com\r\n").await.unwrap();
    // Domain signature first, then the additional one (each prepended).
    assert_eq!(signers(&own), ["myesp.com", "example.com"]);
    assert_eq!(k.verify(&own), [true, true]);
}

/// `[domain."*.example.com"]` matches through KumoMTA's domain-map rules:
/// any name under example.com, signing as that name; not example.com.
#[tokio::test(flavor = "multi_thread")]
async fn wildcard_domain_blocks_match() {
    let mut k = Keys::new();
    let key = k.rsa("wild.key", "mail.example.com", "dkim1024");
    let (_, public) = {
        // The same key published for a deeper name too.
        let pem = std::fs::read(&key).unwrap();
        let public = ironpost_dkim::public_key_from_private(Algorithm::RsaSha256, &pem).unwrap();
        ((), public)
    };
    let rec = dns_record("a.b.example.com", "dkim1024", Algorithm::RsaSha256, &public).unwrap();
    k.records.insert(rec.name.clone(), rec.txt_value());
    let toml = k.write(
        "dkim_data.toml",
        &format!(
            "[domain.\"*.example.com\"]\nselector = 'dkim1024'\nalgo = \"sha256\"\nfilename = \"{}\"\n",
            key.display()
        ),
    );
    let e = engine(k.dir.path(), &format!("{{ '{}' }}", toml.display())).unwrap();
    let m = sign(&e, "From: Ann <ann@Mail.Example.com>\r\n")
        .await
        .unwrap();
    assert_eq!(signers(&m), ["mail.example.com"]);
    assert_eq!(k.verify(&m), [true]);
    let deep = sign(&e, "From: x@a.b.example.com\r\n").await.unwrap();
    assert_eq!(signers(&deep), ["a.b.example.com"]);
    assert_eq!(k.verify(&deep), [true]);
    let apex = sign(&e, "From: x@example.com\r\n").await.unwrap();
    assert!(signers(&apex).is_empty(), "the apex has no block");
}

/// dkim_sign.lua: `kumo.reject(552, '5.6.0 DKIM signing requires a From
/// header, but it is missing from this message')`; a From that is not one
/// address is an error (deferred), never passed on unsigned.
#[tokio::test(flavor = "multi_thread")]
async fn missing_or_ambiguous_from() {
    let k = Keys::new();
    let e = engine(
        k.dir.path(),
        "{ { base = { selector = 's' }, domain = { ['example.com'] = {} } } }",
    )
    .unwrap();
    assert_eq!(
        sign(&e, "").await.unwrap_err(),
        EventError::Reject {
            code: 552,
            text: "5.6.0 DKIM signing requires a From header, but it is missing from this message"
                .into()
        }
    );
    match sign(&e, "From: a@example.com, b@example.com\r\n").await {
        Err(EventError::Failed(m)) => assert!(m.contains("single address"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// With `base.vault_mount` the key is at `<prefix>/<domain>/<selector>`
/// (prefix "dkim" by default), or at `filename` when a block names one.
/// No Vault runs here: the error names the path that was read.
#[tokio::test(flavor = "multi_thread")]
async fn vault_paths_follow_dkim_sign_lua() {
    let k = Keys::new();
    let e = engine(
        k.dir.path(),
        "{ { base = { vault_mount = 'secret', selector = 'dkim1024' },\n\
           domain = { ['example.com'] = {}, ['named.test'] = { filename = 'keys/named' },\n\
                      ['prefixed.test'] = { vault_path_prefix = 'other' } },\n\
           signature = {} } }",
    )
    .unwrap();
    for (from, path) in [
        ("example.com", "secret/dkim/example.com/dkim1024"),
        ("named.test", "secret/keys/named"),
        ("prefixed.test", "secret/other/prefixed.test/dkim1024"),
    ] {
        match sign(&e, &format!("From: a@{from}\r\n")).await {
            Err(EventError::Failed(m)) => assert!(m.contains(path), "{from}: {m}"),
            other => panic!("{from}: {other:?}"),
        }
    }
}

/// A `[signature]` with `policy = "OnlyIfMissingDomainBlock"` is the
/// fallback for senders without a domain block.
#[tokio::test(flavor = "multi_thread")]
async fn only_if_missing_domain_block() {
    let mut k = Keys::new();
    let ex = k.rsa("ex.key", "example.com", "s1");
    let fb = k.rsa("fb.key", "fallback.test", "s1");
    let toml = k.write(
        "d.toml",
        &format!(
            "[base]\nselector = 's1'\nadditional_signatures = ['fb']\n\
             [domain.'example.com']\nfilename = '{}'\n\
             [signature.fb]\ndomain = 'fallback.test'\npolicy = 'OnlyIfMissingDomainBlock'\nfilename = '{}'\n",
            ex.display(),
            fb.display()
        ),
    );
    let e = engine(k.dir.path(), &format!("{{ '{}' }}", toml.display())).unwrap();
    let own = sign(&e, "From: a@example.com\r\n").await.unwrap();
    assert_eq!(signers(&own), ["example.com"]);
    let other = sign(&e, "From: a@other.test\r\n").await.unwrap();
    assert_eq!(signers(&other), ["fallback.test"]);
    assert_eq!(k.verify(&other), [true]);
}

/// KumoMTA re-reads the data (memoized for 5 minutes, dropped on a
/// configuration change); Ironpost reads it again when a file changes.
#[tokio::test(flavor = "multi_thread")]
async fn data_files_are_read_again_when_they_change() {
    let mut k = Keys::new();
    let ex = k.rsa("ex.key", "example.com", "s1");
    let toml = k.write("d.json", "{ base: { selector: 's1' } }");
    let e = engine(k.dir.path(), &format!("{{ '{}' }}", toml.display())).unwrap();
    assert!(signers(&sign(&e, "From: a@example.com\r\n").await.unwrap()).is_empty());
    k.write(
        "d.json",
        &format!(
            "// JSON with comments, as KumoMTA reads a file not named .toml\n\
             {{ base: {{ selector: 's1' }}, domain: {{ 'example.com': {{ filename: '{}' }} }} }}",
            ex.display()
        ),
    );
    let m = sign(&e, "From: a@example.com\r\n").await.unwrap();
    assert_eq!(signers(&m), ["example.com"]);
    assert_eq!(k.verify(&m), [true]);
    // A file that no longer loads fails the message (deferred), loudly.
    k.write("d.json", "{ base: { selector: 's1', bogus: 1 } }");
    match sign(&e, "From: a@example.com\r\n").await {
        Err(EventError::Failed(m)) => assert!(m.contains("bogus"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Keys KumoMTA's typed config refuses where they are written are refused
/// at start rather than ignored.
#[test]
fn misplaced_keys_are_refused_at_start() {
    let k = Keys::new();
    for (data, needle) in [
        ("{ base = { filename = '/k' } }", "'filename'"),
        ("{ base = { domain = 'x.test' } }", "'domain'"),
        (
            "{ base = { selector = 's' }, domain = { ['a.test'] = { domain = 'b.test' } } }",
            "'domain'",
        ),
        (
            "{ base = { selector = 's', additional_signatures = { 'x' } }, signature = { x = {} } }",
            "'domain' is required",
        ),
        (
            "{ base = { selector = 's' }, signature = { x = { domain = 'a', additional_signatures = { 'x' } } } }",
            "'additional_signatures'",
        ),
        (
            "{ domain = { ['a.test'] = {} } }",
            "missing a selector",
        ),
        (
            "{ base = { selector = 's' }, domain = { ['a.test'] = { policy = 'OnlyIfMissingDomainBlock' } } }",
            "policy",
        ),
        ("{ base = { selector = 's', bogus = 1 } }", "bogus"),
    ] {
        let err = engine(k.dir.path(), &format!("{{ {data} }}")).err().unwrap();
        assert!(err.contains("dkim_sign") && err.contains(needle), "{data}: {err}");
    }
    // setup may be called once, as in KumoMTA.
    let p = k.dir.path().join("twice.lua");
    std::fs::write(
        &p,
        "local d = require 'policy-extras.dkim_sign'\nd:setup { {} }\nd:setup { {} }\n",
    )
    .unwrap();
    let err = PolicyEngine::start(PolicySource::File(p), EngineOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already been configured"), "{err}");
}
