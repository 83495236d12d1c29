//! Documents: create, compare-and-set updates, listing by prefix in name
//! order, deletion, kinds apart, awkward names.

use serde_json::json;

use crate::{DocumentStore, StoreError};

/// On a store with no documents yet.
pub async fn documents<S: DocumentStore + ?Sized>(s: &S) {
    let r1 = s
        .create_document("rule", "bus/a", &json!({"n": 1}))
        .await
        .unwrap();
    assert!(matches!(
        s.create_document("rule", "bus/a", &json!({"n": 2})).await,
        Err(StoreError::Conflict(_))
    ));
    // The same name in another kind is another document.
    s.create_document("bus", "bus/a", &json!("other"))
        .await
        .unwrap();
    let got = s.get_document("rule", "bus/a").await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (json!({"n": 1}), r1));

    // Compare-and-set: the first update at a revision wins.
    let r2 = s
        .update_document("rule", "bus/a", &json!({"n": 2}), r1)
        .await
        .unwrap();
    assert_ne!(r1, r2);
    assert!(matches!(
        s.update_document("rule", "bus/a", &json!({"n": 3}), r1)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.update_document("rule", "nope", &json!(1), r2).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.get_document("rule", "bus/a")
            .await
            .unwrap()
            .unwrap()
            .value,
        json!({"n": 2})
    );

    // Listing: by prefix, in name order, odd names intact.
    let odd = "bus/x.y-z_é ünï*>";
    for name in ["bus/c", "bus/b", odd, "other/a", "bus2/a"] {
        s.create_document("rule", name, &json!(name)).await.unwrap();
    }
    let names = |docs: Vec<crate::Document>| docs.into_iter().map(|d| d.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_documents("rule", "bus/").await.unwrap()),
        ["bus/a", "bus/b", "bus/c", odd]
    );
    assert_eq!(s.list_documents("rule", "").await.unwrap().len(), 6);
    assert_eq!(
        s.get_document("rule", odd).await.unwrap().unwrap().value,
        json!(odd)
    );

    // Deletion; the name can be taken again.
    assert!(s.delete_document("rule", "bus/b").await.unwrap());
    assert!(!s.delete_document("rule", "bus/b").await.unwrap());
    assert!(s.get_document("rule", "bus/b").await.unwrap().is_none());
    s.create_document("rule", "bus/b", &json!("again"))
        .await
        .unwrap();
    assert_eq!(
        s.get_document("rule", "bus/b")
            .await
            .unwrap()
            .unwrap()
            .value,
        json!("again")
    );
    assert!(s.get_document("bus", "bus/b").await.unwrap().is_none());
}
