//! What only a shared store has to get right: several nodes on one NATS
//! cluster (three servers, R3) racing for the same function, seeing each
//! other come and go, and a claim held by a node that died.

use std::time::Duration;

use wisp_store::conformance::registry::version;
use wisp_store::{Claim, EventQueue, KeyStore, QueueStore, Registry, StoreError};
use wisp_store_nats::testing::NatsCluster;
use wisp_store_nats::{NatsOptions, NatsStore};

async fn node(cluster: &NatsCluster, dir: &tempfile::TempDir, name: &str) -> NatsStore {
    node_beating(cluster, dir, name, Duration::from_millis(200)).await
}

async fn node_beating(
    cluster: &NatsCluster,
    dir: &tempfile::TempDir,
    name: &str,
    heartbeat: Duration,
) -> NatsStore {
    let mut options = NatsOptions::new(cluster.urls(), dir.path().join(name));
    options.replicas = 3;
    options.node_id = name.into();
    options.heartbeat = heartbeat;
    NatsStore::connect(options).await.unwrap()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_race_see_each_other_and_inherit_a_dead_nodes_claims() {
    let cluster = NatsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let a = node(&cluster, &dir, "a").await;
    let b = node(&cluster, &dir, "b").await;

    // Two nodes create the same function at once: one wins.
    let (ra, rb) = tokio::join!(
        a.create_function(version("f", "from-a")),
        b.create_function(version("f", "from-b"))
    );
    assert!(
        ra.is_ok() != rb.is_ok(),
        "exactly one create wins: {ra:?} {rb:?}"
    );
    assert!(matches!(
        ra.err().or(rb.err()),
        Some(StoreError::Conflict(_))
    ));

    // Many concurrent updates and publishes from both: each either lands
    // whole or is refused with Conflict; the head is never torn.
    let mut landed = Vec::new();
    for round in 0..10 {
        let (ua, ub) = tokio::join!(
            a.update_latest(version("f", &format!("a{round}")), None),
            b.update_latest(version("f", &format!("b{round}")), None)
        );
        for (who, r) in [("a", ua), ("b", ub)] {
            match r {
                Ok(()) => landed.push(format!("{who}{round}")),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let latest = a.get_version("f", "$LATEST").await.unwrap().unwrap();
        assert!(
            landed.contains(&latest.code_sha256),
            "{}",
            latest.code_sha256
        );
        let (pa, pb) = tokio::join!(
            a.publish_version("f", None, None),
            b.publish_version("f", None, None)
        );
        for r in [pa, pb] {
            assert!(matches!(r, Ok(_) | Err(StoreError::Conflict(_))), "{r:?}");
        }
    }
    // Published numbers are unique and each version is whole.
    let versions = b.list_versions("f").await.unwrap();
    let mut numbers: Vec<u64> = versions[1..]
        .iter()
        .map(|v| v.version.parse().unwrap())
        .collect();
    let count = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), count);
    assert!(versions[1..]
        .iter()
        .all(|v| landed.contains(&v.code_sha256)));

    // Membership: each sees the other.
    eventually("a sees b", || a.members().is_live("b")).await;
    let live: Vec<String> = a.members().live().into_iter().map(|n| n.node).collect();
    assert_eq!(live, ["a", "b"]);

    // b claims a key and dies: for a, the claim is running, then
    // interrupted once b has missed its beats.
    assert_eq!(
        b.claim_key("f", "k", "r1", 0, i64::MAX).await.unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        a.claim_key("f", "k", "r2", 0, i64::MAX).await.unwrap(),
        Claim::Running {
            request_id: "r1".into()
        }
    );
    drop(b);
    eventually("b is taken for dead", || !a.members().is_live("b")).await;
    assert_eq!(
        a.claim_key("f", "k", "r2", 0, i64::MAX).await.unwrap(),
        Claim::Interrupted {
            request_id: "r1".into()
        }
    );
}

/// Receives from `queue` through `s` until something comes (5 s at most).
async fn receive_some(s: &NatsStore, queue: &str) -> Vec<String> {
    use wisp_store::conformance::queues::{now, receive};
    for _ in 0..100 {
        let got = s.receive_messages(receive(queue, 10, now())).await.unwrap();
        if !got.messages.is_empty() {
            return got.messages.into_iter().map(|m| m.message_id).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

/// Leases `function`'s events through `s` until some come (5 s at most).
async fn lease_some(s: &NatsStore, function: &str) -> Vec<String> {
    for _ in 0..100 {
        let (got, _) = s.lease_events(function, i64::MAX / 2, 10).await.unwrap();
        if !got.is_empty() {
            return got.into_iter().map(|e| e.request_id).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_or_function_recreated_elsewhere_works_through_every_node_and_leaving_is_seen() {
    use wisp_store::conformance::events::event;
    use wisp_store::conformance::queues::{message, now, queue};
    let cluster = NatsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let a = node(&cluster, &dir, "a").await;
    // Taken for dead only after five minutes of silence.
    let b = node_beating(&cluster, &dir, "b", Duration::from_secs(60)).await;

    // b opens the queue's stream and consumer, a deletes and re-creates
    // the queue, b sends and receives on the new one.
    a.create_queue(queue("q")).await.unwrap();
    b.send_messages("q", vec![message("m1", now())], now())
        .await
        .unwrap();
    assert_eq!(receive_some(&b, "q").await, ["m1"]);
    a.delete_queue("q").await.unwrap();
    a.create_queue(queue("q")).await.unwrap();
    b.send_messages("q", vec![message("m2", now())], now())
        .await
        .unwrap();
    assert_eq!(receive_some(&b, "q").await, ["m2"]);

    // The same for a function's event consumer.
    a.create_function(version("f", "x")).await.unwrap();
    b.enqueue_events(vec![event("e1", "f", None, 0)], 0)
        .await
        .unwrap();
    assert_eq!(lease_some(&b, "f").await, ["e1"]);
    a.delete_function("f").await.unwrap();
    a.create_function(version("f", "y")).await.unwrap();
    b.enqueue_events(vec![event("e2", "f", None, 0)], 0)
        .await
        .unwrap();
    assert_eq!(lease_some(&b, "f").await, ["e2"]);

    // b leaves (a clean stop): a stops counting it at once, not after
    // the missed beats that would take minutes here.
    eventually("a sees b", || a.members().is_live("b")).await;
    b.members().leave().await.unwrap();
    eventually("a sees b leave", || !a.members().is_live("b")).await;
}
