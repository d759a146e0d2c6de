//! End-to-end: StsResolver against a real HTTPS server on loopback.

mod support;

use ironpost_mta_sts::{
    CachedPolicy, FetchFailureKind, Mode, Policy, Source, StsConfig, StsOutcome, StsResolver,
    TxtError,
};
use ironpost_testkit::https::HttpResponse;
use ironpost_testkit::TestCa;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;

struct Env {
    ca: TestCa,
    server: HttpsServer,
    dns: FakeDns,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(reply: HttpResponse) -> Env {
        let ca = TestCa::new("Test STS CA");
        let server = HttpsServer::start(&ca, &[POLICY_HOST], reply).await;
        Env {
            ca,
            server,
            dns: FakeDns::default(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn enforce() -> Env {
        let env = Env::new(HttpResponse::policy(&enforce("mx1.example.test", 86400))).await;
        env.dns.set_id("id1");
        env
    }

    fn config(&self) -> StsConfig {
        let mut c = StsConfig::new(self.dir.path().join("sts"));
        c.extra_ca_pem = Some(self.ca.cert_pem.clone().into_bytes());
        c.https_port = self.server.port;
        c.fetch_timeout = Duration::from_secs(10);
        c
    }

    fn resolver(&self) -> StsResolver {
        StsResolver::new(self.config()).unwrap()
    }

    fn cache_file(&self) -> std::path::PathBuf {
        self.dir.path().join("sts").join(format!("{DOMAIN}.json"))
    }

    async fn lookup(&self, r: &StsResolver) -> StsOutcome {
        r.policy_for(&self.dns, DOMAIN).await
    }
}

fn mx(outcome: &StsOutcome) -> Vec<String> {
    outcome.policy.as_ref().expect("a policy").mx.clone()
}

fn failure_kind(outcome: &StsOutcome) -> FetchFailureKind {
    outcome.failure.as_ref().expect("a failure").kind
}

#[tokio::test]
async fn fetch_ok_and_stored() {
    let env = Env::enforce().await;
    let r = env.resolver();
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::Fresh);
    assert!(out.failure.is_none(), "{:?}", out.failure);
    let policy = out.policy.unwrap();
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.mx, vec!["mx1.example.test"]);
    assert!(policy.matches_mx("MX1.example.test."));
    assert_eq!(env.server.paths(), vec!["/.well-known/mta-sts.txt"]);
    assert_eq!(*env.dns.ip_lookups.lock().unwrap(), vec![POLICY_HOST]);

    let file = env.cache_file();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: CachedPolicy = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored.domain, DOMAIN);
    assert_eq!(stored.id, "id1");
    assert_eq!(stored.expires_at, stored.fetched_at + 86400);
    assert_eq!(stored.policy, *policy);
}

#[tokio::test]
async fn domain_is_normalised() {
    let env = Env::enforce().await;
    let r = env.resolver();
    let out = r.policy_for(&env.dns, "Example.TEST.").await;
    assert_eq!(out.source, Source::Fresh);
    assert!(env.cache_file().exists());
    // Not a host name: no lookup at all.
    let out = r.policy_for(&env.dns, "../etc").await;
    assert_eq!(out.source, Source::None);
    assert_eq!(env.server.hits(), 1);
}

#[tokio::test]
async fn unchanged_id_served_from_cache() {
    let env = Env::enforce().await;
    let r = env.resolver();
    assert_eq!(env.lookup(&r).await.source, Source::Fresh);
    for _ in 0..3 {
        let out = env.lookup(&r).await;
        assert_eq!(out.source, Source::Cached);
        assert!(out.failure.is_none());
        assert_eq!(mx(&out), vec!["mx1.example.test"]);
    }
    assert_eq!(env.server.hits(), 1);
}

