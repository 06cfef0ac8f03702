// Revka patch to ractor 0.16.5 (see vendor/README.md in the Revka repository).

//! The channel of an actor's supervision port: unbounded, many senders, one receiver.
//!
//! Every actor has one, and almost all of them stay empty for the actor's whole life (events
//! arrive only when a linked child starts, stops or fails). tokio's unbounded channel, used
//! before, allocates on creation a cache-padded channel of 512 bytes and a first block of 32
//! slots (2.5 KiB for the 80-byte event): 3 KiB per actor for nothing. This one is a mutex
//! over a `VecDeque`, which allocates only when an event is queued: some 80 bytes per actor.
//! Events are rare, so the mutex is never contended in practice.
//!
//! Same contract as tokio's `UnboundedSender`/`UnboundedReceiver` where ractor relies on it:
//! `send` fails once the receiver is closed or dropped; `recv` (cancel safe) yields queued
//! events, then `None` once the channel is closed or every sender is gone; dropping the
//! receiver drops what is still queued, so a queued event that holds an actor's cell cannot
//! keep that actor's ports alive.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::mpsc::error::{SendError, TryRecvError};

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver was closed or dropped: sends fail.
    closed: bool,
    senders: usize,
    /// The receiver's task, while it waits.
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned lock's data is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half; cloneable.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// A new, empty channel. Allocates only the shared state.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            closed: false,
            senders: 1,
            waker: None,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `value`, or gives it back if the receiver is closed or gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(SendError(value));
        }
        state.queue.push_back(value);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let waker = if state.senders == 0 {
            state.waker.take()
        } else {
            None
        };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next value; `None` once the channel is closed (or every sender dropped) and empty.
    /// Cancel safe: a value is taken only by the poll that returns it.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next value.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(value) = state.queue.pop_front() {
            return Poll::Ready(Some(value));
        }
        if state.closed || state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next value if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(value) => Ok(value),
            None if state.closed || state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuses further sends; what is queued can still be received.
    pub fn close(&mut self) {
        self.shared.lock().closed = true;
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.waker = None;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        // Dropped outside the lock: a value's drop may send on this channel again.
        drop(queued);
    }
}

// Its tests are in Revka's crate `revka-actors` (src/ractor_patch.rs): ractor's own test
// suite is not vendored.
