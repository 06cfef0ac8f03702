//! A child's stderr: read line by line into a bounded ring buffer and logged at debug.
//!
//! The ring keeps the last [`STDERR_RING_BYTES`] bytes of whole lines, so introspection can show
//! why a server died. Lines longer than [`MAX_STDERR_LINE`] are cut (the rest of the line is
//! skipped, never buffered), so a child flooding stderr without newlines costs bounded memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Bytes of stderr kept per process.
pub const STDERR_RING_BYTES: usize = 64 * 1024;
/// Longest stderr line kept; the rest of a longer line is dropped.
pub const MAX_STDERR_LINE: usize = 4 * 1024;

/// The last lines a child wrote to stderr, bounded in bytes.
#[derive(Debug, Default)]
pub struct StderrRing {
    lines: VecDeque<String>,
    bytes: usize,
    total_lines: u64,
}

impl StderrRing {
    /// Appends a line, evicting the oldest lines beyond the byte budget.
    pub fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.total_lines += 1;
        self.lines.push_back(line);
        while self.bytes > STDERR_RING_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    /// The buffered tail, newline-separated.
    pub fn tail(&self) -> String {
        let mut out = String::with_capacity(self.bytes);
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The most recent non-empty line, if any.
    pub fn last_line(&self) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }

    /// Bytes currently buffered.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Lines seen since the process started.
    pub fn total_lines(&self) -> u64 {
        self.total_lines
    }
}

/// Reads `stream` to its end, line by line, into `ring`, logging each line at debug.
pub(crate) async fn pump(
    stream: impl AsyncRead + Unpin,
    ring: Arc<Mutex<StderrRing>>,
    path: String,
) {
    let mut reader = BufReader::with_capacity(8 * 1024, stream);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut cut = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, consumed, complete) = match memchr(b'\n', buf) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_STDERR_LINE.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if complete {
            emit(&mut line, &mut cut, &ring, &path);
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut cut, &ring, &path);
    }
}

fn emit(line: &mut Vec<u8>, cut: &mut bool, ring: &Mutex<StderrRing>, path: &str) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *cut {
        text.push_str(" …[cut]");
    }
    tracing::debug!(path, line = %text, "child stderr");
    ring.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(text);
    line.clear();
    *cut = false;
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_bytes_of_whole_lines() {
        let mut ring = StderrRing::default();
        for i in 0..20_000 {
            ring.push(format!("line {i:05}"));
        }
        assert!(ring.len_bytes() <= STDERR_RING_BYTES);
        assert_eq!(ring.last_line(), Some("line 19999"));
        assert!(
            ring.tail().starts_with("line "),
            "no partial line at the front"
        );
        assert_eq!(ring.total_lines(), 20_000);
    }

    #[tokio::test]
    async fn pump_cuts_long_lines_and_keeps_short_ones() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nsecond\r\nthird");
        let ring = Arc::new(Mutex::new(StderrRing::default()));
        pump(&input[..], ring.clone(), "test".into()).await;
        let ring = ring.lock().unwrap();
        let tail = ring.tail();
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].len() < MAX_STDERR_LINE + 16 && lines[0].ends_with("[cut]"));
        assert_eq!(&lines[1..], ["second", "third"]);
    }
}
