//! Code blobs by sha256.

use crate::{CodeStore, StoreError};

pub async fn code(s: &dyn CodeStore) {
    let sha = s.put_code(b"abc".to_vec()).await.unwrap();
    assert_eq!(
        sha,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        std::fs::read(s.code_path(&sha).await.unwrap()).unwrap(),
        b"abc"
    );
    // Storing it again is a no-op with the same name.
    assert_eq!(s.put_code(b"abc".to_vec()).await.unwrap(), sha);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_sha = s.put_code(big.clone()).await.unwrap();
    assert_eq!(
        std::fs::read(s.code_path(&big_sha).await.unwrap()).unwrap(),
        big
    );
    for missing in [
        "0".repeat(64),
        "not-a-sha".into(),
        "../../etc/passwd".into(),
    ] {
        assert!(matches!(
            s.code_path(&missing).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
