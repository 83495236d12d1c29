//! The gateway: routing, limits, timeouts, memory caps, outbound policy, logs.

use std::io::{Read, Write};

use crate::harness::{app_dir, request_id, Server};

/// Sends raw bytes and returns what the server answers before closing or 2s.
fn raw_request(base: &str, text: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

const MANIFEST: &str = r#"
[app]
name = "kit"

[function.kit]
runtime = "wasm"
component = "testkit.wasm"
memory_mb = 32
timeout = "1s"
environment = { GREETING = "hi there" }
allowed_outbound_hosts = ["http://127.0.0.1:*"]

[function.closed]
runtime = "wasm"
component = "testkit.wasm"

[function.reused]
runtime = "wasm"
component = "testkit.wasm"
instance_reuse = 3
timeout = "1s"

[[route]]
method = "GET"
path = "/reused/{proxy+}"
function = "reused"

[[route]]
method = "GET"
path = "/limited/{proxy+}"
function = "kit"
rate_limit = { rate = 2, burst = 3 }

[[route]]
method = "GET"
path = "/keyed/{proxy+}"
function = "kit"
rate_limit = { rate = 1, burst = 1, per = "header:x-api-key" }

[[route]]
method = "GET"
path = "/cached/{proxy+}"
function = "kit"
cache_ttl = "1s"
cache_key_headers = ["accept-language"]

[[route]]
method = "ANY"
path = "/kit/{proxy+}"
function = "kit"

[[route]]
method = "GET"
path = "/{action}"
function = "kit"

[[route]]
method = "GET"
path = "/closed/{proxy+}"
function = "closed"

[[route]]
method = "POST"
path = "/items/{id}"
function = "kit"
"#;

fn deployed() -> (tempfile::TempDir, Server) {
    deployed_with(&[])
}

fn deployed_with(flags: &[&str]) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(tmp.path(), MANIFEST);
    let server = Server::start_with(&tmp.path().join("data"), flags);
    let out = server.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (tmp, server)
}

#[test]
fn routes_stream_and_log_per_request_id() {
    let (_tmp, server) = deployed();

    let r = server.get("/hello");
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    assert_eq!(r.text().unwrap(), "hello from testkit\n");
    let logs = server.logs(&id);
    assert!(logs.iter().any(|l| l == "hello on stdout"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "hello on stderr"), "{logs:?}");
    assert!(
        logs.iter().any(|l| l.starts_with("REPORT RequestId: ")),
        "{logs:?}"
    );
    let record = server.record(&id);
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["function"], "kit");
    assert_eq!(record["trigger"], "gateway");
    assert!(record["max_memory_bytes"].as_u64().unwrap() > 0);

    // Path parameters reach the guest; the body streams through.
    let r = server
        .http
        .post(format!("{}/items/42", server.gateway))
        .body("payload")
        .send()
        .unwrap();
    let echo: serde_json::Value = r.json().unwrap();
    assert_eq!(echo["headers"]["x-wisp-param-id"], "42");
    assert_eq!(echo["body"], "payload");

    let r = server.get("/kit/echo/a/b?x=1");
    let echo: serde_json::Value = r.json().unwrap();
    assert_eq!(echo["path"], "/kit/echo/a/b?x=1");
    assert_eq!(echo["headers"]["x-wisp-param-proxy"], "echo/a/b");

    // A streamed response arrives whole.
    let body = server.get("/kit/stream?n=50").text().unwrap();
    assert_eq!(body.lines().count(), 50);

    // Environment reaches the guest.
    assert_eq!(server.get("/kit/env/GREETING").text().unwrap(), "hi there");

    // 404 and 405 are JSON.
    let r = server.get("/no/such/path");
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), r#"{"message":"Not Found"}"#);
    let r = server
        .http
        .delete(format!("{}/items/1", server.gateway))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    // A guest's 5xx is a function error in the record.
    let r = server.get("/kit/status/503");
    assert_eq!(r.status(), 503);
    let record = server.record(&request_id(&r));
    assert_eq!(record["error_type"], "FunctionError");
}

