//! Inbound SMTP AUTH and tenant isolation with the seed's policies: the
//! static table, a real SQLite file with the seed's query, bcrypt hashes
//! through the passwords helper, no impersonation, throttling, and the
//! queues helper's `require_authz`.

use base64::Engine;
use ironpost_testkit::{Daemon, SmtpClient, TlsTrust};
use std::time::Duration;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn policy(listener_extra: &str, body: &str) -> String {
    format!(
        r#"
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', relay_hosts = {{ '10.255.255.1' }}, {listener_extra} }}
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:9' }} }} }}, retry_interval = '1h' }}
end)
{body}
"#
    )
}

async fn tls_client(d: &Daemon) -> SmtpClient {
    tls_client_from(d, "127.0.0.1".parse().unwrap()).await
}

async fn tls_client_from(d: &Daemon, from: std::net::IpAddr) -> SmtpClient {
    let (mut c, _) = SmtpClient::connect_from(from, d.smtp_addr()).await.unwrap();
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "AUTH must not be offered before TLS"
    );
    let r = c
        .cmd(&format!("AUTH PLAIN {}", b64(b"\0scott\0tiger")))
        .await
        .unwrap();
    assert_eq!((r.code, r.enhanced().as_deref()), (530, Some("5.7.0")));
    c.starttls("localhost", TlsTrust::AcceptAnyInsecure)
        .await
        .unwrap();
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo}");
    c
}

async fn auth(c: &mut SmtpClient, authz: &str, authc: &str, pw: &str) -> u16 {
    c.cmd(&format!(
        "AUTH PLAIN {}",
        b64(format!("{authz}\0{authc}\0{pw}").as_bytes())
    ))
    .await
    .unwrap()
    .code
}

const STATIC_TABLE: &str = r#"
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  local password_database = {
    ['scott'] = 'tiger',
  }
  if password == '' then
    return false
  end
  return password_database[authc] == password
