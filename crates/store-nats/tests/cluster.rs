//! What only a shared store has to get right: several nodes on one NATS
//! cluster (three servers, R3) racing for the same function, seeing each
//! other come and go, and a claim held by a node that died.

use std::time::Duration;

use wisp_store::conformance::registry::version;
use wisp_store::{Claim, KeyStore, Registry, StoreError};
use wisp_store_nats::testing::NatsCluster;
use wisp_store_nats::{NatsOptions, NatsStore};

async fn node(cluster: &NatsCluster, dir: &tempfile::TempDir, name: &str) -> NatsStore {
    let mut options = NatsOptions::new(cluster.urls(), dir.path().join(name));
    options.replicas = 3;
    options.node_id = name.into();
    options.heartbeat = Duration::from_millis(200);
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
