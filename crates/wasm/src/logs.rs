//! Captures a guest's stdout and stderr as lines, bounded per invocation.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wisp_core::clock::{Clock, SystemClock};
use wisp_core::limits::{MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LINE_BYTES};
use wisp_core::LogStream;

/// Lines captured so far: (stream, capture time in ms, text).
pub(crate) type Lines = Vec<(LogStream, i64, String)>;

#[derive(Default)]
struct Buffer {
    lines: Lines,
    partial: [Vec<u8>; 2],
    bytes: usize,
    truncated: bool,
}

impl Buffer {
    fn push_line(&mut self, stream: LogStream, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        let cut = &bytes[..bytes.len().min(MAX_LOG_LINE_BYTES)];
        if self.bytes + cut.len() > MAX_LOG_BYTES_PER_INVOCATION {
            self.truncated = true;
            self.lines.push((
                LogStream::Platform,
                SystemClock.now_ms(),
                format!("output truncated: more than {MAX_LOG_BYTES_PER_INVOCATION} bytes in one invocation"),
            ));
            return;
        }
        self.bytes += cut.len();
        let text = String::from_utf8_lossy(cut);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.lines
            .push((stream, SystemClock.now_ms(), text.to_string()));
    }
}

/// The log of one invocation (or of one reused instance between requests).
#[derive(Clone, Default)]
pub(crate) struct LogCapture {
    inner: Arc<Mutex<Buffer>>,
}

fn slot(stream: LogStream) -> usize {
    usize::from(stream == LogStream::Stderr)
}

impl LogCapture {
    pub(crate) fn pipe(&self, stream: LogStream) -> LogPipe {
        LogPipe {
            capture: self.clone(),
            stream,
        }
    }

    /// A line written by wisp about this invocation.
    pub(crate) fn platform(&self, line: String) {
        if let Ok(mut b) = self.inner.lock() {
            b.push_line(LogStream::Platform, line.as_bytes());
        }
    }

    fn write(&self, stream: LogStream, bytes: &[u8]) {
        let Ok(mut b) = self.inner.lock() else { return };
        let i = slot(stream);
        let mut start = 0;
        for (pos, byte) in bytes.iter().enumerate() {
            if *byte == b'\n' {
                let mut line = std::mem::take(&mut b.partial[i]);
                line.extend_from_slice(&bytes[start..pos]);
                b.push_line(stream, &line);
                start = pos + 1;
            }
        }
        let rest = &bytes[start..];
        if b.partial[i].len() + rest.len() > MAX_LOG_LINE_BYTES {
            let mut line = std::mem::take(&mut b.partial[i]);
            line.extend_from_slice(rest);
            b.push_line(stream, &line);
        } else {
            b.partial[i].extend_from_slice(rest);
        }
    }

    /// Takes the lines so far, including unterminated last lines, and resets.
    pub(crate) fn take(&self) -> Lines {
        let Ok(mut b) = self.inner.lock() else {
            return Vec::new();
        };
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let line = std::mem::take(&mut b.partial[slot(stream)]);
            if !line.is_empty() {
                b.push_line(stream, &line);
            }
        }
        let lines = std::mem::take(&mut b.lines);
        *b = Buffer::default();
        lines
    }
}

/// One of the guest's output streams.
#[derive(Clone)]
pub(crate) struct LogPipe {
    capture: LogCapture,
    stream: LogStream,
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.capture.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_per_stream_and_flushes_partials() {
        let c = LogCapture::default();
        c.write(LogStream::Stdout, b"one\ntw");
        c.write(LogStream::Stderr, b"err\r\n");
        c.write(LogStream::Stdout, b"o\nthree");
        let lines: Vec<(LogStream, String)> =
            c.take().into_iter().map(|(s, _, l)| (s, l)).collect();
        assert_eq!(
            lines,
            [
                (LogStream::Stdout, "one".to_string()),
                (LogStream::Stderr, "err".to_string()),
                (LogStream::Stdout, "two".to_string()),
                (LogStream::Stdout, "three".to_string()),
            ]
        );
        assert!(c.take().is_empty());
    }

    #[test]
    fn output_is_bounded() {
        let c = LogCapture::default();
        let line = vec![b'x'; 1000];
        for _ in 0..1000 {
            c.write(LogStream::Stdout, &line);
            c.write(LogStream::Stdout, b"\n");
        }
        let lines = c.take();
        let total: usize = lines.iter().map(|(_, _, l)| l.len()).sum();
        assert!(total <= MAX_LOG_BYTES_PER_INVOCATION + 200);
        assert!(lines.last().unwrap().2.contains("truncated"));
    }
}
