use super::data::{host_part, to_config, Override};
use super::*;

fn no_sites(_: &str) -> Option<String> {
    None
}

fn cfg(
    s: &ShapingData,
    domain: &str,
    source: &str,
    site: &str,
    site_of: &dyn Fn(&str) -> Option<String>,
) -> crate::EgressPathConfig {
    to_config(s.resolve(domain, source, site, site_of, &[])).unwrap()
}

/// KumoMTA's stock file and its community file load unchanged, in the
/// order KumoMTA's setup applies them.
#[test]
fn stock_files_load() {
    let s = load_files(&[STOCK_FILE.to_string(), COMMUNITY_FILE.to_string()]).unwrap();
    let d = cfg(
        &s,
        "unknown.test",
        "unspecified",
        "mx.unknown.test",
        &no_sites,
    );
    assert_eq!(d.connection_limit, 10);
    assert_eq!(d.max_ready, 1024);
    assert_eq!(d.consecutive_connection_failures_before_delay, 100);
    assert_eq!(d.remember_broken_tls, Some(Duration::from_secs(3 * 86400)));
    assert_eq!(d.max_message_rate.as_ref().map(|r| r.limit), Some(100));
    // The TSA table: `connection_limit = "local:5"`, max_ready.
    let t = cfg(
        &s,
        "http://127.0.0.1:8008.tsa.kumomta",
        "unspecified",
        "",
        &no_sites,
    );
    assert_eq!((t.connection_limit.n, t.max_ready), (5, 10000));
    assert!(t.connection_limit.local);
    // Yahoo by MX suffix: its rules and its automation.
    let site = "mta5.am0.yahoodns.net,mta6.am0.yahoodns.net";
    let y = cfg(&s, "yahoo.com", "ip-1", site, &no_sites);
    assert_eq!(y.max_deliveries_per_connection, 20);
    assert_eq!(y.provider_name.as_deref(), Some("yahoo"));
    let m = s.match_rules(
        "yahoo.com",
        site,
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
        false,
        &no_sites,
    );
    assert!(
        m.iter().any(|m| m.rule.actions == [rules::Action::Suspend]),
        "{m:?}"
    );
    // Google: a provider connection limit shared by name, per source.
    let g = cfg(
        &s,
        "gmail.com",
        "ip-1",
        "gmail-smtp-in.l.google.com,alt1.gmail-smtp-in.l.google.com",
        &no_sites,
    );
    assert_eq!(
        g.additional_connection_limits
            .get("shaping-provider-google-ip-1-limit")
            .map(|c| c.n),
        Some(5)
    );
    assert_eq!(g.enable_tls, crate::delivery_config::TlsMode::Required);
}

#[test]
fn mx_rollup_false_applies_to_that_domain() {
    let s = parse(
        "['example.com']\nmx_rollup = false\nconnection_limit = 3\n\
         ['example.com'.sources.'ip-1']\nconnection_limit = 5\n\
         ['192.168.1.10']\nmx_rollup = false\nsmtp_auth_plain_username = 'scott'\n\
         smtp_auth_plain_password = { key_data = 'x' }\n",
        false,
    )
    .unwrap();
    assert_eq!(
        cfg(&s, "example.com", "ip-2", "mx.example.net", &no_sites).connection_limit,
        3
    );
    assert_eq!(
        cfg(&s, "EXAMPLE.com.", "ip-1", "mx.example.net", &no_sites).connection_limit,
        5
    );
    assert_eq!(
        cfg(&s, "other.test", "ip-1", "mx.example.com", &no_sites).connection_limit,
        32
    );
    // The seed's IP table: an address literal, or a route to that address.
    for (domain, site) in [
        ("[192.168.1.10]", "192.168.1.10"),
        ("relay.test", "192.168.1.10:2525"),
    ] {
        let c = cfg(&s, domain, "unspecified", site, &no_sites);
        assert_eq!(
            c.smtp_auth_plain_username.as_deref(),
            Some("scott"),
            "{domain}"
        );
    }
}

#[test]
fn rollup_tables_follow_the_site() {
    let s = parse("['gmail.com']\nconnection_limit = 7\n", false).unwrap();
    let site = "mx1.google.test,mx2.google.test";
    let site_of = |d: &str| (d == "gmail.com").then(|| site.to_string());
    assert_eq!(
        cfg(&s, "hosted.test", "x", site, &site_of).connection_limit,
        7
    );
    assert_eq!(
        cfg(&s, "other.test", "x", "mx.other.test", &site_of).connection_limit,
        32
    );
    // The domain itself, even before its site is known.
    assert_eq!(
        cfg(&s, "gmail.com", "x", site, &no_sites).connection_limit,
        7
    );
    assert_eq!(s.rollup_domains().collect::<Vec<_>>(), ["gmail.com"]);
}

