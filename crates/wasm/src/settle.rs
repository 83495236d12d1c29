//! A response body the guest has already written in full goes out as one
//! buffer with its length, instead of as chunks: most guests answer and
//! finish within the poll that started them, and a sized body costs the
//! gateway less to send and the client less to read.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use wisp_core::runtime::{full_body, Body, BoxError};

/// Most bytes gathered into one buffer; a longer body streams.
const MAX_SETTLED_BYTES: usize = 64 * 1024;

type Read = Result<Frame<Bytes>, BoxError>;

/// Reads what of `body` is here already, without waiting. If that is all
/// of it, data only: one buffer. Otherwise what was read goes first and
/// the rest streams as it comes.
pub(crate) fn settle(mut body: Body) -> Body {
    let mut cx = Context::from_waker(Waker::noop());
    let mut read: VecDeque<Read> = VecDeque::new();
    let mut bytes = 0;
    while bytes <= MAX_SETTLED_BYTES {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => return whole(read),
            Poll::Ready(Some(frame)) => {
                let failed = frame.is_err();
                if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
                    bytes += data.len();
                }
                read.push_back(frame);
                if failed {
                    break; // handed on as it came, with nothing read past it
                }
            }
            Poll::Pending => break,
        }
    }
    Prefixed {
        read,
        rest: Some(body),
    }
    .boxed_unsync()
}

/// A body read to its end.
fn whole(read: VecDeque<Read>) -> Body {
    if !read.iter().all(|f| matches!(f, Ok(f) if f.is_data())) {
        return Prefixed { read, rest: None }.boxed_unsync(); // trailers, or an error
    }
    let mut data = read.into_iter().filter_map(|f| f.ok()?.into_data().ok());
    match (data.next(), data.next()) {
        (None, _) => full_body(Bytes::new()),
        (Some(only), None) => full_body(only),
        (Some(first), Some(second)) => {
            let mut joined = BytesMut::from(&first[..]);
            joined.extend_from_slice(&second);
            data.for_each(|d| joined.extend_from_slice(&d));
            full_body(joined.freeze())
        }
    }
}

/// Frames already read, then the rest of the body (if it has not ended).
struct Prefixed {
    read: VecDeque<Read>,
    rest: Option<Body>,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Read>> {
        if let Some(frame) = self.read.pop_front() {
            return Poll::Ready(Some(frame));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self
            .read
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        let rest = self
            .rest
            .as_ref()
            .map(|r| r.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0));
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn frames(parts: Vec<Read>) -> Body {
        StreamBody::new(futures_util::stream::iter(parts)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_written_in_full_becomes_one_sized_buffer() {
        let body = settle(frames(vec![
            Ok(Frame::data(Bytes::from_static(b"Hello, "))),
            Ok(Frame::data(Bytes::from_static(b"wisp!"))),
        ]));
        assert_eq!(body.size_hint().exact(), Some(12));
        assert_eq!(
            &body.collect().await.unwrap().to_bytes()[..],
            b"Hello, wisp!"
        );
        assert_eq!(settle(frames(vec![])).size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn a_body_still_being_written_streams_on_after_what_was_read() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Read>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"first "))))
            .await
            .unwrap();
        let body = settle(
            StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async {
                rx.recv().await.map(|f| (f, rx))
            }))
            .boxed_unsync(),
        );
        assert_eq!(body.size_hint().exact(), None);
        tx.send(Ok(Frame::data(Bytes::from_static(b"then more"))))
            .await
            .unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-done", http::HeaderValue::from_static("1"));
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        drop(tx);
        let all = body.collect().await.unwrap();
        assert_eq!(all.trailers().map(|t| t.contains_key("x-done")), Some(true));
        assert_eq!(&all.to_bytes()[..], b"first then more");
    }

    #[tokio::test]
    async fn trailers_and_errors_are_kept() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("42"));
        let body = settle(frames(vec![
            Ok(Frame::data(Bytes::from_static(b"data"))),
            Ok(Frame::trailers(trailers)),
        ]));
        let all = body.collect().await.unwrap();
        assert_eq!(
            all.trailers().map(|t| t["x-sum"].clone()),
            Some(http::HeaderValue::from_static("42"))
        );
        let failed = settle(frames(vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err("the guest trapped".into()),
        ]));
        assert!(failed.collect().await.is_err());
    }
}
