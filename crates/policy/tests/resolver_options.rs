//! `kumo.dns.configure_resolver` / `configure_unbound_resolver`: KumoMTA's
//! name server forms and resolver options parsed from a real policy file,
//! and the options Ironpost cannot honour refused at start by name.

use ironpost_policy::delivery_config::{
    NameServer, NameServerProtocol, ResolverOptions, ServerOrderingStrategy, UseHostsFile,
};
use ironpost_policy::{EngineOptions, PolicyEngine, PolicyError, PolicySource, ResolverSettings};
use std::time::Duration;

fn start(policy: &str) -> Result<Option<ResolverSettings>, PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.lua");
    std::fs::write(&p, policy).unwrap();
    PolicyEngine::start(
        PolicySource::File(p),
        EngineOptions {
            pool_size: 1,
            ..Default::default()
        },
    )
    .map(|(_, init)| init.resolver)
}

/// `call` is `configure_resolver` or `configure_unbound_resolver`; the call
/// is on line 2 of the policy.
fn configure(call: &str, args: &str) -> Result<ResolverSettings, String> {
    start(&format!(
        "kumo.on('init', function()\n  kumo.dns.{call}({args})\nend)\n"
    ))
    .map(|r| r.expect("resolver settings"))
    .map_err(|e| e.to_string())
}

fn resolver(args: &str) -> ResolverSettings {
    configure("configure_resolver", args).unwrap_or_else(|e| panic!("{args}: {e}"))
}

fn refused(call: &str, args: &str) -> String {
    match configure(call, args) {
        Ok(s) => panic!("{args} accepted: {s:?}"),
        Err(e) => {
            assert!(e.contains(&format!("kumo.dns.{call}")), "{e}");
            assert!(e.contains("policy.lua:2"), "{e}");
            e
        }
    }
}

fn ns(addr: &str, protocol: NameServerProtocol, trust: bool, bind: Option<&str>) -> NameServer {
    NameServer {
        socket_addr: addr.parse().unwrap(),
        protocol,
        trust_negative_responses: trust,
        bind_addr: bind.map(|b| b.parse().unwrap()),
    }
}

#[test]
fn no_call_leaves_the_system_configuration() {
    assert_eq!(start("kumo.on('init', function() end)").unwrap(), None);
}

#[test]
fn name_servers_in_both_forms() {
    let s = resolver(
        "{ name_servers = {
            '10.0.0.1:53',
            '10.0.0.2',
            '[2001:db8::1]:5353',
            { socket_addr = '10.0.0.20:53', protocol = 'tcp', trust_negative_responses = false, bind_addr = '10.0.0.2:0' },
            { socket_addr = '10.0.0.21:53', protocol = 'udp' },
            { socket_addr = '10.0.0.22:53', protocol = 'udp_then_tcp' },
            { socket_addr = '10.0.0.23:53' },
        } }",
    );
    use NameServerProtocol::*;
    assert_eq!(
        s.name_servers,
        vec![
            // KumoMTA's current simple form: UDP then TCP.
            ns("10.0.0.1:53", UdpThenTcp, true, None),
            ns("10.0.0.2:53", UdpThenTcp, true, None),
            ns("[2001:db8::1]:5353", UdpThenTcp, true, None),
            ns("10.0.0.20:53", Tcp, false, Some("10.0.0.2:0")),
            ns("10.0.0.21:53", Udp, true, None),
            ns("10.0.0.22:53", UdpThenTcp, true, None),
            ns("10.0.0.23:53", UdpThenTcp, true, None),
        ]
    );
    assert_eq!(s.options, ResolverOptions::default());
    assert_eq!(s.domain, None);
    assert!(s.search.is_empty());
}

