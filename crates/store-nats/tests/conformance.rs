//! The shared checks (`wisp_store::conformance`) on the JetStream store,
//! against a real nats-server started for the test. Each suite runs in a
//! namespace of its own on one server.

use std::sync::atomic::{AtomicUsize, Ordering};

use wisp_store::conformance::{
    archives, code, documents, events, executions, keys, queues, records, registry, timers,
};
use wisp_store_nats::testing::NatsServer;
use wisp_store_nats::{NatsOptions, NatsStore};

static NEXT: AtomicUsize = AtomicUsize::new(0);

async fn store(server: &NatsServer, dir: &tempfile::TempDir) -> NatsStore {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut options = NatsOptions::new(server.url(), dir.path().join(format!("cache{n}")));
    options.namespace = format!("t{n}");
    NatsStore::connect(options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_store_passes_the_shared_checks() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    registry::registry(&store(&server, &dir).await).await;
    code::code(&store(&server, &dir).await).await;
    records::records(&store(&server, &dir).await).await;
    let s = store(&server, &dir).await;
    keys::keys(&s).await;
    keys::keys_go_with_their_function(&s).await;
    events::events(&store(&server, &dir).await).await;
    queues::queues(&store(&server, &dir).await).await;
    documents::documents(&store(&server, &dir).await).await;
    timers::timers(&store(&server, &dir).await).await;
    archives::archives(&store(&server, &dir).await).await;
    executions::executions(&store(&server, &dir).await).await;
}

/// Idempotency keys and FIFO de-duplication entries carry their TTL: the
/// server drops them when it passes, with no purge run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_vanish_by_their_own_ttl() {
    use wisp_store::{Claim, KeyOutcome, KeyStore, Registry};
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&server, &dir).await;
    s.create_function(registry::version("f", "x"))
        .await
        .unwrap();
    let now = queues::now();
    let claim = s.claim_key("f", "k", "a", now, now + 1000).await.unwrap();
    assert_eq!(claim, Claim::Claimed);
    let done = KeyOutcome::Done {
        result: b"r".to_vec(),
        expires_ms: now + 1000,
    };
    s.finish_key("f", "k", "a", done).await.unwrap();
    // Asked as of the start, the key is there until the server drops it.
    assert!(s.key_holder("f", "k", now).await.unwrap().is_some());
    for _ in 0..100 {
        if s.key_holder("f", "k", now).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the key outlived its TTL by 9 s");
}
