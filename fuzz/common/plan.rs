//! How the targets turn fuzzer bytes into a chunking of a stream, shared by the byte-stream
//! targets so that the same input bytes always mean the same reads.
//!
//! Layout of an input: one byte `n`, then `n % 16` plan bytes, then the stream. Each plan byte
//! is the size of the next read (its low 7 bits; 0 means 1 byte); a set high bit makes the read
//! before it return `Pending` once, which the framing target treats as a cancelled `next_line`.
//! The plan repeats until the stream is used up; an empty plan reads everything at once.

// Each target uses only part of this module.
#![allow(dead_code)]

/// One planned read.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    /// Bytes to hand out, at least 1.
    pub len: usize,
    /// Return `Pending` once before this read.
    pub pending_first: bool,
}

/// Splits `data` into the plan and the stream.
pub fn split(data: &[u8]) -> (Vec<Read>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(n % 16).min(rest.len());
    let plan = rest[..n]
        .iter()
        .map(|&b| Read {
            len: usize::from(b & 0x7f).max(1),
            pending_first: b & 0x80 != 0,
        })
        .collect();
    (plan, &rest[n..])
}

/// `stream` cut into chunks by `plan` (cycled), for targets that push chunks themselves.
pub fn chunks<'a>(plan: &[Read], stream: &'a [u8]) -> Vec<&'a [u8]> {
    if plan.is_empty() {
        return vec![stream];
    }
    let mut out = Vec::new();
    let mut rest = stream;
    for read in plan.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(read.len.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}
