//! Outbound SMTP AUTH (seed 002): credentials go only over TLS whose
//! certificate validated, unless `allow_smtp_auth_plain_without_tls`; the
//! seed's inline `key_data` form, a file keysource and the shaping-helper
//! form (TOML and JSON files, merged) work; a wrong password defers with
//! the server's 535; the password never reaches the daemon's output.
//!
//! Daemons here run with `IRONPOST_LOG=debug`, so a password leaking into
//! even the most verbose log would be caught.

use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkAuth, SinkConfig, SinkRecord, SinkTls};
use ironpost_testkit::Daemon;

const WAIT: Duration = Duration::from_secs(15);
const MX: &str = "mx.auth.test";

fn debug(policy: &Policy) -> Daemon {
    start_daemon(policy.options().env("IRONPOST_LOG", "debug"))
}

/// base64("\0user\0password"): what AUTH PLAIN puts on the wire.
fn plain_token(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("\0{user}\0{password}").into_bytes();
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Neither the password nor its AUTH PLAIN encoding in logs, stdout or
/// stderr.
#[track_caller]
fn assert_no_leak(d: &Daemon, user: &str, password: &str) {
    let all = everything_written(d);
    assert!(!all.is_empty());
    assert!(!all.contains(password), "password {password:?} leaked");
    let token = plain_token(user, password);
    assert!(!all.contains(&token), "AUTH PLAIN token leaked");
}

async fn auth_sink(tls: SinkTls, auth: SinkAuth) -> Sink {
    Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new().hostname(MX).tls(tls).auth(auth),
    )
    .await
    .expect("sink")
}

fn zone() -> TestZone {
    let z = TestZone::new();
    z.ip(MX, LOCALHOST);
    z
}

fn target(s: &Sink) -> String {
    format!("{MX}:{}", s.port())
}

fn show(rec: &SinkRecord) -> String {
    format!(
        "auth={:?}\ncommands={:?}",
        rec.auth,
        rec.sessions
            .iter()
            .map(|s| s
                .commands
                .iter()
                .map(|c| c.line.clone())
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
    )
}

/// The seed's first example (Required, inline key_data) and the same with
/// the password in a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_over_validated_tls_inline_and_file_keysource() {
    let pki = Pki::new();
    let password_file = pki.write("smtp-password", "tiger");
    let inline = auth_sink(
        SinkTls::offer_pair(pki.valid(&[MX])),
        SinkAuth::plain("scott", "tiger"),
    )
    .await;
    let file = auth_sink(
        SinkTls::offer_pair(pki.valid(&[MX])),
        SinkAuth::plain("scott", "tiger"),
    )
    .await;
    let dns = start_dns(zone()).await;
    let policy = Policy::new(dns.addr)
        .route(
            "inline.test",
            queue_to(&[&target(&inline)]),
            pki.egress(
                "enable_tls = 'Required', smtp_auth_plain_username = 'scott', \
                 smtp_auth_plain_password = { key_data = 'tiger' },",
            ),
        )
        .route(
            "file.test",
            queue_to(&[&target(&file)]),
            pki.egress(&format!(
                "enable_tls = 'Required', smtp_auth_plain_username = 'scott', \
                 smtp_auth_plain_password = '{}',",
                password_file.display()
            )),
        );
    let d = debug(&policy);
    for (sink, domain) in [(&inline, "inline.test"), (&file, "file.test")] {
        let rcpt = format!("user@{domain}");
        let id = inject(&d, "a@origin.test", &[&rcpt], domain).await;
        let rec = wait_kind(&d, "Delivery", &id, WAIT).await;
        assert_eq!(rec["tls_validated"], true, "{rec}");
        assert_eq!(rec["num_attempts"], 1, "{rec}");
        let seen = sink.snapshot();
        assert_eq!(seen.auth.len(), 1, "{}", show(&seen));
        let a = &seen.auth[0];
        assert!(a.tls && a.accepted, "{a:?}");
        assert_eq!(
            (a.mechanism.as_str(), a.username.as_str()),
            ("PLAIN", "scott")
        );
        assert_eq!(a.password, "tiger");
        assert_eq!(a.authzid, "");
        let msgs = seen.messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].auth_user.as_deref(), Some("scott"));
        assert!(msgs[0].tls);
        assert!(!seen.any_in_clear("AUTH"), "{}", show(&seen));
        // Not even the encoded credentials crossed the wire in clear.
        let s = &seen.sessions[0];
        assert!(!String::from_utf8_lossy(&s.received_plain).contains("AUTH"));
    }
    assert_no_leak(&d, "scott", "tiger");
}