end)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn static_table_auth_relay_and_no_impersonation() {
    let d = Daemon::start_policy(
        std::path::Path::new(env!("CARGO_BIN_EXE_ironpost")),
        &policy("", STATIC_TABLE),
    )
    .unwrap();
    let mut c = tls_client(&d).await;
    // Unauthenticated clients outside relay_hosts may not relay.
    c.cmd("MAIL FROM:<a@b.test>").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<x@y.test>").await.unwrap().code, 550);
    c.cmd("RSET").await.unwrap();
    assert_eq!(
        auth(&mut c, "admin", "scott", "tiger").await,
        535,
        "authz differs from authc"
    );
    assert_eq!(auth(&mut c, "", "scott", "lion").await, 535);
    assert_eq!(c.cmd("AUTH PLAIN *").await.unwrap().code, 501);
    assert_eq!(c.cmd("AUTH PLAIN !!!").await.unwrap().code, 501);
    assert_eq!(auth(&mut c, "", "scott", "tiger").await, 235);
    assert_eq!(auth(&mut c, "", "scott", "tiger").await, 503, "second AUTH");
    let r = c
        .send_message(
            "scott@b.test",
            &["x@y.test"],
            b"Subject: hi\r\n\r\nbody\r\n",
        )
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");
    let rec = d
        .wait_for_log(|r| r["type"] == "Reception", Duration::from_secs(5))
        .expect("reception record");
    assert_eq!(rec["meta"]["authn_id"], "scott");
    assert_eq!(rec["reception_protocol"], "ESMTPSA");
    let authn: Vec<_> = d
        .read_log_records()
        .into_iter()
        .filter(|r| r["type"] == "AuthN")
        .collect();
    assert_eq!(authn.len(), 3, "{authn:?}");
    let all = format!("{:?}{}", d.read_log_records(), d.stderr());
    assert!(
        !all.contains("tiger") && !all.contains("lion"),
        "a password reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_mechanism_and_in_transaction() {
    let d = Daemon::start_policy(
        std::path::Path::new(env!("CARGO_BIN_EXE_ironpost")),
        &policy("", STATIC_TABLE),
    )
    .unwrap();
    let mut c = tls_client(&d).await;
    c.cmd("MAIL FROM:<a@b.test>").await.unwrap();
    assert_eq!(
        c.cmd("AUTH PLAIN").await.unwrap().code,
        503,
        "AUTH during a transaction"
    );
    c.cmd("RSET").await.unwrap();
    assert_eq!(c.cmd("AUTH LOGIN").await.unwrap().code, 334);
    assert_eq!(c.cmd(&b64(b"scott")).await.unwrap().code, 334);
    assert_eq!(c.cmd(&b64(b"tiger")).await.unwrap().code, 235);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_locks_out_and_recovers() {
    let p = policy(
        "auth_failure_limit = 3, auth_failure_window = '2s'",
        STATIC_TABLE,
    );
    let d = Daemon::start_policy(std::path::Path::new(env!("CARGO_BIN_EXE_ironpost")), &p).unwrap();
    let mut c = tls_client(&d).await;
    assert_eq!(auth(&mut c, "", "scott", "x1").await, 535);
    assert_eq!(auth(&mut c, "", "scott", "x2").await, 535);
    // A wrong password is answered 535, whatever the count...
    assert_eq!(auth(&mut c, "", "scott", "x3").await, 535);
    // ...and the next attempt from this address is throttled.
    let r = c
        .cmd(&format!("AUTH PLAIN {}", b64(b"\0scott\0tiger")))
        .await
        .unwrap();
    assert_eq!((r.code, r.enhanced().as_deref()), (421, Some("4.7.0")));
    assert!(c.expect_closed().await);
    // Counted across connections: even the right password is refused now,
    // from this address.
    let mut c = tls_client(&d).await;
    assert_eq!(auth(&mut c, "", "scott", "tiger").await, 421);
    // The real user, from another address, still gets in (after a delay
    // that grows with the failures against the user).
    let mut other = tls_client_from(&d, "127.0.0.2".parse().unwrap()).await;
    let started = std::time::Instant::now();
    assert_eq!(auth(&mut other, "", "scott", "tiger").await, 235);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "slowed down, not locked out"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut c = tls_client(&d).await;
    assert_eq!(auth(&mut c, "", "scott", "tiger").await, 235);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_hashed_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "create table auth (user text, pass text); insert into auth values ('scott', 'tiger');",
    )
    .unwrap();
    conn.execute_batch(&format!(
        "create table users (name text, hash text); insert into users values ('hashed', '{}');",
        bcrypt::hash("s3cret", 4).unwrap()
    ))
    .unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users]\nbob = \"{}\"\n",
            bcrypt::hash("hunter2", 4).unwrap()
        ),
    )
    .unwrap();
    let body = format!(
        r#"
local sqlite = require 'sqlite'
local passwords = require 'policy-extras.passwords'
local by_toml = passwords:setup {{ '{users}' }}
local by_sqlite = passwords:setup_sqlite {{ path = '{db}', query = 'select hash from users where name = ?' }}
function sqlite_auth_check(user, password)
  local db = sqlite.open '{db}'
  local result = db:execute(
    'select user from auth where user=? and pass=?',
    user,
    password
  )
  return result[1] == user
end
local cached = kumo.memoize(sqlite_auth_check, {{ name = 'auth', ttl = '1m', capacity = 10 }})
kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  return cached(authc, password) or by_toml(authz, authc, password) or by_sqlite(authz, authc, password)
end)
"#,
        users = users.display(),
        db = db.display()
    );
    // The database lives outside the policy's directory: the operator
    // allows its directory explicitly. Without that, start-up fails.
    let opts = ironpost_testkit::DaemonOptions::new(env!("CARGO_BIN_EXE_ironpost"))
        .policy(policy("", &body));
    let (_, out) = Daemon::try_start_expect_failure(opts.clone()).unwrap();
    assert!(out.contains("outside the directories"), "{out}");
    let d = Daemon::start(
        opts.arg("--sqlite-dir")
            .arg(dir.path().display().to_string()),
    )
    .unwrap();
    for (user, pw, code) in [
        ("scott", "tiger", 235),
        ("scott", "' or '1'='1", 535),
        ("bob", "hunter2", 235),
        ("bob", "hunter3", 535),
        ("hashed", "s3cret", 235),
        ("nobody", "x", 535),
    ] {
        let mut c = tls_client(&d).await;
        assert_eq!(auth(&mut c, "", user, pw).await, code, "{user}/{pw}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_tenant_example() {
    let dir = tempfile::tempdir().unwrap();
    let queues = dir.path().join("queues.toml");
    let seed = "tenant_header = 'X-Tenant'\nremove_tenant_header = true\n\n[tenant.'mytenant']\n# Which pool should be used for this tenant\negress_pool = 'pool-1'\n\n# Only the authorized identities are allowed to use this tenant via the tenant_header\nrequire_authz = [\"scott\"]\n\n[tenant.'open']\n";
    std::fs::write(&queues, seed).unwrap();
    let body = format!(
        r#"
local queue_module = require 'policy-extras.queue'
local queue_helper = queue_module:setup {{ '{}' }}
kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  local db = {{ scott = 'tiger', mallory = 'pw' }}
  return db[authc] == password
end)
kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
end)
"#,
        queues.display()
    );
    // relay_hosts lets the unauthenticated case reach DATA.
    let p = policy("", &body).replace("'10.255.255.1'", "'127.0.0.1'");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ironpost"));
    // As the seed writes it, with no pool defined anywhere, that tenant's
    // mail could never leave: the start fails, naming tenant and pool.
    let refused = Daemon::start_policy(bin, &p)
        .err()
        .expect("refused")
        .to_string();
    assert!(refused.contains("'pool-1' is not defined"), "{refused}");
    assert!(refused.contains("[tenant.'mytenant']"), "{refused}");
    // With a sources file defining the pool, it runs as written.
    let sources = dir.path().join("sources.toml");
    std::fs::write(
        &sources,
        "[source.\"ip-1\"]\nsource_address = \"127.0.0.2\"\n[pool.\"pool-1\"]\n[pool.\"pool-1\".\"ip-1\"]\n",
    )
    .unwrap();
    let p = p.replace(
        "local queue_module",
        &format!(
            "local sources = require 'policy-extras.sources'\nsources:setup {{ '{}' }}\nlocal queue_module",
            sources.display()
        ),
    );
    let d = Daemon::start_policy(bin, &p).unwrap();
    let msg = |tenant: &str| format!("X-Tenant: {tenant}\r\nSubject: t\r\n\r\nbody\r\n");

    let mut c = tls_client(&d).await;
    assert_eq!(auth(&mut c, "", "scott", "tiger").await, 235);
    let r = c
        .send_message("scott@b.test", &["x@y.test"], msg("mytenant").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");

    let mut c = tls_client(&d).await;
    assert_eq!(auth(&mut c, "", "mallory", "pw").await, 235);
    let r = c
        .send_message("m@b.test", &["x@y.test"], msg("mytenant").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (550, Some("5.7.1")),
        "{r}"
    );
    assert!(
        r.text().contains("mytenant") && r.text().contains("mallory"),
        "{r}"
    );

    let mut c = tls_client(&d).await;
    let r = c
        .send_message("anon@b.test", &["x@y.test"], msg("mytenant").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (550, Some("5.7.1")),
        "{r}"
    );
    assert!(r.text().contains("mytenant"), "{r}");

    let r = c
        .send_message("anon@b.test", &["x@y.test"], msg("nosuch").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 550, "{r}");
    assert!(r.text().contains("nosuch"), "{r}");

    let r = c
        .send_message("anon@b.test", &["x@y.test"], msg("open").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{r}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let receptions: Vec<_> = d
        .read_log_records()
        .into_iter()
        .filter(|r| r["type"] == "Reception")
        .collect();
    assert_eq!(
        receptions.len(),
        2,
        "only scott's and the open tenant's messages are spooled"
    );
    assert_eq!(receptions[0]["meta"]["tenant"], "mytenant");
}

/// A framing error inside a SASL exchange ends the exchange (RFC 4954):
/// the next line is a command again, never taken for credentials.
#[tokio::test(flavor = "multi_thread")]
async fn an_over_long_line_ends_the_auth_exchange() {
    let d = Daemon::start_policy(
        std::path::Path::new(env!("CARGO_BIN_EXE_ironpost")),
        &policy("", STATIC_TABLE),
    )
    .unwrap();
    let mut c = tls_client(&d).await;
    let r = c.cmd("AUTH PLAIN").await.unwrap();
    assert_eq!(r.code, 334, "{r}");
    let r = c.cmd(&"A".repeat(5000)).await.unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (500, Some("5.5.2")),
        "{r}"
    );
    let r = c.cmd("NOOP").await.unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_deref()),
        (250, Some("2.0.0")),
        "{r}"
    );
    // AUTH still works afterwards.
    assert_eq!(auth(&mut c, "", "scott", "tiger").await, 235);
}

