//! What a function's process sends to the Lambda Runtime API
//! (`/2018-06-01/runtime/...`), decoded: which call a request is, and the
//! error document it posts. The process is the guest: everything here is
//! outside input, and a decode never fails, it falls back.

use crate::limits::MAX_ERROR_MESSAGE_BYTES;
use crate::text;

/// The path prefix of every Runtime API call.
pub const PREFIX: &str = "/2018-06-01/runtime/";

/// The error type when the process names none (Lambda's).
pub const UNHANDLED: &str = "Unhandled";

/// Longest error type kept; Lambda's are short names like `Runtime.ImportModuleError`.
const MAX_ERROR_TYPE_BYTES: usize = 256;

/// One Runtime API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<'a> {
    /// `GET invocation/next`: the process waits for an event.
    Next,
    /// `POST invocation/{id}/response`: the result of `id`.
    Response { request_id: &'a str },
    /// `POST invocation/{id}/error`: `id` failed.
    Error { request_id: &'a str },
    /// `POST init/error`: the process could not start.
    InitError,
    /// Anything else (404).
    Unknown,
}

impl<'a> Call<'a> {
    /// The call a request's method and path make.
    pub fn parse(method: &str, path: &'a str) -> Call<'a> {
        let Some(route) = path.strip_prefix(PREFIX) else {
            return Call::Unknown;
        };
        let mut parts = route.split('/');
        let parts = [parts.next(), parts.next(), parts.next(), parts.next()];
        match (method, parts) {
            ("GET", [Some("invocation"), Some("next"), None, None]) => Call::Next,
            ("POST", [Some("invocation"), Some(id), Some("response"), None]) => {
                Call::Response { request_id: id }
            }
            ("POST", [Some("invocation"), Some(id), Some("error"), None]) => {
                Call::Error { request_id: id }
            }
            ("POST", [Some("init"), Some("error"), None, None]) => Call::InitError,
            _ => Call::Unknown,
        }
    }
}

/// A posted error: its type (from the `Lambda-Runtime-Function-Error-Type`
/// header, else the document's `errorType`, else `Unhandled`) and its
/// message, both cut on a character boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDocument {
    pub error_type: String,
    pub message: String,
}

impl ErrorDocument {
    /// Reads an error post. Whatever the body is (not JSON, not an object,
    /// huge), the result is a usable error.
    pub fn parse(header_type: Option<&str>, body: &[u8]) -> ErrorDocument {
        let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let error_type = header_type
            .filter(|t| !t.is_empty())
            .or_else(|| doc["errorType"].as_str().filter(|t| !t.is_empty()))
            .unwrap_or(UNHANDLED);
        let message = doc["errorMessage"].as_str().unwrap_or("");
        ErrorDocument {
            error_type: text::cut(error_type, MAX_ERROR_TYPE_BYTES).to_string(),
            message: text::cut(message, MAX_ERROR_MESSAGE_BYTES).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn calls_are_told_apart() {
        let p = |m, path| Call::parse(m, path);
        assert_eq!(p("GET", "/2018-06-01/runtime/invocation/next"), Call::Next);
        assert_eq!(
            p("POST", "/2018-06-01/runtime/invocation/abc/response"),
            Call::Response { request_id: "abc" }
        );
        assert_eq!(
            p("POST", "/2018-06-01/runtime/invocation/abc/error"),
            Call::Error { request_id: "abc" }
        );
        assert_eq!(p("POST", "/2018-06-01/runtime/init/error"), Call::InitError);
        for (m, path) in [
            ("POST", "/2018-06-01/runtime/invocation/next"),
            ("GET", "/2018-06-01/runtime/invocation/abc/response"),
            ("POST", "/2018-06-01/runtime/invocation/abc/response/x"),
            ("GET", "/2018-06-01/runtime/invocation/next/"),
            ("GET", "/runtime/invocation/next"),
        ] {
            assert_eq!(p(m, path), Call::Unknown, "{m} {path}");
        }
    }

    #[test]
    fn an_error_message_is_cut_on_a_character_boundary() {
        // The message from issue 23: a 2-byte character across byte 2048.
        let message = format!("{}é", "a".repeat(2047));
        let body = serde_json::json!({ "errorMessage": message, "errorType": "Error" });
        let doc = ErrorDocument::parse(None, body.to_string().as_bytes());
        assert_eq!(doc.error_type, "Error");
        assert_eq!(doc.message, "a".repeat(2047));
    }

    #[test]
    fn the_header_names_the_type_and_garbage_is_unhandled() {
        let doc = ErrorDocument::parse(Some("Runtime.Custom"), br#"{"errorType":"Other"}"#);
        assert_eq!(doc.error_type, "Runtime.Custom");
        let doc = ErrorDocument::parse(Some(""), b"not json");
        assert_eq!(
            (doc.error_type.as_str(), doc.message.as_str()),
            ("Unhandled", "")
        );
        let doc = ErrorDocument::parse(None, br#"[1,2]"#);
        assert_eq!(doc.error_type, "Unhandled");
    }

    proptest! {
        #[test]
        fn any_error_post_decodes_within_its_bounds(
            message in "\\PC{0,3000}",
            header in proptest::option::of("\\PC{0,300}"),
        ) {
            let body = serde_json::json!({ "errorMessage": message });
            let doc = ErrorDocument::parse(header.as_deref(), body.to_string().as_bytes());
            prop_assert!(doc.message.len() <= MAX_ERROR_MESSAGE_BYTES);
            prop_assert!(message.starts_with(&doc.message));
            prop_assert!(doc.error_type.len() <= MAX_ERROR_TYPE_BYTES);
        }
    }
}
