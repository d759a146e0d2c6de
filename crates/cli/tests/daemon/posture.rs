//! The sender's posture: `ironpost dns records` judged by independent
//! parsers (checkdmarc for SPF and DMARC, dkimpy for DKIM keys), and the
//! MTA-STS policy the HTTP listener hosts, fetched and validated by the
//! fetcher delivery uses.

use ironpost_mta_sts::{FetchConfig, PolicyFetcher, StsDns, TxtError};
use ironpost_testkit::{Daemon, DaemonOptions, TestCa};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ironpost"))
}

/// The interpreter with checkdmarc, dkimpy and jsonschema (the test
/// command makes one); a missing module fails the test, never skips it.
fn python() -> String {
    std::env::var("IRONPOST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed (is IRONPOST_PYTHON set to an interpreter with checkdmarc and dkimpy?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn keygen(dir: &Path, selector: &str, algo: &str) {
    let out = Command::new(bin())
        .args([
            "dkim",
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            selector,
        ])
        .args(["--algo", algo, "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two sources, two signers (RSA from the helper's base, Ed25519 as an
/// additional signature), DMARC and TLS-RPT addresses, BIMI, MTA-STS.
fn records_policy(dir: &Path) -> String {
    let keys = dir.join("keys");
    keygen(&keys, "s2048", "rsa");
    keygen(&keys, "ed1", "ed25519");
    let ca = TestCa::new("posture ca");
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let (cert, key) = ca.issue_server(&["mx.example.com", "mta-sts.example.com"]);
    std::fs::write(dir.join("mx.crt"), cert).unwrap();
    write_private(&dir.join("mx.key"), &key);
    let keys = keys.join("example.com");
    format!(
        r#"
local sources = require 'policy-extras.sources'
sources:setup {{ {{
  source = {{ ["ip-1"] = {{ source_address = "192.0.2.10" }}, ["ip-2"] = {{ source_address = "2001:db8::25" }} }},
  pool = {{ main = {{ ["ip-1"] = {{}}, ["ip-2"] = {{}} }} }},
}} }}
local dkim_sign = require 'policy-extras.dkim_sign'
local sign = dkim_sign:setup {{ {{
  base = {{ selector = "s2048" }},
  domain = {{ ["example.com"] = {{ filename = "{keys}/s2048.key", additional_signatures = {{ "ed" }} }} }},
  signature = {{ ed = {{ selector = "ed1", algo = "ed25519", filename = "{keys}/ed1.key" }} }},
}} }}
local posture = require 'policy-extras.posture'
posture:setup {{ {{
  domain = {{ ["example.com"] = {{
    dmarc_rua = {{ "mailto:dmarc@example.com" }},
    tls_rpt_rua = {{ "mailto:tls@example.com", "https://reports.example.com/tlsrpt" }},
    bimi_logo = "https://example.com/logo.svg",
    mta_sts = {{ mode = "enforce", mx = {{ "mx.example.com" }}, max_age = "14d",
                tls_certificate = "{dir}/mx.crt", tls_private_key = "{dir}/mx.key" }},
  }} }},
}} }}
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{dir}/spool' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', hostname = 'mx.example.com',
    tls_certificate = '{dir}/mx.crt', tls_private_key = '{dir}/mx.key' }}
  kumo.start_http_listener {{ listen = '127.0.0.1:0', use_tls = true, trusted_hosts = {{ '127.0.0.1' }} }}
end)
kumo.on('smtp_server_message_received', function(msg) sign(msg) end)
kumo.on('get_queue_config', function() return kumo.make_queue_config {{ egress_pool = 'main' }} end)
"#,
        keys = keys.display(),
        dir = dir.display()
    )
}

fn dns(args: &[&str], policy: &Path) -> std::process::Output {
    Command::new(bin())
        .arg("dns")
        .args(args)
        .arg("--policy")
        .arg(policy)
        .output()
        .unwrap()
}

#[test]
fn dns_records_are_derived_from_the_policy_and_parse_independently() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.lua");
    std::fs::write(&policy, records_policy(dir.path())).unwrap();
    let out = dns(&["records", "--domain", "example.com", "--json"], &policy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = v["records"].as_array().unwrap();
    let find = |name: &str| -> String {
        records
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no record {name}: {v:#}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let spf = find("example.com");
    assert_eq!(spf, "v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 -all");
    let dmarc = find("_dmarc.example.com");
    assert!(dmarc.starts_with("v=DMARC1; p=none; rua=mailto:dmarc@example.com"));
    assert_eq!(
        find("_smtp._tls.example.com"),
        "v=TLSRPTv1; rua=mailto:tls@example.com,https://reports.example.com/tlsrpt"
    );
    assert!(find("_mta-sts.example.com").starts_with("v=STSv1; id="));
    // The listener's certificate, pinned by its key for inbound DANE.
    assert!(records.iter().any(|r| r["type"] == "TLSA"
        && r["name"]
            .as_str()
            .unwrap()
            .ends_with("._tcp.mx.example.com")
        && r["value"].as_str().unwrap().starts_with("3 1 1 ")));
    assert!(
        find("default._bimi.example.com").starts_with("v=BIMI1; l=https://example.com/logo.svg")
    );
    let rsa = find("s2048._domainkey.example.com");
    let ed = find("ed1._domainkey.example.com");
    assert!(v["mta_sts_policy"]
        .as_str()
        .unwrap()
        .contains("mode: enforce\r\n"));

    // checkdmarc parses the SPF and DMARC records. Its lookups (the rua
    // domain's MX) go to a closed loopback port, never out.
    let judged = run_python(
        r#"
import sys, json, warnings
warnings.simplefilter("ignore")
import dns.resolver
from checkdmarc.spf import parse_spf_record
from checkdmarc.dmarc import parse_dmarc_record
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = 9
r.lifetime = 1
spf = parse_spf_record(sys.argv[1], "example.com", resolver=r)
dmarc = parse_dmarc_record(sys.argv[2], "example.com", resolver=r)
mechs = spf["parsed"]["mechanisms"]
print(json.dumps({"spf_all": spf["parsed"]["all"], "ip4": [m["value"] for m in mechs if m["mechanism"] == "ip4"],
                  "p": dmarc["tags"]["p"]["value"], "rua": dmarc["tags"]["rua"]["value"][0]["address"]}))
"#,
        &[&spf, &dmarc],
    );
    let judged: serde_json::Value = serde_json::from_str(judged.trim()).unwrap();
    assert_eq!(judged["spf_all"], "fail");
    assert_eq!(judged["ip4"][0], "192.0.2.10");
    assert_eq!(judged["p"], "none");
    assert_eq!(judged["rua"], "dmarc@example.com");

    // dkimpy reads both key records as it would from DNS.
    let judged = run_python(
        r#"
import sys, dkim
for name, txt in ((b"s2048._domainkey.example.com.", sys.argv[1]), (b"ed1._domainkey.example.com.", sys.argv[2])):
    pk, keysize, ktag, _ = dkim.load_pk_from_dns(name, dnsfunc=lambda n, timeout=5, t=txt: t.encode())
    print(ktag.decode(), keysize)
"#,
        &[&rsa, &ed],
    );
    assert_eq!(judged.trim(), "rsa 2048\ned25519 256", "{judged}");
}

/// The policy's `smtp_server_message_received` is where hand-written
/// policies sign: the records follow what it does, not a helper's data.
#[test]
fn dns_records_follow_hand_written_handlers() {
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("keys"), "hand", "ed25519");
    let policy = dir.path().join("policy.lua");
    std::fs::write(
        &policy,
        format!(
            r#"
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{d}/spool' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0' }}
end)
kumo.on('get_queue_config', function() return kumo.make_queue_config {{ egress_pool = 'p' }} end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{ {{ name = 'a' }}, {{ name = 'b' }} }} }}
end)
kumo.on('get_egress_source', function(name)
  if name == 'a' then return kumo.make_egress_source {{ name = 'a', source_address = '198.51.100.7' }} end
  return kumo.make_egress_source {{ name = name }}
end)
kumo.on('smtp_server_message_received', function(msg)
  local signer = kumo.dkim.ed25519_signer {{ domain = msg:from_header().domain, selector = 'hand',
    key = '{d}/keys/example.com/hand.key' }}
  msg:dkim_sign(signer)
end)
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = dns(&["records", "--domain", "example.com"], &policy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zone = String::from_utf8_lossy(&out.stdout);
    // Source b has no address: SPF cannot end in -all, and says why.
    assert!(
        zone.contains("example.com. 3600 IN TXT \"v=spf1 ip4:198.51.100.7 ~all\""),
        "{zone}"
    );
    assert!(
        zone.contains("egress source(s) b have no source_address"),
        "{zone}"
    );
    assert!(
        zone.contains("hand._domainkey.example.com. 3600 IN TXT \"v=DKIM1; k=ed25519; p="),
        "{zone}"
    );
}

