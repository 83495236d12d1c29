//! What only the embedded queue store does: survive reopening, group
//! commit. The transitions every backend shares are in
//! `wisp_store::conformance::queues`.

use wisp_store::conformance::queues::{message, queue, receive};
use wisp_store::sqs::Receipt;
use wisp_store::{QueueStore, SqliteStore};

#[tokio::test]
async fn sqlite_messages_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let receipt: Receipt;
    {
        let s = SqliteStore::open(dir.path()).unwrap();
        s.create_queue(queue("q")).await.unwrap();
        s.send_messages("q", vec![message("kept", 0), message("leased", 0)], 0)
            .await
            .unwrap();
        let got = s.receive_messages(receive("q", 1, 0)).await.unwrap();
        receipt = got.messages[0].receipt;
    }
    let s = SqliteStore::open(dir.path()).unwrap();
    // The lease holds across the restart; the receipt still deletes.
    let c = s.queue_counts("q", 1).await.unwrap();
    assert_eq!((c.visible, c.in_flight), (1, 1));
    assert_eq!(s.delete_messages("q", vec![receipt]).await.unwrap(), [true]);
}

#[tokio::test]
async fn concurrent_sends_commit_together_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(SqliteStore::open(dir.path()).unwrap());
    s.create_queue(queue("busy")).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let batch = (0..10)
                    .map(|j| message(&format!("{t}-{i}-{j}"), 0))
                    .collect();
                s.send_messages("busy", batch, 0).await.unwrap();
            }
            // One failing write in a group leaves the others standing.
            assert!(s
                .send_messages("missing", vec![message("x", 0)], 0)
                .await
                .is_err());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        s.queue_counts("busy", 0).await.unwrap().visible,
        32 * 20 * 10
    );
}