#[tokio::test]
async fn changed_id_refetches() {
    let env = Env::enforce().await;
    let r = env.resolver();
    env.lookup(&r).await;
    env.server
        .set_reply(HttpResponse::policy(&enforce("*.mail.example.test", 3600)));
    env.dns.set_id("id2");
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::Fresh);
    assert_eq!(mx(&out), vec!["*.mail.example.test"]);
    assert_eq!(env.server.hits(), 2);
    let stored = r.cached(DOMAIN).await.unwrap();
    assert_eq!(stored.id, "id2");
    assert_eq!(stored.policy.max_age, 3600);
}

#[tokio::test]
async fn http_500_falls_back_to_cache_and_reports() {
    let env = Env::enforce().await;
    let r = env.resolver();
    env.lookup(&r).await;
    env.server.set_reply(HttpResponse::status(500));
    env.dns.set_id("id2");
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::Cached);
    assert_eq!(mx(&out), vec!["mx1.example.test"]);
    assert_eq!(failure_kind(&out), FetchFailureKind::FetchError);
    assert!(out.failure.unwrap().detail.contains("500"));
    // The old policy (and its id) stay cached.
    assert_eq!(r.cached(DOMAIN).await.unwrap().id, "id1");
}

#[tokio::test]
async fn server_down_falls_back_to_cache_and_reports() {
    let env = Env::enforce().await;
    let r = env.resolver();
    env.lookup(&r).await;
    env.server.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    env.dns.set_id("id2");
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::Cached);
    assert_eq!(failure_kind(&out), FetchFailureKind::FetchError);
}

