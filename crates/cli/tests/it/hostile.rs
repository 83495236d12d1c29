//! Hostile input through the real binary (issue 23): a guest's error that
//! a careless cut would split inside a character, and clients that open
//! connections and then stall.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{create_body, guest, lambda_body, lambda_dir, zip_dir, Server};

/// `bad input: ` and 2036 `a`s fill 2047 bytes: the `é` after them spans
/// bytes 2047 and 2048, across the 2048-byte cut of error messages.
fn what() -> String {
    format!("{}é and more", "a".repeat(2036))
}

#[test]
fn a_thrown_error_cut_inside_a_character_is_the_functions_error() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    for (name, runtime, handler, dir, error_type) in [
        (
            "node",
            "nodejs20.x",
            "index.handler",
            "node-kit",
            "TypeError",
        ),
        (
            "py",
            "python3.11",
            "app.handler",
            "python-kit",
            "ValueError",
        ),
    ] {
        let body = lambda_body(name, runtime, handler, &zip_dir(&lambda_dir(dir)));
        let (status, v) = server.api_json("POST", "/2015-03-31/functions", &body);
        assert_eq!(status, 201, "{v}");
        let r = server.api(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            json!({"action": "throw", "what": what()})
                .to_string()
                .as_bytes(),
            &[],
        );
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["x-amz-function-error"], "Unhandled", "{name}");
        let id = r.headers()["x-amzn-requestid"]
            .to_str()
            .unwrap()
            .to_string();
        let v: Value = r.json().unwrap();
        assert_eq!(v["errorType"], error_type, "{v}");
        // The record keeps the message cut before the character.
        let record = server.record(&id);
        assert_eq!(record["error_kind"], "guest", "{record}");
        assert_eq!(record["error_type"], error_type, "{record}");
        let message = record["error_message"].as_str().unwrap();
        assert_eq!(
            message,
            format!("bad input: {}", "a".repeat(2036)),
            "{name}"
        );
    }
}

/// A raw connection to `url` (`http://host:port`) that gives up on a read
/// after 30 s, so a test fails instead of hanging.
fn connect(url: &str) -> TcpStream {
    let s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// All the server sends until it closes the connection.
fn until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// One request on a kept-alive connection; the response's head.
fn request(s: &mut TcpStream, raw: &str) -> String {
    s.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_a_full_listener_refuses_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        tmp.path(),
        &[
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--body-read-timeout",
            "1s",
            "--max-connections",
            "3",
            "--max-api-connections",
            "3",
        ],
    );
    let body = lambda_body(
        "up",
        "nodejs20.x",
        "index.handler",
        &zip_dir(&lambda_dir("node-kit")),
    );
    assert_eq!(
        server.api_json("POST", "/2015-03-31/functions", &body).0,
        201
    );
    let kit =
        wisp_core::codezip::single_file("testkit.wasm", &std::fs::read(guest("testkit")).unwrap());
    let body = create_body("kit", "testkit.wasm", &kit);
    assert_eq!(
        server.api_json("POST", "/2015-03-31/functions", &body).0,
        201
    );
    let routes = json!({"routes": [
        {"method": "POST", "path": "/up", "function": "up"},
        {"method": "POST", "path": "/echo", "function": "kit"},
    ]});
    assert_eq!(
        server.api_json("PUT", "/wisp/v1/apps/t/routes", &routes).0,
        200
    );

    for url in [&server.gateway, &server.api] {
        // The slow head: the server hangs up.
        let mut s = connect(url);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        assert_eq!(until_closed(&mut s), "", "{url}");

        // Announces 100 KB, sends 3 bytes: 408, then closed.
        let mut s = connect(url);
        s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\nabc")
            .unwrap();
        let answer = until_closed(&mut s);
        assert!(answer.starts_with("HTTP/1.1 408"), "{url}: {answer}");

        // Connected and silent: closed once idle.
        let mut s = connect(url);
        assert_eq!(until_closed(&mut s), "", "{url}");

        // Three held connections fill the listener: a fourth hears 503 and
        // is closed, and the three are still served.
        let mut held: Vec<TcpStream> = (0..3).map(|_| connect(url)).collect();
        for s in &mut held {
            let head = request(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(head.starts_with("HTTP/1.1 "), "{head}");
        }
        let mut extra = connect(url);
        let answer = until_closed(&mut extra);
        assert!(answer.starts_with("HTTP/1.1 503"), "{url}: {answer}");
        for s in &mut held {
            let head = request(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(head.starts_with("HTTP/1.1 "), "{head}");
        }
        drop(held);
    }
    // A component reading a body that stalls fails on it (testkit panics),
    // but the caller is to blame: 408, and the record says so.
    let mut s = connect(&server.gateway);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\nabc")
        .unwrap();
    let answer = until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-wisp-request-id: "))
        .expect("a request id");
    let record = server.record(id.trim());
    assert_eq!(
        (&record["error_kind"], &record["error_type"]),
        (&json!("caller"), &json!("RequestTimeout")),
        "{record}"
    );

    // The server serves on (once it has seen the dropped ones go).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .http
            .post(format!("{}/up", server.gateway))
            .body("{}")
            .send()
        {
            Ok(r) if r.status().is_success() => break,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
