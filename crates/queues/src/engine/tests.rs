use std::sync::atomic::AtomicI64;

use super::*;
use wisp_store::SqliteStore;

/// A clock the test moves.
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn engine() -> (Arc<Sqs>, Arc<TestClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000_000)));
    let sqs = Sqs::new(store, clock.clone(), "us-east-1", "000000000000");
    (sqs, clock, dir)
}

fn body(b: &str) -> SendEntry {
    SendEntry {
        body: b.into(),
        ..SendEntry::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn create_is_idempotent_for_equal_attributes_only() {
    let (sqs, _c, _d) = engine();
    let a = attrs(&[("VisibilityTimeout", "10")]);
    sqs.create_queue("q", &a, BTreeMap::new()).await.unwrap();
    sqs.create_queue("q", &a, BTreeMap::new()).await.unwrap();
    sqs.create_queue("q", &BTreeMap::new(), BTreeMap::new())
        .await
        .unwrap();
    let e = sqs
        .create_queue("q", &attrs(&[("VisibilityTimeout", "11")]), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        (e.error_type, e.query_code),
        ("QueueNameExists", "QueueAlreadyExists")
    );
    let e = sqs
        .create_queue("bad name", &BTreeMap::new(), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(e.error_type, "InvalidParameterValue");
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_message_arrives() {
    let (sqs, _c, _d) = engine();
    sqs.create_queue("q", &BTreeMap::new(), BTreeMap::new())
        .await
        .unwrap();
    let waiting = {
        let sqs = sqs.clone();
        tokio::spawn(async move {
            sqs.receive(
                "q",
                ReceiveOptions {
                    wait_seconds: Some(20),
                    ..Default::default()
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    sqs.send("q", &[body("hello")], "me").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the poll ends when the message arrives")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].body, "hello");
    assert_eq!(got[0].sender_id, "me");
}

#[tokio::test]
async fn fifo_needs_its_keys_and_dedupes_by_content() {
    let (sqs, clock, _d) = engine();
    let fifo = attrs(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]);
    sqs.create_queue("f.fifo", &fifo, BTreeMap::new())
        .await
        .unwrap();
    let r = sqs.send("f.fifo", &[body("x")], "me").await.unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().error_type, "MissingParameter");
    let grouped = |b: &str| SendEntry {
        group_id: Some("g".into()),
        ..body(b)
    };
    let r = sqs
        .send("f.fifo", &[grouped("x"), grouped("x"), grouped("y")], "me")
        .await
        .unwrap();
    let ids: Vec<_> = r
        .iter()
        .map(|r| r.as_ref().unwrap().message_id.clone())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    let seq = |i: usize| r[i].as_ref().unwrap().sequence_number.clone().unwrap();
    assert_eq!(seq(0).len(), 20);
    assert!(seq(0) < seq(2));
    // Past the window the same body is a new message.
    clock.0.fetch_add(DEDUPE_WINDOW_MS + 1, Ordering::SeqCst);
    let r = sqs.send("f.fifo", &[grouped("x")], "me").await.unwrap();
    assert_ne!(r[0].as_ref().unwrap().message_id, ids[0]);
    // Per-message delays are not for FIFO queues.
    let delayed = SendEntry {
        delay_seconds: Some(5),
        ..grouped("z")
    };
    let r = sqs.send("f.fifo", &[delayed], "me").await.unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().error_type,
        "InvalidParameterValue"
    );
}

#[tokio::test]
async fn receipts_that_are_not_ours_are_refused_and_stale_ones_delete_nothing() {
    let (sqs, clock, _d) = engine();
    sqs.create_queue("q", &attrs(&[("VisibilityTimeout", "1")]), BTreeMap::new())
        .await
        .unwrap();
    sqs.send("q", &[body("m")], "me").await.unwrap();
    let first = sqs.receive("q", ReceiveOptions::default()).await.unwrap();
    clock.0.fetch_add(1001, Ordering::SeqCst);
    let second = sqs.receive("q", ReceiveOptions::default()).await.unwrap();
    assert_eq!(second[0].receive_count, 2);
    let r = sqs
        .delete("q", &[first[0].receipt_handle.clone(), "garbage!".into()])
        .await
        .unwrap();
    assert!(r[0].is_ok());
    assert_eq!(
        r[1].as_ref().unwrap_err().error_type,
        "ReceiptHandleIsInvalid"
    );
    assert_eq!(sqs.counts("q").await.unwrap().in_flight, 1);
    let r = sqs
        .change_visibility("q", &[(first[0].receipt_handle.clone(), Some(5))])
        .await
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().error_type,
        "InvalidParameterValue"
    );
    sqs.delete("q", &[second[0].receipt_handle.clone()])
        .await
        .unwrap();
    assert_eq!(sqs.counts("q").await.unwrap().in_flight, 0);
}

#[tokio::test]
async fn redrive_policies_need_a_willing_dead_letter_queue_of_the_same_type() {
    let (sqs, _c, _d) = engine();
    let policy = |arn: &str| {
        attrs(&[(
            "RedrivePolicy",
            &format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":2}}"#),
        )])
    };
    let missing = sqs
        .create_queue("src", &policy(&sqs.arn("dlq")), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(missing.error_type, "InvalidAttributeValue");
    sqs.create_queue(
        "dlq",
        &attrs(&[("RedriveAllowPolicy", r#"{"redrivePermission":"denyAll"}"#)]),
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let denied = sqs
        .create_queue("src", &policy(&sqs.arn("dlq")), BTreeMap::new())
        .await
        .unwrap_err();
    assert!(denied.message.contains("RedriveAllowPolicy"), "{denied}");
    sqs.set_attributes("dlq", &attrs(&[("RedriveAllowPolicy", "")]))
        .await
        .unwrap();
    sqs.create_queue("src", &policy(&sqs.arn("dlq")), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(sqs.dead_letter_sources("dlq").await.unwrap(), ["src"]);
}
