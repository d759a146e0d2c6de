use ironpost_dns::{Dns, DnsConfig, DnsError, MxAnswer};
use ironpost_testkit::dns::{TestDnsServer, TestZone};
use std::time::Duration;

#[tokio::test]
async fn mx_null_implicit_nxdomain_servfail() {
    let zone = TestZone::new();
    zone.mx("multi.test", 20, "mx2.multi.test")
        .mx("multi.test", 10, "mx1.multi.test")
        .ip("mx1.multi.test", "127.0.0.11".parse().unwrap())
        .null_mx("nomail.test")
        .ip("implicit.test", "127.0.0.12".parse().unwrap())
        .servfail("broken.test");
    let server = TestDnsServer::start(zone).await.unwrap();
    let dns = Dns::new(&DnsConfig {
        name_servers: vec![server.addr.into()],
        timeout: Some(Duration::from_millis(500)),
        attempts: Some(1),
        ..Default::default()
    })
    .unwrap();

    let MxAnswer::Hosts { hosts, implicit } = dns.mx("Multi.Test").await.unwrap() else {
        panic!()
    };
    assert!(!implicit);
    assert_eq!(
        hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["mx1.multi.test", "mx2.multi.test"]
    );
    assert_eq!(dns.mx("nomail.test").await.unwrap(), MxAnswer::Null);
    let MxAnswer::Hosts { hosts, implicit } = dns.mx("implicit.test").await.unwrap() else {
        panic!()
    };
    assert!(implicit);
    assert_eq!(hosts[0].name, "implicit.test");
    assert!(matches!(
        dns.mx("missing.test").await,
        Err(DnsError::NxDomain(_))
    ));
    let err = dns.mx("broken.test").await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert_eq!(
        dns.ips("mx1.multi.test").await.unwrap(),
        vec!["127.0.0.11".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(dns.ips("mx2.multi.test").await.unwrap_err().is_permanent());
}
