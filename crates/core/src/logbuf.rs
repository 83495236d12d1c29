//! A function's stdout and stderr cut into lines, bounded per invocation.
//! Shared by the runtimes: wasm guests write through WASI pipes, processes
//! through OS pipes; both end up here.

use crate::clock::{Clock, SystemClock};
use crate::limits::{MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LINE_BYTES};
use crate::record::LogStream;

/// Lines captured so far: (stream, capture time in ms, text).
pub type Lines = Vec<(LogStream, i64, String)>;

/// Output of one invocation, as lines; partial lines wait for their end.
#[derive(Debug, Default)]
pub struct LogLines {
    lines: Lines,
    partial: [Vec<u8>; 2],
    bytes: usize,
    truncated: bool,
}

fn slot(stream: LogStream) -> usize {
    usize::from(stream == LogStream::Stderr)
}

impl LogLines {
    fn push_line(&mut self, stream: LogStream, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        let cut = crate::text::cut_bytes(bytes, MAX_LOG_LINE_BYTES);
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

    /// A line written by wisp about this invocation.
    pub fn platform(&mut self, line: &str) {
        self.push_line(LogStream::Platform, line.as_bytes());
    }

    /// Appends output of `stream`; complete lines are kept, the rest waits.
    pub fn write(&mut self, stream: LogStream, bytes: &[u8]) {
        let i = slot(stream);
        let mut start = 0;
        for (pos, byte) in bytes.iter().enumerate() {
            if *byte == b'\n' {
                let mut line = std::mem::take(&mut self.partial[i]);
                line.extend_from_slice(&bytes[start..pos]);
                self.push_line(stream, &line);
                start = pos + 1;
            }
        }
        let rest = &bytes[start..];
        if self.partial[i].len() + rest.len() > MAX_LOG_LINE_BYTES {
            let mut line = std::mem::take(&mut self.partial[i]);
            line.extend_from_slice(rest);
            self.push_line(stream, &line);
        } else {
            self.partial[i].extend_from_slice(rest);
        }
    }

    /// Whether any of the last lines (or the unfinished ones) holds one of `needles`.
    pub fn mentions(&self, needles: &[&str]) -> bool {
        let partial = self.partial.iter().map(|p| String::from_utf8_lossy(p));
        let recent = self
            .lines
            .iter()
            .rev()
            .take(20)
            .map(|(_, _, l)| l.as_str().into());
        partial
            .chain(recent)
            .any(|line: std::borrow::Cow<'_, str>| needles.iter().any(|n| line.contains(n)))
    }

    /// Takes the lines so far, including unterminated last lines, and resets.
    pub fn take(&mut self) -> Lines {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let line = std::mem::take(&mut self.partial[slot(stream)]);
            if !line.is_empty() {
                self.push_line(stream, &line);
            }
        }
        let lines = std::mem::take(&mut self.lines);
        *self = LogLines::default();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_per_stream_and_flushes_partials() {
        let mut c = LogLines::default();
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
        let mut c = LogLines::default();
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

    #[test]
    fn long_lines_are_cut_at_the_limit() {
        let mut c = LogLines::default();
        c.write(LogStream::Stdout, &vec![b'y'; MAX_LOG_LINE_BYTES * 3]);
        let lines = c.take();
        assert!(lines.iter().all(|(_, _, l)| l.len() <= MAX_LOG_LINE_BYTES));
    }
}