#[test]
fn every_supported_option_is_parsed() {
    let s = resolver(
        "{ name_servers = { '127.0.0.1:53' }, domain = 'example.com', search = { 'a.example', 'b.example.' },
           options = {
             validate = true, trust_anchor_file = '/etc/ironpost/root.key', timeout = '2s', attempts = 3,
             ndots = 2, edns0 = false, cache_size = 100, use_hosts_file = 'Never',
             positive_min_ttl = '1m', negative_min_ttl = 5, positive_max_ttl = '1h', negative_max_ttl = '10m',
             num_concurrent_reqs = 1, preserve_intermediates = true, try_tcp_on_error = false,
             server_ordering_strategy = 'UserProvidedOrder', recursion_desired = false,
             case_randomization = true, ip_strategy = 'Ipv6AndIpv4',
           } }",
    );
    assert_eq!(s.domain.as_deref(), Some("example.com"));
    assert_eq!(s.search, ["a.example", "b.example."]);
    assert_eq!(
        s.options,
        ResolverOptions {
            validate: Some(true),
            trust_anchor_file: Some("/etc/ironpost/root.key".into()),
            timeout: Some(Duration::from_secs(2)),
            attempts: Some(3),
            ndots: Some(2),
            edns0: Some(false),
            cache_size: Some(100),
            use_hosts_file: Some(UseHostsFile::Never),
            positive_min_ttl: Some(Duration::from_secs(60)),
            negative_min_ttl: Some(Duration::from_secs(5)),
            positive_max_ttl: Some(Duration::from_secs(3600)),
            negative_max_ttl: Some(Duration::from_secs(600)),
            num_concurrent_reqs: Some(1),
            server_ordering_strategy: Some(ServerOrderingStrategy::UserProvidedOrder),
            recursion_desired: Some(false),
            case_randomization: Some(true),
        }
    );
    for (value, want) in [
        ("Always", UseHostsFile::Always),
        ("Auto", UseHostsFile::Auto),
        ("Never", UseHostsFile::Never),
    ] {
        let s = resolver(&format!("{{ options = {{ use_hosts_file = '{value}' }} }}"));
        assert_eq!(s.options.use_hosts_file, Some(want));
    }
    for (value, want) in [
        ("QueryStatistics", ServerOrderingStrategy::QueryStatistics),
        ("RoundRobin", ServerOrderingStrategy::RoundRobin),
        (
            "UserProvidedOrder",
            ServerOrderingStrategy::UserProvidedOrder,
        ),
    ] {
        let s = resolver(&format!(
            "{{ options = {{ server_ordering_strategy = '{value}' }} }}"
        ));
        assert_eq!(s.options.server_ordering_strategy, Some(want));
    }
}

