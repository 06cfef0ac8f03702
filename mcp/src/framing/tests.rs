use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncWriteExt, ReadBuf};

use super::*;

/// Yields the given chunks in order, each over as many reads as the read buffer needs, then EOF.
struct Chunks(VecDeque<Vec<u8>>);

impl Chunks {
    fn new<I: IntoIterator<Item = Vec<u8>>>(chunks: I) -> Self {
        Chunks(chunks.into_iter().filter(|c| !c.is_empty()).collect())
    }
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.0.front_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// `len` bytes of `a` without a newline, then `tail`, counting what was read.
struct Flood {
    remaining: usize,
    produced: usize,
    tail: &'static [u8],
}

impl AsyncRead for Flood {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        static A: [u8; READ_CHUNK] = [b'a'; READ_CHUNK];
        let before = buf.filled().len();
        let n = self.remaining.min(buf.remaining()).min(READ_CHUNK);
        if n > 0 {
            buf.put_slice(&A[..n]);
        } else {
            let tail = self.tail;
            let n = tail.len().min(buf.remaining());
            buf.put_slice(&tail[..n]);
            self.tail = &tail[n..];
        }
        self.remaining -= n;
        self.produced += buf.filled().len() - before;
        Poll::Ready(Ok(()))
    }
}

type Outcome = Result<Vec<u8>, usize>;

