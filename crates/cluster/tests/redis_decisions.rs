//! The shared decisions against a real redis-server on loopback: GCRA rates
//! hold across two handles (two nodes), connection leases cap the holders
//! and come back when released, failure counts expire, and a node whose
//! Redis is down gets errors (never a silent "go ahead").

use ironpost_cluster::{Redis, RedisSettings};
use ironpost_testkit::redis::RedisServer;
use std::time::{Duration, Instant};

fn settings(r: &RedisServer) -> RedisSettings {
    RedisSettings {
        url: r.url(),
        response_timeout: Duration::from_millis(500),
        ..Default::default()
    }
}

async fn connected(r: &RedisServer) -> Redis {
    let h = Redis::start(&settings(r)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.holds_version().await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_holds_across_nodes() {
    let server = RedisServer::start();
    let (a, b) = (connected(&server).await, connected(&server).await);
    // 10/s with a burst of 1: one every 100 ms, whoever asks.
    let interval = Duration::from_millis(100);
    let start = Instant::now();
    let mut allowed = 0;
    while start.elapsed() < Duration::from_secs(2) {
        for h in [&a, &b] {
            match h.gcra("test-rate", interval, 1).await.unwrap() {
                Ok(()) => allowed += 1,
                Err(wait) => assert!(wait <= interval, "{wait:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        (19..=22).contains(&allowed),
        "{allowed} allowed in 2 s at 10/s"
    );
    assert!(a.stats().delayed.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_cap_the_holders() {
    let server = RedisServer::start();
    let (a, b) = (connected(&server).await, connected(&server).await);
    let ttl = Duration::from_secs(3);
    let l1 = a.lease("conn", 2, ttl).await.unwrap().expect("first");
    let _l2 = b.lease("conn", 2, ttl).await.unwrap().expect("second");
    assert!(a.lease("conn", 2, ttl).await.unwrap().is_none(), "full");
    assert_eq!(a.holders("conn").await.unwrap().len(), 2);
    drop(l1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if b.lease("conn", 2, ttl).await.unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "a released slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_expire_and_outages_are_errors() {
    let mut server = RedisServer::start();
    let a = connected(&server).await;
    assert_eq!(
        a.count("auth:ip:192.0.2.1", Duration::from_millis(300))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        a.count("auth:ip:192.0.2.1", Duration::from_millis(300))
            .await
            .unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.counted("auth:ip:192.0.2.1").await.unwrap(), 0);
    server.kill();
    assert!(
        a.gcra("r", Duration::from_millis(100), 1).await.is_err(),
        "no Redis, no decision"
    );
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.gcra("r", Duration::from_millis(1), 1).await.is_err() {
        assert!(Instant::now() < deadline, "did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_take_many_or_one() {
    let server = RedisServer::start();
    let a = connected(&server).await;
    let ms = Duration::from_millis(100);
    // 10/s with a burst of 20: a batch of 16, then only 4 left at once.
    assert_eq!(a.gcra_take("b", ms, 20, 16).await.unwrap(), Ok(16));
    assert_eq!(a.gcra_take("b", ms, 20, 16).await.unwrap(), Ok(1));
    for _ in 0..3 {
        assert_eq!(a.gcra_take("b", ms, 20, 1).await.unwrap(), Ok(1));
    }
    let wait = a.gcra_take("b", ms, 20, 16).await.unwrap().unwrap_err();
    assert!(wait <= ms * 2, "{wait:?}");
}