#[tokio::test]
async fn fetch_failure_without_cache_is_no_policy_with_failure() {
    let env = Env::new(HttpResponse::status(404)).await;
    env.dns.set_id("id1");
    let out = env.lookup(&env.resolver()).await;
    assert_eq!(out.source, Source::None);
    assert!(out.policy.is_none());
    assert_eq!(failure_kind(&out), FetchFailureKind::FetchError);
    assert!(!env.cache_file().exists());
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let env = Env::new(HttpResponse::status(301)).await;
    let mut reply = HttpResponse::status(301);
    reply.headers.push((
        "Location".into(),
        format!("https://{POLICY_HOST}:{}/elsewhere.txt", env.server.port),
    ));
    env.server.set_reply(reply);
    env.dns.set_id("id1");
    let out = env.lookup(&env.resolver()).await;
    assert!(out.policy.is_none());
    let failure = out.failure.unwrap();
    assert_eq!(failure.kind, FetchFailureKind::FetchError);
    assert!(failure.detail.contains("redirect"), "{failure}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.server.paths(), vec!["/.well-known/mta-sts.txt"]);
}

#[tokio::test]
async fn oversized_body_refused() {
    // Valid policy padded with an extension line past 64 KiB.
    let big = format!(
        "{}x: {}\n",
        enforce("mx1.example.test", 86400),
        "a".repeat(64 * 1024)
    );
    for content_length in [true, false] {
        let mut reply = HttpResponse::policy(&big);
        reply.content_length = content_length;
        let env = Env::new(reply).await;
        env.dns.set_id("id1");
        let out = env.lookup(&env.resolver()).await;
        assert!(out.policy.is_none(), "content_length={content_length}");
        let failure = out.failure.unwrap();
        assert_eq!(failure.kind, FetchFailureKind::FetchError);
        assert!(failure.detail.contains("larger"), "{failure}");
    }
    // Just under the limit is fine, even without Content-Length.
    let text = enforce("mx1.example.test", 86400);
    let pad = 64 * 1024 - text.len() - "x: \n".len();
    let mut reply = HttpResponse::policy(&format!("{text}x: {}\n", "a".repeat(pad)));
    reply.content_length = false;
    assert_eq!(reply.body.len(), 64 * 1024);
    let env = Env::new(reply).await;
    env.dns.set_id("id1");
    let out = env.lookup(&env.resolver()).await;
    assert_eq!(out.source, Source::Fresh, "{:?}", out.failure);
}

#[tokio::test]
async fn malformed_policy_is_policy_invalid() {
    let env = Env::new(HttpResponse::policy(
        "version: STSv1\nmode: enforce\nmax_age: 86400\n",
    ))
    .await;
    env.dns.set_id("id1");
    let out = env.lookup(&env.resolver()).await;
    assert!(out.policy.is_none());
    assert_eq!(failure_kind(&out), FetchFailureKind::PolicyInvalid);

    let mut reply = HttpResponse::policy("");
    reply.body = b"version: STSv1\nmode: none\nmax_age: 1\nx: \xff\n".to_vec();
    env.server.set_reply(reply);
    let out = env.lookup(&env.resolver()).await;
    assert_eq!(failure_kind(&out), FetchFailureKind::PolicyInvalid);
}

#[tokio::test]
async fn wrong_content_type_refused() {
    let mut reply = HttpResponse::policy(&enforce("mx1.example.test", 86400));
    reply.headers = vec![("Content-Type".into(), "text/html".into())];
    let env = Env::new(reply).await;
    env.dns.set_id("id1");
    let out = env.lookup(&env.resolver()).await;
    assert!(out.policy.is_none());
    let failure = out.failure.unwrap();
    assert_eq!(failure.kind, FetchFailureKind::FetchError);
    assert!(failure.detail.contains("Content-Type"), "{failure}");

    let mut reply = HttpResponse::policy(&enforce("mx1.example.test", 86400));
    reply.headers.clear();
    env.server.set_reply(reply);
    let out = env.lookup(&env.resolver()).await;
    assert_eq!(failure_kind(&out), FetchFailureKind::FetchError);
}

#[tokio::test]
async fn untrusted_ca_is_webpki_invalid() {
    let env = Env::enforce().await;
    let rogue = TestCa::new("Rogue CA");
    let server = HttpsServer::start(
        &rogue,
        &[POLICY_HOST],
        HttpResponse::policy(&enforce("evil.example", 86400)),
    )
    .await;
    let mut config = env.config();
    config.https_port = server.port;
    let out = StsResolver::new(config)
        .unwrap()
        .policy_for(&env.dns, DOMAIN)
        .await;
    assert!(out.policy.is_none());
    let failure = out.failure.unwrap();
    assert_eq!(failure.kind, FetchFailureKind::WebPkiInvalid, "{failure}");
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn wrong_name_is_webpki_invalid() {
    let env = Env::enforce().await;
    let server = HttpsServer::start(
        &env.ca,
        &["mta-sts.other.test"],
        HttpResponse::policy(&enforce("mx1.example.test", 86400)),
    )
    .await;
    let mut config = env.config();
    config.https_port = server.port;
    let out = StsResolver::new(config)
        .unwrap()
        .policy_for(&env.dns, DOMAIN)
        .await;
    let failure = out.failure.unwrap();
    assert_eq!(failure.kind, FetchFailureKind::WebPkiInvalid, "{failure}");
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn webpki_failure_with_cache_keeps_cached_policy() {
    let env = Env::enforce().await;
    env.lookup(&env.resolver()).await;
    let rogue = TestCa::new("Rogue CA");
    let server = HttpsServer::start(
        &rogue,
        &[POLICY_HOST],
        HttpResponse::policy("version: STSv1\nmode: none\nmax_age: 86400\n"),
    )
    .await;
    let mut config = env.config();
    config.https_port = server.port;
    env.dns.set_id("attacker");
    let out = StsResolver::new(config)
        .unwrap()
        .policy_for(&env.dns, DOMAIN)
        .await;
    assert_eq!(out.source, Source::Cached);
    assert_eq!(mx(&out), vec!["mx1.example.test"]);
    assert_eq!(failure_kind(&out), FetchFailureKind::WebPkiInvalid);
}

#[tokio::test]
async fn cache_survives_restart() {
    let env = Env::enforce().await;
    {
        let r = env.resolver();
        assert_eq!(env.lookup(&r).await.source, Source::Fresh);
    }
    let r2 = env.resolver();
    let out = env.lookup(&r2).await;
    assert_eq!(out.source, Source::Cached);
    assert_eq!(mx(&out), vec!["mx1.example.test"]);
    assert_eq!(env.server.hits(), 1);
}

#[tokio::test]
async fn mode_none_drops_cached_policy() {
    let env = Env::enforce().await;
    let r = env.resolver();
    env.lookup(&r).await;
    assert!(env.cache_file().exists());
    env.server.set_reply(HttpResponse::policy(
        "version: STSv1\nmode: none\nmax_age: 86400\n",
    ));
    env.dns.set_id("id2");
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::None);
    assert!(out.policy.is_none());
    assert!(out.failure.is_none());
    assert!(!env.cache_file().exists());
    // Gone from memory too: with the TXT record removed there is nothing.
    env.dns
        .set_txt(&format!("_mta-sts.{DOMAIN}"), Err(TxtError::NotFound));
    assert_eq!(env.lookup(&r).await.source, Source::None);
    assert_eq!(env.lookup(&env.resolver()).await.source, Source::None);
}

fn write_entry(path: &Path, entry: &CachedPolicy) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec(entry).unwrap()).unwrap();
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn expired_cache_entry_ignored() {
    let env = Env::enforce().await;
    let policy = Policy::parse(&enforce("old.example.test", 60)).unwrap();
    let entry = CachedPolicy::new(DOMAIN, "id1", policy, now() - 3600);
    write_entry(&env.cache_file(), &entry);

    // Without DNS, the expired entry is not used and is removed.
    env.dns.set_txt(
        &format!("_mta-sts.{DOMAIN}"),
        Err(TxtError::Temporary("SERVFAIL".into())),
    );
    let r = env.resolver();
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::None);
    assert!(!env.cache_file().exists());

    // Same id as the expired entry: fetched again rather than trusted.
    write_entry(&env.cache_file(), &entry);
    env.dns.set_id("id1");
    let out = env.resolver().policy_for(&env.dns, DOMAIN).await;
    assert_eq!(out.source, Source::Fresh);
    assert_eq!(mx(&out), vec!["mx1.example.test"]);
    assert_eq!(env.server.hits(), 1);
}