/// The seed's shaping form: a `["127.0.0.1"]` table with `mx_rollup =
/// false` carrying the credentials (TOML, key_data instead of Vault), and
/// the same in a second, JSON file with the seed's trailing commas. The
/// credentials apply to that host only: a second host sees no AUTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_from_the_shaping_helper_applies_to_the_named_host_only() {
    let pki = Pki::new();
    let with_auth = Sink::start(
        any_port(LOCALHOST),
        SinkConfig::new()
            .tls(SinkTls::offer_pair(pki.valid(&["127.0.0.1"])))
            .auth(SinkAuth::plain("scott", "tiger")),
    )
    .await
    .unwrap();
    let json_auth = Sink::start(
        any_port(loopback(3)),
        SinkConfig::new()
            .tls(SinkTls::offer_pair(pki.valid(&["127.0.0.3"])))
            .auth(SinkAuth::plain("scott", "lion")),
    )
    .await
    .unwrap();
    let without = Sink::start(
        any_port(loopback(2)),
        SinkConfig::new().tls(SinkTls::offer_pair(pki.valid(&["127.0.0.2"]))),
    )
    .await
    .unwrap();
    let toml = pki.write(
        "shaping.toml",
        &format!(
            r#"["default"]
enable_tls = "Required"
prohibited_hosts = []
tls_extra_ca = "{}"
connect_timeout = "2s"

["127.0.0.1"]
mx_rollup = false
smtp_auth_plain_username = "scott"
smtp_auth_plain_password = {{ key_data = "tiger" }}
"#,
            pki.ca_path.display()
        ),
    );
    let json = pki.write(
        "shaping.json",
        r#"{
  "127.0.0.3": {
    "mx_rollup": false,
    "smtp_auth_plain_username": "scott",
    "smtp_auth_plain_password": {
      "key_data": "lion",
    },
  },
}
"#,
    );
    let dns = start_dns(TestZone::new()).await;
    let policy = Policy::new(dns.addr)
        .route("relay.test", queue_to(&[&with_auth.addr().to_string()]), "")
        .route("json.test", queue_to(&[&json_auth.addr().to_string()]), "")
        .route("other.test", queue_to(&[&without.addr().to_string()]), "")
        .extra(&format!(
            "local shaping = require 'policy-extras.shaping'\n\
             local shaper = shaping:setup_with_automation {{ no_default_files = true, extra_files = {{ '{}', '{}' }} }}\n\
             kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n",
            toml.display(),
            json.display()
        ));
    let d = debug(&policy);
    let id1 = inject(&d, "a@origin.test", &["x@relay.test"], "via-shaping").await;
    let id2 = inject(&d, "a@origin.test", &["y@json.test"], "via-json").await;
    let id3 = inject(&d, "a@origin.test", &["z@other.test"], "no-auth").await;
    for id in [&id1, &id2, &id3] {
        let rec = wait_kind(&d, "Delivery", id, WAIT).await;
        assert_eq!(rec["tls_validated"], true, "{rec}");
    }
    let seen = with_auth.snapshot();
    assert_eq!(seen.auth.len(), 1, "{}", show(&seen));
    assert!(seen.auth[0].accepted && seen.auth[0].tls);
    assert_eq!(seen.messages()[0].auth_user.as_deref(), Some("scott"));
    let seen = json_auth.snapshot();
    assert_eq!(seen.auth.len(), 1, "{}", show(&seen));
    assert!(seen.auth[0].accepted && seen.auth[0].tls);
    assert_eq!(seen.auth[0].password, "lion");
    let seen = without.snapshot();
    assert!(seen.auth.is_empty(), "{}", show(&seen));
    assert!(!seen.sessions.iter().any(|s| s.has_command("AUTH")));
    assert_eq!(seen.messages().len(), 1);
    assert_no_leak(&d, "scott", "tiger");
    assert_no_leak(&d, "scott", "lion");
}