/// Two nodes on one Redis (`kumo.configure_redis_throttles`): a guesser who
/// alternates between them is locked out after the limit in total, where
/// each node alone has seen only half of it.
#[tokio::test(flavor = "multi_thread")]
async fn lockouts_are_shared_between_nodes() {
    let redis = ironpost_testkit::redis::RedisServer::start();
    let p = policy(
        "auth_failure_limit = 4, auth_failure_window = '60s'",
        STATIC_TABLE,
    )
    .replace(
        "  kumo.start_esmtp_listener",
        &format!(
            "  kumo.configure_redis_throttles {{ node = '{}' }}\n  kumo.start_esmtp_listener",
            redis.url()
        ),
    );
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ironpost"));
    let (a, b) = (
        Daemon::start_policy(bin, &p).unwrap(),
        Daemon::start_policy(bin, &p).unwrap(),
    );
    for (i, d) in [&a, &b, &a, &b].into_iter().enumerate() {
        let mut c = tls_client(d).await;
        assert_eq!(auth(&mut c, "", "scott", &format!("x{i}")).await, 535);
        // The failure reaches Redis in the background.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for d in [&a, &b] {
        let mut c = tls_client(d).await;
        assert_eq!(
            auth(&mut c, "", "scott", "tiger").await,
            421,
            "4 failures across the nodes lock this address out on each"
        );
    }
}