struct Loopback;

impl StsDns for Loopback {
    async fn txt(&self, _name: &str) -> Result<Vec<String>, TxtError> {
        Ok(Vec::new())
    }
    async fn ips(&self, _host: &str) -> Result<Vec<IpAddr>, String> {
        Ok(vec!["127.0.0.1".parse().unwrap()])
    }
}

fn hosting_policy(dir: &Path, ca: &TestCa, listener_host: &str) -> String {
    let (cert, key) = ca.issue_server(&["mta-sts.example.test"]);
    std::fs::write(dir.join("sts.crt"), cert).unwrap();
    write_private(&dir.join("sts.key"), &key);
    format!(
        r#"
local posture = require 'policy-extras.posture'
posture:setup {{ {{ domain = {{ ["example.test"] = {{ mta_sts = {{
  mode = "enforce", mx = {{ "mx.example.test", "*.mx.example.net" }}, max_age = "7d",
  tls_certificate = "{d}/sts.crt", tls_private_key = "{d}/sts.key" }} }} }} }} }}
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', hostname = '{listener_host}' }}
  kumo.start_http_listener {{ listen = '127.0.0.1:0', use_tls = true, trusted_hosts = {{ '127.0.0.1' }} }}
end)
"#,
        d = dir.display()
    )
}

