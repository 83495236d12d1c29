//! Functions, versions, aliases, settings and routes.

use wisp_core::function::LATEST;
use wisp_core::route::Route;
use wisp_core::{Alias, FunctionConfig, FunctionVersion};

use crate::{Registry, Setting, StoreError};

/// A `$LATEST` of `name` with code `sha`.
pub fn version(name: &str, sha: &str) -> FunctionVersion {
    FunctionVersion {
        function: name.into(),
        version: LATEST.into(),
        config: FunctionConfig::new("wasm", "f.wasm"),
        code_sha256: sha.into(),
        code_size: 3,
        artifact_sha256: sha.into(),
        last_modified_ms: 1,
        revision_id: uuid::Uuid::new_v4().to_string(),
    }
}

pub fn alias(function: &str, name: &str, version: &str) -> Alias {
    Alias {
        function: function.into(),
        name: name.into(),
        version: version.into(),
        description: String::new(),
        revision_id: uuid::Uuid::new_v4().to_string(),
        additional_version_weights: Default::default(),
    }
}

/// Every check, on a store with no functions yet.
pub async fn registry(s: &dyn Registry) {
    versions_and_aliases(s).await;
    settings(s).await;
    routes(s).await;
}

async fn versions_and_aliases(s: &dyn Registry) {
    let created = version("f", "one");
    s.create_function(created.clone()).await.unwrap();
    assert!(matches!(
        s.create_function(version("f", "one")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_version("f", LATEST).await.unwrap(),
        Some(created.clone())
    );
    let v1 = s.publish_version("f", None, None).await.unwrap();
    assert_eq!(v1.version, "1");
    assert_ne!(v1.revision_id, created.revision_id);
    // Nothing changed: publishing again returns version 1.
    assert_eq!(s.publish_version("f", None, None).await.unwrap(), v1);
    assert!(matches!(
        s.update_latest(version("f", "x"), Some("stale")).await,
        Err(StoreError::PreconditionFailed(_))
    ));
    s.update_latest(version("f", "other"), Some(&created.revision_id))
        .await
        .unwrap();
    assert!(matches!(
        s.publish_version("f", None, Some("stale")).await,
        Err(StoreError::PreconditionFailed(_))
    ));
    let v2 = s
        .publish_version("f", Some("two".into()), None)
        .await
        .unwrap();
    assert_eq!(
        (v2.version.as_str(), v2.config.description.as_str()),
        ("2", "two")
    );
    assert!(matches!(
        s.update_latest(version("nope", "x"), None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.publish_version("nope", None, None).await,
        Err(StoreError::NotFound(_))
    ));

    s.create_alias(alias("f", "live", "1")).await.unwrap();
    assert!(matches!(
        s.create_alias(alias("f", "live", "2")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.delete_version("f", "1").await,
        Err(StoreError::Conflict(_))
    ));
    let live = s.get_alias("f", "live").await.unwrap().unwrap();
    let mut moved = alias("f", "live", "2");
    assert!(matches!(
        s.update_alias(moved.clone(), Some("stale")).await,
        Err(StoreError::PreconditionFailed(_))
    ));
    moved.additional_version_weights.insert("1".into(), 0.25);
    s.update_alias(moved.clone(), Some(&live.revision_id))
        .await
        .unwrap();
    assert_eq!(s.get_alias("f", "live").await.unwrap(), Some(moved));
    assert!(matches!(
        s.update_alias(alias("f", "ghost", "1"), None).await,
        Err(StoreError::NotFound(_))
    ));
    s.create_alias(alias("f", "beta", "1")).await.unwrap();
    let names: Vec<String> = s
        .list_aliases("f")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["beta", "live"]);
    s.delete_alias("f", "beta").await.unwrap();
    assert!(matches!(
        s.delete_alias("f", "beta").await,
        Err(StoreError::NotFound(_))
    ));

    // Versions 1, 2 and 3; 1 deleted; numbers are never reused.
    s.update_latest(version("f", "third"), None).await.unwrap();
    s.publish_version("f", None, None).await.unwrap();
    s.delete_version("f", "1").await.unwrap();
    assert!(matches!(
        s.delete_version("f", "1").await,
        Err(StoreError::NotFound(_))
    ));
    s.update_latest(version("f", "fourth"), None).await.unwrap();
    let names: Vec<String> = s
        .list_versions("f")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(names, [LATEST, "2", "3"]);
    assert_eq!(
        s.publish_version("f", None, None).await.unwrap().version,
        "4"
    );
    assert_eq!(
        s.get_version("f", "2")
            .await
            .unwrap()
            .unwrap()
            .config
            .description,
        "two"
    );
    assert_eq!(s.get_version("f", "1").await.unwrap(), None);

    // Many versions sort by number, not as text.
    s.create_function(version("many", "0")).await.unwrap();
    for i in 1..=11 {
        s.update_latest(version("many", &i.to_string()), None)
            .await
            .unwrap();
        s.publish_version("many", None, None).await.unwrap();
    }
    let numbers: Vec<String> = s
        .list_versions("many")
        .await
        .unwrap()
        .into_iter()
        .skip(1)
        .map(|v| v.version)
        .collect();
    let expected: Vec<String> = (1..=11).map(|i| i.to_string()).collect();
    assert_eq!(numbers, expected);

    s.create_function(version("a-first", "x")).await.unwrap();
    let latest: Vec<String> = s
        .list_latest()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.function)
        .collect();
    assert_eq!(latest, ["a-first", "f", "many"]);

    // Deleting a function takes its versions and aliases; the name can be
    // created again, from version 1.
    s.delete_function("f").await.unwrap();
    assert!(s.list_versions("f").await.unwrap().is_empty());
    assert!(s.get_alias("f", "live").await.unwrap().is_none());
    assert_eq!(s.get_version("f", "2").await.unwrap(), None);
    assert!(matches!(
        s.delete_function("f").await,
        Err(StoreError::NotFound(_))
    ));
    s.create_function(version("f", "new")).await.unwrap();
    assert_eq!(s.list_versions("f").await.unwrap().len(), 1);
    assert!(s.list_aliases("f").await.unwrap().is_empty());
    assert_eq!(
        s.publish_version("f", None, None).await.unwrap().version,
        "1"
    );
}

async fn settings(s: &dyn Registry) {
    s.create_function(version("s1", "x")).await.unwrap();
    s.create_function(version("s2", "x")).await.unwrap();
    let setting = |function: &str, qualifier: &str, kind: &str, n: i64| Setting {
        function: function.into(),
        qualifier: qualifier.into(),
        kind: kind.into(),
        value: serde_json::json!({ "n": n }),
    };
    assert!(matches!(
        s.put_setting(setting("nope", "", "concurrency", 1)).await,
        Err(StoreError::NotFound(_))
    ));
    s.put_setting(setting("s1", "", "concurrency", 1))
        .await
        .unwrap();
    s.put_setting(setting("s1", "", "concurrency", 2))
        .await
        .unwrap();
    s.put_setting(setting("s2", "", "concurrency", 3))
        .await
        .unwrap();
    s.put_setting(setting("s1", "live", "provisioned", 4))
        .await
        .unwrap();
    s.put_setting(setting("s1", "$LATEST", "provisioned", 5))
        .await
        .unwrap();
    // Qualifiers and kinds that are not plain words.
    s.put_setting(setting("s1", "0b2e.x=y", "event-source-mapping", 6))
        .await
        .unwrap();
    assert_eq!(
        s.get_setting("s1", "concurrency", "").await.unwrap(),
        Some(serde_json::json!({ "n": 2 }))
    );
    assert_eq!(
        s.get_setting("s1", "concurrency", "live").await.unwrap(),
        None
    );
    let all = s.list_settings("concurrency", None).await.unwrap();
    assert_eq!(
        all,
        [
            setting("s1", "", "concurrency", 2),
            setting("s2", "", "concurrency", 3)
        ]
    );
    let provisioned = s.list_settings("provisioned", Some("s1")).await.unwrap();
    assert_eq!(
        provisioned,
        [
            setting("s1", "$LATEST", "provisioned", 5),
            setting("s1", "live", "provisioned", 4)
        ]
    );
    assert_eq!(
        s.list_settings("event-source-mapping", None).await.unwrap(),
        [setting("s1", "0b2e.x=y", "event-source-mapping", 6)]
    );
    assert!(s.delete_setting("s1", "provisioned", "live").await.unwrap());
    assert!(!s.delete_setting("s1", "provisioned", "live").await.unwrap());
    // Settings go with their function.
    s.delete_function("s1").await.unwrap();
    assert_eq!(
        s.list_settings("concurrency", None).await.unwrap(),
        [setting("s2", "", "concurrency", 3)]
    );
    s.create_function(version("s1", "x")).await.unwrap();
    assert!(s
        .list_settings("provisioned", Some("s1"))
        .await
        .unwrap()
        .is_empty());
}

async fn routes(s: &dyn Registry) {
    let route = |path: &str, function: &str| Route {
        method: "GET".into(),
        path: path.into(),
        function: function.into(),
        payload_format: Default::default(),
        rate_limit: None,
        cache: None,
    };
    assert!(s.list_routes().await.unwrap().is_empty());
    s.replace_routes("shop", vec![route("/b", "f"), route("/a", "g")])
        .await
        .unwrap();
    s.replace_routes("blog", vec![route("/posts", "p")])
        .await
        .unwrap();
    let listed: Vec<(String, String)> = s
        .list_routes()
        .await
        .unwrap()
        .into_iter()
        .map(|(app, r)| (app, r.path))
        .collect();
    // By app, and in each app in the order given.
    assert_eq!(
        listed,
        [
            ("blog".to_string(), "/posts".to_string()),
            ("shop".into(), "/b".into()),
            ("shop".into(), "/a".into())
        ]
    );
    s.replace_routes("shop", vec![route("/c", "f")])
        .await
        .unwrap();
    s.replace_routes("blog", vec![]).await.unwrap();
    let listed: Vec<String> = s
        .list_routes()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.path)
        .collect();
    assert_eq!(listed, ["/c"]);
}
