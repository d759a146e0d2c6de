//! `policy-extras.listener_domains` against real TOML files: KumoMTA's
//! documented examples (each names its source), per-listener tables,
//! wildcards, and the refusal of report logging Ironpost cannot do.

use ironpost_policy::{ConnMeta, EngineOptions, ListenerDomain, PolicyEngine, PolicySource};
use std::path::PathBuf;

fn start(dir: &tempfile::TempDir, toml_text: &str) -> Result<PolicyEngine, String> {
    let data = dir.path().join("listener_domains.toml");
    std::fs::write(&data, toml_text).unwrap();
    let p: PathBuf = dir.path().join("policy.lua");
    std::fs::write(
        &p,
        format!(
            "local listener_domains = require 'policy-extras.listener_domains'\n\
             kumo.on('get_listener_domain', listener_domains:setup {{ '{}' }})\n",
            data.display()
        ),
    )
    .unwrap();
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

async fn get(e: &PolicyEngine, domain: &str, listener: &str) -> Option<ListenerDomain> {
    e.listener_domain(domain.into(), listener.into(), ConnMeta::default())
        .await
        .unwrap()
}

/// docs/userguide/configuration/domains.md, "Using the listener_domains.lua
/// Policy Helper", as published.
const DOCS_TOML: &str = r#"
["*"]
# You can specify * as a default, overridden by any more explicitly defined domains.
# Since all options are false by default, this would only be needed to default
# An option to true for all domains.
relay_to = false
log_oob = true
log_arf = true

["example.com"]
# allow relaying mail from anyone, so long as it is
# addressed to example.com
relay_to = true

["bounce.example.com"]
# accept and log OOB bounce reports sent to bounce.example.com
log_oob = true

["fbl.example.com"]
# accept and log ARF feedback reports sent to fbl.example.com
log_arf = true

["send.example.com"]
# relay to anywhere, so long as the sender domain is send.example.com
# and the connected peer matches one of the listed CIDR blocks
relay_from = [ '10.0.0.0/24' ]

["auth-send.example.com"]
# relay to anywhere, so long as the sender domain is auth-send.example.com
# and the connected peer has authenticated as any of the authorization identities
# listed below using SMTP AUTH
relay_from_authz = [ 'username1', 'username2' ]

# wildcards are permitted. This will match
# <anything>.example.com that doesn't have
# another non-wildcard entry explicitly
# listed in this set of domains.
# Note that "example.com" won't match
# "*.example.com".
["*.example.com"]
# You can specify multiple options if you wish
log_oob = true
log_arf = true
relay_to = true

# and you can explicitly set options to false to
# essentially exclude an entry from a wildcard
["www.example.com"]
relay_to = false
log_arf = false
log_oob = false

# Define a per-listener configuration
[listener."127.0.0.1:25"."*.example.com"]
log_oob = false
"#;

/// The published example turns on OOB and ARF logging, which Ironpost
/// cannot do: refused by name, never accepted and ignored.
#[tokio::test]
async fn documented_example_refuses_report_logging() {
    let dir = tempfile::tempdir().unwrap();
    let err = start(&dir, DOCS_TOML).err().unwrap();
    assert!(
        err.contains("listener_domains.toml")
            && (err.contains("'log_oob' = true") || err.contains("'log_arf' = true"))
            && err.contains("not supported yet"),
        "{err}"
    );
    // `make_listener_domain`'s documented form (domains.md) too.
    for v in ["'LogThenDrop'", "'LogThenRelay'", "true"] {
        let err = start(&dir, &format!("['bounce.example.com']\nlog_oob = {v}\n"))
            .err()
            .unwrap();
        assert!(
            err.contains("[\"bounce.example.com\"]") && err.contains("log_oob"),
            "{err}"
        );
    }
}

/// The same example with report logging off (`false` and `"Ignore"` are
/// accepted): wildcards, exclusions, and the per-listener table.
#[tokio::test]
async fn documented_example_answers() {
    let dir = tempfile::tempdir().unwrap();
    let text = DOCS_TOML
        .replace("log_oob = true", "log_oob = 'Ignore'")
        .replace("log_arf = true", "log_arf = false");
    let e = start(&dir, &text).unwrap();
    let l = "10.1.1.1:25";
    assert!(get(&e, "example.com", l).await.unwrap().relay_to);
    // "example.com" won't match "*.example.com", but a.example.com does,
    // at any depth.
    assert!(get(&e, "a.example.com", l).await.unwrap().relay_to);
    assert!(get(&e, "a.b.example.com", l).await.unwrap().relay_to);
    assert!(!get(&e, "www.example.com", l).await.unwrap().relay_to);
    assert!(
        !get(&e, "other.org", l).await.unwrap().relay_to,
        "the '*' table"
    );
    let s = get(&e, "send.example.com", l).await.unwrap();
    assert!(s.relay_from.contains("10.0.0.9".parse().unwrap()));
    // On 127.0.0.1:25 the listener's own *.example.com table answers as it
    // stands (KumoMTA's lookup_impl returns the first table found).
    assert!(
        !get(&e, "a.example.com", "127.0.0.1:25")
            .await
            .unwrap()
            .relay_to
    );
    // ... and only for what it matches.
    assert!(
        get(&e, "example.com", "127.0.0.1:25")
            .await
            .unwrap()
            .relay_to
    );
    assert!(
        !get(&e, "send.example.com", "127.0.0.1:25")
            .await
            .unwrap()
            .relay_from
            .contains("10.0.0.9".parse().unwrap()),
        "a listener wildcard shadows the all-listener exact entry, as in KumoMTA"
    );
}

/// `relay_from_authz` (listener_domains.lua): an authorized identity gets
/// its own address as `relay_from`.
#[tokio::test]
async fn relay_from_authz_grants_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(
        &dir,
        "['elsewhere.com']\nrelay_to = false\nrelay_from_authz = [\"john\"]\n",
    )
    .unwrap();
    let meta = |authz: &str| {
        let mut m = serde_json::Map::new();
        m.insert("authz_id".into(), authz.into());
        m.insert("received_from".into(), "192.0.2.5:40000".into());
        ConnMeta::new(m)
    };
    let ip = "192.0.2.5".parse().unwrap();
    let got = e
        .listener_domain("elsewhere.com".into(), "l".into(), meta("john"))
        .await
        .unwrap()
        .unwrap();
    assert!(got.relay_from.contains(ip));
    let got = e
        .listener_domain("elsewhere.com".into(), "l".into(), meta("eve"))
        .await
        .unwrap()
        .unwrap();
    assert!(!got.relay_from.contains(ip));
    assert!(get(&e, "nowhere.com", "l").await.is_none());
}

#[tokio::test]
async fn unknown_keys_name_file_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, table, key) in [
        (
            "[listener.'127.0.0.1:25'.'a.test']\nrelay_too = true\n",
            "[listener.\"127.0.0.1:25\".\"a.test\"]",
            "relay_too",
        ),
        ("['a.test']\nttl = '5m'\n", "[\"a.test\"]", "ttl"),
        (
            "['a.test']\nrelay_from = ['not-an-ip']\n",
            "[\"a.test\"]",
            "relay_from",
        ),
    ] {
        let err = start(&dir, text).err().unwrap();
        assert!(
            err.contains("listener_domains.toml") && err.contains(table) && err.contains(key),
            "{err}"
        );
    }
}