#[test]
fn the_hosted_mta_sts_policy_is_fetched_and_validated_by_our_own_fetcher() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sts ca");
    let d = Daemon::start(
        DaemonOptions::new(bin())
            .policy(hosting_policy(dir.path(), &ca, "mx.example.test"))
            .workdir(dir.path()),
    )
    .unwrap();
    let port = d.http[0].port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fetcher = PolicyFetcher::new(&FetchConfig {
        extra_ca_pem: Some(ca.cert_pem.clone().into_bytes()),
        https_port: port,
        ..FetchConfig::default()
    })
    .unwrap();
    let policy = rt
        .block_on(fetcher.fetch(&Loopback, "example.test"))
        .expect("our fetcher accepts the hosted policy");
    assert!(policy.matches_mx("mx.example.test"));
    assert!(policy.matches_mx("a.mx.example.net"));
    assert!(!policy.matches_mx("mx.example.org"));
    assert_eq!(policy.max_age, 7 * 86400);

    // The raw answer: text/plain, CRLF lines; the hosted name exposes
    // nothing else, not even the admin API's open liveness route.
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap())
        .resolve("mta-sts.example.test", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |path: &str| format!("https://mta-sts.example.test:{port}{path}");
    let r = client.get(url("/.well-known/mta-sts.txt")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    let body = r.text().unwrap();
    assert!(
        body.starts_with("version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\n"),
        "{body:?}"
    );
    for path in ["/api/check-liveness/v1", "/metrics", "/.well-known/other"] {
        assert_eq!(
            client.get(url(path)).send().unwrap().status(),
            404,
            "{path}"
        );
    }
}

#[test]
fn an_mta_sts_policy_that_does_not_cover_our_listeners_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sts ca");
    let (code, stderr) = Daemon::try_start_expect_failure(
        DaemonOptions::new(bin())
            .policy(hosting_policy(dir.path(), &ca, "smtp.elsewhere.test"))
            .workdir(dir.path()),
    )
    .unwrap();
    assert_ne!(code, 0);
    assert!(
        stderr.contains("[domain.\"example.test\".mta_sts]: key 'mx'")
            && stderr.contains("smtp.elsewhere.test"),
        "{stderr}"
    );
}

