use super::*;

fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const DLQ: &str = "arn:aws:sqs:us-east-1:000000000000:orders-dlq";

#[test]
fn defaults_are_sqs_defaults() {
    let a = QueueAttributes::create("orders", &BTreeMap::new()).unwrap();
    let m = a.to_map();
    assert_eq!(m["VisibilityTimeout"], "30");
    assert_eq!(m["MaximumMessageSize"], "1048576");
    assert_eq!(m["MessageRetentionPeriod"], "345600");
    assert_eq!(m["DelaySeconds"], "0");
    assert_eq!(m["ReceiveMessageWaitTimeSeconds"], "0");
    assert!(!m.contains_key("FifoQueue"));
}

#[test]
fn each_bound_holds_at_its_ends() {
    for (name, min, max) in BOUNDS {
        let ok = |v: u64| QueueAttributes::create("q", &given(&[(name, &v.to_string())]));
        assert!(ok(u64::from(min)).is_ok(), "{name} {min}");
        assert!(ok(u64::from(max)).is_ok(), "{name} {max}");
        let over = ok(u64::from(max) + 1).unwrap_err();
        assert_eq!(over.code, "InvalidAttributeValue");
        assert_eq!(
            over.message,
            format!("Invalid value for the parameter {name}.")
        );
        if min > 0 {
            assert!(ok(u64::from(min) - 1).is_err(), "{name} below {min}");
        }
    }
    assert!(QueueAttributes::create("q", &given(&[("VisibilityTimeout", "x")])).is_err());
    assert!(QueueAttributes::create("q", &given(&[("VisibilityTimeout", "-1")])).is_err());
}

#[test]
fn names_and_fifo_agree() {
    assert!(check_queue_name(&"a".repeat(80), false).is_ok());
    assert!(check_queue_name(&"a".repeat(81), false).is_err());
    assert!(check_queue_name("a.b", false).is_err());
    assert!(check_queue_name("", false).is_err());
    assert!(
        check_queue_name("orders.fifo", false).is_err(),
        "the suffix is for FIFO queues"
    );
    assert!(check_queue_name("orders", true).is_err());
    assert!(check_queue_name(&format!("{}.fifo", "a".repeat(75)), true).is_ok());
    assert!(check_queue_name(&format!("{}.fifo", "a".repeat(76)), true).is_err());
    let fifo = QueueAttributes::create(
        "o.fifo",
        &given(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]),
    )
    .unwrap();
    assert_eq!(fifo.to_map()["FifoQueue"], "true");
    assert_eq!(fifo.to_map()["DeduplicationScope"], "queue");
    let e =
        QueueAttributes::create("o", &given(&[("ContentBasedDeduplication", "true")])).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            "InvalidAttributeName",
            "Unknown Attribute ContentBasedDeduplication."
        )
    );
    assert_eq!(
        QueueAttributes::create("o.fifo", &BTreeMap::new())
            .unwrap_err()
            .code,
        "InvalidParameterValue"
    );
    let e = QueueAttributes::create(
        "o.fifo",
        &given(&[
            ("FifoQueue", "true"),
            ("FifoThroughputLimit", "perMessageGroupId"),
        ]),
    )
    .unwrap_err();
    assert!(e.message.contains("messageGroup"), "{e}");
    assert!(QueueAttributes::create(
        "o.fifo",
        &given(&[
            ("FifoQueue", "true"),
            ("FifoThroughputLimit", "perMessageGroupId"),
            ("DeduplicationScope", "messageGroup")
        ])
    )
    .is_ok());
}

#[test]
fn set_changes_what_may_change() {
    let mut a = QueueAttributes::create("q", &BTreeMap::new()).unwrap();
    a.set(&given(&[("VisibilityTimeout", "60")])).unwrap();
    assert_eq!(a.visibility_timeout, 60);
    assert!(a.set(&given(&[("FifoQueue", "true")])).is_err());
    // A refused set changes nothing, not even the valid parts.
    assert!(a
        .set(&given(&[
            ("DelaySeconds", "5"),
            ("VisibilityTimeout", "99999")
        ]))
        .is_err());
    assert_eq!((a.delay_seconds, a.visibility_timeout), (0, 60));
    assert_eq!(
        a.set(&given(&[("Colour", "blue")])).unwrap_err().code,
        "InvalidAttributeName"
    );
}

#[test]
fn redrive_policies() {
    let policy = format!(r#"{{"deadLetterTargetArn":"{DLQ}","maxReceiveCount":"3"}}"#);
    let a = QueueAttributes::create("q", &given(&[("RedrivePolicy", &policy)])).unwrap();
    assert_eq!(
        a.redrive_policy,
        Some(RedrivePolicy {
            dead_letter_target_arn: DLQ.into(),
            max_receive_count: 3
        })
    );
    assert_eq!(
        a.to_map()["RedrivePolicy"],
        format!(r#"{{"deadLetterTargetArn":"{DLQ}","maxReceiveCount":3}}"#)
    );
    for bad in [
        format!(r#"{{"deadLetterTargetArn":"{DLQ}","maxReceiveCount":0}}"#),
        format!(r#"{{"deadLetterTargetArn":"{DLQ}","maxReceiveCount":1001}}"#),
        format!(r#"{{"deadLetterTargetArn":"{DLQ}"}}"#),
        r#"{"deadLetterTargetArn":"not-an-arn","maxReceiveCount":3}"#.to_string(),
        "{".to_string(),
    ] {
        let e = QueueAttributes::create("q", &given(&[("RedrivePolicy", &bad)])).unwrap_err();
        assert_eq!(e.code, "InvalidAttributeValue", "{bad}");
    }
    let allow = format!(r#"{{"redrivePermission":"byQueue","sourceQueueArns":["{DLQ}"]}}"#);
    let a = QueueAttributes::create("q", &given(&[("RedriveAllowPolicy", &allow)])).unwrap();
    assert_eq!(
        a.redrive_allow_policy,
        Some(RedriveAllow::ByQueue(vec![DLQ.into()]))
    );
    for bad in [
        r#"{"redrivePermission":"byQueue"}"#.to_string(),
        format!(r#"{{"redrivePermission":"allowAll","sourceQueueArns":["{DLQ}"]}}"#),
        r#"{"redrivePermission":"some"}"#.to_string(),
        format!(
            r#"{{"redrivePermission":"byQueue","sourceQueueArns":[{}]}}"#,
            vec![format!("\"{DLQ}\""); 11].join(",")
        ),
    ] {
        assert!(
            QueueAttributes::create("q", &given(&[("RedriveAllowPolicy", &bad)])).is_err(),
            "{bad}"
        );
    }
}