/// A response too large to be written in one go: the guest answers, then
/// goes on streaming on its own task. The body arrives whole; a client that
/// leaves halfway still leaves a record, and the server goes on serving.
#[test]
fn large_responses_stream_and_a_reader_leaving_early_still_gets_a_record() {
    let (_tmp, server) = deployed();
    let r = server.get("/kit/big?kb=4096");
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    assert_eq!(r.bytes().unwrap().len(), 4096 * 1024);
    assert_eq!(server.record(&id)["outcome"], "success");

    let addr = server.gateway.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /kit/big?kb=16384 HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before the head");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-wisp-request-id: "))
        .expect("the head names the request")
        .trim()
        .to_string();
    drop(stream);
    let record = server.record(&id);
    assert_eq!(record["function"], "kit");
    assert_eq!(server.get("/hello").status(), 200);
}

#[test]
fn instances_are_fresh_per_request_unless_reuse_is_asked_for() {
    let (_tmp, server) = deployed();
    let fresh: Vec<String> = (0..4)
        .map(|_| server.get("/count").text().unwrap())
        .collect();
    assert_eq!(fresh, ["1", "1", "1", "1"]);
    // One instance serves up to 3 requests, one at a time, then a new one.
    let reused: Vec<String> = (0..7)
        .map(|_| server.get("/reused/count").text().unwrap())
        .collect();
    assert_eq!(reused, ["1", "2", "3", "1", "2", "3", "1"]);
    // A failure throws the instance away: the next request starts afresh.
    assert_eq!(server.get("/reused/panic").status(), 502);
    assert_eq!(server.get("/reused/count").text().unwrap(), "1");
    // A timed-out instance is not reused either, and its deadline does not
    // leak into the next request.
    assert_eq!(server.get("/reused/count").text().unwrap(), "2");
    assert_eq!(server.get("/reused/loop").status(), 504);
    assert_eq!(server.get("/reused/count").text().unwrap(), "1");
}