/// Without TLS (none offered, STARTTLS stripped by a man in the middle,
/// or TLS disabled by the path) the credentials are never sent: the
/// message is deferred with a clear reason, and the sink saw no AUTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_never_attempted_in_clear() {
    let pki = Pki::new();
    let auth = || SinkAuth::plain("scott", "tiger").always_offered();
    let plain = auth_sink(SinkTls::None, auth()).await;
    let stripped = auth_sink(SinkTls::Stripped, auth()).await;
    let disabled = auth_sink(SinkTls::offer_pair(pki.valid(&[MX])), auth()).await;
    let creds =
        "smtp_auth_plain_username = 'scott', smtp_auth_plain_password = { key_data = 'tiger' },";
    let dns = start_dns(zone()).await;
    let policy = Policy::new(dns.addr)
        .route(
            "plain.test",
            queue_to(&[&target(&plain)]),
            pki.egress(&format!("enable_tls = 'Opportunistic', {creds}")),
        )
        .route(
            "stripped.test",
            queue_to(&[&target(&stripped)]),
            pki.egress(&format!("enable_tls = 'Opportunistic', {creds}")),
        )
        .route(
            "disabled.test",
            queue_to(&[&target(&disabled)]),
            pki.egress(&format!("enable_tls = 'Disabled', {creds}")),
        );
    let d = debug(&policy);
    let mut ids = Vec::new();
    for domain in ["plain.test", "stripped.test", "disabled.test"] {
        ids.push(inject(&d, "a@origin.test", &[&format!("u@{domain}")], domain).await);
    }
    for id in &ids {
        let rec = wait_record(&d, WAIT, "second TransientFailure", |r| {
            is(r, "TransientFailure") && r["id"] == id.as_str() && r["num_attempts"] == 2
        })
        .await;
        let why = rec["response"]["content"].as_str().unwrap();
        assert!(
            why.contains("not sending SMTP AUTH credentials")
                && why.contains("allow_smtp_auth_plain_without_tls"),
            "{rec}"
        );
        assert!(records_for(&d, "Delivery", id).is_empty());
    }
    for sink in [&plain, &stripped, &disabled] {
        let seen = sink.snapshot();
        assert!(seen.auth.is_empty(), "{}", show(&seen));
        assert!(seen.sessions.len() >= 2);
        for s in &seen.sessions {
            assert!(!s.has_command("AUTH"), "{}", show(&seen));
            assert!(!s.has_command("MAIL"), "{}", show(&seen));
        }
        assert!(!seen.received_contains(plain_token("scott", "tiger").as_bytes()));
        assert!(!seen.received_contains(b"tiger"));
        assert!(seen.transactions.is_empty());
    }
    // Disabled means no STARTTLS even though the sink offers it.
    assert!(disabled
        .snapshot()
        .sessions
        .iter()
        .all(|s| !s.starttls_requested));
    assert_no_leak(&d, "scott", "tiger");
}