/// Every line, or the limit of a `LineTooLong`, until EOF; checks the bounds on the way.
async fn collect<R: AsyncRead + Unpin>(reader: &mut LineReader<R>) -> Vec<Outcome> {
    let cap = reader.max_line_len();
    let mut out = Vec::new();
    loop {
        let next = match reader.next_line().await {
            Ok(line) => Ok(line.map(<[u8]>::to_vec)),
            Err(e) => Err(e),
        };
        assert!(reader.buffered_len() <= cap + 1 + READ_CHUNK);
        assert!(reader.line.capacity() <= (cap + 1).max(RETAINED_CAPACITY));
        match next {
            Ok(Some(line)) => {
                assert!(line.len() <= cap && !line.is_empty());
                out.push(Ok(line));
            }
            Ok(None) => return out,
            Err(FramingError::LineTooLong { limit }) => out.push(Err(limit)),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

/// What the reader must produce: split at `\n`, drop one trailing `\r`, skip empty lines.
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

fn split_at(input: &[u8], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut start = 0;
    cuts.into_iter()
        .map(|end| {
            let chunk = input[start..end].to_vec();
            start = end;
            chunk
        })
        .collect()
}

fn lines(outcomes: &[&str]) -> Vec<Outcome> {
    outcomes.iter().map(|l| Ok(l.as_bytes().to_vec())).collect()
}

#[tokio::test]
async fn splits_lines() {
    let input = b"a\r\n\n\r\nbc\rd\n\r\r\n{\"x\":1}\nlast\r";
    let mut reader = LineReader::new(Chunks::new([input.to_vec()]), 100);
    assert_eq!(
        collect(&mut reader).await,
        lines(&["a", "bc\rd", "\r", "{\"x\":1}", "last"])
    );
    let mut reader = LineReader::new(Chunks::new([b"only".to_vec()]), 100);
    assert_eq!(collect(&mut reader).await, lines(&["only"]));
    let mut reader = LineReader::new(Chunks::new([]), 100);
    assert_eq!(reader.next_line().await.unwrap(), None);
    assert_eq!(reader.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn cap_counts_the_line_without_its_terminator() {
    let chunks = ["abcd\r", "\nabcde", "\r\nxyz\n", "abcd\r", "\r\nq"];
    let mut reader = LineReader::new(Chunks::new(chunks.map(|c| c.as_bytes().to_vec())), 4);
    let expected = vec![
        Ok(b"abcd".to_vec()),
        Err(4),
        Ok(b"xyz".to_vec()),
        Err(4),
        Ok(b"q".to_vec()),
    ];
    assert_eq!(collect(&mut reader).await, expected);
}

#[tokio::test]
async fn a_flood_without_newline_is_cut_off_early() {
    let cap = DEFAULT_MAX_LINE_LEN;
    let flood = Flood {
        remaining: 100 << 20,
        produced: 0,
        tail: b"\n{\"ok\":true}\n",
    };
    let mut reader = LineReader::new(flood, cap);
    let err = reader.next_line().await.unwrap_err();
    assert!(
        matches!(err, FramingError::LineTooLong { limit } if limit == cap),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("line longer than the limit of {cap} bytes")
    );
    // It stopped reading right after passing the cap, and holds at most one read-ahead chunk.
    assert!(reader.inner.get_ref().produced <= cap + 2 * READ_CHUNK);
    assert!(reader.buffered_len() <= READ_CHUNK);
    assert!(reader.line.capacity() <= cap + 1);
    // The next call skips the rest of the flood without buffering it.
    assert_eq!(
        reader.next_line().await.unwrap(),
        Some(&b"{\"ok\":true}"[..])
    );
    assert_eq!(reader.inner.get_ref().produced, (100 << 20) + 13);
    assert!(reader.line.capacity() <= RETAINED_CAPACITY);
    assert_eq!(reader.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn a_line_at_the_cap_does_not_over_allocate() {
    let cap = 1 << 20;
    let mut line = vec![b'x'; cap];
    line.extend_from_slice(b"\r\n");
    let chunks = line.chunks(1000).map(<[u8]>::to_vec).collect::<Vec<_>>();
    let mut reader = LineReader::new(Chunks::new(chunks), cap);
    assert_eq!(
        reader.next_line().await.unwrap().map(<[u8]>::len),
        Some(cap)
    );
    assert!(reader.line.capacity() <= cap + 1);
    assert_eq!(reader.next_line().await.unwrap(), None);
    assert!(reader.line.capacity() <= RETAINED_CAPACITY);
}

#[tokio::test]
async fn next_line_is_cancel_safe() {
    let (mut tx, rx) = tokio::io::duplex(64);
    let mut reader = LineReader::new(rx, 100);
    tx.write_all(b"hello ").await.unwrap();
    let pending = tokio::time::timeout(Duration::from_millis(20), reader.next_line()).await;
    assert!(pending.is_err(), "no line yet");
    tx.write_all(b"world\r\nnext").await.unwrap();
    assert_eq!(reader.next_line().await.unwrap(), Some(&b"hello world"[..]));
    drop(tx);
    assert_eq!(reader.next_line().await.unwrap(), Some(&b"next"[..]));
    assert_eq!(reader.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn read_errors_are_reported_and_interrupts_retried() {
    struct Failing(Vec<io::ErrorKind>);
    impl AsyncRead for Failing {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop() {
                Some(kind) => Poll::Ready(Err(kind.into())),
                None => {
                    buf.put_slice(b"x\n");
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
    let kinds = vec![
        io::ErrorKind::Interrupted,
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::Interrupted,
    ];
    let mut reader = LineReader::new(Failing(kinds), 10);
    let err = reader.next_line().await.unwrap_err();
    assert!(
        matches!(&err, FramingError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe),
        "{err}"
    );
    assert_eq!(reader.next_line().await.unwrap(), Some(&b"x"[..]));
    let _reader: Failing = reader.into_inner();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn bytes_with_line_ends() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![4 => any::<u8>(), 2 => Just(b'\n'), 1 => Just(b'\r')];
    prop::collection::vec(byte, 0..400)
}

proptest! {
    #[test]
    fn any_input_any_chunking_matches_the_model(
        input in bytes_with_line_ends(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        cap in 0usize..40,
    ) {
        let chunks = split_at(&input, &cuts);
        let mut reader = LineReader::new(Chunks::new(chunks), cap);
        let got = runtime().block_on(collect(&mut reader));
        prop_assert_eq!(got, model(&input, cap));
    }

    #[test]
    fn lines_round_trip(
        lines in prop::collection::vec(
            prop::collection::vec(any::<u8>().prop_filter("no LF", |&b| b != b'\n'), 1..60)
                .prop_filter("not just a CR", |l| l != b"\r"),
            0..20,
        ),
        crlf in prop::collection::vec(any::<bool>(), 20),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = Vec::new();
        for (line, crlf) in lines.iter().zip(&crlf) {
            input.extend_from_slice(line);
            input.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        let mut reader = LineReader::new(Chunks::new(split_at(&input, &cuts)), 64);
        let got = runtime().block_on(collect(&mut reader));
        // A line that itself ends in `\r` before an LF terminator loses that `\r`.
        let expected: Vec<Outcome> = lines
            .iter()
            .zip(&crlf)
            .map(|(l, crlf)| Ok(if *crlf { l.clone() } else { l.strip_suffix(b"\r").unwrap_or(l).to_vec() }))
            .collect();
        prop_assert_eq!(got, expected);
    }
}
