//! HTTP/1.1 listeners with wisp's bounds on what a client can hold: header
//! limits (431), a header read timeout, an idle timeout, a body read
//! timeout (408) and a cap on open connections (503 past it).

mod deadlines;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use wisp_core::limits::{self, MAX_HEADER_BYTES, MAX_HEADER_COUNT};
use wisp_core::runtime::Body;

pub(crate) use deadlines::TimedBody;
use deadlines::{BodyTimeouts, ConnectionTimeouts, Guarded, InFlight, Tracked};

/// What one listener lets a client hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From a request's first byte to the end of its head.
    pub header_read_timeout: Duration,
    /// With no request in progress.
    pub idle_timeout: Duration,
    /// A body's time after its head, before it earns more by arriving.
    pub body_read_timeout: Duration,
    /// Open connections; past them new ones are refused.
    pub max_connections: usize,
}

impl ListenerLimits {
    pub fn gateway() -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: limits::HEADER_READ_TIMEOUT,
            idle_timeout: limits::IDLE_TIMEOUT,
            body_read_timeout: limits::BODY_READ_TIMEOUT,
            max_connections: limits::MAX_GATEWAY_CONNECTIONS,
        }
    }

    pub fn api() -> ListenerLimits {
        ListenerLimits {
            max_connections: limits::MAX_API_CONNECTIONS,
            ..ListenerLimits::gateway()
        }
    }
}

/// 431 when a request has more headers, or larger ones, than wisp takes.
fn header_limits<B>(req: &http::Request<B>) -> Option<http::Response<Body>> {
    let count = req.headers().len();
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if count <= MAX_HEADER_COUNT && bytes <= MAX_HEADER_BYTES {
        return None;
    }
    Some(wisp_gateway::error_response(
        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        &format!("Request Header Fields Too Large: at most {MAX_HEADER_COUNT} headers and {MAX_HEADER_BYTES} bytes"),
        None,
    ))
}

/// What a connection past the cap hears before it is closed. Written
/// before its request is read: a client that sends nothing costs nothing.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 56\r\n\r\n{\"message\":\"Service Unavailable: too many connections\"}\n";

/// Accepts connections until shutdown; each request goes to `handler`.
/// `name` labels the listener's metrics.
pub(crate) fn serve<F, Fut>(
    name: &'static str,
    listener: tokio::net::TcpListener,
    limits: ListenerLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(http::Request<TimedBody>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let timeouts = ConnectionTimeouts {
        header_read: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    let body_timeouts = BodyTimeouts {
        base: limits.body_read_timeout,
        min_rate: limits::BODY_MIN_BYTES_PER_SEC,
    };
    let open = metrics::gauge!("wisp_connections_open", "listener" => name);
    let refused = metrics::counter!("wisp_connections_refused_total", "listener" => name);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: the open
                        // connections go on; accepting resumes shortly.
                        tracing::warn!(error = %e, listener = name, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused.increment(1);
                tokio::spawn(refuse(stream));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let open = open.clone();
            open.increment(1.0);
            tokio::spawn(async move {
                let in_flight = InFlight::default();
                let requests = in_flight.clone();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let handler = handler.clone();
                    let guard = requests.start();
                    async move {
                        let response = match header_limits(&req) {
                            Some(refusal) => refusal,
                            None => {
                                let req = req.map(|body| TimedBody::new(body, body_timeouts));
                                handler(req, remote).await
                            }
                        };
                        Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                            body,
                            _guard: guard,
                        }))
                    }
                });
                let result = http1::Builder::new()
                    .keep_alive(true)
                    // Parse a little past the limits so `header_limits` can answer 431 itself.
                    .max_headers(MAX_HEADER_COUNT * 2)
                    .max_buf_size(MAX_HEADER_BYTES * 2)
                    .serve_connection(
                        TokioIo::new(Guarded::new(stream, timeouts, in_flight)),
                        service,
                    )
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                open.decrement(1.0);
                drop(slot);
            });
        }
    });
}

/// Answers a connection past the cap 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing: closing on unread
        // bytes resets the connection, and the reset can overtake the 503.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests;