/// The keys Ironpost had before keep their meaning, in both functions.
#[test]
fn existing_keys_still_work() {
    for call in ["configure_resolver", "configure_unbound_resolver"] {
        let s = configure(
            call,
            "{ name_servers = { '127.0.0.1:5353' }, options = { validate = true, timeout = 1.5, attempts = 1 } }",
        )
        .unwrap();
        assert_eq!(
            s.name_servers,
            [ns(
                "127.0.0.1:5353",
                NameServerProtocol::UdpThenTcp,
                true,
                None
            )]
        );
        assert_eq!(s.options.validate, Some(true));
        assert_eq!(s.options.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(s.options.attempts, Some(1));
        assert_eq!(s.options.trust_anchor_file, None);
    }
    let s = resolver("{ options = { validate = false } }");
    assert_eq!(s.options.validate, Some(false));
}

/// As in KumoMTA (hickory and unbound alike), a trust anchor turns DNSSEC
/// validation on; asking for both a trust anchor and no validation is an
/// error rather than a silently ignored file.
#[test]
fn trust_anchor_file_turns_validation_on() {
    let s = resolver("{ options = { trust_anchor_file = '/k' } }");
    assert_eq!(s.options.validate, Some(true));
    assert_eq!(s.options.trust_anchor_file.as_deref(), Some("/k"));
    let e = refused(
        "configure_resolver",
        "{ options = { validate = false, trust_anchor_file = '/k' } }",
    );
    assert!(e.contains("options.trust_anchor_file"), "{e}");
    assert!(e.contains("validate = false"), "{e}");
}

#[test]
fn unsupported_options_are_refused_by_name() {
    for (call, opt, value) in [
        ("configure_resolver", "ip_strategy", "'Ipv4Only'"),
        ("configure_resolver", "ip_strategy", "'Ipv4thenIpv6'"),
        ("configure_resolver", "preserve_intermediates", "false"),
        ("configure_resolver", "try_tcp_on_error", "true"),
        (
            "configure_unbound_resolver",
            "trust_anchor_file",
            "{ managed = '/var/lib/ironpost/root.key' }",
        ),
        ("configure_resolver", "avoid_local_udp_ports", "{ 5353 }"),
        ("configure_resolver", "os_port_selection", "true"),
        ("configure_resolver", "trust_anchor", "'/k'"),
    ] {
        let e = refused(call, &format!("{{ options = {{ {opt} = {value} }} }}"));
        assert!(
            e.contains(&format!(
                "kumo.dns.{call}: options.{opt}: Ironpost does not support this resolver option"
            )),
            "{opt} = {value}: {e}"
        );
    }
}

#[test]
fn structured_forms() {
    let flat = resolver(
        "{ name_servers = { { socket_addr = '10.0.0.1:53', protocol = 'tcp' } }, options = { ndots = 3 } }",
    );
    for form in ["Hickory", "Unbound"] {
        let wrapped = resolver(&format!(
            "{{ {form} = {{ name_servers = {{ {{ socket_addr = '10.0.0.1:53', protocol = 'tcp' }} }}, options = {{ ndots = 3 }} }} }}"
        ));
        assert_eq!(wrapped, flat, "{form}");
        let e = refused(
            "configure_resolver",
            &format!("{{ {form} = {{ options = {{ try_tcp_on_error = true }} }} }}"),
        );
        assert!(
            e.contains(&format!(
                "{form}.options.try_tcp_on_error: Ironpost does not support"
            )),
            "{e}"
        );
        let e = refused(
            "configure_resolver",
            &format!("{{ {form} = {{}}, name_servers = {{ '10.0.0.1:53' }} }}"),
        );
        assert!(e.contains(form), "{e}");
    }
    // KumoMTA's hickory resolver on the system configuration.
    assert_eq!(
        resolver("'HickorySystemConfig'"),
        ResolverSettings::default()
    );
    for form in [
        "{ Test = { zones = { '$ORIGIN example.\\n@ 60 IN A 127.0.0.1\\n' } } }",
        "{ Aggregate = { 'HickorySystemConfig' } }",
    ] {
        let e = refused("configure_resolver", form);
        assert!(
            e.contains("Ironpost does not support this resolver form"),
            "{form}: {e}"
        );
    }
    let e = refused("configure_resolver", "{ Hickory = {}, Unbound = {} }");
    assert!(e.contains("Hickory and Unbound"), "{e}");
}

/// Values of the wrong type or shape are errors naming the key.
#[test]
fn bad_values_name_the_key() {
    for (args, needles) in [
        ("{ name_servers = { 'nowhere' } }", &["name_servers", "nowhere"][..]),
        ("{ name_servers = '10.0.0.1:53' }", &["name_servers"]),
        (
            "{ name_servers = { { socket_addr = 'nowhere' } } }",
            &["name_servers", "socket_addr", "nowhere"],
        ),
        (
            "{ name_servers = { { protocol = 'tcp' } } }",
            &["name_servers", "socket_addr"],
        ),
        (
            "{ name_servers = { { socket_addr = '10.0.0.1:53', protocol = 'tls' } } }",
            &["protocol", "tls", "'udp_then_tcp'"],
        ),
        (
            "{ name_servers = { { socket_addr = '10.0.0.1:53', bind_addr = '10.0.0.2' } } }",
            &["bind_addr", "10.0.0.2"],
        ),
        (
            "{ name_servers = { { socket_addr = '10.0.0.1:53', bind_addr = '[::1]:0' } } }",
            &["bind_addr", "address family"],
        ),
        (
            "{ name_servers = { { socket_addr = '10.0.0.1:53', trust_negative_responses = 'yes' } } }",
            &["trust_negative_responses"],
        ),
        (
            "{ name_servers = { { socket_addr = '10.0.0.1:53', port = 53 } } }",
            &["port"],
        ),
        ("{ options = { ndots = 'two' } }", &["options.ndots"]),
        ("{ options = { ndots = -1 } }", &["options.ndots"]),
        ("{ options = { edns0 = 'yes' } }", &["options.edns0"]),
        ("{ options = { cache_size = {} } }", &["options.cache_size"]),
        ("{ options = { timeout = 'soon' } }", &["options.timeout", "soon"]),
        (
            "{ options = { positive_min_ttl = 'soon' } }",
            &["options.positive_min_ttl"],
        ),
        (
            "{ options = { positive_min_ttl = '2h', positive_max_ttl = '1h' } }",
            &["options.positive_min_ttl", "options.positive_max_ttl"],
        ),
        (
            "{ options = { negative_min_ttl = 600, negative_max_ttl = 60 } }",
            &["options.negative_min_ttl"],
        ),
        (
            "{ options = { use_hosts_file = true } }",
            &["options.use_hosts_file"],
        ),
        (
            "{ options = { use_hosts_file = 'Sometimes' } }",
            &["options.use_hosts_file", "Sometimes", "'Never'"],
        ),
        (
            "{ options = { server_ordering_strategy = 'Random' } }",
            &["options.server_ordering_strategy", "Random"],
        ),
        (
            "{ options = { ip_strategy = 'Ipv4Sometimes' } }",
            &["options.ip_strategy", "Ipv4Sometimes"],
        ),
        ("{ options = { validate = 'yes' } }", &["options.validate"]),
        (
            "{ options = { trust_anchor_file = 1 } }",
            &["options.trust_anchor_file"],
        ),
        ("{ options = { attempt = 2 } }", &["attempt"]),
        ("{ domain = 'a..b' }", &["domain", "a..b"]),
        ("{ domain = 7 }", &["domain"]),
        ("{ search = { 'ok.example', '' } }", &["search"]),
        ("{ name_server = {} }", &["name_server"]),
        ("'Hickory'", &["Hickory"]),
    ] {
        let e = refused("configure_resolver", args);
        for n in needles {
            assert!(e.contains(n), "{args}: {n:?} not in {e}");
        }
    }
}

/// `parse_name_server` still takes the simple form as text.
#[test]
fn parse_name_server_text() {
    use ironpost_policy::delivery_config::parse_name_server;
    assert_eq!(
        parse_name_server("192.0.2.1").unwrap(),
        ns("192.0.2.1:53", NameServerProtocol::UdpThenTcp, true, None)
    );
    assert!(parse_name_server("example.com:53").is_err());
}
