//! Captures a guest's stdout and stderr as lines, bounded per invocation.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wisp_core::logbuf::{Lines, LogLines};
use wisp_core::LogStream;

/// The log of one invocation (or of one reused instance between requests).
#[derive(Clone, Default)]
pub(crate) struct LogCapture {
    inner: Arc<Mutex<LogLines>>,
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
            b.platform(&line);
        }
    }

    fn write(&self, stream: LogStream, bytes: &[u8]) {
        if let Ok(mut b) = self.inner.lock() {
            b.write(stream, bytes);
        }
    }

    /// Takes the lines so far, including unterminated last lines, and resets.
    pub(crate) fn take(&self) -> Lines {
        match self.inner.lock() {
            Ok(mut b) => b.take(),
            Err(_) => Vec::new(),
        }
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
