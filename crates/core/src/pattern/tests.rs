use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn p(pattern: Value) -> Pattern {
    Pattern::from_value(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

/// The EC2 state-change event of EventBridge's user guide.
fn event() -> Value {
    json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2", "account": "111122223333",
        "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
        "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
        "detail": {
            "instance-id": "i-1234567890abcdef0", "state": "terminated",
            "c-count": 5, "d-count": 3, "x-limit": 301.8,
            "source-ip": "10.0.0.123", "tags": ["blue", "prod"],
            "owner": null, "flag": true,
            "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 7}]
        }
    })
}

#[test]
fn literals_and_nesting() {
    let e = event();
    assert!(p(json!({"source": ["aws.ec2"]})).matches(&e));
    assert!(!p(json!({"source": ["aws.s3"]})).matches(&e));
    assert!(p(json!({"source": ["aws.s3", "aws.ec2"]})).matches(&e));
    assert!(p(json!({"detail": {"state": ["terminated"], "c-count": [5]}})).matches(&e));
    assert!(
        p(json!({"detail": {"x-limit": [3.018e2]}})).matches(&e),
        "numbers compare as numbers"
    );
    assert!(p(json!({"detail": {"owner": [null], "flag": [true]}})).matches(&e));
    assert!(
        !p(json!({"detail": {"flag": ["true"]}})).matches(&e),
        "a string is not a boolean"
    );
    // An array in the event matches if any element does.
    assert!(p(json!({"detail": {"tags": ["prod"]}})).matches(&e));
    assert!(p(json!({"detail": {"items": {"qty": [7]}}})).matches(&e));
    assert!(!p(json!({"detail": {"items": {"qty": [3]}}})).matches(&e));
    // A missing field matches nothing but exists: false.
    assert!(!p(json!({"detail": {"nope": ["x"]}})).matches(&e));
    assert!(!p(json!({"detail": {"state": {"deeper": ["x"]}}})).matches(&e));
}

#[test]
fn string_filters() {
    let e = event();
    let m = |pattern: Value| p(json!({ "detail": pattern })).matches(&e);
    assert!(m(json!({"state": [{"prefix": "term"}]})));
    assert!(!m(json!({"state": [{"prefix": "Term"}]})));
    assert!(m(
        json!({"state": [{"prefix": {"equals-ignore-case": "TERM"}}]})
    ));
    assert!(m(json!({"state": [{"suffix": "ated"}]})));
    assert!(m(
        json!({"state": [{"suffix": {"equals-ignore-case": "ATED"}}]})
    ));
    assert!(m(json!({"state": [{"equals-ignore-case": "TeRmInAtEd"}]})));
    assert!(m(json!({"instance-id": [{"wildcard": "i-*abcdef0"}]})));
    assert!(m(json!({"instance-id": [{"wildcard": "i-*7*0"}]})));
    assert!(!m(json!({"instance-id": [{"wildcard": "i-*x*"}]})));
    assert!(
        !m(json!({"c-count": [{"prefix": "5"}]})),
        "prefix only matches strings"
    );
}

#[test]
fn wildcards_match_as_globs_with_escapes() {
    assert!(wildcard("*", ""));
    assert!(wildcard("a*", "abc"));
    assert!(wildcard("*c", "abc"));
    assert!(wildcard("a*b*c", "aXbYbZc"));
    assert!(!wildcard("a*b*c", "aXbYbZ"));
    assert!(wildcard(r"a\*b", "a*b"));
    assert!(!wildcard(r"a\*b", "aXb"));
    assert!(wildcard("", ""));
    assert!(!wildcard("", "a"));
}

#[test]
fn anything_but() {
    let e = event();
    let m = |pattern: Value| p(json!({ "detail": pattern })).matches(&e);
    assert!(m(json!({"state": [{"anything-but": "running"}]})));
    assert!(!m(json!({"state": [{"anything-but": "terminated"}]})));
    assert!(!m(
        json!({"state": [{"anything-but": ["stopped", "terminated"]}]})
    ));
    assert!(m(json!({"c-count": [{"anything-but": [1, 2]}]})));
    assert!(!m(json!({"c-count": [{"anything-but": 5}]})));
    assert!(
        !m(json!({"c-count": [{"anything-but": "x"}]})),
        "a number is not a string"
    );
    assert!(m(json!({"state": [{"anything-but": {"prefix": "run"}}]})));
    assert!(!m(json!({"state": [{"anything-but": {"prefix": "term"}}]})));
    assert!(!m(
        json!({"state": [{"anything-but": {"suffix": "nated"}}]})
    ));
    assert!(!m(
        json!({"state": [{"anything-but": {"equals-ignore-case": ["X", "TERMINATED"]}}]})
    ));
    assert!(!m(
        json!({"state": [{"anything-but": {"wildcard": "term*"}}]})
    ));
    assert!(m(
        json!({"state": [{"anything-but": {"wildcard": ["run*", "stop*"]}}]})
    ));
    assert!(
        !m(json!({"missing": [{"anything-but": "x"}]})),
        "needs the field"
    );
}

