//! Task tokens and the Tasks that wait for one: `.waitForTaskToken`
//! integrations, activities, and `states:startExecution.sync` (a child
//! execution answers its parent's token when it ends). A token names its
//! execution and carries 128 random bits: unguessable, and good for the
//! one attempt it was made for.

use base64::Engine as _;

/// How a Task waits for its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// `<integration>.waitForTaskToken`: make the request, then wait for
    /// SendTaskSuccess or SendTaskFailure.
    Token,
    /// An activity: a worker takes it with GetActivityTask.
    Activity(String),
    /// `states:startExecution.sync` (`v2`: `.sync:2`, output as JSON).
    Child { v2: bool },
}

/// The suffix of a callback integration.
pub const WAIT_FOR_TOKEN: &str = ".waitForTaskToken";

/// The activity an ARN names.
pub fn activity_of(resource: &str) -> Option<&str> {
    let parts: Vec<&str> = resource.split(':').collect();
    match parts[..] {
        ["arn", _, "states", _, _, "activity", name] if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// How a Task's resource waits, if it does.
pub fn callback_of(resource: &str) -> Option<Callback> {
    if let Some(name) = activity_of(resource) {
        return Some(Callback::Activity(name.to_string()));
    }
    match resource.strip_prefix("arn:aws:states:::")? {
        "states:startExecution.sync" => Some(Callback::Child { v2: false }),
        "states:startExecution.sync:2" => Some(Callback::Child { v2: true }),
        other if other.ends_with(WAIT_FOR_TOKEN) => Some(Callback::Token),
        _ => None,
    }
}

/// A new token for a Task of execution `name` of `machine`.
pub fn new_token(machine: &str, name: &str) -> String {
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let raw = serde_json::json!([machine, name, secret]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The machine and execution a token names; `None` if it is not one.
pub fn token_of(token: &str) -> Option<(String, String)> {
    if token.is_empty() || token.len() > 1024 {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let (machine, name, _secret): (String, String, String) = serde_json::from_slice(&raw).ok()?;
    Some((machine, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_execution_and_differ_each_time() {
        let a = new_token("orders", "run-1");
        let b = new_token("orders", "run-1");
        assert_ne!(a, b);
        assert_eq!(token_of(&a), Some(("orders".into(), "run-1".into())));
        assert!(a.len() <= 1024);
        for bad in ["", "not a token", "W10", &"x".repeat(2000)] {
            assert_eq!(token_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn resources_say_how_they_wait() {
        assert_eq!(
            callback_of("arn:aws:states:::sqs:sendMessage.waitForTaskToken"),
            Some(Callback::Token)
        );
        assert_eq!(
            callback_of("arn:aws:states:us-east-1:000000000000:activity:review"),
            Some(Callback::Activity("review".into()))
        );
        assert_eq!(
            callback_of("arn:aws:states:::states:startExecution.sync:2"),
            Some(Callback::Child { v2: true })
        );
        assert_eq!(callback_of("arn:aws:states:::sqs:sendMessage"), None);
        assert_eq!(
            callback_of("arn:aws:lambda:us-east-1:000000000000:function:f"),
            None
        );
    }
}
