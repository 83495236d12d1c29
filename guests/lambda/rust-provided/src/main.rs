//! Ordinary `lambda_runtime` handlers, as one would deploy them to AWS: a
//! buffered one, and (with `STREAM` set in the function's environment)
//! the crate's response streaming example.

use std::time::Duration;

use lambda_runtime::streaming::{channel, Body, Response};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload["fail"].as_bool() == Some(true) {
        return Err("asked to fail".into());
    }
    Ok(json!({
        "echo": payload,
        "requestId": context.request_id,
        "arn": context.invoked_function_arn,
        "function": std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
    }))
}

/// Writes each message as it is ready: the caller reads the first one
/// while the rest are still to come.
async fn streaming(_event: LambdaEvent<Value>) -> Result<Response<Body>, Error> {
    let messages = ["Hello", "world", "from", "Lambda!"];
    let (mut tx, rx) = channel();
    tokio::spawn(async move {
        for message in messages {
            tx.send_data((message.to_string() + "\n").into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(Response::from(rx))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    match std::env::var_os("STREAM") {
        Some(_) => lambda_runtime::run(service_fn(streaming)).await,
        None => lambda_runtime::run(service_fn(handler)).await,
    }
}
