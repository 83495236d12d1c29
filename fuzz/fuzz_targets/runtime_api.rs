//! The Runtime API as a function's process speaks it: any method and path
//! decode to a call, and any error post to an error within its bounds.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wisp_core::limits::MAX_ERROR_MESSAGE_BYTES;
use wisp_core::runtime_api::{Call, ErrorDocument};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a str,
    path: &'a str,
    error_type: Option<&'a str>,
    body: &'a [u8],
}

fuzz_target!(|input: Input| {
    match Call::parse(input.method, input.path) {
        Call::Response { request_id } | Call::Error { request_id } => {
            assert!(!request_id.contains('/'));
        }
        Call::Next | Call::InitError | Call::Unknown => {}
    }
    let doc = ErrorDocument::parse(input.error_type, input.body);
    assert!(doc.message.len() <= MAX_ERROR_MESSAGE_BYTES);
    assert!(!doc.error_type.is_empty());
});
