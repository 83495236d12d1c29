//! Workflows through the real binary: STANDARD executions carry on across
//! kill -9 from their last committed step.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    function_logs, lambda_body, lambda_dir, repo_root, wait_until, zip_dir, Server,
};

const REGION_ACCOUNT: &str = "us-east-1:000000000000";

fn history(server: &Server, arn: &str) -> Vec<Value> {
    let (status, v) = server.states(
        "GetExecutionHistory",
        &json!({"executionArn": arn, "maxResults": 1000}),
    );
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().unwrap().clone()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

fn status(server: &Server, arn: &str) -> Value {
    let (status, v) = server.states("DescribeExecution", &json!({"executionArn": arn}));
    assert_eq!(status, 200, "{v}");
    v
}

/// kill -9 while a Lambda task runs, and again while a Wait waits: the
/// task runs again after the restart (the history shows it started
/// twice), the Wait ends on time though nothing ran meanwhile, and each
/// step after is done once.
#[test]
fn a_standard_execution_survives_kill_9_in_a_task_and_in_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let marks = dir.path().join("marks");
    let server = Server::start(&data);
    let zip = zip_dir(&lambda_dir("node-kit"));
    let mut body = lambda_body("kit", "nodejs20.x", "index.handler", &zip);
    body["Timeout"] = json!(60);
    let (code, v) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(code, 201, "{v}");
    let (code, v) = server.sqs("CreateQueue", &json!({"QueueName": "done"}));
    assert_eq!(code, 200, "{v}");
    let url = v["QueueUrl"].as_str().unwrap().to_string();
    let definition = json!({
        "StartAt": "Mark",
        "States": {
            "Mark": {
                "Type": "Task",
                "Resource": format!("arn:aws:lambda:{REGION_ACCOUNT}:function:kit"),
                "Parameters": {"action": "mark", "file": marks, "n.$": "$.n", "ms": 4000},
                "ResultPath": null,
                "Next": "Nap"
            },
            "Nap": {"Type": "Wait", "Seconds": 6, "Next": "Note"},
            "Note": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": url, "MessageBody.$": "States.Format('done {}', $.n)"},
                "End": true
            }
        }
    });
    let (code, v) = server.states(
        "CreateStateMachine",
        &json!({"name": "durable", "definition": definition.to_string(),
                "roleArn": "arn:aws:iam::000000000000:role/states"}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.states(
        "StartExecution",
        &json!({"stateMachineArn": v["stateMachineArn"], "name": "one", "input": r#"{"n": 1}"#}),
    );
    assert_eq!(code, 200, "{v}");
    let arn = v["executionArn"].as_str().unwrap().to_string();
    let runs = || {
        std::fs::read_to_string(&marks)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    wait_until("the task under way", Duration::from_secs(30), || {
        (runs() == 1).then_some(())
    });
    server.kill9();

    // Back up: the task in flight runs again, then the Wait begins.
    let server = Server::start(&data);
    wait_until("the task run again", Duration::from_secs(40), || {
        (runs() == 2).then_some(())
    });
    wait_until("the Wait entered", Duration::from_secs(30), || {
        types(&history(&server, &arn))
            .contains(&"WaitStateEntered".to_string())
            .then_some(())
    });
    assert_eq!(status(&server, &arn)["status"], "RUNNING");
    server.kill9();
    // The Wait ends while nothing runs.
    std::thread::sleep(Duration::from_secs(7));
    let server = Server::start(&data);
    let done = wait_until("the execution done", Duration::from_secs(40), || {
        let v = status(&server, &arn);
        (v["status"] != "RUNNING").then_some(v)
    });
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let (code, v) = server.sqs(
        "ReceiveMessage",
        &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 2}),
    );
    assert_eq!(code, 200, "{v}");
    let bodies: Vec<&str> = v["Messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["Body"].as_str().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(bodies, ["done 1"], "the step after the Wait ran once");
    assert_eq!(runs(), 2, "the task ran twice: before the crash and after");
    let events = history(&server, &arn);
    assert_eq!(
        types(&events),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "WaitStateEntered",
            "WaitStateExited",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
}

fn output_of(out: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A participant of the example's two-phase commit, as its README runs
/// it.
fn participant(server: &Server, queue: &str, vote: &str) -> std::process::Child {
    std::process::Command::new("python3")
        .arg(repo_root().join("examples/travel/participant.py"))
        .args([queue, "--vote", vote, "--data-dir"])
        .arg(&server.data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3 runs the participant")
}

/// Reads a participant's lines until one containing `want`.
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    want: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains(want);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("the participant stopped before `{want}`: {seen:?}");
}

/// examples/travel as its README runs it: the saga books a trip, and when
/// the car cannot be had cancels the hotel and the flight; the two-phase
/// commit commits when both participants vote yes and tells both to abort
/// when one votes no.
#[test]
fn the_travel_example_books_compensates_commits_and_aborts() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let app = repo_root().join("examples/travel");
    let (ok, out) = output_of(&server.cli(&["deploy", app.to_str().unwrap()]));
    assert!(ok, "{out}");
    assert!(
        out.contains("workflow book-trip created (STANDARD)"),
        "{out}"
    );

    let (ok, out) = output_of(&server.cli(&["start", "book-trip", "--input", r#"{"trip": "t1"}"#]));
    assert!(ok, "{out}");
    for part in ["flight-t1-", "hotel-t1-", "car-t1-"] {
        assert!(out.contains(part), "{part}: {out}");
    }
    let (ok, out) = output_of(&server.cli(&[
        "start",
        "book-trip",
        "--input",
        r#"{"trip": "t2", "unavailable": "car"}"#,
    ]));
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED: Unavailable"), "{out}");
    let (ok, listed) = output_of(&server.cli(&["executions", "book-trip", "--status", "failed"]));
    assert!(ok, "{listed}");
    let arn = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_string();
    let (ok, timeline) = output_of(&server.cli(&["history", &arn]));
    assert!(ok, "{timeline}");
    let states: Vec<&str> = timeline
        .lines()
        .filter(|l| l.contains("StateEntered"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        states,
        [
            "ReserveFlight",
            "ReserveHotel",
            "ReserveCar",
            "CancelHotel",
            "CancelFlight",
            "TripFailed"
        ],
        "{timeline}"
    );
    let cancelled = function_logs(&server, "cancel");
    assert!(
        cancelled.iter().any(|l| l.contains("cancelled hotel-t2-"))
            && cancelled.iter().any(|l| l.contains("cancelled flight-t2-")),
        "{cancelled:?}"
    );

    let mut bank = participant(&server, "bank", "yes");
    let mut ledger = participant(&server, "ledger", "yes");
    let mut bank_lines = std::io::BufReader::new(bank.stdout.take().unwrap()).lines();
    let mut ledger_lines = std::io::BufReader::new(ledger.stdout.take().unwrap()).lines();
    let input = r#"{"txn": "tx1", "amount": 10, "participants": ["bank", "ledger"]}"#;
    let (ok, out) = output_of(&server.cli(&["start", "transfer", "--input", input]));
    assert!(ok, "{out}");
    assert!(out.contains(r#""outcome":"committed""#), "{out}");
    read_until(&mut bank_lines, "tx1 committed");
    read_until(&mut ledger_lines, "tx1 committed");

    ledger.kill().unwrap();
    let _ = ledger.wait();
    let mut refusing = participant(&server, "ledger", "no");
    let mut refusing_lines = std::io::BufReader::new(refusing.stdout.take().unwrap()).lines();
    let input = r#"{"txn": "tx2", "amount": 99, "participants": ["bank", "ledger"]}"#;
    let (ok, out) = output_of(&server.cli(&["start", "transfer", "--input", input]));
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED: Participant.VotedNo"), "{out}");
    let said = read_until(&mut bank_lines, "tx2 aborted");
    assert!(said.iter().any(|l| l.contains("tx2 prepared")), "{said:?}");
    read_until(&mut refusing_lines, "tx2 aborted");
    for mut p in [bank, refusing] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// An EXPRESS machine's executions go to the logs as its
/// loggingConfiguration asks: `wisp logs <machine>` prints each history
/// event as a JSON line (ALL), or only the failures (ERROR), without
/// the data unless includeExecutionData.
#[test]
fn express_executions_log_their_history_by_level() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let group = json!([{"cloudWatchLogsLogGroup": {"logGroupArn":
        "arn:aws:logs:us-east-1:000000000000:log-group:/aws/vendedlogs/states/x:*"}}]);
    let definition = json!({"StartAt": "Shape", "States": {
        "Shape": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}],
            "Default": "Small"},
        "Big": {"Type": "Succeed"},
        "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "n is 1 or less"}}});
    for (name, level, data) in [("logs-all", "ALL", true), ("logs-errors", "ERROR", false)] {
        let (code, v) = server.states(
            "CreateStateMachine",
            &json!({"name": name, "type": "EXPRESS", "roleArn": "arn:aws:iam::000000000000:role/x",
                "definition": definition.to_string(),
                "loggingConfiguration": {"level": level, "includeExecutionData": data, "destinations": group}}),
        );
        assert_eq!(code, 200, "{v}");
        for n in [5, 0] {
            let arn = format!("arn:aws:states:{REGION_ACCOUNT}:stateMachine:{name}");
            let (code, v) = server.states(
                "StartSyncExecution",
                &json!({"stateMachineArn": arn, "input": json!({"n": n}).to_string()}),
            );
            assert_eq!(code, 200, "{v}");
        }
    }
    let lines = |name: &str, ends: usize| -> Vec<Value> {
        wait_until("the executions in the log", Duration::from_secs(10), || {
            let out = server.cli(&["logs", name]);
            let found: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok()))
                .collect();
            let ended = |e: &&Value| {
                e["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Execution") && t != "ExecutionStarted")
            };
            (found.iter().filter(ended).count() >= ends).then_some(found)
        })
    };
    let all = lines("logs-all", 2);
    let kinds: Vec<&str> = all.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "ChoiceStateEntered",
        "SucceedStateEntered",
        "ExecutionSucceeded",
        "FailStateEntered",
        "ExecutionFailed",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let started = all
        .iter()
        .find(|e| e["type"] == "ExecutionStarted")
        .unwrap();
    assert_eq!(started["id"], "1");
    assert_eq!(started["previous_event_id"], "0");
    assert!(started["execution_arn"]
        .as_str()
        .unwrap()
        .contains(":express:logs-all:"));
    assert_eq!(started["details"]["input"], "{\"n\":5}", "{started}");
    let failed = all.iter().find(|e| e["type"] == "ExecutionFailed").unwrap();
    assert_eq!(failed["details"]["error"], "TooSmall");

    let errors = lines("logs-errors", 1);
    let kinds: Vec<&str> = errors.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.iter().all(|k| k.ends_with("Failed")), "{kinds:?}");
    assert!(kinds.contains(&"ExecutionFailed"), "{kinds:?}");

    let (code, v) = server.states(
        "CreateStateMachine",
        &json!({"name": "logs-bad", "type": "EXPRESS", "roleArn": "arn:aws:iam::000000000000:role/x",
            "definition": definition.to_string(), "loggingConfiguration": {"level": "ALL"}}),
    );
    assert_eq!(
        (code, v["__type"].as_str()),
        (400, Some("InvalidLoggingConfiguration")),
        "{v}"
    );
}