#[test]
fn rate_limits_let_a_burst_through_then_429_until_refilled() {
    let (_tmp, server) = deployed();
    let statuses: Vec<u16> = (0..10)
        .map(|_| server.get("/limited/count").status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    let refused = server.get("/limited/count");
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert!(refused.text().unwrap().contains("Too Many Requests"));
    // The refill at the route's rate is tested on a moved clock
    // (gateway::traffic's the_bucket_refills_at_its_rate), not by waiting.

    // Per-key buckets: each API key has its own.
    let keyed = |key: &str| {
        server
            .http
            .get(format!("{}/keyed/count", server.gateway))
            .header("x-api-key", key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!((keyed("a"), keyed("a"), keyed("b")), (200, 429, 200));
}

#[test]
fn responses_are_cached_per_route_query_and_named_headers() {
    let (_tmp, server) = deployed();
    let get = |path: &str, lang: &str| {
        let r = server
            .http
            .get(format!("{}{path}", server.gateway))
            .header("accept-language", lang)
            .send()
            .unwrap();
        let cache = r.headers()["x-wisp-cache"].to_str().unwrap().to_string();
        (cache, r.text().unwrap())
    };
    let (first, body) = get("/cached/echo?x=1", "de");
    assert_eq!(first, "miss");
    assert_eq!(
        get("/cached/echo?x=1", "de"),
        ("hit".to_string(), body.clone())
    );
    assert_eq!(get("/cached/echo?x=2", "de").0, "miss");
    assert_eq!(get("/cached/echo?x=1", "fr").0, "miss");
    // The function said no-store: never cached.
    assert_eq!(get("/cached/nostore", "de").0, "miss");
    assert_eq!(get("/cached/nostore", "de").0, "miss");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (after, fresh) = get("/cached/echo?x=1", "de");
    assert_eq!(after, "miss", "expired after the ttl");
    assert_ne!(fresh, body, "a new invocation answered");
}

#[test]
fn infinite_loop_times_out_and_server_keeps_serving() {
    let (_tmp, server) = deployed();
    let looping = std::thread::scope(|s| {
        let looping = s.spawn(|| server.get("/loop"));
        // Others are served while a guest spins.
        for _ in 0..5 {
            assert_eq!(server.get("/hello").status(), 200);
        }
        looping.join().unwrap()
    });
    assert_eq!(looping.status(), 504);
    let id = request_id(&looping);
    let record = server.record(&id);
    assert_eq!(record["outcome"], "error");
    assert_eq!(record["error_kind"], "guest");
    assert_eq!(record["error_type"], "Timeout");
    assert!(server
        .logs(&id)
        .iter()
        .any(|l| l.contains("Task timed out after 1.00 seconds")));
    assert_eq!(server.get("/hello").status(), 200);
}

#[test]
fn the_account_limit_answers_429_with_retry_after() {
    let (_tmp, server) = deployed_with(&["--concurrency", "1"]);
    std::thread::scope(|s| {
        // The looping guest holds the only slot for its 1s timeout (it
        // retries while the polling below holds it).
        let looping = s.spawn(|| loop {
            let r = server.get("/loop");
            if r.status() != 429 {
                return r;
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let refused = loop {
            let r = server.get("/hello");
            if r.status() == 429 {
                break r;
            }
            assert!(std::time::Instant::now() < deadline, "never throttled");
        };
        assert!(refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .is_ok());
        let body: serde_json::Value = refused.json().unwrap();
        assert!(
            body["message"] == "Too Many Requests" && body["requestId"].is_string(),
            "{body}"
        );
        // The Lambda API says the same, in its own shape.
        let r = server.api("POST", "/2015-03-31/functions/kit/invocations", b"{}", &[]);
        assert_eq!(r.status(), 429);
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(
            body["Reason"], "ConcurrentInvocationLimitExceeded",
            "{body}"
        );
        assert_eq!(looping.join().unwrap().status(), 504);
    });
    // The slot is freed when the timed-out invocation's completion is
    // recorded, just after its 504 went out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.get("/hello").status() != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        server.metric(
            "wisp_throttles_total{function=\"kit\",reason=\"ConcurrentInvocationLimitExceeded\"}"
        ) >= 2.0
    );
}

#[test]
fn the_gateway_honours_idempotency_keys() {
    let (_tmp, server) = deployed();
    let get = || {
        server
            .http
            .get(format!("{}/kit/echo", server.gateway))
            .header("x-wisp-idempotency-key", "pay-1")
            .send()
            .unwrap()
    };
    let first = get();
    let second = get();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    assert!(!first.headers().contains_key("x-wisp-idempotent-replay"));
    assert_eq!(second.headers()["x-wisp-idempotent-replay"], "true");
    assert_eq!(request_id(&first), request_id(&second));
    assert_eq!(first.text().unwrap(), second.text().unwrap());
}

#[test]
fn memory_hog_fails_cleanly() {
    let (_tmp, server) = deployed();
    let r = server.get("/kit/hog?mb=100");
    assert_eq!(r.status(), 502);
    let record = server.record(&request_id(&r));
    assert_eq!(record["error_type"], "OutOfMemory");
    assert_eq!(record["error_kind"], "guest");
    // Within the cap is fine.
    let r = server.get("/kit/hog?mb=8");
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(server.get("/hello").status(), 200);
}

#[test]
fn outbound_http_is_allow_listed() {
    let (_tmp, server) = deployed();
    let target = format!("{}/hello", server.gateway);
    // `kit` may call 127.0.0.1 on any port.
    let r = server.get(&format!("/kit/fetch?url={target}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "status 200\nhello from testkit\n");
    // `closed` has no allow-list: denied, and the log says how to allow it.
    let r = server.get(&format!("/closed/fetch?url={target}"));
    assert_eq!(r.status(), 502);
    let id = request_id(&r);
    assert!(r.text().unwrap().contains("HttpRequestDenied"));
    assert!(server
        .logs(&id)
        .iter()
        .any(|l| l.contains("denied: add it to allowed_outbound_hosts")));
}

#[test]
fn oversized_bodies_and_headers_are_refused() {
    let (_tmp, server) = deployed();
    let max = wisp_core::limits::MAX_GATEWAY_BODY_BYTES;
    // Refused from Content-Length alone, before the body is read.
    let head = raw_request(
        &server.gateway,
        &format!(
            "POST /items/1 HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            max + 1
        ),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let r = server
        .http
        .post(format!("{}/items/1", server.gateway))
        .body(vec![b'x'; max])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().unwrap();
    assert_eq!(echo["body_len"], max);

    let mut req = server.http.get(format!("{}/hello", server.gateway));
    for i in 0..wisp_core::limits::MAX_HEADER_COUNT + 1 {
        req = req.header(format!("x-h{i}"), "v");
    }
    assert_eq!(req.send().unwrap().status(), 431);
    let r = server
        .http
        .get(format!("{}/hello", server.gateway))
        .header("x-big", "v".repeat(wisp_core::limits::MAX_HEADER_BYTES + 1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(server.get("/hello").status(), 200);
}
