//! The Lambda API over SigV4, and its refusals.

use serde_json::{json, Value};
use wisp_aws::Credentials;
use wisp_core::codezip;

use crate::harness::{create_body, guest, Server};

fn testkit_zip() -> Vec<u8> {
    codezip::single_file("testkit.wasm", &std::fs::read(guest("testkit")).unwrap())
}

fn zip_with(name: &str, contents: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(contents).unwrap();
    w.finish().unwrap();
    out.into_inner()
}

#[test]
fn create_invoke_publish_alias_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let (status, created) = server.api_json(
        "POST",
        "/2015-03-31/functions",
        &create_body("echo", "testkit.wasm", &testkit_zip()),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["Version"], "$LATEST");
    assert_eq!(created["MemorySize"], 64);
    let (status, again) = server.api_json(
        "POST",
        "/2015-03-31/functions",
        &create_body("echo", "testkit.wasm", &testkit_zip()),
    );
    assert_eq!(status, 409, "{again}");

    let r = server.api(
        "POST",
        "/2015-03-31/functions/echo/invocations",
        br#"{"order":7}"#,
        &[("x-amz-log-type", "Tail")],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-executed-version"], "$LATEST");
    assert!(!r.headers().contains_key("x-amz-function-error"));
    let tail = r.headers()["x-amz-log-result"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(r.text().unwrap(), r#"{"order":7}"#);
    use base64::Engine as _;
    let tail = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(tail)
            .unwrap(),
    )
    .unwrap();
    assert!(tail.contains("REPORT RequestId:"), "{tail}");

    let (status, v1) = server.api_json("POST", "/2015-03-31/functions/echo/versions", &json!({}));
    assert_eq!((status, v1["Version"].as_str()), (201, Some("1")));
    let (status, alias) = server.api_json(
        "POST",
        "/2015-03-31/functions/echo/aliases",
        &json!({"Name": "live", "FunctionVersion": "1"}),
    );
    assert_eq!(status, 201, "{alias}");
    let r = server.api(
        "POST",
        "/2015-03-31/functions/echo/invocations?Qualifier=live",
        b"{}",
        &[],
    );
    assert_eq!(r.headers()["x-amz-executed-version"], "1");
    let (status, _) = server.api_json("GET", "/2015-03-31/functions/echo:live", &Value::Null);
    assert_eq!(status, 200);
    let (_, versions) = server.api_json("GET", "/2015-03-31/functions/echo/versions", &Value::Null);
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 2);

    let (status, listed) = server.api_json("GET", "/2015-03-31/functions/", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(listed["Functions"][0]["FunctionName"], "echo");

    let r = server.api("DELETE", "/2015-03-31/functions/echo", b"", &[]);
    assert_eq!(r.status(), 204);
    let r = server.api("GET", "/2015-03-31/functions/echo", b"", &[]);
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-amzn-errortype"], "ResourceNotFoundException");
}

#[test]
fn unsigned_and_badly_signed_requests_get_403() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let r = server
        .http
        .get(format!("{}/2015-03-31/functions/", server.api))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    let wrong = Credentials {
        secret_access_key: "not-the-secret".into(),
        ..server.credentials.clone()
    };
    let r = server.api_as(&wrong, "GET", "/2015-03-31/functions/", b"", &[]);
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-errortype"], "InvalidSignatureException");
    let stranger = Credentials {
        access_key_id: "AKIDSTRANGER".into(),
        ..server.credentials.clone()
    };
    let r = server.api_as(&stranger, "GET", "/2015-03-31/functions/", b"", &[]);
    assert_eq!(
        r.headers()["x-amzn-errortype"],
        "UnrecognizedClientException"
    );
    assert_eq!(
        server
            .http
            .get(format!("{}/health", server.api))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn bad_code_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "traversal",
            create_body("t", "testkit.wasm", &zip_with("../testkit.wasm", b"\0asm")),
            "outside the package",
        ),
        (
            "not wasm",
            create_body("t", "f.wasm", &zip_with("f.wasm", b"#!/bin/sh\necho hi")),
            "not a WebAssembly component",
        ),
        (
            "core module",
            create_body("t", "f.wasm", &zip_with("f.wasm", b"\0asm\x01\0\0\0")),
            "core WebAssembly module",
        ),
        (
            "broken component",
            create_body(
                "t",
                "f.wasm",
                &zip_with("f.wasm", b"\0asm\x0d\0\x01\0garbage"),
            ),
            "not a valid component",
        ),
        (
            "missing handler",
            create_body("t", "other.wasm", &testkit_zip()),
            "has no `other.wasm`",
        ),
        (
            "not a zip",
            json!({"FunctionName": "t", "Runtime": "wasm", "Role": "r", "Handler": "f.wasm", "Code": {"ZipFile": "bm90IGEgemlw"}}),
            "Could not unzip",
        ),
        (
            "bad name",
            create_body("no/slash", "testkit.wasm", &testkit_zip()),
            "may hold only",
        ),
    ];
    for (what, body, expected) in cases {
        let (status, v) = server.api_json("POST", "/2015-03-31/functions", &body);
        assert_eq!(status, 400, "{what}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(expected),
            "{what}: {v}"
        );
    }
    let r = server.api("POST", "/2015-03-31/functions", b"{not json", &[]);
    assert_eq!(r.status(), 400);
    let (_, listed) = server.api_json("GET", "/2015-03-31/functions/", &Value::Null);
    assert_eq!(listed["Functions"].as_array().unwrap().len(), 0);
}
