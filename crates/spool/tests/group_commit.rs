mod common;

use common::*;
use ironpost_spool::{Spool, SpoolConfig, SpoolId};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_share_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let (spool, _) = Spool::open(SpoolConfig::new(&dir)).unwrap();

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let spool = spool.clone();
            tokio::spawn(async move {
                let id = SpoolId::new();
                let loc = spool
                    .store(id, meta_for(id), data_for(id, 2000))
                    .await
                    .unwrap();
                (id, loc)
            })
        })
        .collect();
    let mut stored = Vec::new();
    for t in tasks {
        stored.push(t.await.unwrap());
    }

    let stats = spool.stats();
    assert_eq!(stats.records_written, 200);
    assert_eq!(stats.live_messages, 200);
    assert!(stats.syncs >= 1);
    assert!(
        stats.syncs < stats.records_written,
        "no group commit: {stats:?}"
    );
    eprintln!("200 concurrent stores: {} fdatasyncs", stats.syncs);

    drop(spool);
    let (spool, recovery) = Spool::open(SpoolConfig::new(&dir)).unwrap();
    assert_eq!(recovery.messages.len(), 200);
    for (id, loc) in stored {
        assert_eq!(spool.read(&loc).unwrap().1, data_for(id, 2000));
    }
}
