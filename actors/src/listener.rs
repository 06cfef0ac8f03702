//! A supervised TCP listener: the MCP server (`root/mcp_http`) and the gateway (`root/gateway`).
//!
//! [`ListenerActor`] binds its address in `post_start` (a bind error is an abnormal start, so it
//! is retried with backoff and visible in introspection). It then announces the bound address
//! (the MCP server writes its discovery file there) and runs the serve function until it is
//! stopped. Serving that ends by itself is a failure, so the listener is restarted. A stop
//! cancels the serve function's token, waits up to the grace period for open connections, then
//! runs the `on_stop` hook (the MCP server removes its discovery file). A kill or panic skips
//! the hook: the next start overwrites the announcement anyway.
//!
//! The actor knows nothing about HTTP: the daemon crate passes an axum server as the serve
//! function.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::status::StatusNode;
use crate::supervisor::{ChildContext, ChildSpec, RestartPolicy};

/// Serves connections on a bound listener until the token is cancelled.
pub type ServeFn = Arc<
    dyn Fn(tokio::net::TcpListener, CancellationToken) -> BoxFuture<'static, std::io::Result<()>>
        + Send
        + Sync,
>;
/// Runs once the address is bound (announce it); an error fails the start.
pub type BoundFn = Arc<dyn Fn(SocketAddr) -> Result<(), String> + Send + Sync>;
/// Runs after a graceful stop (withdraw the announcement).
pub type StopFn = Arc<dyn Fn() + Send + Sync>;

/// What a listener binds and serves.
#[derive(Clone)]
pub struct ListenerSpec {
    /// The address to bind (port 0 = ephemeral).
    pub addr: SocketAddr,
    /// The server.
    pub serve: ServeFn,
    /// Announces the bound address.
    pub on_bound: Option<BoundFn>,
    /// Withdraws the announcement after a graceful stop.
    pub on_stop: Option<StopFn>,
    /// How long a stop waits for open connections before cutting them.
    pub grace: Duration,
    /// Where the bound address is published (`None` while not bound).
    pub bound: watch::Sender<Option<SocketAddr>>,
}

impl std::fmt::Debug for ListenerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSpec")
            .field("addr", &self.addr)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// The listener actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListenerActor;

/// Arguments of [`ListenerActor`].
#[derive(Debug)]
pub struct ListenerArguments {
    /// What to bind and serve.
    pub spec: ListenerSpec,
    /// The actor's status node (details: the bound address).
    pub node: StatusNode,
}

/// Messages of [`ListenerActor`].
#[derive(Debug)]
pub enum ListenerMessage {
    /// Internal: the serve function returned by itself.
    ServingEnded(String),
}

/// State of [`ListenerActor`]. Dropping it cuts the server off at once.
#[derive(Debug)]
pub struct ListenerState {
    spec: ListenerSpec,
    node: StatusNode,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    bound: Arc<Mutex<Option<SocketAddr>>>,
}

impl Drop for ListenerState {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.spec.bound.send_replace(None);
    }
}

impl Actor for ListenerActor {
    type Msg = ListenerMessage;
    type State = ListenerState;
    type Arguments = ListenerArguments;

    async fn pre_start(
        &self,
        _: ActorRef<ListenerMessage>,
        ListenerArguments { spec, node }: ListenerArguments,
    ) -> Result<ListenerState, ActorProcessingErr> {
        let bound: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let shown = bound.clone();
        node.set_details(Arc::new(move || {
            let addr = *shown.lock().unwrap_or_else(PoisonError::into_inner);
            serde_json::json!({ "address": addr.map(|a| a.to_string()) })
        }));
        Ok(ListenerState {
            spec,
            node,
            stop: CancellationToken::new(),
            task: None,
            bound,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ListenerMessage>,
        state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        let listener = tokio::net::TcpListener::bind(state.spec.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", state.spec.addr))?;
        let addr = listener.local_addr()?;
        if let Some(on_bound) = &state.spec.on_bound {
            on_bound(addr)?;
        }
        *state.bound.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
        state.spec.bound.send_replace(Some(addr));
        tracing::info!(path = %state.node.path(), %addr, "listening");
        let serve = (state.spec.serve)(listener, state.stop.clone());
        let stop = state.stop.clone();
        state.task = Some(tokio::spawn(async move {
            let outcome = serve.await;
            if !stop.is_cancelled() {
                let reason = match outcome {
                    Ok(()) => "the server stopped serving".to_owned(),
                    Err(e) => format!("the server failed: {e}"),
                };
                let _ = myself.send_message(ListenerMessage::ServingEnded(reason));
            }
        }));
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<ListenerMessage>,
        state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop.cancel();
        state.spec.bound.send_replace(None);
        if let Some(task) = state.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(state.spec.grace, task).await.is_err() {
                tracing::warn!(path = %state.node.path(), grace_ms = state.spec.grace.as_millis() as u64, "connections still open after the grace period; closing them");
                abort.abort();
            }
        }
        if let Some(on_stop) = &state.spec.on_stop {
            on_stop();
        }
        tracing::info!(path = %state.node.path(), "stopped listening");
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ListenerMessage>,
        msg: ListenerMessage,
        _: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ListenerMessage::ServingEnded(reason) => Err(reason.into()),
        }
    }
}

/// The child spec of a listener with id `id`. Its shutdown budget covers the grace period.
pub fn listener_spec(id: &str, spec: ListenerSpec, policy: RestartPolicy) -> ChildSpec {
    let mut policy = policy;
    policy.shutdown = crate::supervisor::Shutdown::Timeout(spec.grace + Duration::from_secs(2));
    ChildSpec::new(id, "listener", policy, move |ctx: ChildContext| {
        let spec = spec.clone();
        async move {
            let args = ListenerArguments {
                spec,
                node: ctx.node,
            };
            let (actor, _) =
                ListenerActor::spawn_linked(None, ListenerActor, args, ctx.supervisor).await?;
            Ok(actor.get_cell())
        }
    })
}
