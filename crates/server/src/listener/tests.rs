//! Each limit of a listener at its bound, on real sockets, in tokio's
//! paused time: the clock moves only when everything waits, so a test of a
//! 10 s timeout takes no time and never depends on the machine's speed.
//!
//! When everything waits, paused time jumps to the next timer, and a
//! socket's readiness that arrives in that same turn does not stop the
//! jump: a client's bytes written just inside a deadline could be seen
//! only after it. A ticker keeps the jumps to `TICK`, so what is sent
//! `MARGIN` inside a bound is read inside it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wisp_core::error::BodyTimeout;

use super::*;

const LIMITS: ListenerLimits = ListenerLimits {
    header_read_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
    body_read_timeout: Duration::from_secs(20),
    max_connections: 2,
};

const TICK: Duration = Duration::from_millis(5);
const MARGIN: Duration = Duration::from_millis(50);

/// A listener whose handler reads the body and answers with its length.
async fn start(limits: ListenerLimits) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(TICK).await;
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    serve("test", listener, limits, stopped, |req, _| async move {
        if req.uri().path() == "/slow" {
            // A function that runs longer than a connection may idle.
            tokio::time::sleep(LIMITS.idle_timeout * 2).await;
        }
        match req.into_body().collect().await {
            Ok(body) => {
                let n = body.to_bytes().len();
                http::Response::new(
                    Full::new(Bytes::from(format!("{n} bytes")))
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                )
            }
            Err(e) if e.is::<BodyTimeout>() => wisp_gateway::body_timeout_response(),
            Err(e) => panic!("unexpected body error {e}"),
        }
    });
    (addr, stop)
}

/// Reads one response (head and a Content-Length body), or None when the
/// server closed the connection first.
async fn response(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if got.len() >= head_end + 4 + len {
                return Some(text);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Waits until the server closes `stream`; how long that took.
async fn closed(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test(start_paused = true)]
async fn a_head_must_be_complete_within_the_header_timeout() {
    let (addr, _stop) = start(LIMITS).await;
    // Just inside the bound: served.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    tokio::time::sleep(LIMITS.header_read_timeout - MARGIN).await;
    s.write_all(b"1\r\n\r\n").await.unwrap();
    let r = response(&mut s).await.expect("served within the bound");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    // The slow client: a head that never ends is cut at the bound.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let after = closed(&mut s).await;
    assert!(
        after >= LIMITS.header_read_timeout
            && after < LIMITS.header_read_timeout + Duration::from_secs(1),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let (addr, _stop) = start(LIMITS).await;
    // New and silent.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let after = closed(&mut s).await;
    assert!(
        after >= LIMITS.idle_timeout && after < LIMITS.idle_timeout + Duration::from_secs(1),
        "{after:?}"
    );

    // Kept alive between requests: longer than the header timeout is fine
    // while no request is in progress, up to the idle timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.is_some());
    tokio::time::sleep(LIMITS.idle_timeout - MARGIN).await;
    s.write_all(GET).await.unwrap();
    assert!(
        response(&mut s).await.is_some(),
        "kept alive within the bound"
    );
    let after = closed(&mut s).await;
    assert!(
        after >= LIMITS.idle_timeout && after < LIMITS.idle_timeout + Duration::from_secs(1),
        "{after:?}"
    );
}

/// A request in progress is not idle: a handler that runs past the idle
/// timeout still answers on its connection, which is idle from then.
#[tokio::test(start_paused = true)]
async fn a_request_in_progress_is_not_idle() {
    let (addr, _stop) = start(LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let r = response(&mut s)
        .await
        .expect("answered after twice the idle timeout");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let after = closed(&mut s).await;
    assert!(
        after >= LIMITS.idle_timeout - TICK && after < LIMITS.idle_timeout + Duration::from_secs(1),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_must_arrive_in_its_time() {
    let (addr, _stop) = start(LIMITS).await;
    // The whole body just inside the bound: read.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab")
        .await
        .unwrap();
    tokio::time::sleep(LIMITS.body_read_timeout - MARGIN).await;
    s.write_all(b"cde").await.unwrap();
    let r = response(&mut s).await.unwrap();
    assert!(r.ends_with("5 bytes"), "{r}");

    // The client: announces 100 KB, sends 3 bytes, stops. 408 at
    // the bound, and the connection closes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 102400\r\n\r\nabc")
        .await
        .unwrap();
    let r = response(&mut s).await.expect("a 408");
    let after = start.elapsed();
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(r.contains("connection: close"), "{r}");
    assert!(
        after >= LIMITS.body_read_timeout
            && after < LIMITS.body_read_timeout + Duration::from_secs(1),
        "{after:?}"
    );
    assert!(closed(&mut s).await < Duration::from_secs(1));
}

/// `Expect: 100-continue` (curl's way for large bodies): after the interim
/// answer the body is timed as a body, not as a head, so it may take
/// longer than the header timeout. In real time, with short limits: in
/// paused time hyper never reads the rest of such a body before the
/// clock has jumped to the body's deadline.
#[tokio::test]
async fn a_body_after_100_continue_is_timed_as_a_body() {
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_secs(5),
        ..LIMITS
    };
    let (addr, _stop) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"ab").await.unwrap();
    // Three header timeouts pass while the body is under way.
    tokio::time::sleep(limits.header_read_timeout * 3).await;
    s.write_all(b"cde").await.unwrap();
    let r = response(&mut s)
        .await
        .expect("the body was not cut as a slow head");
    assert!(r.ends_with("5 bytes"), "{r}");
}

#[tokio::test(start_paused = true)]
async fn a_body_earns_time_as_it_arrives() {
    let (addr, _stop) = start(LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![b'x'; limits::BODY_MIN_BYTES_PER_SEC as usize];
    let total = chunk.len() * 3;
    s.write_all(
        format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    // Each chunk earns a second: three chunks arrive over base + 2 s.
    for _ in 0..3 {
        s.write_all(&chunk).await.unwrap();
        tokio::time::sleep(
            (LIMITS.body_read_timeout + Duration::from_secs(2)) / 3 - Duration::from_millis(1),
        )
        .await;
    }
    let r = response(&mut s).await.unwrap();
    assert!(r.ends_with(&format!("{total} bytes")), "{r}");
}

#[tokio::test(start_paused = true)]
async fn past_the_connection_cap_new_connections_are_refused_and_old_ones_served() {
    let (addr, _stop) = start(LIMITS).await;
    let mut held = Vec::new();
    for _ in 0..LIMITS.max_connections {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(GET).await.unwrap();
        assert!(response(&mut s).await.is_some());
        held.push(s);
    }
    // One past the cap: 503 at once, then closed.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    extra.write_all(GET).await.unwrap();
    let r = response(&mut extra).await.expect("a 503");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("retry-after: 1"), "{r}");
    assert!(closed(&mut extra).await < Duration::from_secs(1));
    // The held ones are not stalled.
    for s in &mut held {
        s.write_all(GET).await.unwrap();
        assert!(response(s).await.is_some());
    }
    // A slot freed is a slot to take.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let r = response(&mut s).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn each_listener_has_its_limits() {
    let g = ListenerLimits::gateway();
    assert_eq!(g.header_read_timeout, limits::HEADER_READ_TIMEOUT);
    assert_eq!(g.max_connections, limits::MAX_GATEWAY_CONNECTIONS);
    assert_eq!(
        ListenerLimits::api().max_connections,
        limits::MAX_API_CONNECTIONS
    );
}
