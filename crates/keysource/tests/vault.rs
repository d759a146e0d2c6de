//! Vault keysources against a real Vault-compatible server (rusty_vault's
//! `rvault`, started per test by `ironpost_testkit::vault`).
//!
//! The secret cache, the AppRole token cache and the environment are
//! process-wide, so every test takes `serial()` first and starts from an
//! empty cache.
//!
//! These tests need the `rvault` binary: run `scripts/install-rvault.sh`.
//! Without it they fail (they are never skipped).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ironpost_keysource::vault::{self, VaultError, CACHE_TTL, GRACE};
use ironpost_keysource::{KeySource, KeySourceError};
use ironpost_testkit::vault::VaultServer;
use serde_json::{json, Value};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    vault::clear_cache();
    guard
}

fn start() -> VaultServer {
    VaultServer::start().unwrap_or_else(|e| panic!("cannot start the test Vault server: {e:#}"))
}

/// A keysource as a policy would give it (the same JSON/Lua table shape).
fn source(v: Value) -> KeySource {
    let ks: KeySource = serde_json::from_value(v.clone()).expect("valid keysource");
    assert!(
        matches!(ks, KeySource::Vault(_)),
        "{v} is a Vault keysource"
    );
    ks
}

fn table(server: &VaultServer, path: &str, token: &str) -> Value {
    json!({
        "vault_mount": "secret",
        "vault_path": path,
        "vault_address": server.url(),
        "vault_token": token,
    })
}

fn load_ok(ks: &KeySource) -> Vec<u8> {
    match ks.load() {
        Ok(s) => s.expose().to_vec(),
        Err(e) => panic!("loading {ks:?}: {e}"),
    }
}

fn load_err(ks: &KeySource) -> KeySourceError {
    match ks.load() {
        Ok(_) => panic!("loading {ks:?} should fail"),
        Err(e) => e,
    }
}

fn vault_error(e: &KeySourceError) -> &VaultError {
    match e {
        KeySourceError::Vault { source, .. } => source,
        other => panic!("expected a Vault error, got {other:?}"),
    }
}

/// Neither the Display nor the Debug form of `what` contains any of
/// `secrets` (tokens, secret IDs, secret values).
fn assert_hides<T: std::fmt::Debug + std::fmt::Display>(what: &T, secrets: &[&str]) {
    let texts = [what.to_string(), format!("{what:?}"), format!("{what:#?}")];
    for text in &texts {
        for s in secrets {
            assert!(!s.is_empty());
            assert!(!text.contains(s), "{text:?} reveals a secret");
        }
    }
}

fn assert_debug_hides(ks: &KeySource, secrets: &[&str]) {
    let texts = [format!("{ks:?}"), format!("{ks:#?}"), ks.describe()];
    for text in &texts {
        for s in secrets {
            assert!(!text.contains(s), "{text:?} reveals a secret");
        }
    }
}

