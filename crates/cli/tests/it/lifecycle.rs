//! Deploy, restart, manifests and the CLI.

use crate::harness::{app_dir, request_id, Server};

const MANIFEST: &str = r#"
[app]
name = "life"

[function.kit]
runtime = "wasm"
component = "testkit.wasm"

[[route]]
method = "GET"
path = "/hello"
function = "kit"
"#;

#[test]
fn restart_keeps_functions_and_never_recompiles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(tmp.path(), MANIFEST);
    let data = tmp.path().join("data");
    let mut server = Server::start(&data);
    let out = server.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.metric("wisp_wasm_compilations_total"), 1.0);
    assert_eq!(server.get("/hello").status(), 200);
    server.stop();

    // The restarted server maps the compiled artifact in before any call:
    // the first request only instantiates.
    let server = Server::start(&data);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.metric("wisp_preloaded_versions") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "never preloaded");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let first = server.get("/hello");
    assert_eq!(first.status(), 200);
    let record = server.record(&request_id(&first));
    assert_eq!(record["cold"], false, "{record}");
    assert!(record["init_duration_us"].is_null(), "{record}");
    let out = server.cli(&["invoke", "kit", "--payload", r#"{"a":1}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"a":1}"#);
    assert_eq!(server.metric("wisp_wasm_compilations_total"), 0.0);
    assert_eq!(server.metric("wisp_wasm_compile_cache_hits_total"), 1.0);

    let ls = server.cli(&["ls"]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("kit"));
    let describe = String::from_utf8_lossy(&server.cli(&["describe", "kit"]).stdout).into_owned();
    assert!(describe.contains("outcome:     success"), "{describe}");
    let logs = String::from_utf8_lossy(&server.cli(&["logs", "kit"]).stdout).into_owned();
    assert!(logs.contains("REPORT RequestId"), "{logs}");
    // A follower starts where the log ends: no lines, the newest seq.
    let all: serde_json::Value = server.api("GET", "/wisp/v1/logs", b"", &[]).json().unwrap();
    let end: serde_json::Value = server
        .api("GET", "/wisp/v1/logs?after=-1", b"", &[])
        .json()
        .unwrap();
    assert_eq!(end["events"].as_array().unwrap().len(), 0, "{end}");
    assert_eq!(end["next"], all["next"], "{all}");
    assert!(all["next"].as_i64().unwrap() > 0, "{all}");
    let rm = server.cli(&["rm", "kit"]);
    assert!(rm.status.success());
    assert_eq!(server.get("/hello").status(), 502);
}

#[test]
fn malformed_manifests_point_at_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cases = [
        (
            MANIFEST.replace("runtime = \"wasm\"", "runtime = \"wasm\"\nmemroy_mb = 64"),
            "wisp.toml:7:1",
            "did you mean `memory_mb`?",
        ),
        (
            MANIFEST.replace("[[route]]", "[[route]"),
            "wisp.toml:9:9",
            "expected `]`",
        ),
        (
            MANIFEST.replace("function = \"kit\"", "function = \"kat\""),
            "wisp.toml:12:12",
            "functions in this manifest: kit",
        ),
    ];
    for (text, location, hint) in cases {
        let dir = app_dir(tmp.path(), &text);
        let out = server.cli(&["deploy", dir.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(location), "expected {location} in {err}");
        assert!(err.contains(hint), "expected {hint} in {err}");
    }
    // A non-wasm file as the component is refused at deploy.
    let dir = app_dir(tmp.path(), MANIFEST);
    std::fs::write(dir.join("testkit.wasm"), b"definitely not wasm").unwrap();
    let out = server.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly component"));
}
