//! A guest with one behaviour per path, for wisp's end-to-end tests:
//! logging, echo, environment, timeouts, memory, outbound HTTP, statuses.

use std::io::Write as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

struct Testkit;

wasip2::http::proxy::export!(Testkit);

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".into(), content_type.as_bytes().to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("client reads the body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("body finishes once");
}

fn read_body(body: IncomingBody) -> Vec<u8> {
    let stream = body.stream().expect("stream is taken once");
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => panic!("reading the request body failed: {e:?}"),
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    data
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// GETs `url` (http://host[:port]/path) and returns (status, body) or an error.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|_| "method")?;
    request
        .set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http }))
        .map_err(|_| "scheme")?;
    request.set_authority(Some(authority)).map_err(|_| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = read_body(response.consume().map_err(|_| "body")?);
    Ok((status, body))
}

impl wasip2::exports::http::incoming_handler::Guest for Testkit {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        let mut segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Routes may mount the kit under a prefix (`/kit/...`, `/closed/...`, `/reused/...`).
        if segments.len() > 1 && matches!(segments[0], "kit" | "closed" | "reused" | "limited" | "keyed" | "cached") {
            segments.remove(0);
        }
        match segments.as_slice() {
            ["hello"] => {
                println!("hello on stdout");
                eprintln!("hello on stderr");
                respond(out, 200, "text/plain", b"hello from testkit\n");
            }
            [""] | ["echo", ..] | ["items", ..] => {
                let method = format!("{:?}", request.method());
                let mut headers = String::new();
                for (name, value) in request.headers().entries() {
                    if !headers.is_empty() {
                        headers.push(',');
                    }
                    headers.push_str(&format!(
                        "{}:{}",
                        json_string(&name),
                        json_string(&String::from_utf8_lossy(&value))
                    ));
                }
                let body = read_body(request.consume().expect("body is taken once"));
                if path == "/" {
                    // An invoke: the payload comes back as the result.
                    respond(out, 200, "application/json", &body);
                    return;
                }
                let json = format!(
                    "{{\"method\":{},\"path\":{},\"headers\":{{{}}},\"body_len\":{},\"body\":{}}}",
                    json_string(&method),
                    json_string(&path_with_query),
                    headers,
                    body.len(),
                    json_string(&String::from_utf8_lossy(&body[..body.len().min(4096)]))
                );
                respond(out, 200, "application/json", json.as_bytes());
            }
            ["env", name] => match std::env::var(name) {
                Ok(value) => respond(out, 200, "text/plain", value.as_bytes()),
                Err(_) => respond(out, 404, "text/plain", b"no such variable"),
            },
            ["loop"] => {
                println!("about to spin forever");
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            ["hog"] => {
                let mb: usize = query_param(query, "mb").and_then(|v| v.parse().ok()).unwrap_or(1 << 20);
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                for i in 0..mb {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[i % (1 << 20)] = 1;
                    chunks.push(std::hint::black_box(chunk));
                }
                let msg = format!("allocated {} MB\n", chunks.len());
                respond(out, 200, "text/plain", msg.as_bytes());
            }
            ["fetch"] => {
                let url = query_param(query, "url").unwrap_or("");
                match fetch(url) {
                    Ok((status, body)) => {
                        let mut text = format!("status {status}\n").into_bytes();
                        text.extend_from_slice(&body);
                        respond(out, 200, "text/plain", &text);
                    }
                    Err(e) => respond(out, 502, "text/plain", format!("fetch failed: {e}").as_bytes()),
                }
            }
            ["status", code] => {
                let code: u16 = code.parse().unwrap_or(500);
                respond(out, code, "text/plain", format!("status {code}\n").as_bytes());
            }
            ["nostore"] => {
                let headers = Fields::from_list(&[
                    ("content-type".into(), b"text/plain".to_vec()),
                    ("cache-control".into(), b"no-store".to_vec()),
                ])
                .expect("valid headers");
                let response = OutgoingResponse::new(headers);
                let outgoing = response.body().expect("body is taken once");
                ResponseOutparam::set(out, Ok(response));
                let stream = outgoing.write().expect("stream is taken once");
                let id = std::env::var("WISP_FUNCTION_NAME").unwrap_or_default();
                stream.blocking_write_and_flush(id.as_bytes()).expect("client reads the body");
                drop(stream);
                OutgoingBody::finish(outgoing, None).expect("body finishes once");
            }
            ["count"] => {
                // Requests this instance has served: 1 with a fresh instance
                // per request, growing with `instance_reuse`.
                static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                respond(out, 200, "text/plain", n.to_string().as_bytes());
            }
            ["panic"] => panic!("testkit was asked to panic"),
            ["big"] => {
                let kb: usize = query_param(query, "kb").and_then(|v| v.parse().ok()).unwrap_or(1);
                respond(out, 200, "application/octet-stream", &vec![b'x'; kb * 1024]);
            }
            ["stream"] => {
                let n: usize = query_param(query, "n").and_then(|v| v.parse().ok()).unwrap_or(3);
                let response = OutgoingResponse::new(Fields::new());
                let outgoing = response.body().expect("body is taken once");
                ResponseOutparam::set(out, Ok(response));
                let mut stream = outgoing.write().expect("stream is taken once");
                for i in 0..n {
                    writeln!(stream, "chunk {i}").expect("client reads the body");
                    stream.flush().expect("flush");
                }
                drop(stream);
                OutgoingBody::finish(outgoing, None).expect("body finishes once");
            }
            _ => respond(out, 404, "text/plain", b"testkit: unknown path\n"),
        }
    }
}
