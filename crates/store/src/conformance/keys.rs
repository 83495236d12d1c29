//! Idempotency keys: claims, results, release, expiry.

use crate::{Claim, KeyOutcome, KeyStore, Registry};

/// On a store with no functions yet.
pub async fn keys<S: Registry + KeyStore + ?Sized>(s: &S) {
    for f in ["f", "g"] {
        s.create_function(super::registry::version(f, "x"))
            .await
            .unwrap();
    }
    assert_eq!(s.key_holder("f", "k", 0).await.unwrap(), None);
    assert_eq!(
        s.claim_key("f", "k", "a", 0, 1000).await.unwrap(),
        Claim::Claimed
    );
    let running = Claim::Running {
        request_id: "a".into(),
    };
    assert_eq!(s.claim_key("f", "k", "b", 10, 1000).await.unwrap(), running);
    assert_eq!(s.key_holder("f", "k", 10).await.unwrap(), Some(running));
    // Keys are per function.
    assert_eq!(
        s.claim_key("g", "k", "c", 10, 1000).await.unwrap(),
        Claim::Claimed
    );
    // Only the holder releases.
    s.finish_key("f", "k", "b", KeyOutcome::Release)
        .await
        .unwrap();
    assert!(matches!(
        s.claim_key("f", "k", "b", 20, 1000).await.unwrap(),
        Claim::Running { .. }
    ));
    s.finish_key("f", "k", "a", KeyOutcome::Release)
        .await
        .unwrap();
    assert_eq!(
        s.claim_key("f", "k", "b", 30, 1000).await.unwrap(),
        Claim::Claimed
    );
    s.finish_key(
        "f",
        "k",
        "b",
        KeyOutcome::Done {
            result: vec![0, 159, 146, 150],
            expires_ms: 2000,
        },
    )
    .await
    .unwrap();
    let done = Claim::Done {
        request_id: "b".into(),
        result: vec![0, 159, 146, 150],
    };
    assert_eq!(s.claim_key("f", "k", "z", 1500, 3000).await.unwrap(), done);
    // A release after the run finished changes nothing.
    s.finish_key("f", "k", "b", KeyOutcome::Release)
        .await
        .unwrap();
    assert_eq!(
        s.key_holder("f", "k", 1999).await.unwrap(),
        Some(done.clone())
    );
    // A purge leaves what has not expired; expired, the key is free
    // again (a backend purges it, or the server drops it by its TTL).
    assert_eq!(s.purge_keys(1999).await.unwrap(), 0);
    assert_eq!(s.key_holder("f", "k", 1999).await.unwrap(), Some(done));
    assert_eq!(s.key_holder("f", "k", 2000).await.unwrap(), None);
    assert!(s.purge_keys(2000).await.unwrap() <= 1);
    assert_eq!(
        s.claim_key("f", "k", "y", 2001, 3000).await.unwrap(),
        Claim::Claimed
    );
    // A running claim is not purged, even past its time.
    assert_eq!(s.purge_keys(10_000).await.unwrap(), 0);
    // Odd keys: long, dotted, empty, non-ASCII, each its own.
    let long = "x".repeat(5000);
    for k in [long.as_str(), "a.b", "", "ключ", "a b/c*>"] {
        assert_eq!(
            s.claim_key("f", k, "r", 0, 1000).await.unwrap(),
            Claim::Claimed,
            "{k}"
        );
    }
    assert_eq!(
        s.claim_key("f", "a.c", "r", 0, 1000).await.unwrap(),
        Claim::Claimed
    );
}

/// Keys go with their function.
pub async fn keys_go_with_their_function<S: Registry + KeyStore + ?Sized>(s: &S) {
    s.create_function(super::registry::version("short-lived", "x"))
        .await
        .unwrap();
    assert_eq!(
        s.claim_key("short-lived", "k", "a", 0, 1000).await.unwrap(),
        Claim::Claimed
    );
    s.delete_function("short-lived").await.unwrap();
    s.create_function(super::registry::version("short-lived", "x"))
        .await
        .unwrap();
    assert_eq!(s.key_holder("short-lived", "k", 10).await.unwrap(), None);
}
