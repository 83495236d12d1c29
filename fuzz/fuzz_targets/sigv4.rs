//! SigV4: any Authorization and X-Amz-Date headers, path, query and body
//! are verified to an error or a success without panicking; and whatever
//! the path, query and body, a request wisp signs verifies (the signer
//! and verifier share the canonical request, so they must agree).
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wisp_aws::sigv4::{self, Credentials};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    authorization: &'a [u8],
    date: &'a [u8],
    extra: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    now: i64,
}

const NOW: i64 = 1_790_000_000;

fuzz_target!(|input: Input| {
    let credentials = Credentials {
        access_key_id: "AKIDFUZZ".into(),
        secret_access_key: "secret".into(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in input.extra.iter().take(16) {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(*name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    headers.insert("host", HeaderValue::from_static("127.0.0.1:9070"));
    let mut hostile = headers.clone();
    if let Ok(v) = HeaderValue::from_bytes(input.authorization) {
        hostile.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(input.date) {
        hostile.insert("x-amz-date", v);
    }
    let _ = sigv4::verify(
        &credentials,
        input.method,
        input.path,
        input.query,
        &hostile,
        input.body,
        input.now,
    );

    // What the CLI signs, the API accepts. Methods and paths are what a
    // real request line can carry.
    let method = if input.method.is_empty() || !input.method.bytes().all(|b| b.is_ascii_uppercase()) {
        "POST"
    } else {
        input.method
    };
    if http::uri::PathAndQuery::try_from(format!("/{}?{}", input.path, input.query)).is_err() {
        return;
    }
    let path = format!("/{}", input.path);
    sigv4::sign(
        &credentials,
        method,
        &path,
        input.query,
        &mut headers,
        input.body,
        "us-east-1",
        "lambda",
        NOW,
    );
    let verified = sigv4::verify(&credentials, method, &path, input.query, &headers, input.body, NOW + 60);
    assert!(verified.is_ok(), "{verified:?} for {method} {path}?{}", input.query);
});
