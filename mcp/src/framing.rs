//! Newline-delimited framing for the stdio transport.
//!
//! MCP over stdio sends one JSON-RPC message per line. [`LineReader`] splits a byte stream into
//! lines and enforces a maximum line length *while reading*: the moment the partial line passes
//! the cap it reports [`FramingError::LineTooLong`] and stops buffering, so a peer writing
//! gigabytes without a newline costs at most the cap plus one read chunk of memory.

#[cfg(test)]
mod tests;

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Revka's cap on one stdio message: 4 MiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 4 * 1024 * 1024;

/// The size of the read-ahead buffer: the most asked of the reader at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// Line-buffer capacity kept between lines; a bigger one, grown by a long line, is released.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// Why [`LineReader::next_line`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A line is longer than the cap (not counting its `\n` or `\r\n`). It was not buffered;
    /// the next call skips the rest of it and goes on with the following line.
    #[error("line longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The cap, in bytes.
        limit: usize,
    },
    /// Reading from the underlying reader failed.
    #[error("reading a line failed: {0}")]
    Io(#[from] io::Error),
}

/// Splits an [`AsyncRead`] into lines, with a cap on a line's length.
///
/// A line ends with `\n`; one `\r` before it is dropped too; a last line without a newline is
/// returned at end of input; empty lines are skipped. Lines are returned as a slice of an
/// internal buffer that is reused for the next line, so reading costs no allocation per line.
///
/// [`next_line`](Self::next_line) is cancel-safe: if its future is dropped (e.g. losing a
/// `tokio::select!`), no input is lost and the next call carries on where it stopped.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    /// The line being assembled, without its terminator.
    line: Vec<u8>,
    max_line_len: usize,
    /// `line` was handed out by the previous call: clear it before reading on.
    returned: bool,
    /// The current line was reported too long: drop input up to its newline.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of lines of at most `max_line_len` bytes (Revka uses [`DEFAULT_MAX_LINE_LEN`]),
    /// reading up to [`READ_CHUNK`] bytes at a time from `reader`.
    pub fn new(reader: R, max_line_len: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(READ_CHUNK, reader),
            line: Vec::new(),
            max_line_len,
            returned: false,
            discarding: false,
        }
    }

    /// The cap on a line's length, in bytes.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// Bytes held in memory: the partial (or last returned) line plus read-ahead. At most the
    /// cap + 1 + [`READ_CHUNK`].
    pub fn buffered_len(&self) -> usize {
        self.line.len() + self.inner.buffer().len()
    }

    /// The underlying reader; buffered input is lost.
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    /// The next non-empty line without its terminator, or `None` at end of input.
    ///
    /// After [`FramingError::LineTooLong`] the reader stays usable: the next call skips the
    /// rest of the long line (without buffering it). After [`FramingError::Io`] it is up to
    /// the caller; retrying calls the reader again.
    pub async fn next_line(&mut self) -> Result<Option<&[u8]>, FramingError> {
        if self.returned {
            self.returned = false;
            self.reset_line();
        }
        let cap = self.max_line_len;
        loop {
            let available = match self.inner.fill_buf().await {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let n = available.len();
            if n == 0 {
                // End of input: a last line without a newline still counts.
                self.discarding = false;
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                if self.line.is_empty() {
                    return Ok(None);
                }
                break;
            }
            let newline = available.iter().position(|&b| b == b'\n');
            if self.discarding {
                let used = newline.map_or(n, |i| i + 1);
                self.discarding = newline.is_none();
                self.inner.consume(used);
                continue;
            }
            match newline {
                Some(i) => {
                    let last = if i > 0 {
                        available.get(i - 1)
                    } else {
                        self.line.last()
                    };
                    let len = self.line.len() + i - usize::from(last == Some(&b'\r'));
                    if len > cap {
                        self.inner.consume(i + 1);
                        self.reset_line();
                        return Err(FramingError::LineTooLong { limit: cap });
                    }
                    append_bounded(&mut self.line, &available[..i], cap);
                    self.inner.consume(i + 1);
                    self.line.truncate(len);
                    if !self.line.is_empty() {
                        break;
                    }
                }
                None => {
                    // The partial line may exceed the cap by a `\r` that a `\n` may follow.
                    let total = self.line.len() + n;
                    if total > cap.saturating_add(1) || (total > cap && available[n - 1] != b'\r') {
                        self.inner.consume(n);
                        self.reset_line();
                        self.discarding = true;
                        return Err(FramingError::LineTooLong { limit: cap });
                    }
                    append_bounded(&mut self.line, available, cap);
                    self.inner.consume(n);
                }
            }
        }
        self.returned = true;
        Ok(Some(&self.line))
    }

    fn reset_line(&mut self) {
        self.line.clear();
        self.line.shrink_to(RETAINED_CAPACITY);
    }
}

/// Appends `bytes` (the caller checked the line stays within `cap + 1`), growing the buffer
/// geometrically but never past `cap + 1`, so a line near the cap does not allocate twice it.
fn append_bounded(line: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let total = line.len() + bytes.len();
    if total > line.capacity() {
        let want = total
            .max(line.capacity().saturating_mul(2))
            .min(cap.saturating_add(1));
        line.reserve_exact(want.max(total) - line.len());
    }
    line.extend_from_slice(bytes);
}
