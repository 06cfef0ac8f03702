//! Tests of Revka's patch to ractor (`vendor/ractor`, see `vendor/README.md`): an actor's
//! supervision port is a small channel of its own that allocates only when an event is
//! queued. ractor's own test suite is not vendored, so the patched channel is tested here,
//! against the contract ractor relies on (that of tokio's unbounded channel), and through real
//! actors: a supervisor still hears of its children starting, failing and stopping.

use std::sync::Arc;

use ractor::concurrency::supervision_port::channel;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc::error::TryRecvError;

#[tokio::test]
async fn delivers_in_order_then_none_when_closed() {
    let (tx, mut rx) = channel();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    rx.close();
    assert_eq!(tx.send(3).unwrap_err().0, 3, "a closed port refuses sends");
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.recv().await, None);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[tokio::test]
async fn wakes_a_waiting_receiver() {
    let (tx, mut rx) = channel();
    let waiter = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    tx.clone().send(7).unwrap();
    assert_eq!(waiter.await.unwrap(), Some(7));
}

#[tokio::test]
async fn ends_when_every_sender_is_gone() {
    let (tx, mut rx) = channel::<u8>();
    let tx2 = tx.clone();
    drop(tx);
    assert_eq!(
        rx.try_recv(),
        Err(TryRecvError::Empty),
        "one sender is left"
    );
    let waiter = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    drop(tx2);
    assert_eq!(waiter.await.unwrap(), None);
}

#[tokio::test]
async fn a_cancelled_recv_loses_nothing() {
    let (tx, mut rx) = channel();
    // A recv abandoned while pending (as in ractor's select over its ports) takes nothing.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(5), rx.recv())
            .await
            .is_err()
    );
    tx.send("kept").unwrap();
    assert_eq!(rx.recv().await, Some("kept"));
}

#[test]
fn a_dropped_receiver_refuses_sends_and_drops_what_was_queued() {
    let (tx, rx) = channel();
    let value = Arc::new(());
    tx.send(value.clone()).unwrap();
    drop(rx);
    // Dropped with the receiver: a queued event holding an actor's cell must not keep that
    // actor's ports alive.
    assert_eq!(Arc::strong_count(&value), 1);
    assert!(tx.send(value).is_err());
}

/// Records the supervision events it receives.
struct Parent(tokio::sync::mpsc::UnboundedSender<&'static str>);

impl Actor for Parent {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let kind = match event {
            SupervisionEvent::ActorStarted(_) => "started",
            SupervisionEvent::ActorFailed(..) => "failed",
            SupervisionEvent::ActorTerminated(..) => "terminated",
            SupervisionEvent::ProcessGroupChanged(_) => "group",
        };
        let _ = self.0.send(kind);
        Ok(())
    }
}

/// Fails on its first message.
struct Child;

impl Actor for Child {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        Err("asked to fail".into())
    }
}

async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("a supervision event within 10 s")
        .expect("the parent is running")
}

#[tokio::test]
async fn a_supervisor_hears_its_children_start_fail_and_stop() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (parent, parent_task) = Actor::spawn(None, Parent(tx), ()).await.unwrap();
    let (failing, _) = Actor::spawn_linked(None, Child, (), parent.get_cell())
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, "started");
    failing.cast(()).unwrap();
    assert_eq!(next(&mut events).await, "failed");

    let (stopped, _) = Actor::spawn_linked(None, Child, (), parent.get_cell())
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, "started");
    stopped.stop(None);
    assert_eq!(next(&mut events).await, "terminated");

    parent.stop(None);
    parent_task.await.unwrap();
}