#[tokio::test]
async fn max_age_zero_is_used_but_not_cached() {
    let env = Env::new(HttpResponse::policy(&enforce("mx1.example.test", 0))).await;
    env.dns.set_id("id1");
    let r = env.resolver();
    assert_eq!(env.lookup(&r).await.source, Source::Fresh);
    assert_eq!(env.lookup(&r).await.source, Source::Fresh);
    assert_eq!(env.server.hits(), 2);
    assert!(!env.cache_file().exists());
}

#[tokio::test]
async fn txt_failures_keep_cached_policy() {
    let env = Env::enforce().await;
    let r = env.resolver();
    env.lookup(&r).await;
    let name = format!("_mta-sts.{DOMAIN}");
    for answer in [
        Err(TxtError::Temporary("timeout".into())),
        Err(TxtError::NotFound),
        Ok(vec!["v=spf1 -all".to_string()]),
        Ok(vec!["v=STSv1; id=bad-id".to_string()]),
    ] {
        env.dns.set_txt(&name, answer.clone());
        let out = env.lookup(&r).await;
        assert_eq!(out.source, Source::Cached, "{answer:?}");
        assert!(out.failure.is_none());
    }
    assert_eq!(env.server.hits(), 1);
}

#[tokio::test]
async fn two_sts_records_mean_no_policy() {
    let env = Env::enforce().await;
    env.dns.set_txt(
        &format!("_mta-sts.{DOMAIN}"),
        Ok(vec!["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]),
    );
    let out = env.lookup(&env.resolver()).await;
    assert_eq!(out.source, Source::None);
    assert!(out.policy.is_none() && out.failure.is_none());
    assert_eq!(env.server.hits(), 0);
}

#[tokio::test]
async fn no_txt_record_means_no_policy_and_no_fetch() {
    let env = Env::enforce().await;
    env.dns
        .set_txt(&format!("_mta-sts.{DOMAIN}"), Err(TxtError::NotFound));
    let out = env.lookup(&env.resolver()).await;
    assert_eq!(out.source, Source::None);
    assert_eq!(env.server.hits(), 0);
    assert!(env.dns.ip_lookups.lock().unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_lookups_fetch_once() {
    let mut reply = HttpResponse::policy(&enforce("mx1.example.test", 86400));
    reply.delay = Duration::from_millis(300);
    let env = Arc::new(Env::new(reply).await);
    env.dns.set_id("id1");
    let r = Arc::new(env.resolver());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (env, r) = (env.clone(), r.clone());
            tokio::spawn(async move { env.lookup(&r).await })
        })
        .collect();
    let mut sources = Vec::new();
    for t in tasks {
        let out = t.await.unwrap();
        assert_eq!(mx(&out), vec!["mx1.example.test"]);
        sources.push(out.source);
    }
    assert_eq!(env.server.hits(), 1);
    assert_eq!(sources.iter().filter(|s| **s == Source::Fresh).count(), 1);
}

#[tokio::test]
async fn slow_server_times_out() {
    let mut reply = HttpResponse::policy(&enforce("mx1.example.test", 86400));
    reply.delay = Duration::from_secs(5);
    let env = Env::new(reply).await;
    env.dns.set_id("id1");
    let mut config = env.config();
    config.fetch_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let out = StsResolver::new(config)
        .unwrap()
        .policy_for(&env.dns, DOMAIN)
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let failure = out.failure.unwrap();
    assert_eq!(failure.kind, FetchFailureKind::FetchError);
    assert!(failure.detail.contains("timed out"), "{failure}");
}

#[tokio::test]
async fn bad_extra_ca_is_a_config_error() {
    let mut config = StsConfig::new(tempfile::tempdir().unwrap().path());
    config.extra_ca_pem = Some(b"not a certificate".to_vec());
    assert!(StsResolver::new(config).is_err());
}

#[tokio::test]
async fn old_cached_policy_is_refreshed_proactively() {
    let env = Env::enforce().await;
    // Cached two days ago under the current id, valid for a week more.
    let policy = Policy::parse(&enforce("old.example.test", 9 * 86400)).unwrap();
    let entry = CachedPolicy::new(DOMAIN, "id1", policy, now() - 2 * 86400);
    write_entry(&env.cache_file(), &entry);
    let r = env.resolver();
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::Fresh);
    assert_eq!(mx(&out), vec!["mx1.example.test"]);
    assert_eq!(env.server.hits(), 1);
    // The refreshed entry restarts the clock: no fetch on the next lookup.
    let out = env.lookup(&r).await;
    assert_eq!(out.source, Source::Cached);
    assert_eq!(env.server.hits(), 1);
}

#[tokio::test]
async fn failed_refresh_keeps_the_policy_and_is_not_retried_at_once() {
    let env = Env::enforce().await;
    let policy = Policy::parse(&enforce("old.example.test", 9 * 86400)).unwrap();
    let entry = CachedPolicy::new(DOMAIN, "id1", policy, now() - 2 * 86400);
    write_entry(&env.cache_file(), &entry);
    env.server.set_reply(HttpResponse::status(500));
    let r = env.resolver();
    for _ in 0..3 {
        let out = env.lookup(&r).await;
        assert_eq!(out.source, Source::Cached);
        assert_eq!(mx(&out), vec!["old.example.test"]);
        assert_eq!(failure_kind(&out), FetchFailureKind::FetchError);
    }
    // One fetch, then the failure is remembered for a while.
    assert_eq!(env.server.hits(), 1);
    // A new id is worth a fetch at once.
    env.dns.set_id("id2");
    env.lookup(&r).await;
    assert_eq!(env.server.hits(), 2);
}
