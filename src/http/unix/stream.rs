//! [`ReadWoken`]: a Unix stream on tokio's event loop that is woken for reading only. Part of
//! the MCP socket's plumbing ([`super`]); both ends of `$REVKA_HOME/mcp.sock` use it, the
//! daemon for the connections it accepts and the stdio bridge for the ones it opens.
//!
//! **Why not `tokio::net::UnixStream`.** tokio registers a stream for reading and writing,
//! edge-triggered. On a Unix stream socket, every time the peer *reads* data this end wrote,
//! Linux signals this end's socket writable again (`unix_write_space`), and with write interest
//! registered that is an epoll event: a wake-up of the writer's thread, for nothing, on every
//! message. In a request/answer exchange that is one spurious wake-up per message on each side
//! (seen with strace: an `epoll_wait` returning `EPOLLOUT` alone between the bridge's request
//! and the daemon's answer), and the reader pays for the wake-up it causes. TCP signals room
//! only after a writer found none, so loopback TCP has no such cost.
//!
//! Here the socket is registered for reading alone, and writes go straight to the socket. Only
//! when a write finds no room (the peer is not reading) is a second registration made, for
//! writability, on a duplicate of the descriptor; it is dropped once a write goes through in
//! full. An event that arrives between the failed write and that registration is not lost: a
//! registration reports the state the socket is already in.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A non-blocking Unix stream registered for reading only: a Unix socket would otherwise wake
/// its writer every time the peer reads, so a write that finds no room registers for
/// writability only until it goes through.
#[derive(Debug)]
pub struct ReadWoken {
    socket: AsyncFd<UnixStream>,
    /// Registered for writability while a write waits for room, else `None`.
    room: Option<AsyncFd<OwnedFd>>,
}

impl ReadWoken {
    /// Puts `socket` (made non-blocking here) on the current runtime's event loop.
    pub fn new(socket: UnixStream) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket: register(socket, Interest::READABLE)?,
            room: None,
        })
    }

    /// Connects to the socket at `path` (a local socket accepts or refuses at once).
    pub async fn connect(path: &std::path::Path) -> io::Result<Self> {
        let socket = tokio::net::UnixStream::connect(path).await?.into_std()?;
        Self::new(socket)
    }

    /// Writes what the socket takes of `bytes` at once, without waiting.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.socket.get_ref().write(bytes)
    }

    /// Runs `write` until it goes through, waiting for room between tries.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        total: usize,
        mut write: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let Some(room) = &self.room else {
                match write(self.socket.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let copy = self.socket.get_ref().as_fd().try_clone_to_owned()?;
                        self.room = Some(register(copy, Interest::WRITABLE)?);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    written => return Poll::Ready(written),
                }
            };
            let mut guard = ready!(room.poll_write_ready(cx))?;
            match write(self.socket.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(n) => {
                    if n == total {
                        self.room = None;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// `fd` on the current runtime's event loop, for `interest` only.
#[allow(unsafe_code)]
fn register<T>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>>
where
    T: std::os::fd::AsRawFd + Into<OwnedFd>,
{
    // SAFETY: `T` owns its descriptor (it converts into an `OwnedFd`: a `UnixStream` or an
    // `OwnedFd` here), which stays open and the same until the `AsyncFd`, which owns `T`, is
    // dropped.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

impl ReadWoken {
    /// Reads what is there into `buf` without waiting: `WouldBlock` when nothing is, without a
    /// system call unless the event loop saw the socket readable since a read drained it.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket
            .try_io(Interest::READABLE, |mut socket| socket.read(buf))
    }
}

impl AsyncRead for ReadWoken {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            let wanted = buf.remaining();
            let read = guard.try_io(|socket| read_uninit(socket.get_ref(), buf));
            match read {
                Ok(Ok(n)) => {
                    // Less than asked for: the socket is drained (epoll is edge-triggered, so
                    // a later arrival is a new event). The next read waits for it instead of
                    // trying first (tokio's own streams do the same).
                    if n > 0 && n < wanted {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

/// One `read` of `socket` into the unfilled part of `buf`, which is not zeroed first (a read
/// buffer is often 8 KiB or more, and most messages are a few hundred bytes).
#[allow(unsafe_code)]
fn read_uninit(socket: &UnixStream, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: the slice is only written by `read(2)`, never read or de-initialised.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = rustix::io::read(socket, unfilled).map(|(filled, _)| filled.len())?;
    // SAFETY: `read(2)` initialised the first `n` bytes of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

impl AsyncWrite for ReadWoken {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, buf.len(), |mut socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|b| b.len()).sum();
        self.get_mut()
            .poll_write_with(cx, total, |mut socket| socket.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.socket.get_ref().shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A message far larger than the socket's buffer goes through whole while the peer reads
    /// slowly: the writer waits for room (its second registration) and is woken for it.
    #[tokio::test]
    async fn a_write_larger_than_the_buffer_waits_for_room_and_completes() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut writer = ReadWoken::new(a).unwrap();
        let mut reader = ReadWoken::new(b).unwrap();
        let message: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = message.clone();
        let write = tokio::spawn(async move {
            writer.write_all(&message).await.unwrap();
            assert!(
                writer.room.is_none(),
                "the room registration outlived the wait"
            );
            writer.shutdown().await.unwrap();
            writer
        });
        let mut got = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            let n = reader.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived changed");
        drop(write.await.unwrap());
    }

    /// Both directions at once, vectored writes included, and end of stream on shutdown.
    #[tokio::test]
    async fn exchanges_both_ways_and_reads_the_end() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut left = ReadWoken::new(a).unwrap();
        let mut right = ReadWoken::new(b).unwrap();
        let parts = [IoSlice::new(b"hello, "), IoSlice::new(b"daemon\n")];
        let n = left.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 14);
        let mut got = [0; 14];
        right.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello, daemon\n");
        right.write_all(b"answer").await.unwrap();
        right.shutdown().await.unwrap();
        let mut rest = Vec::new();
        left.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"answer");
    }
}