#[test]
fn providers_match_every_host() {
    let s = parse(
        "[provider.p]\nmatch = [{MXSuffix='.p.test'}, {HostName='mx.q.test'}]\n\
         provider_connection_limit = '1,000'\nprovider_max_message_rate = '10/s'\n\
         provider_source_selection_rate = '5/h'\nmax_deliveries_per_connection = 9\n\
         [provider.p.sources.ip-1]\nmax_deliveries_per_connection = 3\n\
         [provider.d]\nmatch = [{DomainSuffix='.d.test'}]\nconnection_limit = 4\n",
        false,
    )
    .unwrap();
    let c = cfg(&s, "a.test", "ip-1", "mx1.p.test,mx.q.test", &no_sites);
    assert_eq!(c.max_deliveries_per_connection, 3);
    assert_eq!(
        c.additional_connection_limits
            .get("shaping-provider-p-ip-1-limit")
            .map(|c| c.n),
        Some(1000)
    );
    assert!(c
        .additional_message_rate_throttles
        .contains_key("shaping-provider-p-ip-1-rate"));
    assert!(c
        .additional_source_selection_rates
        .contains_key("shaping-provider-p-ip-1-selection-rate"));
    let mixed = cfg(&s, "a.test", "ip-1", "mx1.p.test,mx.other.test", &no_sites);
    assert_eq!(
        mixed.max_deliveries_per_connection, 1024,
        "a mixed MX set is not the provider's"
    );
    assert_eq!(
        cfg(&s, "x.d.test", "ip-1", "", &no_sites).connection_limit,
        4
    );
    assert_eq!(
        cfg(&s, "[10.0.0.1]", "ip-1", "10.0.0.1", &no_sites).connection_limit,
        32
    );
}

#[test]
fn later_files_merge_or_replace() {
    let mut s = ShapingData::default();
    let add = |s: &mut ShapingData, text: &str| {
        let serde_json::Value::Object(t) = crate::helpers::parse_data(text, false).unwrap() else {
            panic!()
        };
        s.add_file("f", t).unwrap();
    };
    add(
        &mut s,
        "['a.test']\nconnection_limit = 3\nmax_deliveries_per_connection = 4\n\
                 additional_connection_limits = { x = 1 }\n",
    );
    add(
        &mut s,
        "['a.test']\nconnection_limit = 5\nadditional_connection_limits = { y = 2 }\n",
    );
    let c = cfg(&s, "a.test", "s", "", &no_sites);
    assert_eq!(
        (c.connection_limit.n, c.max_deliveries_per_connection),
        (5, 4)
    );
    assert_eq!(
        c.additional_connection_limits.len(),
        2,
        "limit tables add up"
    );
    add(
        &mut s,
        "['a.test']\nreplace_base = true\nidle_timeout = '5s'\n",
    );
    let c = cfg(&s, "a.test", "s", "", &no_sites);
    assert_eq!(
        (c.connection_limit.n, c.max_deliveries_per_connection),
        (32, 1024)
    );
}

#[test]
fn overrides_apply_to_their_source_and_place() {
    let s = parse("[default]\nconnection_limit = 10\n", false).unwrap();
    let o = [Override {
        source: "ip-1".into(),
        site: Some("mx.a.test".into()),
        domain: None,
        name: "connection_limit".into(),
        value: 1.into(),
    }];
    let get = |source: &str, site: &str| {
        to_config(s.resolve("a.test", source, site, &no_sites, &o))
            .unwrap()
            .connection_limit
    };
    assert_eq!(get("ip-1", "mx.a.test"), 1);
    assert_eq!(get("ip-2", "mx.a.test"), 10);
    assert_eq!(get("ip-1", "mx.b.test"), 10);
}

#[test]
fn mistakes_name_file_table_and_key() {
    for (text, want) in [
        ("['a.test']\nmax_mesage_rate = '1/s'\n", "max_mesage_rate"),
        (
            "['a.test']\nconnection_limit = 'lots'\n",
            "connection_limit",
        ),
        ("[provider.p]\nmatch = [{MxSuffix='.x'}]\n", "match"),
        (
            "['a.test']\nprovider_source_selection_rate = '1/h'\n",
            "provider",
        ),
        (
            "[['a.test'.automation]]\nregex = 'x'\naction = 'Suspend'\n",
            "duration",
        ),
    ] {
        let e = parse(text, false).unwrap_err();
        assert!(e.contains("a.test") || e.contains("provider.\"p\""), "{e}");
        assert!(e.contains(want), "{text}: {e}");
    }
}

/// What every table accepted at setup merges into must be usable:
/// a domain's keysource replaces the default's rather than mixing with
/// it (found by the policy_helpers fuzz target).
#[test]
fn tables_replace_whole_values() {
    let s = parse(
        "[default]\nsmtp_auth_plain_username = 'u'\n\
         smtp_auth_plain_password = { key_data = 'secret' }\n\
         ['example.com']\nsmtp_auth_plain_username = 'v'\n\
         smtp_auth_plain_password = { vault_mount = 'kv', vault_path = 'smtp/x' }\n",
        false,
    )
    .unwrap();
    let c = cfg(&s, "example.com", "s", "mx.example.com:25", &no_sites);
    assert!(matches!(
        c.smtp_auth_plain_password,
        Some(ironpost_keysource::KeySource::Vault(_))
    ));
    assert_eq!(c.smtp_auth_plain_username.as_deref(), Some("v"));
}

#[test]
fn host_parts() {
    assert_eq!(host_part("mx.test:25"), "mx.test");
    assert_eq!(host_part("[::1]:25"), "::1");
    assert_eq!(host_part("192.168.1.10"), "192.168.1.10");
    assert_eq!(host_part("mx.test=127.0.0.1:25"), "mx.test");
}
