//! HTTP/1.1 listeners with wisp's header limits (431 past them).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use wisp_core::limits::{MAX_HEADER_BYTES, MAX_HEADER_COUNT};
use wisp_core::runtime::Body;

/// 431 when a request has more headers, or larger ones, than wisp takes.
fn header_limits(req: &http::Request<Incoming>) -> Option<http::Response<Body>> {
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

/// Accepts connections until shutdown; each request goes to `handler`.
pub(crate) fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        if let Some(refusal) = header_limits(&req) {
                            return Ok::<_, std::convert::Infallible>(refusal);
                        }
                        Ok(handler(req, remote).await)
                    }
                });
                let result = http1::Builder::new()
                    .keep_alive(true)
                    // Parse a little past the limits so `header_limits` can answer 431 itself.
                    .max_headers(MAX_HEADER_COUNT * 2)
                    .max_buf_size(MAX_HEADER_BYTES * 2)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
            });
        }
    });
}
