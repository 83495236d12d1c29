//! boto3 and the AWS CLI against the Lambda and SQS APIs: the shapes
//! botocore parses, the errors it raises, exactly as SDK users see them.

use std::process::Command;

use crate::harness::{lambda_dir, repo_root, Server};

#[test]
fn boto3_and_the_aws_cli_drive_the_lambda_api() {
    run_checks("lambda_api.py");
}

#[test]
fn boto3_and_the_aws_cli_drive_the_sqs_api() {
    run_checks("sqs_api.py");
}

#[test]
fn boto3_and_the_aws_cli_drive_the_eventbridge_api() {
    run_checks("events_api.py");
}

/// EventBridge Scheduler's API and scheduled rules, ticks fired included.
#[test]
fn boto3_and_the_aws_cli_drive_the_scheduler_api() {
    run_checks("scheduler_api.py");
}

/// Step Functions: definitions, state machines, EXPRESS executions.
#[test]
fn boto3_and_the_aws_cli_drive_step_functions() {
    run_checks("states_api.py");
}

/// Response streaming (InvokeWithResponseStream and the gateway),
/// function URLs and layers.
#[test]
fn boto3_and_the_aws_cli_drive_lambda_parity() {
    run_checks("lambda_parity.py");
}

/// Runs one of the `tests/py` check scripts against a fresh server.
fn run_checks(script: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let script = repo_root().join("crates/cli/tests/py").join(script);
    let out = Command::new("python3")
        .arg(&script)
        .env("WISP_API", &server.api)
        .env("WISP_GATEWAY", &server.gateway)
        .env("AWS_ACCESS_KEY_ID", &server.credentials.access_key_id)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            &server.credentials.secret_access_key,
        )
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("WISP_FIXTURES", lambda_dir(""))
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", tmp.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            tmp.path().join("no-aws-credentials"),
        )
        .output()
        .expect("python3 runs (boto3 and awscli come from `pip install boto3 awscli`)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the boto3/AWS CLI checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