/// TLS whose certificate does not validate (OpportunisticInsecure, untrusted
/// CA) is not enough for AUTH unless the path allows it; with the
/// allowance the credentials go (over that TLS), and the flag also permits
/// cleartext AUTH when the operator asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_over_unvalidated_tls_needs_the_explicit_allowance() {
    let pki = Pki::new();
    let strict = auth_sink(
        SinkTls::offer_pair(pki.untrusted(&[MX])),
        SinkAuth::plain("scott", "tiger"),
    )
    .await;
    let allowed = auth_sink(
        SinkTls::offer_pair(pki.untrusted(&[MX])),
        SinkAuth::plain("scott", "tiger"),
    )
    .await;
    let clear_allowed = auth_sink(
        SinkTls::None,
        SinkAuth::plain("scott", "tiger").always_offered(),
    )
    .await;
    let creds = "enable_tls = 'OpportunisticInsecure', smtp_auth_plain_username = 'scott', \
                 smtp_auth_plain_password = { key_data = 'tiger' },";
    let dns = start_dns(zone()).await;
    let policy = Policy::new(dns.addr)
        .route(
            "strict.test",
            queue_to(&[&target(&strict)]),
            pki.egress(creds),
        )
        .route(
            "allowed.test",
            queue_to(&[&target(&allowed)]),
            pki.egress(&format!("{creds} allow_smtp_auth_plain_without_tls = true")),
        )
        .route(
            "clear.test",
            queue_to(&[&target(&clear_allowed)]),
            pki.egress(&format!("{creds} allow_smtp_auth_plain_without_tls = true")),
        );
    let d = debug(&policy);
    let strict_id = inject(&d, "a@origin.test", &["u@strict.test"], "strict").await;
    let allowed_id = inject(&d, "a@origin.test", &["u@allowed.test"], "allowed").await;
    let clear_id = inject(&d, "a@origin.test", &["u@clear.test"], "clear").await;

    let rec = wait_kind(&d, "Delivery", &allowed_id, WAIT).await;
    assert_eq!(rec["tls_validated"], false, "{rec}");
    let seen = allowed.snapshot();
    assert_eq!(seen.auth.len(), 1, "{}", show(&seen));
    assert!(seen.auth[0].tls && seen.auth[0].accepted);

    let rec = wait_kind(&d, "Delivery", &clear_id, WAIT).await;
    assert!(rec.get("tls_protocol_version").is_none(), "{rec}");
    let seen = clear_allowed.snapshot();
    assert_eq!(seen.auth.len(), 1, "{}", show(&seen));
    assert!(!seen.auth[0].tls && seen.auth[0].accepted);

    let rec = wait_record(&d, WAIT, "strict deferred twice", |r| {
        is(r, "TransientFailure") && r["id"] == strict_id.as_str() && r["num_attempts"] == 2
    })
    .await;
    let why = rec["response"]["content"].as_str().unwrap();
    assert!(why.contains("validated certificate"), "{rec}");
    assert_eq!(rec["tls_validated"], false, "{rec}");
    assert!(records_for(&d, "Delivery", &strict_id).is_empty());
    let seen = strict.snapshot();
    assert!(seen.auth.is_empty(), "{}", show(&seen));
    assert!(seen.sessions.iter().all(|s| s.tls.is_some()), "TLS was up");
    assert!(!seen.sessions.iter().any(|s| s.has_command("AUTH")));
    assert!(seen.transactions.is_empty());
    assert_no_leak(&d, "scott", "tiger");
}

/// A wrong password: the sink answers 535, the message is deferred with
/// that reply (and retried), and the password appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_defers_with_the_535_reply() {
    let pki = Pki::new();
    let sink = auth_sink(
        SinkTls::offer_pair(pki.valid(&[MX])),
        SinkAuth::plain("scott", "Tig3r-right-5521"),
    )
    .await;
    let dns = start_dns(zone()).await;
    let policy = Policy::new(dns.addr).route(
        "auth.test",
        queue_to(&[&target(&sink)]),
        pki.egress(
            "enable_tls = 'Required', smtp_auth_plain_username = 'scott', \
             smtp_auth_plain_password = { key_data = 'Wr0ng-Passw0rd-7731' },",
        ),
    );
    let d = debug(&policy);
    let id = inject(&d, "a@origin.test", &["u@auth.test"], "wrong-pw").await;
    let rec = wait_record(&d, WAIT, "second TransientFailure", |r| {
        is(r, "TransientFailure") && r["id"] == id.as_str() && r["num_attempts"] == 2
    })
    .await;
    assert_eq!(rec["response"]["code"], 535, "{rec}");
    assert_eq!(rec["response"]["enhanced_code"], "5.7.8", "{rec}");
    assert!(
        rec["response"]["content"]
            .as_str()
            .unwrap()
            .contains("Authentication credentials invalid"),
        "{rec}"
    );
    assert_eq!(rec["tls_validated"], true, "{rec}");
    assert!(records_for(&d, "Delivery", &id).is_empty());
    assert!(records_for(&d, "Bounce", &id).is_empty());
    let seen = sink.snapshot();
    assert!(seen.auth.len() >= 2, "{}", show(&seen));
    for a in &seen.auth {
        assert!(a.tls && !a.accepted && a.reply == 535, "{a:?}");
        assert_eq!(a.password, "Wr0ng-Passw0rd-7731");
    }
    assert!(!seen.sessions.iter().any(|s| s.has_command("MAIL")));
    assert_no_leak(&d, "scott", "Wr0ng-Passw0rd-7731");
}