#[test]
fn numeric_exists_and_cidr() {
    let e = event();
    let m = |pattern: Value| p(json!({ "detail": pattern })).matches(&e);
    assert!(m(json!({"c-count": [{"numeric": [">", 0, "<=", 5]}]})));
    assert!(!m(json!({"c-count": [{"numeric": [">", 5]}]})));
    assert!(m(json!({"c-count": [{"numeric": [">=", 5]}]})));
    assert!(m(json!({"x-limit": [{"numeric": ["=", 301.8]}]})));
    assert!(m(json!({"d-count": [{"numeric": ["<", 10]}]})));
    assert!(!m(json!({"state": [{"numeric": [">", 0]}]})));
    assert!(m(json!({"state": [{"exists": true}]})));
    assert!(m(json!({"nope": [{"exists": false}]})));
    assert!(!m(json!({"state": [{"exists": false}]})));
    assert!(m(json!({"owner": [{"exists": true}]})), "null is a value");
    assert!(m(json!({"tags": [{"exists": true}]})));
    assert!(
        !m(json!({"items": [{"exists": true}]})),
        "objects are not leaves"
    );
    assert!(m(json!({"items": [{"exists": false}]})));
    assert!(m(json!({"source-ip": [{"cidr": "10.0.0.0/24"}]})));
    assert!(!m(json!({"source-ip": [{"cidr": "10.0.1.0/24"}]})));
    assert!(m(json!({"source-ip": [{"cidr": "10.0.0.120/29"}]})));
    assert!(!m(json!({"source-ip": [{"cidr": "2001:db8::/32"}]})));
    let v6 = json!({"ip": "2001:db8::1"});
    assert!(p(json!({"ip": [{"cidr": "2001:db8::/32"}]})).matches(&v6));
}

#[test]
fn or_and_all_fields() {
    let e = event();
    let or = p(json!({"source": ["aws.ec2"], "$or": [
        {"detail": {"c-count": [{"numeric": [">", 10]}]}},
        {"detail": {"d-count": [3]}}
    ]}));
    assert!(or.matches(&e));
    let neither = p(json!({"$or": [
        {"detail": {"c-count": [1]}},
        {"source": ["aws.s3"]}
    ]}));
    assert!(!neither.matches(&e));
    assert!(!p(json!({"source": ["aws.ec2"], "region": ["eu-west-1"]})).matches(&e));
}

#[test]
fn invalid_patterns_are_refused_with_a_reason() {
    let refused = |pattern: &str| Pattern::parse(pattern).unwrap_err().to_string();
    for (pattern, reason) in [
        ("[]", "must be a JSON object"),
        ("{}", "at least one field"),
        (r#"{"source": []}"#, "Empty arrays are not allowed"),
        (r#"{"source": "aws.ec2"}"#, "must be an object or an array"),
        (r#"{"source": [["x"]]}"#, "cannot be an array"),
        (
            r#"{"source": [{"prefixx": "a"}]}"#,
            "Unrecognized match type prefixx",
        ),
        (
            r#"{"source": [{"prefix": 1}]}"#,
            "prefix match pattern must be a string",
        ),
        (r#"{"n": [{"numeric": [">", "a"]}]}"#, "must be numeric"),
        (
            r#"{"n": [{"numeric": ["~", 1]}]}"#,
            "Unrecognized numeric range operator",
        ),
        (
            r#"{"n": [{"numeric": ["<", 5, ">", 1]}]}"#,
            "Bad numeric range",
        ),
        (
            r#"{"n": [{"numeric": [">", 5, "<", 1]}]}"#,
            "Bad numeric range",
        ),
        (r#"{"n": [{"exists": "yes"}]}"#, "either true or false"),
        (
            r#"{"n": [{"cidr": "10.0.0.0/33"}]}"#,
            "Nonstandard IP address",
        ),
        (r#"{"n": [{"wildcard": "a**b"}]}"#, "Consecutive wildcard"),
        (
            r#"{"n": [{"anything-but": [1, "a"]}]}"#,
            "anything but list",
        ),
        (
            r#"{"n": [{"anything-but": {"numeric": [">", 1]}}]}"#,
            "Unsupported anything-but",
        ),
        (r#"{"$or": [{"a": ["x"]}]}"#, "at least two"),
        (
            r#"{"n": [{"prefix": "a", "suffix": "b"}]}"#,
            "exactly one key",
        ),
        ("not json", "not JSON"),
    ] {
        let e = refused(pattern);
        assert!(e.starts_with("Event pattern is not valid. Reason: "), "{e}");
        assert!(e.contains(reason), "{pattern}: {e}");
    }
    let deep = format!("{}[\"x\"]{}", "{\"a\":".repeat(40), "}".repeat(40));
    assert!(refused(&deep).contains("deeper"));
    assert!(
        refused(&format!("{{\"a\": [\"{}\"]}}", "x".repeat(5000))).contains("the limit is 4096")
    );
}

/// A JSON value of a few levels, for events.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A pattern that lists, for each leaf of `event`, that leaf's own value.
fn pattern_of(event: &Value) -> Option<Value> {
    match event {
        Value::Object(m) => {
            let fields: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| pattern_of(v).map(|p| (k.clone(), p)))
                .collect();
            (!fields.is_empty()).then_some(Value::Object(fields))
        }
        Value::Array(items) => items
            .iter()
            .find(|v| !v.is_array() && !v.is_object())
            .map(|v| json!([v])),
        leaf => Some(json!([leaf])),
    }
}

proptest! {
    #[test]
    fn an_event_matches_the_pattern_of_its_own_values(event in value()) {
        if let Some(pattern) = pattern_of(&event).filter(Value::is_object) {
            let compiled = Pattern::from_value(&pattern).unwrap();
            prop_assert!(compiled.matches(&event), "{} vs {}", pattern, event);
        }
    }

    #[test]
    fn any_pattern_text_compiles_or_is_refused_and_matching_never_panics(
        text in "[\\[\\]{}\",:a-z0-9 *$.-]{0,80}",
        event in value(),
    ) {
        if let Ok(pattern) = Pattern::parse(&text) {
            let _ = pattern.matches(&event);
        }
    }
}