/// The whole loop: what `dns records` prints is published in a signed
/// loopback zone, the daemon hosts the MTA-STS policy, and `dns check`
/// (validating resolver, the real fetcher) passes every item. Then one
/// record is broken and the check fails, naming it.
#[test]
fn dns_check_passes_what_dns_records_publishes_and_fails_a_broken_record() {
    use ironpost_testkit::dns::{TestDnsServer, TestZone};
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.lua");
    let lua = records_policy(dir.path());
    std::fs::write(&policy, &lua).unwrap();
    let d = Daemon::start(DaemonOptions::new(bin()).policy(lua).workdir(dir.path())).unwrap();
    let out = dns(&["records", "--domain", "example.com", "--json"], &policy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let zone = TestZone::signed();
    zone.mx("example.com", 10, "mx.example.com")
        .ip("mx.example.com", "127.0.0.1".parse().unwrap())
        .ip("mta-sts.example.com", "127.0.0.1".parse().unwrap());
    for r in v["records"].as_array().unwrap() {
        let (name, value) = (r["name"].as_str().unwrap(), r["value"].as_str().unwrap());
        match r["type"].as_str().unwrap() {
            "TXT" => {
                let parts: Vec<&str> = value
                    .as_bytes()
                    .chunks(255)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                zone.txt_strings(name, &parts);
            }
            "TLSA" => {
                let f: Vec<&str> = value.split(' ').collect();
                let data: Vec<u8> = (0..f[3].len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&f[3][i..i + 2], 16).unwrap())
                    .collect();
                zone.tlsa(
                    name,
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    &data,
                );
            }
            other => panic!("unexpected record type {other}"),
        }
    }
    let anchor = dir.path().join("anchor.txt");
    std::fs::write(&anchor, zone.trust_anchor()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestDnsServer::start(zone.clone())).unwrap();
    let check = || {
        Command::new(bin())
            .args([
                "dns",
                "check",
                "--domain",
                "example.com",
                "--json",
                "--resolver",
            ])
            .arg(server.addr.to_string())
            .arg("--trust-anchor")
            .arg(&anchor)
            .arg("--policy")
            .arg(&policy)
            .env("IRONPOST_TEST_MTA_STS_PORT", d.http[0].port().to_string())
            .env("IRONPOST_TEST_MTA_STS_CA", dir.path().join("ca.pem"))
            .output()
            .unwrap()
    };
    let out = check();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let not_passed: Vec<_> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["verdict"] != "pass")
        .collect();
    // DMARC at p=none is a warning by design: it is the first step.
    assert!(
        not_passed
            .iter()
            .all(|i| i["check"] == "dmarc" && i["verdict"] == "warn"),
        "{report:#}"
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "spf", "dkim", "mta-sts", "tls-rpt", "bimi", "dnssec", "tlsa",
    ] {
        assert!(
            report["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["check"] == check),
            "no {check} item: {report:#}"
        );
    }

    // The same for people: a table (printed; see it with --nocapture).
    let table = Command::new(bin())
        .args(["dns", "check", "--domain", "example.com", "--resolver"])
        .arg(server.addr.to_string())
        .arg("--trust-anchor")
        .arg(&anchor)
        .arg("--policy")
        .arg(&policy)
        .env("IRONPOST_TEST_MTA_STS_PORT", d.http[0].port().to_string())
        .env("IRONPOST_TEST_MTA_STS_CA", dir.path().join("ca.pem"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("DNS posture of example.com"), "{table}");
    println!("{table}");

    // An SPF record that no longer covers the sources fails the run.
    zone.remove("example.com");
    zone.mx("example.com", 10, "mx.example.com")
        .txt("example.com", "v=spf1 ip4:192.0.2.10 +all");
    let out = check();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["check"] == "spf" && i["verdict"] == "fail" && i["subject"] == "all"),
        "{report:#}"
    );
    drop(d);
}
