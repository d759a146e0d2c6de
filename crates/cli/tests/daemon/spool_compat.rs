//! A spool written by an earlier release (metadata format 1, before the
//! typed spool record) is recovered and delivered: each pending recipient
//! once, the tenant still routing its queue, the already-delivered
//! recipient not again. The fixture and how it was made are in
//! `fixtures/spool-v1/`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::delivery_common::*;
use ironpost_testkit::dns::TestZone;
use ironpost_testkit::sink::{Sink, SinkConfig};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spool-v1/segment-0000000000000001.log"
);
const WAIT: Duration = Duration::from_secs(20);

const ALICE: &str = "01a24d442a3077fb96284dc589c23339";
const BOB: &str = "01a24d442a33775c993ca32a411ab630";
const NULL_SENDER: &str = "01a24d442a33775c993ca32b77611627";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_spool_recovers_and_delivers() {
    let pki = Pki::new();
    let sink = Sink::start(any_port(LOCALHOST), SinkConfig::new())
        .await
        .unwrap();
    let dns = start_dns(TestZone::new()).await;
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("ironpost-data/spool");
    std::fs::create_dir_all(&spool).unwrap();
    for dir in [work.path().join("ironpost-data"), spool.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::copy(FIXTURE, spool.join("segment-0000000000000001.log")).unwrap();

    let to_sink = queue_to(&[&sink.addr().to_string()]);
    let d = start_daemon(
        Policy::new(dns.addr)
            .route(
                "one.test",
                format!("max_age = '3650d', {to_sink}"),
                pki.egress(""),
            )
            .route(
                "two.test",
                format!("max_age = '3650d', {to_sink}"),
                pki.egress(""),
            )
            .options()
            .workdir(work.path()),
    );
    assert_eq!(d.recovered, Some(3), "{}", d.stderr());

    let alice = wait_kind(&d, "Delivery", ALICE, WAIT).await;
    // Campaign and tenant read from format 1 meta, in KumoMTA's queue name.
    assert_eq!(alice["queue"], "spring:acme@one.test");
    assert!(alice["num_attempts"].as_u64().unwrap() >= 2, "{alice}");
    let bob = wait_kind(&d, "Delivery", BOB, WAIT).await;
    let mut bob_rcpts: Vec<&str> = bob["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    bob_rcpts.sort();
    assert_eq!(bob_rcpts, ["b1@one.test", "b3@one.test"]);
    let null = wait_kind(&d, "Delivery", NULL_SENDER, WAIT).await;
    assert_eq!(null["sender"], "");

    sleep(Duration::from_millis(500)).await;
    let seen = sink.snapshot();
    assert_eq!(seen.messages().len(), 3, "{}", describe_sink(&seen));
    let all = describe_sink(&seen);
    assert!(
        !all.contains("b2@two.test"),
        "a delivered recipient is not sent again"
    );
    assert!(records_of(&d, "Delivery")
        .iter()
        .all(|r| !has_rcpt(r, "b2@two.test")));
}