/// Sets environment variables for the length of a test and restores them.
struct EnvGuard(Vec<(&'static str, Option<std::ffi::OsString>)>);

impl EnvGuard {
    fn set(vars: &[(&'static str, Option<&str>)]) -> EnvGuard {
        let mut saved = Vec::new();
        for (k, v) in vars {
            saved.push((*k, std::env::var_os(k)));
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        EnvGuard(saved)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (k, v) in self.0.drain(..) {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

#[test]
fn token_from_the_table_reads_the_key_field() {
    let _g = serial();
    let server = start();
    server
        .write_secret(
            "dkim/example.com",
            json!({"key": "pem-bytes-FIELD", "other": "unrelated"}),
        )
        .unwrap();

    // The raw API shape: KV v2's data.data.
    let (status, body) = server
        .request(
            "GET",
            "secret/data/dkim/example.com",
            Some(server.root_token()),
            None,
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["data"]["key"], "pem-bytes-FIELD");

    let ks = source(table(&server, "dkim/example.com", server.root_token()));
    assert_eq!(load_ok(&ks), b"pem-bytes-FIELD");
    assert_debug_hides(&ks, &[server.root_token()]);
    assert_eq!(ks.describe(), "vault secret/dkim/example.com field key");
    // The secret wrapper never prints its bytes.
    let secret = ks.load().unwrap();
    assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");

    // A non-string field comes back as its JSON text.
    server
        .write_secret("numbers", json!({"key": 1234}))
        .unwrap();
    let ks = source(table(&server, "numbers", server.root_token()));
    assert_eq!(load_ok(&ks), b"1234");
}

#[test]
fn custom_vault_key_and_mount() {
    let _g = serial();
    let server = start();
    server.mount_kv("ironpost").unwrap();
    server
        .write_secret_at(
            "ironpost",
            "smtp/relay",
            json!({"username": "mailer", "password": "pw-on-custom-mount"}),
        )
        .unwrap();
    let mut t = table(&server, "smtp/relay", server.root_token());
    t["vault_mount"] = json!("ironpost");
    t["vault_key"] = json!("password");
    let ks = source(t.clone());
    assert_eq!(load_ok(&ks), b"pw-on-custom-mount");
    t["vault_key"] = json!("username");
    assert_eq!(load_ok(&source(t)), b"mailer");

    // Leading and trailing slashes in mount and path are tolerated.
    let ks = source(json!({
        "vault_mount": "/ironpost/",
        "vault_path": "/smtp/relay/",
        "vault_address": format!("{}/", server.url()),
        "vault_token": server.root_token(),
        "vault_key": "password",
    }));
    assert_eq!(load_ok(&ks), b"pw-on-custom-mount");
}

#[test]
fn token_and_address_from_the_environment() {
    let _g = serial();
    let server = start();
    server
        .write_secret("env/secret", json!({"key": "from-env-config"}))
        .unwrap();
    let bare = source(json!({"vault_mount": "secret", "vault_path": "env/secret"}));

    {
        let _env = EnvGuard::set(&[
            ("VAULT_ADDR", Some(server.url().as_str())),
            ("VAULT_TOKEN", Some(server.root_token())),
        ]);
        assert_eq!(load_ok(&bare), b"from-env-config");
        assert_debug_hides(&bare, &[server.root_token()]);
    }

    vault::clear_cache();
    {
        // The table's token wins over VAULT_TOKEN.
        let _env = EnvGuard::set(&[
            ("VAULT_ADDR", Some(server.url().as_str())),
            ("VAULT_TOKEN", Some("env-token-that-is-WRONG")),
        ]);
        let with_token = source(json!({
            "vault_mount": "secret",
            "vault_path": "env/secret",
            "vault_token": server.root_token(),
        }));
        assert_eq!(load_ok(&with_token), b"from-env-config");
        // ...and a wrong VAULT_TOKEN is used when the table has none. (The
        // cache is keyed by address, mount, path and field, not by the
        // credentials, so it must be emptied first or `bare` would be
        // served the value `with_token` fetched.)
        vault::clear_cache();
        let e = load_err(&bare);
        assert!(matches!(vault_error(&e), VaultError::Denied { .. }), "{e}");
        assert_hides(&e, &["env-token-that-is-WRONG", server.root_token()]);
    }

    vault::clear_cache();
    {
        let _env = EnvGuard::set(&[("VAULT_ADDR", None), ("VAULT_TOKEN", None)]);
        let e = load_err(&bare);
        assert!(matches!(vault_error(&e), VaultError::NoAddress), "{e}");
        assert!(!e.is_temporary());
        assert!(e.to_string().contains("VAULT_ADDR"), "{e}");

        let _addr = EnvGuard::set(&[("VAULT_ADDR", Some(server.url().as_str()))]);
        let e = load_err(&bare);
        assert!(matches!(vault_error(&e), VaultError::NoToken), "{e}");
        assert!(!e.is_temporary());
        assert!(e.to_string().contains("VAULT_TOKEN"), "{e}");
    }
}

#[test]
fn wrong_token_is_denied_and_never_shown() {
    let _g = serial();
    let server = start();
    server
        .write_secret("dkim/denied", json!({"key": "value-NOT-for-you"}))
        .unwrap();
    let wrong = "hvs.WRONG-token-0123456789";
    let ks = source(table(&server, "dkim/denied", wrong));
    let e = load_err(&ks);
    match vault_error(&e) {
        VaultError::Denied { status, location } => {
            assert_eq!(*status, 403);
            assert!(
                location.contains("/v1/secret/data/dkim/denied"),
                "{location}"
            );
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert!(!e.is_temporary(), "a wrong token is a configuration error");
    assert_hides(&e, &[wrong, "value-NOT-for-you", server.root_token()]);
    assert_hides(vault_error(&e), &[wrong]);
    assert_debug_hides(&ks, &[wrong]);

    // A wrong token learns nothing about which paths exist.
    let e = load_err(&source(table(&server, "no/such/path", wrong)));
    assert!(matches!(vault_error(&e), VaultError::Denied { .. }), "{e}");
}

#[test]
fn missing_path_is_not_found() {
    let _g = serial();
    let server = start();
    let ks = source(table(&server, "dkim/never-written", server.root_token()));
    let e = load_err(&ks);
    match vault_error(&e) {
        VaultError::NotFound { location } => {
            assert!(
                location.ends_with("/v1/secret/data/dkim/never-written"),
                "{location}"
            )
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!e.is_temporary());
    assert!(e.to_string().contains("dkim/never-written"), "{e}");
    assert_hides(&e, &[server.root_token()]);
}

#[test]
fn missing_field_names_the_field_only() {
    let _g = serial();
    let server = start();
    server
        .write_secret("dkim/fields", json!({"private_key": "SECRET-PEM-VALUE"}))
        .unwrap();
    // Default vault_key is "key", which this secret does not have.
    let ks = source(table(&server, "dkim/fields", server.root_token()));
    let e = load_err(&ks);
    match vault_error(&e) {
        VaultError::MissingField { field, .. } => assert_eq!(field, "key"),
        other => panic!("expected MissingField, got {other:?}"),
    }
    assert!(!e.is_temporary());
    assert_hides(&e, &["SECRET-PEM-VALUE", server.root_token()]);

    let mut t = table(&server, "dkim/fields", server.root_token());
    t["vault_key"] = json!("private_key");
    assert_eq!(load_ok(&source(t)), b"SECRET-PEM-VALUE");
}

#[test]
fn outage_serves_the_cache_within_grace_then_fails_closed() {
    let _g = serial();
    let mut server = start();
    server
        .write_secret("smtp/password", json!({"key": "cached-PASSWORD"}))
        .unwrap();
    let ks = source(table(&server, "smtp/password", server.root_token()));
    assert_eq!(load_ok(&ks), b"cached-PASSWORD");

    server.stop();
    assert!(!server.is_running());

    // Within the TTL: served from memory without asking Vault.
    assert_eq!(load_ok(&ks), b"cached-PASSWORD");
    // Past the TTL, within the grace period: Vault is asked, cannot be
    // reached, and the cached value is served.
    vault::age_cache(CACHE_TTL + Duration::from_secs(1));
    assert_eq!(load_ok(&ks), b"cached-PASSWORD");
    vault::age_cache(GRACE - Duration::from_secs(10));
    assert_eq!(load_ok(&ks), b"cached-PASSWORD");

    // Past TTL + grace: fail closed with a temporary error, no panic.
    vault::age_cache(Duration::from_secs(20));
    let e = load_err(&ks);
    assert!(e.is_temporary(), "an outage is temporary: {e}");
    assert!(
        matches!(vault_error(&e), VaultError::Unavailable { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("smtp/password"), "{e}");
    assert_hides(&e, &["cached-PASSWORD", server.root_token()]);
    // The stale value is gone for good, not served again.
    let e = load_err(&ks);
    assert!(e.is_temporary(), "{e}");

    // Vault back: loads work again.
    server.restart().unwrap();
    assert_eq!(load_ok(&ks), b"cached-PASSWORD");
}

#[test]
fn never_fetched_and_unreachable_is_temporary() {
    let _g = serial();
    let mut server = start();
    let ks = source(table(&server, "anything", server.root_token()));
    server.stop();
    let e = load_err(&ks);
    assert!(e.is_temporary(), "{e}");
    assert_hides(&e, &[server.root_token()]);
}

#[test]
fn sealed_vault_is_temporary_and_recovers() {
    let _g = serial();
    let server = start();
    server
        .write_secret("sealed/secret", json!({"key": "behind-the-seal"}))
        .unwrap();
    let ks = source(table(&server, "sealed/secret", server.root_token()));
    server.seal().unwrap();
    let e = load_err(&ks);
    assert!(e.is_temporary(), "a sealed Vault (503) is temporary: {e}");
    server.unseal().unwrap();
    assert_eq!(load_ok(&ks), b"behind-the-seal");
}

#[test]
fn vault_ca_file_verifies_a_tls_vault() {
    let _g = serial();
    let server =
        VaultServer::start_tls().unwrap_or_else(|e| panic!("cannot start the TLS Vault: {e:#}"));
    assert!(server.url().starts_with("https://"));
    server
        .write_secret("tls/secret", json!({"key": "over-tls"}))
        .unwrap();
    let ca = server.ca_file().unwrap().to_path_buf();

    let mut t = table(&server, "tls/secret", server.root_token());
    t["vault_ca_file"] = json!(ca);
    assert_eq!(load_ok(&source(t.clone())), b"over-tls");

    // Without the CA the certificate is not trusted: no secret.
    vault::clear_cache();
    let e = load_err(&source(table(&server, "tls/secret", server.root_token())));
    assert_hides(&e, &[server.root_token()]);

    // An unreadable CA file is a configuration error.
    vault::clear_cache();
    t["vault_ca_file"] = json!("/nonexistent/ironpost-ca.pem");
    let e = load_err(&source(t));
    assert!(
        matches!(
            vault_error(&e),
            VaultError::Config {
                what: "vault_ca_file",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_temporary());
}

#[test]
fn approle_login_reads_secrets() {
    let _g = serial();
    let server = start();
    let creds = server.create_approle("ironpost-mta", "60s").unwrap();
    server
        .write_secret("dkim/approle", json!({"key": "via-APPROLE"}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret_id_file = dir.path().join("secret-id");
    std::fs::write(&secret_id_file, &creds.secret_id).unwrap();

    let ks = source(json!({
        "vault_mount": "secret",
        "vault_path": "dkim/approle",
        "vault_address": server.url(),
        "vault_role_id": {"key_data": creds.role_id},
        "vault_secret_id": secret_id_file,
    }));
    assert_eq!(load_ok(&ks), b"via-APPROLE");
    assert_debug_hides(&ks, &[&creds.role_id, &creds.secret_id]);

    // A wrong secret ID is refused, and the error shows neither ID.
    vault::clear_cache();
    let bad = source(json!({
        "vault_mount": "secret",
        "vault_path": "dkim/approle",
        "vault_address": server.url(),
        "vault_role_id": {"key_data": creds.role_id},
        "vault_secret_id": {"key_data": "not-the-SECRET-id"},
    }));
    let e = load_err(&bad);
    assert!(
        matches!(vault_error(&e), VaultError::Denied { .. }),
        "{e:?}"
    );
    assert!(!e.is_temporary());
    assert_hides(&e, &[&creds.role_id, "not-the-SECRET-id", &creds.secret_id]);

    // A secret ID keysource that cannot be read is a configuration error.
    let missing = source(json!({
        "vault_mount": "secret",
        "vault_path": "dkim/approle",
        "vault_address": server.url(),
        "vault_role_id": {"key_data": creds.role_id},
        "vault_secret_id": dir.path().join("absent"),
    }));
    let e = load_err(&missing);
    assert!(
        matches!(
            vault_error(&e),
            VaultError::Config {
                what: "vault_secret_id",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn approle_token_is_replaced_before_it_expires() {
    let _g = serial();
    let server = start();
    // rusty_vault has no auth/token/renew-self, so renewal fails and the
    // keysource must log in again once 2/3 of the token's life is gone.
    let creds = server.create_approle("short-lived", "3s").unwrap();
    server.write_secret("a", json!({"key": "first"})).unwrap();
    server.write_secret("b", json!({"key": "second"})).unwrap();
    let ks = |path: &str| {
        source(json!({
            "vault_mount": "secret",
            "vault_path": path,
            "vault_address": server.url(),
            "vault_role_id": {"key_data": creds.role_id},
            "vault_secret_id": {"key_data": creds.secret_id},
        }))
    };
    let logins = || server.log_text().matches("/v1/auth/approle/login").count();

    assert_eq!(load_ok(&ks("a")), b"first");
    assert_eq!(logins(), 1);
    // Within the first 2/3 of the lease the token is reused.
    assert_eq!(load_ok(&ks("b")), b"second");
    assert_eq!(logins(), 1, "token reused while fresh");

    std::thread::sleep(Duration::from_millis(2300));
    vault::age_cache(CACHE_TTL); // make the secrets themselves stale too
    assert_eq!(load_ok(&ks("a")), b"first");
    assert_eq!(
        logins(),
        2,
        "a new login once the token is 2/3 through its life"
    );
}
