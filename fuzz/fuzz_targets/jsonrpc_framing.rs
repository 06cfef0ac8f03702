//! The stdio read path: bytes from a server's stdout, read in a fuzzer-chosen pattern of short
//! reads (some cancelled mid-line, as when `next_line` loses a `select!`), framed by
//! `LineReader` with a small cap, each line then parsed as JSON-RPC.
//!
//! Checked: the lines (and over-long-line errors) are exactly those of the model "split at LF,
//! drop one CR before it, skip empty lines", whatever the reads; the buffer never holds more
//! than the cap + 1 + one read chunk; every line goes through the JSON-RPC oracle.

#![no_main]

#[path = "../common/jsonrpc.rs"]
mod jsonrpc;
#[path = "../common/plan.rs"]
mod plan;

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use revka_mcp::framing::{FramingError, LineReader, READ_CHUNK};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `stream` following the plan, returning `Pending` where it says.
struct Planned<'a> {
    plan: Vec<plan::Read>,
    next: usize,
    stream: &'a [u8],
    pending_done: bool,
}

impl AsyncRead for Planned<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = match self.plan.get(self.next % self.plan.len().max(1)) {
            Some(read) => *read,
            None => plan::Read {
                len: usize::MAX,
                pending_first: false,
            },
        };
        if read.pending_first && !self.pending_done && !self.stream.is_empty() {
            self.pending_done = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_done = false;
        self.next += 1;
        let n = read.len.min(buf.remaining()).min(self.stream.len());
        let (chunk, rest) = self.stream.split_at(n);
        buf.put_slice(chunk);
        self.stream = rest;
        Poll::Ready(Ok(()))
    }
}

type Outcome = Result<Vec<u8>, usize>;

fn model(input: &[u8], cap: usize) -> Vec<Outcome> {
    input
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            if line.len() > cap {
                Err(cap)
            } else {
                Ok(line.to_vec())
            }
        })
        .collect()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cap, data)) = data.split_first() else {
        return;
    };
    let cap = usize::from(cap);
    let (plan, stream) = plan::split(data);
    let mut reader = LineReader::new(
        Planned {
            plan,
            next: 0,
            stream,
            pending_done: false,
        },
        cap,
    );
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = Vec::new();
    loop {
        // A `Pending` read drops the future, as losing a `select!` would; the next call must
        // carry on where this one stopped.
        let next = loop {
            let poll = pin!(reader.next_line()).poll(&mut cx);
            if let Poll::Ready(next) = poll {
                break next.map(|line| line.map(<[u8]>::to_vec));
            }
        };
        assert!(reader.buffered_len() <= cap + 1 + READ_CHUNK);
        match next {
            Ok(Some(line)) => {
                assert!(!line.is_empty() && line.len() <= cap);
                jsonrpc::check_line(&line);
                got.push(Ok(line));
            }
            Ok(None) => break,
            Err(FramingError::LineTooLong { limit }) => got.push(Err(limit)),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(got, model(stream, cap));
});
